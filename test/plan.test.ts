/**
 * `--check` ends with the plan: after a model change, what the changed files need on each host,
 * in the order the playbook runs it. The three changes on the ha-cluster fixture, through
 * the built CLI: gunicorn.workers (reload the gunicorn unit), postgres.port (restart PostgreSQL,
 * restart what reads the new port from the .env) and an nginx header (reload nginx); and a
 * Sentinel setting (its kept copy installed, then a restart), a first deployment, a removed file.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostPlan } from "../src/plan.js";
import { loadFixture, ROOT } from "./helpers/fixtures.js";

const CLI = join(ROOT, "dist", "cli.cjs");

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { PATH: process.env.PATH ?? "" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let work: string;
beforeAll(() => {
  if (!existsSync(CLI)) throw new Error("dist/cli.cjs is missing: run `npm run build` (npm test does)");
  work = mkdtempSync(join(tmpdir(), "ncr-plan-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * Renders `fixture` into a fresh directory, changes the model with `edit`, and runs --check on
 * that directory: the plan as JSON, and the text of the same check.
 */
function planAfter(fixture: string, edit: (model: Record<string, any>) => void, label: string) {
  const dir = join(work, label);
  cpSync(join(ROOT, "fixtures", fixture), dir, { recursive: true });
  const model = join(dir, "novacloud.toml");
  const secrets = join(dir, "secrets.env");
  const out = join(dir, "out");
  expect(cli([model, "-s", secrets, "--out", out, "-q"]).code).toBe(0);
  const raw = parse(readFileSync(model, "utf8")) as Record<string, any>;
  edit(raw);
  writeFileSync(model, stringify(raw));
  const json = cli([model, "-s", secrets, "--check", "--out", out, "--format", "json"]);
  const text = cli([model, "-s", secrets, "--check", "--out", out]);
  expect(json.code, json.stderr).toBe(1);
  expect(text.code, text.stderr).toBe(1);
  const plan = (JSON.parse(json.stdout) as { plan: HostPlan[] }).plan;
  for (const secret of loadFixture(fixture).secretValues) expect(text.stdout + json.stdout).not.toContain(secret);
  return { plan, text: text.stdout.slice(text.stdout.indexOf("\nplan: ") + 1) };
}

/** host -> its actions as "restart unit" / "run step" lines. */
function actions(plan: readonly HostPlan[]): Record<string, string[]> {
  return Object.fromEntries(plan.map((p) => [p.host, p.actions.map((a) => `${a.action} ${a.unit ?? a.step ?? a.path ?? ""}`.trim())]));
}

describe("--check ends with what the changes need on each host", () => {
  it("gunicorn.workers: a reload of gunicorn on the app hosts, nothing else", () => {
    const { plan, text } = planAfter("ha-cluster", (m) => (m.gunicorn = { workers: 7 }), "workers");
    expect(actions(plan)).toEqual({
      app1: ["reload novacloud.service"],
      app2: ["reload novacloud.service"],
      app3: ["reload novacloud.service"],
    });
    expect(plan[0]!.actions[0]!.because).toEqual(["/etc/novacloud/gunicorn_config.py"]);
    expect(text).toContain("  app1, app2, app3:\n    reload novacloud.service (/etc/novacloud/gunicorn_config.py: gunicorn re-reads its configuration on SIGHUP)\n");
  });

  it("postgres.port: a restart of PostgreSQL on every member, a restart of the units that read the .env, the init SQL and the firewall again", () => {
    const { plan, text } = planAfter("ha-cluster", (m) => (m.postgres.port = 5433), "port");
    const postgres = "restart postgresql@15-main.service";
    expect(actions(plan)).toEqual({
      app1: ["restart novacloud.service", "restart novacloud-asgi.service"],
      app2: ["restart novacloud.service", "restart novacloud-asgi.service"],
      app3: ["restart novacloud.service", "restart novacloud-asgi.service"],
      // The firewall first (its step is in the network phase, before any service); then the
      // restart, before the init SQL, which connects on the new port.
      db1: ["run firewall.enable", postgres, "run postgres.init-sql"],
      db2: ["run firewall.enable", postgres],
      db3: ["run firewall.enable", postgres],
      worker1: ["restart novacloud-celery.service", "restart novacloud-celerybeat.service"],
    });
    const db1 = plan.find((p) => p.host === "db1")!.actions[1]!;
    expect(db1.why).toBe("port can only change at server start (context postmaster)");
    expect(text).toContain("    restart postgresql@15-main.service (/etc/postgresql/15/main/conf.d/novacloud.conf: port can only change at server start (context postmaster))\n");
    expect(text).toContain("  app1, app2, app3:\n    restart novacloud.service (/etc/novacloud/novacloud.env: ");
  });

  it("an nginx header (site.hsts.max_age): a reload of nginx on the web hosts, after nginx -t", () => {
    const { plan, text } = planAfter("ha-cluster", (m) => (m.site.hsts = { max_age: 31536000 }), "header");
    expect(actions(plan)).toEqual({ app1: ["reload nginx.service"], app2: ["reload nginx.service"], app3: ["reload nginx.service"] });
    expect(plan[0]!.actions[0]!.because).toEqual(["/etc/nginx/snippets/novacloud-security-headers.conf"]);
    expect(text).toContain("    reload nginx.service (/etc/nginx/snippets/novacloud-security-headers.conf: nginx reloads its configuration gracefully; after nginx -t)\n");
  });

  it("a Sentinel setting: sentinel.conf installed from its new kept copy, then Sentinel restarted", () => {
    const { plan } = planAfter("ha-sentinel", (m) => (m.redis = { ...m.redis, master_name: "iot-main" }), "sentinel");
    for (const host of ["data1", "data2", "arbiter"]) {
      const list = actions(plan)[host]!;
      const install = list.indexOf("install /etc/redis/sentinel.conf");
      expect(install, `${host}: ${list.join(", ")}`).toBeGreaterThanOrEqual(0);
      expect(list.indexOf("restart redis-sentinel.service"), host).toBeGreaterThan(install);
    }
  });

  it("a fresh directory is every host's first deployment", () => {
    const dir = join(work, "fresh");
    const r = cli([join(ROOT, "fixtures", "pg12", "novacloud.toml"), "-s", join(ROOT, "fixtures", "pg12", "secrets.env"), "--check", "--out", dir, "--format", "json"]);
    expect(r.code).toBe(1);
    const plan = (JSON.parse(r.stdout) as { plan: HostPlan[] }).plan;
    expect(plan.map((p) => [p.host, p.firstDeployment, p.actions.length])).toEqual([
      ["node1", true, 0],
      ["node2", true, 0],
    ]);
  });

  it("a file no longer rendered is left on the host, and the plan says so", () => {
    const { plan, text } = planAfter("single-node", (m) => (m.firewall = { enabled: false }), "removed");
    expect(plan.find((p) => p.host === "node1")!.removed).toEqual(["/usr/local/sbin/novacloud-firewall"]);
    expect(text).toContain("no longer rendered: /usr/local/sbin/novacloud-firewall (the playbook leaves it on the host: remove it by hand)");
  });
});
