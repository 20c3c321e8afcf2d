/**
 * systemd units for the processes that run Django code: gunicorn (WSGI), daphne (ASGI), the
 * Celery worker and Celery beat, one unit per role the host plays (errata section 4, SD-01..11).
 */
import { shell } from "../quote.js";
import type { Role } from "../model/schema.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import { mediaMountPoint } from "./media.js";
import { unitNames } from "./paths.js";
import { directory, type Step } from "./steps.js";

export type UnitRole = Extract<Role, "app" | "asgi" | "worker" | "scheduler">;

export interface HostUnit {
  readonly role: UnitRole;
  /** Unit file name, e.g. novacloud.service. */
  readonly name: string;
  /** True for gunicorn: `systemctl reload` (HUP) swaps workers gracefully (errata UP-05). */
  readonly reloads: boolean;
}

/** The units this host runs, in a fixed order (gunicorn, daphne, worker, beat). */
export function hostUnits(ctx: HostContext): HostUnit[] {
  const u = unitNames(ctx.model);
  const all: HostUnit[] = [
    { role: "app", name: u.wsgi, reloads: true },
    { role: "asgi", name: u.asgi, reloads: false },
    { role: "worker", name: u.worker, reloads: false },
    { role: "scheduler", name: u.beat, reloads: false },
  ];
  return all.filter((unit) => has(ctx, unit.role));
}

/**
 * Wants= and After= (SD-01): the network, and the services the app uses that run on THIS host.
 * Wants= starts them with the app without stopping it when they restart (Requires= would);
 * After= is ordering only. On Debian postgresql.service is the umbrella every cluster unit
 * orders itself before, so After=postgresql.service waits for the clusters. Services on other
 * hosts are reached over the network: network-online.target is all that can be waited for.
 */
export function unitDependencies(ctx: HostContext): string[] {
  const deps = ["network-online.target"];
  if (has(ctx, "db")) deps.push("postgresql.service");
  if (has(ctx, "redis")) deps.push("redis-server.service");
  if (has(ctx, "redis-sentinel")) deps.push("redis-sentinel.service");
  if (has(ctx, "mqtt")) deps.push("mosquitto.service");
  return deps;
}

/** LogsDirectory= takes a path below /var/log; any other log directory is made writable instead. */
function logsDirectory(logDir: string): string | undefined {
  const match = /^\/var\/log\/(.+)$/.exec(logDir);
  return match?.[1];
}

function commonView(ctx: HostContext) {
  const { model } = ctx;
  const project = model.project;
  return {
    project: project.name,
    dependencies: unitDependencies(ctx),
    user: project.user,
    group: project.group,
    // The running release, by its link (resolved when the unit starts).
    workingDirectory: project.current,
    environmentFile: project.envFile,
    mediaDir: project.mediaDir,
    // Media on NFS: the units start after the mount and never without it.
    mediaMount: mediaMountPoint(ctx),
    typeExec: model.caps.systemd.typeExec,
    protectClock: model.caps.systemd.protectClock,
  };
}

function gunicornUnitView(ctx: HostContext) {
  const { model } = ctx;
  const logs = logsDirectory(model.project.logDir);
  return {
    ...commonView(ctx),
    python: `${model.project.venv}/bin/python`,
    config: ctx.paths.gunicornConfig,
    // SD-10: longer than graceful_timeout, so a graceful stop is never cut short by SIGKILL.
    timeoutStopSec: model.gunicorn.graceful_timeout + 5,
    logsDirectory: logs,
    logDir: logs === undefined ? model.project.logDir : undefined,
  };
}

function daphneView(ctx: HostContext) {
  const { model } = ctx;
  return {
    ...commonView(ctx),
    python: `${model.project.venv}/bin/python`,
    port: model.daphne.port,
    websocketTimeout: model.daphne.websocket_timeout,
    application: `${model.project.djangoModule}.asgi:application`,
  };
}

function celeryView(ctx: HostContext) {
  const { model } = ctx;
  return {
    ...commonView(ctx),
    python: `${model.project.venv}/bin/python`,
    app: model.project.djangoModule,
    loglevel: model.celery.loglevel,
    concurrency: model.celery.concurrency === "auto" ? undefined : model.celery.concurrency,
    // SD-08: celery expands %h to the host name; the systemd filter writes it as %%h so systemd
    // passes it through instead of substituting the user's home directory.
    nodeName: `${model.project.name}@%h`,
    stopTimeout: model.celery.stop_timeout,
  };
}

function beatView(ctx: HostContext) {
  const { model } = ctx;
  const stateDirectory = model.project.stateDir.replace(/^\/var\/lib\//, "");
  return {
    ...commonView(ctx),
    python: `${model.project.venv}/bin/python`,
    app: model.project.djangoModule,
    loglevel: model.celery.loglevel,
    schedule: ctx.paths.celerybeatSchedule,
    stateDirectory,
  };
}

const TEMPLATES: Record<UnitRole, { template: string; view: (ctx: HostContext) => object }> = {
  app: { template: "systemd/gunicorn.service.njk", view: gunicornUnitView },
  asgi: { template: "systemd/daphne.service.njk", view: daphneView },
  worker: { template: "systemd/celery.service.njk", view: celeryView },
  scheduler: { template: "systemd/celerybeat.service.njk", view: beatView },
};

function systemdFiles(ctx: HostContext): FileSpec[] {
  const dir = ctx.paths.unitDir;
  return hostUnits(ctx).map((unit) => {
    const t = TEMPLATES[unit.role];
    return templateFile(`${dir}/${unit.name}`, t.template, t.view(ctx), { comment: "#", mode: MODE.config });
  });
}

function systemdSteps(ctx: HostContext): Step[] {
  const units = hostUnits(ctx);
  if (units.length === 0) return [];
  const names = units.map((u) => u.name);
  const beat = units.some((u) => u.role === "scheduler");
  const project = ctx.model.project;
  const migrator = ctx.model.topology.migrator;
  const steps: Step[] = [];
  if (has(ctx, "app") && logsDirectory(project.logDir) === undefined) {
    steps.push({
      id: "systemd.log-directory",
      phase: "files",
      title: `Create the log directory ${project.logDir}`,
      action: { kind: "commands", commands: [directory(project.logDir, 0o750, project.user, project.group)] },
      why: "Outside /var/log systemd cannot create it (LogsDirectory=); gunicorn writes its logs there as the service account and logrotate rotates them as that account.",
    });
  }
  steps.push(
    {
      id: "systemd.start",
      phase: "services",
      title: "Enable and start the application services",
      action: { kind: "service", units: names, enable: true, state: "started", daemonReload: true },
      // New code runs against a migrated schema only.
      after: migrator ? [{ host: migrator.name, id: "app.migrate" }] : [],
      why: beat
        ? "Celery beat runs on this host and on no other (the model allows exactly one scheduler): two beats would fire every periodic task twice."
        : "The units start at boot (WantedBy=multi-user.target) and after the services they use on this host (Wants=/After=).",
    },
    {
      id: "systemd.check",
      phase: "verify",
      title: "Check that the application services run",
      // One unit per command: `systemctl is-active a b c` exits 0 when any one of them is
      // active (systemctl(1)), so a failed unit would pass the playbook's verify run.
      action: { kind: "check", commands: names.map((name) => `systemctl is-active ${shell(name)}`) },
      why: "Each must say active (and exit 0); otherwise `journalctl -u <unit> -b` shows why.",
    },
  );
  return steps;
}

export const systemdFamily: HostFamily = { name: "systemd", files: systemdFiles, steps: systemdSteps };
