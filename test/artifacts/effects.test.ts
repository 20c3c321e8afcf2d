/**
 * What a change to each rendered file requires (src/artifacts/effects.ts), checked against the
 * files themselves: every host file of every fixture has a rule; the units restarted for the
 * .env are exactly the units whose EnvironmentFile= names it; gunicorn's config reloads the unit
 * that runs gunicorn --config with it and has ExecReload; the tests before reloads are the runbook's; every
 * step a file re-runs exists. And the steps: every command a tool runs can tell whether it
 * changed something, so a second run reports nothing.
 */
import { describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { changedPostgresSettings, fileRules, postgresSettings, type Effect } from "../../src/artifacts/effects.js";
import { stepWaves, type Step } from "../../src/artifacts/steps.js";
import { renderHosts } from "../../src/render.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";

const ALL = fixtureNames().flatMap((name) => {
  const f = loadFixture(name);
  return renderHosts(f.model, f.sources).map((h) => ({ name, ...h }));
});

/** What the rules say of a file of the host (render() stamps the same on FileSpec.handling). */
const fileHandling = (ctx: HostContext, file: { path: string }) => fileRules(ctx).get(file.path);

const units = (effects: readonly Effect[], kind: "restart" | "reload") => effects.flatMap((e) => (e.kind === kind ? [e.unit] : []));

describe("what a change to a rendered file requires", () => {
  it("is decided for every file of every host", () => {
    const undecided = ALL.flatMap(({ name, ctx, files }) => files.filter((f) => fileHandling(ctx, f) === undefined).map((f) => `${name}/${ctx.host.name}${f.path}`));
    expect(undecided, "add a rule to src/artifacts/effects.ts").toEqual([]);
    // The runbook too (render adds it after the families).
    for (const { ctx } of ALL) expect(fileHandling(ctx, { path: ctx.paths.runbook })?.effects).toEqual([]);
  });

  it(".env: a restart of exactly the units that read it (EnvironmentFile=)", () => {
    let seen = 0;
    for (const { name, ctx, files } of ALL) {
      const env = files.find((f) => f.path === ctx.model.project.envFile);
      if (!env) continue;
      seen++;
      const readers = files
        .filter((f) => f.path.startsWith(`${ctx.paths.unitDir}/`) && f.content.includes(`EnvironmentFile=${ctx.model.project.envFile}\n`))
        .map((f) => f.path.slice(ctx.paths.unitDir.length + 1))
        .sort();
      expect(readers.length, `${name}/${ctx.host.name}`).toBeGreaterThan(0);
      expect(units(fileHandling(ctx, env)!.effects, "restart").sort(), `${name}/${ctx.host.name}`).toEqual(readers);
    }
    expect(seen).toBeGreaterThan(5);
  });

  it("gunicorn_config.py: a reload (SIGHUP) of the unit that runs gunicorn --config with it", () => {
    for (const { name, ctx, files } of ALL) {
      const config = files.find((f) => f.path === ctx.paths.gunicornConfig);
      if (!config) continue;
      const unit = files.find((f) => f.path.startsWith(`${ctx.paths.unitDir}/`) && f.content.includes(`--config ${ctx.paths.gunicornConfig}`))!;
      expect(unit.content, `${name}/${ctx.host.name}`).toContain("ExecReload=/bin/kill -s HUP $MAINPID");
      expect(fileHandling(ctx, config)!.effects, `${name}/${ctx.host.name}`).toEqual([{ kind: "reload", unit: unit.path.slice(ctx.paths.unitDir.length + 1) }]);
    }
  });

  it("a unit file: daemon-reload, then what makes systemd use it (a restart; a remount; nothing for the oneshot a timer starts)", () => {
    let kinds = 0;
    for (const { ctx, files } of ALL) {
      for (const f of files.filter((x) => x.path.startsWith(`${ctx.paths.unitDir}/`))) {
        const unit = f.path.slice(ctx.paths.unitDir.length + 1);
        const then = unit === ctx.paths.backupService ? [] : [{ kind: unit.endsWith(".mount") ? "reload" : "restart", unit }];
        expect(fileHandling(ctx, f)!.effects, f.path).toEqual([{ kind: "daemon-reload" }, ...then]);
        kinds++;
      }
    }
    expect(kinds).toBeGreaterThan(0);
  });

  it("nginx and HAProxy reload after the same test their runbook step runs", () => {
    for (const { name, ctx, files, steps } of ALL) {
      for (const [unit, file] of [
        ["nginx", ctx.paths.nginxSite],
        ["haproxy", ctx.paths.haproxyConfig],
      ] as const) {
        const spec = files.find((f) => f.path === file);
        if (!spec) continue;
        const step = steps.find((s) => s.action.kind === "service" && s.action.units.includes(unit))!;
        const test = step.action.kind === "service" ? step.action.test : undefined;
        expect(test, `${name}/${ctx.host.name}`).toBeDefined();
        expect(fileHandling(ctx, spec)!.effects, `${name}/${ctx.host.name}`).toEqual([{ kind: "reload", unit: `${unit}.service`, test }]);
      }
    }
  });

  it("PostgreSQL: one effect for its settings and pg_hba.conf; the init SQL re-runs its step", () => {
    for (const { ctx, files, steps } of ALL) {
      const conf = files.find((f) => f.path === ctx.paths.pgConfD);
      if (!conf) continue;
      const hba = files.find((f) => f.path === ctx.paths.pgHba)!;
      expect(fileHandling(ctx, conf)!.effects).toEqual(fileHandling(ctx, hba)!.effects);
      expect(fileHandling(ctx, conf)!.effects).toEqual([{ kind: "postgres-settings", unit: ctx.paths.pgService, dataDir: ctx.paths.pgDataDir }]);
      const sql = files.find((f) => f.path === ctx.paths.pgInitSql);
      if (sql) {
        const rerun = fileHandling(ctx, sql)!.effects[0]!;
        expect(rerun.kind).toBe("rerun");
        const step = steps.find((s) => s.id === (rerun as { step: string }).step)!;
        expect(step.action.kind === "commands" && step.action.commands.some((c) => c.run.includes(ctx.paths.pgInitSql))).toBe(true);
      }
    }
  });

  it("re-runs only steps the host has", () => {
    for (const { name, ctx, files, steps } of ALL) {
      for (const f of files) {
        for (const e of fileHandling(ctx, f)!.effects) {
          if (e.kind === "rerun") expect(steps.map((s) => s.id), `${name}/${ctx.host.name}${f.path}`).toContain(e.step);
        }
      }
    }
  });

  it("Sentinel's file is installed from a kept copy (Sentinel rewrites it); no other file is", () => {
    for (const { ctx, files } of ALL) {
      for (const f of files) expect(fileHandling(ctx, f)!.rewritten === true, f.path).toBe(f.path === ctx.paths.sentinelConf);
    }
  });
});

describe("the steps a tool runs", () => {
  it("every command a tool runs tells whether it changed something (guard, module, output, or a re-run gate)", () => {
    const offenders: string[] = [];
    for (const { name, ctx, files, steps } of ALL) {
      const reruns = new Set(files.flatMap((f) => fileHandling(ctx, f)!.effects.flatMap((e) => (e.kind === "rerun" ? [e.step] : []))));
      for (const step of steps) {
        if (step.action.kind !== "commands" || step.interactive || reruns.has(step.id)) continue;
        for (const c of step.action.commands) {
          if (c.creates === undefined && c.unless === undefined && c.state === undefined && c.changes === undefined) offenders.push(`${name}/${ctx.host.name} ${step.id}: ${c.run}`);
        }
      }
    }
    expect(offenders, "give each a guard (creates, unless), a state (steps.ts constructors) or changes").toEqual([]);
  });

  it("run in waves: after a step on another host, never before the step before it", () => {
    const step = (id: string, after?: Step["after"]): Step => ({ id, phase: "database", title: id, action: { kind: "manual", lines: [] }, ...(after ? { after } : {}) });
    const waves = stepWaves([
      { host: "db", steps: [step("a"), step("init")] },
      { host: "standby", steps: [step("a"), step("clone", [{ host: "db", id: "init" }]), step("check")] },
      { host: "app", steps: [step("migrate", [{ host: "standby", id: "clone" }, { host: "db", id: "init" }])] },
    ]);
    expect(Object.fromEntries(waves)).toEqual({ db: [0, 0], standby: [0, 1, 1], app: [2] });
    expect(() => stepWaves([{ host: "a", steps: [step("x", [{ host: "b", id: "missing" }])] }])).toThrow(/not rendered/);
    expect(() =>
      stepWaves([
        { host: "a", steps: [step("x", [{ host: "b", id: "y" }])] },
        { host: "b", steps: [step("y", [{ host: "a", id: "x" }])] },
      ]),
    ).toThrow(/circle/);
  });
});

describe("PostgreSQL settings that need a restart", () => {
  it("reads name = value lines, quoted values and comments as PostgreSQL does", () => {
    const conf = "# comment\nport = 5433\nlisten_addresses = 'localhost,10.0.0.1' # trailing\nssl on\nname = 'it''s'\n";
    expect(Object.fromEntries(postgresSettings(conf))).toEqual({ port: "5433", listen_addresses: "localhost,10.0.0.1", ssl: "on", name: "it's" });
  });

  it("names the changed settings with their context", () => {
    expect(changedPostgresSettings("port = 5432\nwal_keep_size = '1GB'\n", "port = 5433\nwal_keep_size = '2GB'\n")).toEqual([
      { name: "port", context: "postmaster" },
      { name: "wal_keep_size", context: "sighup" },
    ]);
    expect(changedPostgresSettings(undefined, "hot_standby = on\n")).toEqual([{ name: "hot_standby", context: "postmaster" }]);
    expect(changedPostgresSettings("x = 1\n", "x = 1\n")).toEqual([]);
  });
});
