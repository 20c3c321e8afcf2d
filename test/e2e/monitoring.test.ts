/**
 * Monitoring end to end (issue 13): a model whose one host is the PostgreSQL primary and the
 * monitor host, rendered; then a real PostgreSQL 15 with the rendered pg_hba.conf and the
 * exporter's role made by the rendered step, and Prometheus, Alertmanager, the blackbox exporter,
 * node_exporter and the PostgreSQL exporter started from the rendered /etc/default files and
 * configs (loopback ports replaced by free ones, paths moved into a sandbox; the fleet test bed
 * covers private addresses). Every target reports up == 1 through Prometheus' HTTP API; then
 * node_exporter is stopped by its PID and InstanceDown goes pending for it.
 *
 * The exporters run as the OS user prometheus, as Debian's units do (setpriv keeps the PID, so
 * stopping by PID stops the exporter): the PostgreSQL exporter logs in by peer authentication.
 */
import { chmodSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { hostContexts } from "../../src/artifacts/context.js";
import { monitoringFamily } from "../../src/artifacts/monitoring.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { commandsOf } from "../../src/artifacts/steps.js";
import { EXPORTERS, LOCAL_PORTS } from "../../src/model/monitoring.js";
import { parseModel } from "../../src/model/parse.js";
import { resolveSecrets } from "../../src/model/secrets.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import { AS_ROOT, asPostgres, BIN, giveToPostgres, put, stopCluster } from "../helpers/postgres.js";
import { freePort, IN_CI, programsAvailable, relocate, run, sandbox, startServer, stopAll, waitFor, type Sandbox, type Server } from "../helpers/programs.js";

const available =
  programsAvailable("end-to-end monitoring", {
    prometheus: "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
    [`${BIN}/initdb`]: "postgresql-15",
    [`${BIN}/psql`]: "postgresql-client-15",
    setpriv: "util-linux",
  }) && runsAsRoot();

/** Peer authentication and the exporters' own user need root (CI runs .ci/run as root). */
function runsAsRoot(): boolean {
  if (AS_ROOT) return true;
  if (IN_CI) throw new Error("end-to-end monitoring: must run as root (the exporters run as the user prometheus)");
  console.warn("SKIPPED end-to-end monitoring: not root");
  return false;
}

const SECRETS = { E2E_DB_PASSWORD: "mon-db-pw-0e2e", E2E_MQTT_PASSWORD: "mon-mqtt-pw-0e2e", E2E_SECRET_KEY: "mon-secret-key-0e2e" };
const HOST = "db1";
const MODEL = {
  project: { django_module: "NovaCloud" },
  site: { domain: "iot.example.com" },
  hosts: { [HOST]: { address: "10.77.1.5", roles: ["db", "monitor"] } },
  postgres: { password: { env: "E2E_DB_PASSWORD" } },
  mqtt: { password: { env: "E2E_MQTT_PASSWORD" } },
  django: { secret_key: { env: "E2E_SECRET_KEY" } },
  // Every second, so a stopped exporter shows within seconds.
  monitoring: { scrape_interval: "1s" },
};

const boxes: Sandbox[] = [];
const dataDirs: string[] = [];
afterAll(async () => {
  await stopAll();
  for (const dir of dataDirs) await stopCluster(dir);
  for (const b of boxes) b.cleanup();
});

function rendered(tree: Tree, path: string): string {
  const file = tree.get(`${HOST}${path}`);
  if (file === undefined) throw new Error(`${HOST} has no ${path}`);
  return file.content;
}

/** The variables of a rendered /etc/default file (KEY=value or KEY="value", as systemd reads them). */
function environmentFile(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (!m) continue;
    const raw = m[2]!;
    vars[m[1]!] = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
  }
  return vars;
}

/** Prometheus' HTTP API: the data of a successful answer. */
async function api<T>(port: number, path: string): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const body = (await res.json()) as { status: string; data: T };
  if (body.status !== "success") throw new Error(`${path}: ${JSON.stringify(body)}`);
  return body.data;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}
interface Alert {
  labels: Record<string, string>;
  state: string;
}

describe.skipIf(!available)("Prometheus with the rendered config sees every exporter up, and an exporter that stops", () => {
  it("every target up == 1, then InstanceDown pending for the stopped node_exporter", async () => {
    const parsed = parseModel(MODEL);
    if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
    const model = parsed.model;
    const tree = render(model, { env: SECRETS });
    const p = pathsOf(model);
    const b = sandbox("ncr-e2e-monitoring-");
    boxes.push(b);

    // Free loopback ports for everything that listens, and sandbox paths for every file.
    const ports = {
      prometheus: await freePort(),
      alertmanager: await freePort(),
      blackbox: await freePort(),
      node: await freePort(),
      postgresExporter: await freePort(),
      postgres: await freePort(),
    };
    const metricsDir = b.path("metrics");
    mkdirSync(metricsDir, { recursive: true });
    chmodSync(metricsDir, 0o755);
    const socketDir = b.path("pg-socket");
    mkdirSync(socketDir);
    giveToPostgres(socketDir);
    chmodSync(socketDir, 0o755);
    const mapping: Record<string, string> = {
      [`127.0.0.1:${LOCAL_PORTS.prometheus}`]: `127.0.0.1:${ports.prometheus}`,
      [`127.0.0.1:${LOCAL_PORTS.alertmanager}`]: `127.0.0.1:${ports.alertmanager}`,
      [`127.0.0.1:${LOCAL_PORTS.blackbox}`]: `127.0.0.1:${ports.blackbox}`,
      [`127.0.0.1:${EXPORTERS["node-exporter"].port}`]: `127.0.0.1:${ports.node}`,
      [`127.0.0.1:${EXPORTERS["postgres-exporter"].port}`]: `127.0.0.1:${ports.postgresExporter}`,
      [p.prometheusConfig]: b.path("prometheus.yml"),
      [p.prometheusRules]: b.path("alerts.yml"),
      [p.alertmanagerConfig]: b.path("alertmanager.yml"),
      [p.blackboxConfig]: b.path("blackbox.yml"),
      [p.postgresExporterQueries]: b.path("postgres-queries.yml"),
      [p.prometheusData]: b.path("tsdb"),
      [p.metricsDir]: metricsDir,
      "host=/run/postgresql": `host=${socketDir}`,
      [`port=${model.postgres.port}`]: `port=${ports.postgres}`,
    };
    // The configs as rendered, where the mapping puts them (prometheus.yml names the rules file).
    for (const path of [p.prometheusConfig, p.prometheusRules, p.alertmanagerConfig, p.blackboxConfig, p.postgresExporterQueries]) {
      b.write(mapping[path]!.slice(b.dir.length + 1), relocate(rendered(tree, path), mapping));
    }
    const settings = (unit: string) => environmentFile(relocate(rendered(tree, `/etc/default/${unit}`), mapping));
    const args = (unit: string) => settings(unit).ARGS!.split(" ");

    // PostgreSQL 15 with the rendered pg_hba.conf; the exporter's role made by the rendered step.
    const data = b.path("pg", "data");
    mkdirSync(data, { recursive: true });
    giveToPostgres(b.path("pg"));
    giveToPostgres(data);
    chmodSync(data, 0o700);
    const init = asPostgres(`${BIN}/initdb`, ["-D", data, "-U", "postgres", "-A", "peer", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
    expect(init.code, init.output).toBe(0);
    put(join(data, "pg_hba.conf"), rendered(tree, p.pgHba));
    dataDirs.push(data);
    const start = asPostgres(`${BIN}/pg_ctl`, ["-D", data, "-l", b.path("pg", "server.log"), "-w", "-t", "60", "start", "-o", `-p ${ports.postgres} -k ${socketDir} -c listen_addresses='' -c fsync=off`]);
    expect(start.code, `${start.output}\n${readFileSync(b.path("pg", "server.log"), "utf8")}`).toBe(0);
    const roleStep = monitoringFamily.steps!(hostContexts(model, resolveSecrets(model, { env: SECRETS }).secrets).find((c) => c.host.name === HOST)!).find((s) => s.id === "monitoring.postgres-role");
    expect(roleStep, "the primary's runbook creates the exporter's role").toBeDefined();
    for (const command of commandsOf(roleStep!)) {
      const local = command.replace(`-p ${model.postgres.port}`, `-h ${socketDir} -p ${ports.postgres}`);
      const r = run("bash", ["-c", local]);
      expect(r.code, `${local}\n${r.output}`).toBe(0);
    }

    // The daemons, each from its rendered settings; the exporters as the user prometheus.
    const asPrometheus = (command: string, argv: string[], env: Record<string, string> = {}): Server =>
      startServer("setpriv", ["--reuid=prometheus", "--regid=prometheus", "--init-groups", "--", command, ...argv], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } });
    // What backup.sh leaves after a good run (test/lint/backup.test.ts runs the script itself).
    b.write("metrics/backup.prom", "novacloud_backup_last_success_timestamp_seconds 1767225600\n", 0o644);
    const node = asPrometheus("prometheus-node-exporter", args("prometheus-node-exporter"));
    const pgEnv = settings("prometheus-postgres-exporter");
    expect(pgEnv.DATA_SOURCE_NAME).toContain(`host=${socketDir}`);
    const pgExporter = asPrometheus("prometheus-postgres-exporter", args("prometheus-postgres-exporter"), { DATA_SOURCE_NAME: pgEnv.DATA_SOURCE_NAME! });
    startServer("prometheus-blackbox-exporter", args("prometheus-blackbox-exporter"));
    startServer("prometheus-alertmanager", [...args("prometheus-alertmanager"), `--storage.path=${b.path("alertmanager")}`]);
    const prometheus = startServer("prometheus", args("prometheus"));

    // Every target of the rendered config: up == 1.
    const jobs = ["prometheus", "alertmanager", "blackbox", "node", "postgres", "blackbox-https"];
    let up: Sample[] = [];
    await waitFor(
      "every target up == 1",
      async () => {
        up = await api<{ result: Sample[] }>(ports.prometheus, "/api/v1/query?query=up")
          .then((d) => d.result)
          .catch(() => []);
        return up.length === jobs.length && up.every((s) => s.value[1] === "1");
      },
      60_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(up.map((s) => [s.metric.job, s.value[1]]))}\n${prometheus.output().slice(-3000)}`);
    });
    expect(up.map((s) => s.metric.job).sort()).toEqual([...jobs].sort());
    expect(up.every((s) => s.metric.host === HOST)).toBe(true);
    // The PostgreSQL exporter logs in (pg_up), and the rendered queries answer (a primary).
    const pg = await api<{ result: Sample[] }>(ports.prometheus, "/api/v1/query?query=pg_up");
    expect(pg.result.map((s) => s.value[1])).toEqual(["1"]);
    await waitFor("the rendered standby query", async () => {
      const r = await api<{ result: Sample[] }>(ports.prometheus, "/api/v1/query?query=pg_standby_is_standby");
      return r.result.length === 1 && r.result[0]!.value[1] === "0";
    }).catch((e: Error) => {
      throw new Error(`${e.message}:\n${pgExporter.output().slice(-3000)}`);
    });

    // The textfile collector reads the backup's last success from the rendered directory.
    await waitFor("the backup's last success through node_exporter", async () => {
      const r = await api<{ result: Sample[] }>(ports.prometheus, "/api/v1/query?query=novacloud_backup_last_success_timestamp_seconds");
      return r.result.length === 1 && r.result[0]!.value[1] === "1767225600" && r.result[0]!.metric.host === HOST;
    });

    // No alert yet about a target; then node_exporter stops (by its PID) and InstanceDown is pending.
    const alerts = () => api<{ alerts: Alert[] }>(ports.prometheus, "/api/v1/alerts").then((d) => d.alerts);
    expect((await alerts()).filter((a) => a.labels.alertname === "InstanceDown")).toEqual([]);
    await node.stop();
    let seen: Alert[] = [];
    await waitFor(
      "InstanceDown pending for node_exporter",
      async () => {
        seen = await alerts();
        return seen.some((a) => a.labels.alertname === "InstanceDown" && a.labels.job === "node" && a.state === "pending");
      },
      30_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(seen)}`);
    });
    const down = seen.filter((a) => a.labels.alertname === "InstanceDown");
    expect(down.map((a) => [a.labels.job, a.labels.instance, a.labels.host, a.labels.severity, a.state])).toEqual([["node", `127.0.0.1:${ports.node}`, HOST, "critical", "pending"]]);
  }, 180_000);
});
