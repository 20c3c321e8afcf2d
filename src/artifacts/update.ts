/**
 * update.sh on the hosts that run Django code: a later deploy of one tag, branch or commit
 * (errata 14), built beside the running release and switched to in one rename; and the
 * runbook's rollback to the previous release.
 */
import { PYTHON } from "../model/capabilities.js";
import { runsDjango } from "../model/normalize.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import type { Step } from "./steps.js";
import { hostUnits } from "./systemd.js";

/** Releases update.sh keeps on disk (besides the current and the previous one). */
export const KEEP_RELEASES = 5;

/**
 * The links a switch writes first and then renames over `current` / `previous`: rename(2)
 * replaces a link in one step, where `ln -sfn` unlinks and recreates it.
 */
function switchLinks(ctx: HostContext) {
  const root = ctx.model.project.root;
  return { currentNew: `${root}/.current.new`, previousNew: `${root}/.previous.new` };
}

function updateView(ctx: HostContext) {
  const { model, paths: pth } = ctx;
  const project = model.project;
  const t = model.topology;
  const units = hostUnits(ctx);
  return {
    project: project.name,
    script: pth.updateScript,
    repository: pth.repositoryMirror,
    releases: project.releases,
    current: project.current,
    previous: pth.previousRelease,
    ...switchLinks(ctx),
    user: project.user,
    envFile: project.envFile,
    keep: KEEP_RELEASES,
    uv: model.caps.python.systemPythonFits ? undefined : { bin: pth.uv, pythonInstallDir: pth.pythonInstallDir, python: PYTHON.managed },
    migrator: t.migrator?.name === ctx.host.name,
    migratorHost: t.migrator?.name ?? "",
    collectstatic: has(ctx, "web"),
    backup: has(ctx, "db") ? pth.backupScript : undefined,
    dbHost: t.db?.name ?? "",
    reload: units.filter((u) => u.reloads).map((u) => u.name),
    restart: units.filter((u) => !u.reloads).map((u) => u.name),
    lock: `/run/lock/${project.name}-update.lock`,
  };
}

function updateFiles(ctx: HostContext): FileSpec[] {
  if (!runsDjango(ctx.host)) return [];
  return [templateFile(ctx.paths.updateScript, "update/update.sh.njk", updateView(ctx), { comment: "#", mode: MODE.script })];
}

function updateSteps(ctx: HostContext): Step[] {
  if (!runsDjango(ctx.host)) return [];
  const { model } = ctx;
  const project = model.project;
  const t = model.topology;
  const pth = ctx.paths;
  const migrator = t.migrator?.name === ctx.host.name;
  const order = migrator
    ? "This host migrates the database: deploy here first, then on the other Django hosts."
    : `Deploy on ${t.migrator?.name} first (it migrates the database), then here.`;
  const backup = has(ctx, "db")
    ? "It backs up the database first."
    : `Back up the database on ${t.db?.name} first: runuser -u ${project.user} -- ${pth.backupScript}.`;
  const units = hostUnits(ctx);
  const reload = units.filter((u) => u.reloads).map((u) => shell(u.name));
  const restart = units.filter((u) => !u.reloads).map((u) => shell(u.name));
  const { currentNew } = switchLinks(ctx);
  return [
    {
      id: "update.later",
      phase: "app",
      title: "Later deploys: update.sh",
      action: { kind: "manual", lines: [`${pth.updateScript} <git tag, branch or commit>`] },
      why:
        `${order} ${backup} It builds ${project.releases}/<commit> beside the running release, runs check --deploy${migrator ? " and the migrations" : ""} with it, and only then switches ${project.current} to it and reloads the services; ` +
        `a failure before the switch leaves the running release as it was. Migrations must be backward compatible: the old code serves until the switch. It keeps the ${KEEP_RELEASES} newest releases.`,
    },
    {
      id: "update.rollback",
      phase: "app",
      title: "Roll back to the previous release",
      action: {
        kind: "manual",
        lines: [
          `ln -sfn "$(readlink ${shell(pth.previousRelease)})" ${shell(currentNew)} && mv -T ${shell(currentNew)} ${shell(project.current)}`,
          ...(reload.length ? [`systemctl reload ${reload.join(" ")}`] : []),
          ...(restart.length ? [`systemctl restart ${restart.join(" ")}`] : []),
        ],
      },
      why:
        `update.sh keeps the release it switched away from as ${pth.previousRelease}. Switching back is the same rename and ${reload.length ? "reload" : "restart"}; nothing is rebuilt. ` +
        "The database schema stays as the newer release migrated it, which the previous release ran against until the switch." +
        (reload.length ? " Restart gunicorn instead of reloading it if the newer release changed Python or gunicorn (update.sh did, and said so)." : ""),
    },
  ];
}

export const updateFamily: HostFamily = { name: "update", files: updateFiles, steps: updateSteps };
