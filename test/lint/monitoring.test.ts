/**
 * The monitoring files read by the real programs: `promtool check config` and `promtool check
 * rules` (Prometheus 2.42), `amtool check-config` (Alertmanager 0.25) and the blackbox
 * exporter's `--config.check`, for the monitor host of every fixture; a quoting variant with an
 * SMTP password full of YAML hazards; and `promtool test rules`: every alert rule has a case
 * that fires it and one that keeps it quiet.
 */
import { mkdirSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { alertRules } from "../../src/artifacts/alerts.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import type { Model } from "../../src/model/normalize.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import { fixtureNames, loadFixture, renderFixture } from "../helpers/fixtures.js";
import { nginxMainConf } from "../helpers/nginx.js";
import { asPostgres, BIN, giveToPostgres, stopCluster } from "../helpers/postgres.js";
import { freePort, programsAvailable, relocate, run, sandbox, startServer, stopAll, waitFor, type Sandbox } from "../helpers/programs.js";

const available = programsAvailable("monitoring lint", {
  promtool: "prometheus",
  amtool: "prometheus-alertmanager",
  "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
});

const boxes: Sandbox[] = [];
const dataDirs: string[] = [];
afterAll(async () => {
  await stopAll();
  for (const dir of dataDirs) await stopCluster(dir);
  for (const b of boxes) b.cleanup();
});

const nginxAvailable = programsAvailable("monitoring: nginx stub_status and its exporter", { nginx: "nginx", "prometheus-nginx-exporter": "prometheus-nginx-exporter" });

const NASTY_SMTP = `sm"tp 'pw' \\n {{ .x }} #not-a-comment: - [a] & *b`;

interface MonitoredCase {
  readonly name: string;
  readonly model: Model;
  readonly tree: Tree;
  /** The SMTP password the Alertmanager config must carry, when the case sets one. */
  readonly smtpPassword?: string;
}

const cases: MonitoredCase[] = fixtureNames()
  .map((name) => ({ name, model: loadFixture(name).model, tree: renderFixture(name) }))
  .filter((c) => c.model.topology.monitor !== undefined);

function nastyCase(): MonitoredCase {
  const f = loadFixture("ha-monitored");
  const sources = { ...f.sources, env: { ...f.sources.env, NOVACLOUD_SMTP_PASSWORD: NASTY_SMTP } };
  return { name: "ha-monitored with a nasty SMTP password", model: f.model, tree: render(f.model, sources), smtpPassword: NASTY_SMTP };
}

/** The monitor host's files in a sandbox, the rules file where prometheus.yml names it. */
function monitorFiles(c: MonitoredCase) {
  const box = sandbox("ncr-monitoring-");
  boxes.push(box);
  const paths = pathsOf(c.model);
  const host = c.model.topology.monitor!.name;
  const get = (path: string) => {
    const file = c.tree.get(`${host}${path}`);
    if (file === undefined) throw new Error(`${c.name}: ${host} has no ${path}`);
    return file.content;
  };
  const rules = box.write("alerts.yml", get(paths.prometheusRules));
  const prometheus = box.write("prometheus.yml", relocate(get(paths.prometheusConfig), { [paths.prometheusRules]: rules }));
  const alertmanager = box.write("alertmanager.yml", get(paths.alertmanagerConfig));
  const blackbox = box.write("blackbox.yml", get(paths.blackboxConfig));
  return { box, rules, prometheus, alertmanager, blackbox };
}

describe.skipIf(!available)("Prometheus, Alertmanager and the blackbox exporter read the rendered files", () => {
  it("has the monitored fixtures", () => {
    expect(cases.map((c) => c.name)).toEqual(["ha-monitored", "single-node"]);
  });

  for (const c of [...cases, nastyCase()]) {
    it(`${c.name}: promtool check config (with the rules), amtool check-config, blackbox --config.check`, () => {
      const f = monitorFiles(c);
      const prom = run("promtool", ["check", "config", f.prometheus]);
      expect(prom.code, prom.output).toBe(0);
      expect(prom.output).toMatch(/SUCCESS: \d+ rule files? found|SUCCESS/);
      const rules = run("promtool", ["check", "rules", f.rules]);
      expect(rules.code, rules.output).toBe(0);
      expect(rules.output).toContain(`SUCCESS: ${alertRules({ backupMaxAge: c.model.monitoring.backup_max_age }).length} rules found`);
      const am = run("amtool", ["check-config", f.alertmanager]);
      expect(am.code, am.output).toBe(0);
      const bb = run("prometheus-blackbox-exporter", ["--config.check", `--config.file=${f.blackbox}`]);
      expect(bb.code, bb.output).toBe(0);
      if (c.smtpPassword !== undefined) {
        // Alertmanager reads the password back as exactly the secret (amtool prints it masked,
        // so compare what YAML gives: the double-quoted scalar decodes to the value).
        const config = c.tree.get(`${c.model.topology.monitor!.name}${pathsOf(c.model).alertmanagerConfig}`)!.content;
        const line = /^\s*smtp_auth_password: (.*)$/m.exec(config);
        expect(JSON.parse(line![1]!)).toBe(c.smtpPassword);
      }
    });
  }
});

describe.skipIf(!nginxAvailable)("nginx's stub_status and the nginx exporter, from the rendered files", () => {
  for (const c of cases) {
    it(`${c.name}: stub_status answers on loopback, the exporter reads it (nginx_up 1)`, async () => {
      const paths = pathsOf(c.model);
      const web = c.model.topology.web[0]!;
      const box = sandbox("ncr-stub-status-");
      boxes.push(box);
      const ports = { status: await freePort(), exporter: await freePort() };
      const stub = c.tree.get(`${web.name}${paths.nginxStubStatus}`)!.content;
      const mapping = { "127.0.0.1:8091": `127.0.0.1:${ports.status}` };
      box.write("logs/.keep", "");
      box.write("tmp/.keep", "");
      const site = box.write("stub-status.conf", relocate(stub, mapping));
      const conf = box.write("nginx.conf", nginxMainConf(box.dir, site, { daemonOff: true }));
      const test = run("nginx", ["-t", "-p", `${box.dir}/`, "-c", conf]);
      expect(test.code, test.output).toBe(0);
      expect(test.output).not.toMatch(/\[warn\]|\[emerg\]/);
      startServer("nginx", ["-p", `${box.dir}/`, "-c", conf]);
      const get = async (path: string) => fetch(`http://127.0.0.1:${ports.status}${path}`).catch(() => undefined);
      await waitFor("nginx's stub_status", async () => (await get("/stub_status"))?.ok === true);
      expect(await (await get("/stub_status"))!.text()).toMatch(/^Active connections: \d+/);
      expect((await get("/"))!.status).toBe(404);
      // The exporter with the rendered ARGS, listening where its loopback port was moved to.
      const defaults = c.tree.get(`${web.name}/etc/default/prometheus-nginx-exporter`)!.content;
      const args = /^ARGS="(.*)"$/m.exec(relocate(defaults, { ...mapping, [`${web.name === c.model.topology.monitor!.name ? "127.0.0.1" : web.address}:9113`]: `127.0.0.1:${ports.exporter}` }))![1]!.split(" ");
      expect(args).toContain(`-web.listen-address=127.0.0.1:${ports.exporter}`);
      const exporter = startServer("prometheus-nginx-exporter", args);
      await waitFor("nginx_up 1 from the exporter", async () => {
        const r = await fetch(`http://127.0.0.1:${ports.exporter}/metrics`).catch(() => undefined);
        return r?.ok === true && /^nginx_up 1$/m.test(await r.text());
      }).catch((e: Error) => {
        throw new Error(`${e.message}\n${exporter.output()}`);
      });
    });
  }
});

const redisAvailable = programsAvailable("monitoring: the Redis exporter", { "redis-server": "redis-server", "prometheus-redis-exporter": "prometheus-redis-exporter" });

/** The variables of an EnvironmentFile= as systemd reads them ("..." with \\ \" \` \$ escapes). */
function environmentFile(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const m of text.matchAll(/^([A-Z_]+)=(.*)$/gm)) vars[m[1]!] = m[2]!.startsWith('"') ? m[2]!.slice(1, -1).replace(/\\(.)/g, "$1") : m[2]!;
  return vars;
}

describe.skipIf(!redisAvailable)("the Redis exporter from its rendered settings", () => {
  it("logs in with the password from REDIS_PASSWORD (quoting hazards included) and reports redis_up 1", async () => {
    const f = loadFixture("ha-monitored");
    const password = `re"dis 'pw' $HOME \\x #c`;
    const tree = render(f.model, { ...f.sources, env: { ...f.sources.env, NOVACLOUD_REDIS_PASSWORD: password } });
    const host = f.model.topology.redis[0]!;
    const ports = { redis: await freePort(), exporter: await freePort() };
    const box = sandbox("ncr-redis-exporter-");
    boxes.push(box);
    // Redis itself with that password (the Redis family's files are tested in test/lint/redis.test.ts).
    const conf = box.write("redis.conf", `port ${ports.redis}\nbind 127.0.0.1\nsave ""\ndir ${box.dir}\nrequirepass "${password.replace(/(["\\])/g, "\\$1")}"\n`);
    startServer("redis-server", [conf]);
    const settings = environmentFile(
      relocate(tree.get(`${host.name}/etc/default/prometheus-redis-exporter`)!.content, {
        [`${host.address}:9121`]: `127.0.0.1:${ports.exporter}`,
        [`127.0.0.1:${f.model.redis.port}`]: `127.0.0.1:${ports.redis}`,
      }),
    );
    expect(settings.REDIS_PASSWORD).toBe(password);
    expect(settings.ARGS).not.toContain(password);
    const exporter = startServer("prometheus-redis-exporter", settings.ARGS!.split(" "), { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", REDIS_PASSWORD: settings.REDIS_PASSWORD! } });
    await waitFor("redis_up 1 from the exporter", async () => {
      const r = await fetch(`http://127.0.0.1:${ports.exporter}/metrics`).catch(() => undefined);
      return r?.ok === true && /^redis_up 1$/m.test(await r.text());
    }).catch((e: Error) => {
      throw new Error(`${e.message}\n${exporter.output()}`);
    });
  });
});

const pgAvailable = programsAvailable("monitoring: the PostgreSQL exporter's standby query", {
  [`${BIN}/initdb`]: "postgresql-15",
  [`${BIN}/pg_basebackup`]: "postgresql-15",
  [`${BIN}/psql`]: "postgresql-client-15",
  runuser: "util-linux",
});

describe.skipIf(!pgAvailable)("the PostgreSQL exporter's standby query on a real primary and standby", () => {
  it("as the exporter's pg_monitor role: the primary is no standby; the streaming standby has one WAL receiver and no replay lag", async () => {
    const c = cases.find((x) => x.name === "ha-monitored")!;
    const text = c.tree.get(`db1${pathsOf(c.model).postgresExporterQueries}`)!.content;
    // The folded block scalar under query: (its lines joined by blanks, as YAML reads `>-`).
    const block = /^ {2}query: >-\n((?: {4}.*\n)+)/m.exec(text)![1]!;
    const query = block.split("\n").map((l) => l.trim()).filter((l) => l !== "").join(" ");
    const b = sandbox("ncr-pg-standby-query-");
    boxes.push(b);
    const start = async (name: string, data: string) => {
      const socket = b.path(name, "socket");
      mkdirSync(socket, { recursive: true });
      giveToPostgres(b.path(name));
      giveToPostgres(socket);
      const port = await freePort();
      dataDirs.push(data);
      const r = asPostgres(`${BIN}/pg_ctl`, ["-D", data, "-l", b.path(name, "server.log"), "-w", "-t", "60", "start", "-o", `-p ${port} -k ${socket} -c listen_addresses='' -c fsync=off`]);
      expect(r.code, r.output).toBe(0);
      return { socket, port };
    };
    const sql = (at: { socket: string; port: number }, q: string, user = "postgres") =>
      asPostgres(`${BIN}/psql`, ["-X", "-At", "-F", " ", "-v", "ON_ERROR_STOP=1", "-h", at.socket, "-p", String(at.port), "-U", user, "-d", "postgres", "-c", q]);
    mkdirSync(b.path("primary", "data"), { recursive: true });
    giveToPostgres(b.path("primary"));
    giveToPostgres(b.path("primary", "data"));
    const init = asPostgres(`${BIN}/initdb`, ["-D", b.path("primary", "data"), "-U", "postgres", "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
    expect(init.code, init.output).toBe(0);
    const primary = await start("primary", b.path("primary", "data"));
    // The exporter's role as the primary's runbook makes it (pg_monitor, nothing more); the
    // standby gets it by replication. The query runs as that role, as the exporter does.
    const role = sql(primary, "CREATE ROLE prometheus LOGIN; GRANT pg_monitor TO prometheus");
    expect(role.code, role.output).toBe(0);
    mkdirSync(b.path("standby"), { recursive: true });
    giveToPostgres(b.path("standby"));
    const clone = run("runuser", ["-u", "postgres", "--", `${BIN}/pg_basebackup`, "-h", primary.socket, "-p", String(primary.port), "-U", "postgres", "-D", b.path("standby", "data"), "-R", "-X", "stream", "--checkpoint=fast"], { timeoutMs: 90_000 });
    expect(clone.code, clone.output).toBe(0);
    const standby = await start("standby", b.path("standby", "data"));
    expect(sql(primary, query, "prometheus").stdout.trim()).toBe("0 0 0");
    await waitFor("the standby streaming", () => sql(standby, query, "prometheus").stdout.trim() === "1 1 0", 30_000);
    // The primary gone: the standby has no WAL receiver streaming (PostgresqlStandbyNotStreaming).
    await stopCluster(b.path("primary", "data"));
    await waitFor("the standby no longer streaming", () => /^1 0 /.test(sql(standby, query, "prometheus").stdout.trim()), 30_000);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------
// promtool test rules: each alert fires on a case made for it, and stays quiet on its healthy twin.

type Labels = Record<string, string>;
interface Series {
  readonly series: string;
  readonly values: string;
}
interface AlertCase {
  /** Scrape interval of the input series. */
  readonly interval: string;
  readonly evalTime: string;
  readonly fire: readonly Series[];
  readonly quiet: readonly Series[];
  /** The labels of the firing alert (besides alertname, alertstate and severity). */
  readonly labels: Labels;
}

const selector = (name: string, labels: Labels) =>
  `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(",")}}`;
const s = (name: string, labels: Labels, values: string): Series => ({ series: selector(name, labels), values });

const NODE = { job: "node", instance: "10.0.0.11:9100", host: "app1" };
const ROOT_FS = { ...NODE, device: "/dev/sda1", fstype: "ext4", mountpoint: "/" };
const PG = { job: "postgres", instance: "10.0.0.32:9187", host: "db2" };
const REDIS = { job: "redis", instance: "10.0.0.41:9121", host: "cache1" };
const HAPROXY = { job: "haproxy", instance: "10.0.0.10:8405", host: "lb1" };
const SITE = { job: "blackbox-https", instance: "https://iot.example.com/health-check/", host: "mon1" };
const MQTT = { job: "blackbox-mqtt", instance: "mqtt.iot.example.com:8883", host: "mon1" };

/** One case per alert; test time starts at 0 (the Unix epoch), which BackupTooOld's and the certificate's sums use. */
const ALERT_CASES: Record<string, AlertCase> = {
  InstanceDown: { interval: "1m", evalTime: "5m", fire: [s("up", NODE, "0x10")], quiet: [s("up", NODE, "1x10")], labels: NODE },
  DiskFillingUp: {
    // 30 GB of 100 GB free, losing 20 MB a minute: empty within a day from the first hour on.
    interval: "1m",
    evalTime: "8h",
    fire: [s("node_filesystem_avail_bytes", ROOT_FS, "30e9-2e7x600"), s("node_filesystem_size_bytes", ROOT_FS, "100e9x600"), s("node_filesystem_readonly", ROOT_FS, "0x600")],
    quiet: [s("node_filesystem_avail_bytes", ROOT_FS, "30e9x600"), s("node_filesystem_size_bytes", ROOT_FS, "100e9x600"), s("node_filesystem_readonly", ROOT_FS, "0x600")],
    labels: ROOT_FS,
  },
  DiskAlmostFull: {
    interval: "1m",
    evalTime: "30m",
    fire: [s("node_filesystem_avail_bytes", ROOT_FS, "5e9x40"), s("node_filesystem_size_bytes", ROOT_FS, "100e9x40"), s("node_filesystem_readonly", ROOT_FS, "0x40")],
    quiet: [s("node_filesystem_avail_bytes", ROOT_FS, "50e9x40"), s("node_filesystem_size_bytes", ROOT_FS, "100e9x40"), s("node_filesystem_readonly", ROOT_FS, "0x40")],
    labels: ROOT_FS,
  },
  HighCpuLoad: {
    // Idle 3 s of every minute (95 % busy) against idle all the time.
    interval: "1m",
    evalTime: "30m",
    fire: [s("node_cpu_seconds_total", { ...NODE, cpu: "0", mode: "idle" }, "0+3x40")],
    quiet: [s("node_cpu_seconds_total", { ...NODE, cpu: "0", mode: "idle" }, "0+60x40")],
    labels: { instance: NODE.instance, host: NODE.host },
  },
  MemoryPressure: {
    interval: "1m",
    evalTime: "20m",
    fire: [s("node_memory_MemAvailable_bytes", NODE, "5e8x30"), s("node_memory_MemTotal_bytes", NODE, "8e9x30")],
    quiet: [s("node_memory_MemAvailable_bytes", NODE, "4e9x30"), s("node_memory_MemTotal_bytes", NODE, "8e9x30")],
    labels: NODE,
  },
  SystemdUnitFailed: {
    interval: "1m",
    evalTime: "10m",
    fire: [s("node_systemd_unit_state", { ...NODE, name: "novacloud-backup.service", state: "failed", type: "oneshot" }, "1x15")],
    quiet: [s("node_systemd_unit_state", { ...NODE, name: "novacloud-backup.service", state: "failed", type: "oneshot" }, "0x15")],
    labels: { ...NODE, name: "novacloud-backup.service", state: "failed", type: "oneshot" },
  },
  HaproxyBackendDown: {
    interval: "1m",
    evalTime: "5m",
    // HAProxy 2.6 exports one series per server and state (checked against haproxy -db).
    fire: [
      s("haproxy_server_status", { ...HAPROXY, proxy: "be_web", server: "app1", state: "UP" }, "0x10"),
      s("haproxy_server_status", { ...HAPROXY, proxy: "be_web", server: "app2", state: "UP" }, "0x10"),
    ],
    quiet: [
      s("haproxy_server_status", { ...HAPROXY, proxy: "be_web", server: "app1", state: "UP" }, "0x10"),
      s("haproxy_server_status", { ...HAPROXY, proxy: "be_web", server: "app2", state: "UP" }, "1x10"),
    ],
    labels: { ...HAPROXY, proxy: "be_web" },
  },
  HaproxyServerDown: {
    interval: "1m",
    evalTime: "5m",
    fire: [s("haproxy_server_status", { ...HAPROXY, proxy: "be_web", server: "app2", state: "DOWN" }, "1x10")],
    quiet: [s("haproxy_server_status", { ...HAPROXY, proxy: "be_web", server: "app2", state: "DOWN" }, "0x10")],
    labels: { ...HAPROXY, proxy: "be_web", server: "app2", state: "DOWN" },
  },
  PostgresqlDown: { interval: "1m", evalTime: "5m", fire: [s("pg_up", PG, "0x10")], quiet: [s("pg_up", PG, "1x10")], labels: PG },
  PostgresqlStandbyNotStreaming: {
    interval: "1m",
    evalTime: "5m",
    fire: [s("pg_standby_is_standby", PG, "1x10"), s("pg_standby_streaming", PG, "0x10")],
    quiet: [s("pg_standby_is_standby", PG, "1x10"), s("pg_standby_streaming", PG, "1x10")],
    labels: PG,
  },
  PostgresqlStandbyLagging: {
    interval: "1m",
    evalTime: "15m",
    fire: [s("pg_standby_is_standby", PG, "1x20"), s("pg_standby_replay_lag_seconds", PG, "600x20")],
    quiet: [s("pg_standby_is_standby", PG, "1x20"), s("pg_standby_replay_lag_seconds", PG, "10x20")],
    labels: PG,
  },
  BackupTooOld: {
    // At 27 h: a last success at time 0 is 27 h old; one at 25 h is 2 h old (limit: 26 h).
    // Samples 4 minutes apart stay within the 5 minute lookback, so the series never goes stale.
    interval: "4m",
    evalTime: "27h",
    fire: [s("novacloud_backup_last_success_timestamp_seconds", { ...NODE, host: "db1" }, "0x420")],
    quiet: [s("novacloud_backup_last_success_timestamp_seconds", { ...NODE, host: "db1" }, "90000x420")],
    labels: { ...NODE, host: "db1" },
  },
  CertificateExpiringSoon: {
    // Expiring 10 days after the test starts, against 60 days.
    interval: "5m",
    evalTime: "2h",
    fire: [s("probe_ssl_earliest_cert_expiry", SITE, "864000x30")],
    quiet: [s("probe_ssl_earliest_cert_expiry", SITE, "5184000x30")],
    labels: SITE,
  },
  RedisDown: { interval: "1m", evalTime: "5m", fire: [s("redis_up", REDIS, "0x10")], quiet: [s("redis_up", REDIS, "1x10")], labels: REDIS },
  RedisPrimaryChanged: {
    // cache2 was a replica for 10 minutes, then Sentinel promoted it; in the quiet twin it has
    // been the primary all along.
    interval: "1m",
    evalTime: "15m",
    fire: [
      s("redis_instance_info", { ...REDIS, instance: "10.0.0.42:9121", host: "cache2", role: "slave" }, "1x10"),
      s("redis_instance_info", { ...REDIS, instance: "10.0.0.42:9121", host: "cache2", role: "master" }, "_x10 1x20"),
    ],
    quiet: [s("redis_instance_info", { ...REDIS, instance: "10.0.0.42:9121", host: "cache2", role: "master" }, "1x30")],
    labels: { ...REDIS, instance: "10.0.0.42:9121", host: "cache2", role: "master" },
  },
  MqttBrokerUnreachable: {
    // The quiet twin has the site's probe failing: that is SiteDown's, not this alert's.
    interval: "1m",
    evalTime: "5m",
    fire: [s("probe_success", MQTT, "0x10")],
    quiet: [s("probe_success", MQTT, "1x10"), s("probe_success", SITE, "0x10")],
    labels: MQTT,
  },
  SiteDown: {
    interval: "1m",
    evalTime: "5m",
    fire: [s("probe_success", SITE, "0x10")],
    quiet: [s("probe_success", SITE, "1x10"), s("probe_success", MQTT, "0x10")],
    labels: SITE,
  },
};

describe.skipIf(!available)("promtool test rules: every alert fires on its case and stays quiet on its healthy twin", () => {
  const c = cases.find((x) => x.name === "ha-monitored")!;
  const rules = alertRules({ backupMaxAge: c.model.monitoring.backup_max_age });

  it("has a case for every alert rule, and no case without a rule", () => {
    expect(Object.keys(ALERT_CASES).sort()).toEqual(rules.map((r) => r.alert).sort());
  });

  for (const rule of rules) {
    it(`${rule.alert}: fires, and stays quiet`, () => {
      const ac = ALERT_CASES[rule.alert]!;
      const f = monitorFiles(c);
      const firing = `ALERTS{alertname="${rule.alert}",alertstate="firing"}`;
      const tests = {
        rule_files: [f.rules],
        evaluation_interval: "1m",
        tests: [
          {
            name: `${rule.alert} fires`,
            interval: ac.interval,
            input_series: ac.fire,
            promql_expr_test: [
              {
                eval_time: ac.evalTime,
                expr: firing,
                exp_samples: [{ labels: selector("ALERTS", { alertname: rule.alert, alertstate: "firing", severity: rule.severity, ...ac.labels }), value: 1 }],
              },
            ],
          },
          {
            name: `${rule.alert} stays quiet`,
            interval: ac.interval,
            input_series: ac.quiet,
            // Not this alert, neither pending nor firing (a twin may fire another one on purpose).
            promql_expr_test: [{ eval_time: ac.evalTime, expr: `ALERTS{alertname="${rule.alert}"}`, exp_samples: [] }],
          },
        ],
      };
      const file = f.box.write("tests.yml", JSON.stringify(tests, null, 2));
      const result = run("promtool", ["test", "rules", file]);
      expect(result.code, result.output).toBe(0);
      expect(result.output).toContain("SUCCESS");
    });
  }
});
