/**
 * The systemd family: which units a host gets, what each unit says (errata section 4,
 * SD-01..11), the version gates, and that the units agree with the model and with the files
 * other families write (gunicorn_config.py, the .env, the log directory).
 */
import { stepLines } from "../../src/artifacts/steps.js";
import { describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { pathsOf, unitNames } from "../../src/artifacts/paths.js";
import { systemdFamily } from "../../src/artifacts/systemd.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { contextOf, contextsWith, hostContexts, parseUnit, value, values, type Unit } from "./systemd-scripts-support.js";

const all = fixtureNames().flatMap((fixture) => (loadFixture(fixture).model.topology.hosts.length === 0 ? [] : hostContexts(fixture).map((ctx) => ({ fixture, ctx }))));

function units(ctx: HostContext): Map<string, { unit: Unit; content: string; mode: number; owner: string | undefined }> {
  return new Map(
    systemdFamily.files(ctx).map((f) => [f.path.slice(f.path.lastIndexOf("/") + 1), { unit: parseUnit(f.content), content: f.content, mode: f.mode, owner: f.owner }]),
  );
}

function unitOf(ctx: HostContext, name: string): Unit {
  const u = units(ctx).get(name);
  if (!u) throw new Error(`${ctx.host.name} has no ${name}`);
  return u.unit;
}

const HARDENING: Record<string, string> = {
  NoNewPrivileges: "yes",
  PrivateTmp: "yes",
  PrivateDevices: "yes",
  ProtectSystem: "strict",
  ProtectHome: "yes",
  ProtectKernelTunables: "yes",
  ProtectKernelModules: "yes",
  ProtectKernelLogs: "yes",
  ProtectControlGroups: "yes",
  ProtectClock: "yes",
  ProtectHostname: "yes",
  RestrictSUIDSGID: "yes",
  RestrictRealtime: "yes",
  RestrictNamespaces: "yes",
  LockPersonality: "yes",
  RestrictAddressFamilies: "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
  SystemCallArchitectures: "native",
  CapabilityBoundingSet: "",
  UMask: "0027",
};

describe("which units a host gets", () => {
  it.each(all.map(({ fixture, ctx }) => ({ name: `${fixture}/${ctx.host.name}`, ctx })))("$name: one unit per Django role, under unitDir", ({ ctx }) => {
    const names = unitNames(ctx.model);
    const expected = [
      ctx.host.roles.has("app") ? names.wsgi : undefined,
      ctx.host.roles.has("asgi") ? names.asgi : undefined,
      ctx.host.roles.has("worker") ? names.worker : undefined,
      ctx.host.roles.has("scheduler") ? names.beat : undefined,
    ].filter((n) => n !== undefined);
    const files = systemdFamily.files(ctx);
    expect(files.map((f) => f.path)).toEqual(expected.map((n) => `${pathsOf(ctx.model).unitDir}/${n}`));
    for (const f of files) {
      expect(f.mode).toBe(0o644);
      expect(f.owner ?? "root").toBe("root");
    }
  });

  it("every fixture with a scheduler has exactly one celery beat unit across its hosts", () => {
    for (const fixture of fixtureNames()) {
      const contexts = loadFixture(fixture).model.topology.hosts.length ? hostContexts(fixture) : [];
      const beats = contexts.filter((ctx) => units(ctx).has(unitNames(ctx.model).beat));
      expect(beats.length, fixture).toBe(contexts.some((c) => c.host.roles.has("scheduler")) ? 1 : 0);
    }
  });
});

describe("every unit", () => {
  const cases = all.flatMap(({ fixture, ctx }) => [...units(ctx).keys()].map((name) => ({ name: `${fixture}/${ctx.host.name}/${name}`, ctx, unit: name })));

  it.each(cases)("$name: account, working directory, .env, hardening, install", ({ ctx, unit: name }) => {
    const unit = unitOf(ctx, name);
    const p = ctx.model.project;
    expect(value(unit, "Service", "User")).toBe(p.user);
    expect(value(unit, "Service", "Group")).toBe(p.group);
    // The running release by its link, never a checkout the settings could live in.
    expect(value(unit, "Service", "WorkingDirectory")).toBe(p.current);
    expect(p.current).toBe(`${p.root}/current`);
    expect(value(unit, "Service", "EnvironmentFile")).toBe(p.envFile);
    // SD-02: never a replaced PATH (nor any other inline environment).
    expect(values(unit, "Service", "Environment")).toEqual([]);
    for (const [key, expected] of Object.entries(HARDENING)) expect(value(unit, "Service", key), key).toBe(expected);
    expect(value(unit, "Install", "WantedBy")).toBe("multi-user.target");
    // The ExecStart binary is the project's virtualenv, by absolute path.
    expect(value(unit, "Service", "ExecStart").startsWith(`${p.venv}/bin/`)).toBe(true);
  });

  it.each(cases)("$name: Wants= and After= name the network and the services on this same host only", ({ ctx, unit: name }) => {
    const unit = unitOf(ctx, name);
    const expected = ["network-online.target"];
    if (ctx.host.roles.has("db")) expected.push("postgresql.service");
    if (ctx.host.roles.has("redis")) expected.push("redis-server.service");
    if (ctx.host.roles.has("redis-sentinel")) expected.push("redis-sentinel.service");
    if (ctx.host.roles.has("mqtt")) expected.push("mosquitto.service");
    expect(value(unit, "Unit", "Wants").split(" ")).toEqual(expected);
    expect(value(unit, "Unit", "After").split(" ")).toEqual(expected);
  });

  it.each(cases)("$name: no secret value appears in the world-readable unit", ({ ctx, unit: name }) => {
    const content = units(ctx).get(name)!.content;
    for (const secret of Object.values(ctx.secrets)) expect(content).not.toContain(secret);
  });
});

describe("gunicorn (WSGI)", () => {
  const single = contextOf(hostContexts("single-node"), "node1");

  it("is Type=notify with HUP reload, mixed kill mode and a stop timeout after graceful_timeout (SD-04, SD-10)", () => {
    const ctx = contextOf(contextsWith("single-node", { gunicorn: { graceful_timeout: 47 } }), "node1");
    const unit = unitOf(ctx, unitNames(ctx.model).wsgi);
    expect(value(unit, "Service", "Type")).toBe("notify");
    expect(value(unit, "Service", "NotifyAccess")).toBe("main");
    expect(value(unit, "Service", "ExecReload")).toBe("/bin/kill -s HUP $MAINPID");
    expect(value(unit, "Service", "KillMode")).toBe("mixed");
    expect(value(unit, "Service", "TimeoutStopSec")).toBe("52");
  });

  it("starts gunicorn with the running release's python (-P -m) and the gunicorn_config.py the app family writes on this host", () => {
    for (const { ctx } of all.filter(({ ctx }) => ctx.host.roles.has("app"))) {
      const exec = value(unitOf(ctx, unitNames(ctx.model).wsgi), "Service", "ExecStart").split(" ");
      expect(exec).toEqual([`${ctx.model.project.current}/venv/bin/python`, "-P", "-m", "gunicorn", "--config", pathsOf(ctx.model).gunicornConfig]);
      expect(appFamily.files(ctx).map((f) => f.path)).toContain(exec[5]);
      // Outside every release (item 13 of #9): a deploy never replaces it.
      expect(exec[5]!.startsWith(`${ctx.model.project.etcDir}/`)).toBe(true);
    }
  });

  it("owns the log directory gunicorn_config.py writes to (LogsDirectory= below /var/log)", () => {
    for (const { ctx } of all.filter(({ ctx }) => ctx.host.roles.has("app"))) {
      const unit = unitOf(ctx, unitNames(ctx.model).wsgi);
      const config = appFamily.files(ctx).find((f) => f.path === pathsOf(ctx.model).gunicornConfig)!.content;
      const logFiles = [...config.matchAll(/^(?:accesslog|errorlog) = "(.+)"$/gm)].map((m) => m[1]!);
      expect(logFiles).toHaveLength(2);
      const logsDirectory = value(unit, "Service", "LogsDirectory");
      for (const file of logFiles) expect(file.slice(0, file.lastIndexOf("/"))).toBe(`/var/log/${logsDirectory}`);
    }
  });

  it("makes a log directory outside /var/log writable instead", () => {
    const ctx = contextOf(contextsWith("single-node", { logs: { dir: "/srv/logs/novacloud" } }), "node1");
    const unit = unitOf(ctx, unitNames(ctx.model).wsgi);
    expect(values(unit, "Service", "LogsDirectory")).toEqual([]);
    expect(values(unit, "Service", "ReadWritePaths")).toContain("/srv/logs/novacloud");
    // ... and the runbook creates it for the account, which systemd does not do there.
    const commands = systemdFamily.steps!(ctx).flatMap((s) => stepLines(s));
    expect(commands).toContain("install -d -o novacloud -g novacloud -m 0750 /srv/logs/novacloud");
    expect(systemdFamily.steps!(contextOf(hostContexts("single-node"), "node1")).flatMap((s) => stepLines(s)).join("\n")).not.toContain("install -d");
  });

  it("may write the media directory, and only that and its logs", () => {
    const unit = unitOf(single, "novacloud.service");
    expect(values(unit, "Service", "ReadWritePaths")).toEqual([`-${single.model.project.mediaDir}`]);
    expect(values(unit, "Service", "StateDirectory")).toEqual([]);
    expect(values(unit, "Service", "RuntimeDirectory")).toEqual([]);
  });
});

describe("daphne (ASGI)", () => {
  it("binds loopback on daphne.port with proxy headers and the WebSocket timeout (SD-11)", () => {
    const ctx = contextOf(hostContexts("options"), "iot1");
    const exec = value(unitOf(ctx, unitNames(ctx.model).asgi), "Service", "ExecStart").split(" ");
    expect(exec).toEqual([
      "/srv/iotcloud/current/venv/bin/python",
      "-m",
      "daphne",
      "--bind",
      "127.0.0.1",
      "--port",
      "9001",
      "--proxy-headers",
      "--websocket_timeout",
      String(ctx.model.daphne.websocket_timeout),
      "iot_platform.asgi:application",
    ]);
  });

  it("is Type=exec from systemd 240 and Type=simple before (capability gate)", () => {
    const now = contextOf(hostContexts("single-node"), "node1");
    expect(value(unitOf(now, "novacloud-asgi.service"), "Service", "Type")).toBe("exec");
    const old = contextOf(contextsWith("single-node", { platform: { systemd: "239" } }), "node1");
    for (const name of ["novacloud-asgi.service", "novacloud-celery.service", "novacloud-celerybeat.service"]) {
      expect(value(unitOf(old, name), "Service", "Type"), name).toBe("simple");
    }
    // gunicorn notifies on every version.
    expect(value(unitOf(old, "novacloud.service"), "Service", "Type")).toBe("notify");
  });
});

describe("celery worker", () => {
  it("stops warmly: KillMode=mixed and TimeoutStopSec = celery.stop_timeout (SD-03)", () => {
    const ctx = contextOf(hostContexts("options"), "iot1");
    const unit = unitOf(ctx, unitNames(ctx.model).worker);
    expect(value(unit, "Service", "KillMode")).toBe("mixed");
    expect(value(unit, "Service", "TimeoutStopSec")).toBe("1800");
  });

  it("passes --concurrency only when it is a number", () => {
    const fixed = value(unitOf(contextOf(hostContexts("options"), "iot1"), "iotcloud-celery.service"), "Service", "ExecStart");
    expect(fixed.split(" ")).toContain("--concurrency=8");
    const auto = value(unitOf(contextOf(hostContexts("single-node"), "node1"), "novacloud-celery.service"), "Service", "ExecStart");
    expect(auto).not.toContain("--concurrency");
  });

  it("hands celery a literal %h for the node name: systemd sees %%h, never its own %h (SD-08)", () => {
    const ctx = contextOf(hostContexts("single-node"), "node1");
    const exec = value(unitOf(ctx, "novacloud-celery.service"), "Service", "ExecStart").split(" ");
    expect(exec.slice(0, 6)).toEqual([`${ctx.model.project.venv}/bin/python`, "-m", "celery", "-A", "DjangoNovaCloud", "worker"]);
    expect(exec).toContain("--hostname=novacloud@%%h");
    expect(exec).toContain(`--loglevel=${ctx.model.celery.loglevel}`);
  });

  it("never leaves a single % in any unit (every one is an escaped %%)", () => {
    for (const { ctx } of all) {
      for (const [name, u] of units(ctx)) {
        const body = u.content.split("\n").filter((l) => !l.startsWith("#")).join("\n");
        expect(body.replace(/%%/g, ""), name).not.toContain("%");
      }
    }
  });
});

describe("celery beat", () => {
  it("keeps its schedule in its StateDirectory, not the checkout (SD-05)", () => {
    for (const { ctx } of all.filter(({ ctx }) => ctx.host.roles.has("scheduler"))) {
      const unit = unitOf(ctx, unitNames(ctx.model).beat);
      const exec = value(unit, "Service", "ExecStart").split(" ");
      const schedule = exec.find((a) => a.startsWith("--schedule="))!.slice("--schedule=".length);
      expect(schedule).toBe(`${ctx.model.project.stateDir}/celerybeat-schedule`);
      expect(`/var/lib/${value(unit, "Service", "StateDirectory")}`).toBe(schedule.slice(0, schedule.lastIndexOf("/")));
      expect(schedule.startsWith(ctx.model.project.root)).toBe(false);
      expect(exec.slice(1, 6)).toEqual(["-m", "celery", "-A", ctx.model.project.djangoModule, "beat"]);
    }
  });
});

describe("version gates", () => {
  it("leaves out ProtectClock= and the other 247-era sandboxing before systemd 247", () => {
    const ctx = contextOf(contextsWith("single-node", { platform: { systemd: "246" } }), "node1");
    const unit = unitOf(ctx, "novacloud.service");
    for (const key of ["ProtectClock", "ProtectKernelLogs", "ProtectHostname"]) expect(values(unit, "Service", key), key).toEqual([]);
    expect(value(unit, "Service", "ProtectSystem")).toBe("strict");
  });
});

describe("runbook steps", () => {
  it("reloads systemd, enables exactly this host's units and checks them", () => {
    for (const { ctx } of all) {
      const names = systemdFamily.files(ctx).map((f) => f.path.slice(f.path.lastIndexOf("/") + 1));
      const steps = systemdFamily.steps!(ctx);
      if (names.length === 0) {
        expect(steps).toEqual([]);
        continue;
      }
      const commands = steps.flatMap((s) => stepLines(s));
      expect(commands).toContain("systemctl daemon-reload");
      expect(commands).toContain(`systemctl enable --now ${names.join(" ")}`);
      // One unit per command: with several, systemctl is-active exits 0 when any one is active.
      for (const name of names) expect(commands).toContain(`systemctl is-active ${name}`);
      expect(commands.filter((c) => c.startsWith("systemctl is-active ") && c.trim().split(/\s+/).length > 3)).toEqual([]);
      expect(steps.find((s) => stepLines(s).includes("systemctl daemon-reload"))!.phase).toBe("services");
    }
  });

  it("says on the scheduler host that beat runs there and nowhere else", () => {
    const ctx = contextOf(hostContexts("ha-cluster"), "worker1");
    const why = systemdFamily.steps!(ctx).map((s) => s.why ?? "").join(" ");
    expect(why).toMatch(/beat runs on this host and on no other/);
  });
});
