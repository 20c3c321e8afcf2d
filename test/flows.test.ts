/**
 * The flow table is the one answer to "who connects to whom": every file that admits, binds or
 * names a peer agrees with it. Each check parses the rendered file (not the code that made it)
 * and compares it with the table, for every host of every fixture.
 */
import { describe, expect, it } from "vitest";
import { pathsOf } from "../src/artifacts/paths.js";
import { entriesTo, flowsTo, flowTable, type FlowTable } from "../src/model/flows.js";
import type { Host, Model } from "../src/model/normalize.js";
import type { Tree } from "../src/tree.js";
import { fixtureNames, loadFixture, renderFixture } from "./helpers/fixtures.js";
import { run } from "./helpers/programs.js";
import { join } from "node:path";
import { ROOT } from "./helpers/fixtures.js";

interface Case {
  readonly fixture: string;
  readonly model: Model;
  readonly table: FlowTable;
  readonly tree: Tree;
}

const CASES: Case[] = fixtureNames().map((fixture) => {
  const { model } = loadFixture(fixture);
  return { fixture, model, table: flowTable(model), tree: renderFixture(fixture) };
});

const file = (c: Case, host: Host, path: string) => c.tree.get(`${host.name}${path}`)?.content;
const lines = (text: string | undefined) => (text ?? "").split("\n").filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
const sorted = (xs: string[]) => [...xs].sort();

describe("the flow table decides who may connect", () => {
  for (const c of CASES) {
    for (const host of c.model.topology.hosts) {
      const name = `${c.fixture}/${host.name}`;
      const flows = flowsTo(c.table, host);

      it(`${name}: the firewall opens exactly the flows and entry points that reach the host`, () => {
        const script = file(c, host, pathsOf(c.model).firewallScript);
        if (!c.model.firewall.enabled) return expect(script).toBeUndefined();
        const rules = lines(script).filter((l) => /^ufw (allow|limit) /.test(l));
        const sourced = rules.flatMap((l) => {
          const m = /^ufw allow proto tcp from (\S+) to any port (\d+) /.exec(l);
          return m ? [`${m[1]}:${m[2]}`] : [];
        });
        expect(sorted(sourced)).toEqual(sorted([...new Set(flows.map((f) => `${f.from.address}:${f.port}`))]));
        const open = rules.flatMap((l) => {
          const m = /^ufw allow (\d+)\/tcp /.exec(l);
          return m ? [Number(m[1])] : [];
        });
        const entries = entriesTo(c.table, host).filter((e) => e.service !== "ssh");
        expect(sorted(open.map(String))).toEqual(sorted([...new Set(entries.map((e) => String(e.port)))]));
      });

      it(`${name}: pg_hba.conf admits exactly the table's PostgreSQL clients`, () => {
        const hba = file(c, host, pathsOf(c.model).pgHba);
        const pg = flowsTo(c.table, host, "postgres");
        if (hba === undefined) return expect(pg).toEqual([]);
        const remote = lines(hba)
          .map((l) => l.split(/\s+/))
          .filter((f) => f[0] === "hostssl" || (f[0] === "host" && f[3] !== "127.0.0.1/32"))
          .map((f) => `${f[1] === "replication" ? "replication" : f[2] === c.model.postgres.replication.rewind_user ? "rewind" : "django"}:${f[3]}`);
        expect(sorted(remote)).toEqual(sorted(pg.map((f) => `${f.client}:${f.from.address}/32`)));
      });

      it(`${name}: the NFS export admits exactly the table's NFS clients`, () => {
        const exported = file(c, host, pathsOf(c.model).nfsExports);
        const nfs = flowsTo(c.table, host, "nfs");
        if (exported === undefined) return expect(nfs).toEqual([]);
        const clients = lines(exported)
          .map((l) => l.trim().replace(/\s*\\$/, ""))
          .flatMap((l) => {
            const m = /^(\d+\.\d+\.\d+\.\d+)\(/.exec(l);
            return m ? [m[1]!] : [];
          });
        expect(clients.length).toBeGreaterThan(0);
        expect(sorted(clients)).toEqual(sorted(nfs.map((f) => f.from.address)));
      });

      it(`${name}: servers listen on the private address exactly when a flow reaches them`, () => {
        const p = pathsOf(c.model);
        const redis = file(c, host, p.redisFragment);
        if (redis !== undefined) {
          const bind = lines(redis).find((l) => l.startsWith("bind "))!;
          expect(bind.split(" ").includes(host.address)).toBe(flowsTo(c.table, host, "redis").length > 0);
        }
        const sentinel = file(c, host, p.sentinelConf);
        if (sentinel !== undefined) {
          const bind = lines(sentinel).find((l) => l.startsWith("bind "))!;
          expect(bind.split(" ").includes(host.address)).toBe(flowsTo(c.table, host, "sentinel").length > 0);
        }
        const mosquitto = file(c, host, p.mosquittoConf);
        if (mosquitto !== undefined) {
          const privateListener = lines(mosquitto).includes(`listener ${c.model.mqtt.port} ${host.address}`);
          expect(privateListener).toBe(flowsTo(c.table, host, "mqtt").length > 0);
          // The device listener HAProxy passes devices to, after terminating their TLS.
          const deviceListener = lines(mosquitto).includes(`listener ${c.model.mqtt.device_port} ${host.address}`);
          expect(deviceListener).toBe(flowsTo(c.table, host, "mqtt-devices").length > 0);
        }
        const pgconf = file(c, host, p.pgConfD);
        if (pgconf !== undefined) {
          const listen = lines(pgconf).find((l) => l.startsWith("listen_addresses"))!;
          expect(listen.includes(host.address)).toBe(flowsTo(c.table, host, "postgres").length > 0);
        }
      });

      it(`${name}: devices' MQTT over TLS is served exactly where the table's entry point says`, () => {
        const tls = entriesTo(c.table, host).filter((e) => e.service === "mqtt-tls").map((e) => e.port);
        const haproxy = lines(file(c, host, pathsOf(c.model).haproxyConfig)).map((l) => l.trim());
        const mosquitto = lines(file(c, host, pathsOf(c.model).mosquittoConf));
        // HAProxy's TLS bind for MQTT, or the broker's own TLS listener (followed by its certfile).
        const haproxyTls = haproxy.flatMap((l) => {
          const m = /^bind :(\d+) ssl /.exec(l);
          return m && Number(m[1]) !== c.model.site.https_port ? [Number(m[1])] : [];
        });
        const brokerTls = mosquitto.flatMap((l, i) => (/^listener \d+$/.test(l) && mosquitto[i + 1]?.startsWith("certfile ") ? [Number(l.split(" ")[1])] : []));
        const served = [...haproxyTls, ...brokerTls];
        expect(served).toEqual(tls);
      });

      if (host.roles.has("lb")) {
        it(`${name}: HAProxy's servers are the lb's flows to the web hosts`, () => {
          const cfg = lines(file(c, host, pathsOf(c.model).haproxyConfig));
          const servers = [...new Set(cfg.filter((l) => l.trim().startsWith("server ") && !l.includes("certbot")).map((l) => l.trim().split(/\s+/)[2]!))];
          const lb = c.table.flows.filter((f) => f.from.name === host.name);
          expect(sorted(servers)).toEqual(sorted(lb.map((f) => `${f.to.address}:${f.port}`)));
        });
      }

      if (c.model.topology.django.some((h) => h.name === host.name)) {
        it(`${name}: the .env names the servers of the host's flows`, () => {
          const env = lines(file(c, host, c.model.project.envFile));
          const value = (key: string) => env.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);
          const out = c.table.flows.filter((f) => f.from.name === host.name);
          const dbHost = value("DB_HOST")!;
          if (dbHost !== "127.0.0.1") expect(out.some((f) => f.service === "postgres" && f.client === "django" && f.to.address === dbHost && f.to.roles.has("db"))).toBe(true);
          // The read replicas: exactly the hosts of its "Django reads" flows (standbys), by address.
          const reads = out.filter((f) => f.service === "postgres" && f.client === "django" && f.to.roles.has("db-standby"));
          expect(reads.every((f) => f.purpose === "Django reads")).toBe(true);
          const replicas = value("DB_REPLICA_HOSTS");
          if (c.model.topology.standbys.length === 0) expect(replicas).toBeUndefined();
          else {
            const named = replicas!.split(",").filter((r) => !r.startsWith("127.0.0.1:"));
            expect(sorted(named)).toEqual(sorted(reads.map((f) => `${f.to.address}:${f.port}`)));
            expect(reads.length).toBeGreaterThan(0);
          }
          const mqttHost = value("MQTT_BROKER_HOST")!;
          if (mqttHost !== "127.0.0.1") expect(out.some((f) => f.service === "mqtt" && f.to.address === mqttHost)).toBe(true);
        });
      }
    }
  }
});

/**
 * Monitoring: Prometheus' targets are the model's hosts and roles, each exporter listens where
 * Prometheus looks for it, and the firewall admits no one but the monitor host to an exporter.
 * The expectations come from the roles and the packages' default ports, not from the code that
 * renders them.
 */
const EXPORTER_JOBS: readonly { job: string; port: number; unit: string | undefined; roles: readonly string[] }[] = [
  { job: "node", port: 9100, unit: "prometheus-node-exporter", roles: [] },
  { job: "postgres", port: 9187, unit: "prometheus-postgres-exporter", roles: ["db", "db-standby"] },
  { job: "redis", port: 9121, unit: "prometheus-redis-exporter", roles: ["redis"] },
  { job: "nginx", port: 9113, unit: "prometheus-nginx-exporter", roles: ["web"] },
  { job: "haproxy", port: 8405, unit: undefined, roles: ["lb"] },
];
const EXPORTER_PORTS = new Set(EXPORTER_JOBS.map((e) => e.port));

/** job -> "target host" pairs of a rendered prometheus.yml (static_configs with a host label). */
function scrapeConfig(text: string): Map<string, string[]> {
  const jobs = new Map<string, string[]>();
  let job = "";
  let targets: string[] = [];
  for (const line of text.split("\n")) {
    const j = /^ {2}- job_name: "([^"]+)"$/.exec(line);
    if (j) jobs.set((job = j[1]!), []);
    const t = /^ {6}- targets: \[(.*)\]$/.exec(line);
    if (t) targets = JSON.parse(`[${t[1]}]`) as string[];
    const h = /^ {10}host: "([^"]+)"$/.exec(line);
    if (h && targets.length > 0) {
      for (const target of targets) jobs.get(job)!.push(`${target} ${h[1]}`);
      targets = [];
    }
  }
  return jobs;
}

describe("monitoring: scrape targets, exporter addresses and the firewall agree with the model", () => {
  const monitored = CASES.filter((c) => c.model.topology.monitor !== undefined);
  it("has monitored fixtures, one with a separate monitor host", () => {
    expect(monitored.map((c) => c.fixture)).toEqual(["ha-monitored", "single-node"]);
    expect(monitored[0]!.model.topology.monitor!.roles.size).toBe(1);
  });

  for (const c of monitored) {
    const monitor = c.model.topology.monitor!;
    const p = pathsOf(c.model);

    it(`${c.fixture}: Prometheus scrapes exactly the exporters of the model's hosts and roles`, () => {
      const jobs = scrapeConfig(file(c, monitor, p.prometheusConfig)!);
      for (const e of EXPORTER_JOBS) {
        const hosts = c.model.topology.hosts.filter((h) => e.roles.length === 0 || e.roles.some((r) => h.roles.has(r as never)));
        const expected = hosts.map((h) => `${h.name === monitor.name ? "127.0.0.1" : h.address}:${e.port} ${h.name}`);
        expect(sorted(jobs.get(e.job) ?? []), e.job).toEqual(sorted(expected));
      }
      // Besides the exporters: Prometheus, Alertmanager and the blackbox exporter on loopback, and the probes.
      const others = [...jobs.keys()].filter((j) => !EXPORTER_JOBS.some((e) => e.job === j));
      expect(sorted(others)).toEqual(sorted(["prometheus", "alertmanager", "blackbox", "blackbox-https", ...(c.model.mqtt.tls_port !== undefined ? ["blackbox-mqtt"] : [])]));
      for (const j of ["prometheus", "alertmanager", "blackbox"]) expect(jobs.get(j)!.every((t) => t.startsWith("127.0.0.1:")), j).toBe(true);
    });

    for (const host of c.model.topology.hosts) {
      it(`${c.fixture}/${host.name}: each exporter listens where Prometheus scrapes it, and only the monitor host may reach it`, () => {
        const listenAt = host.name === monitor.name ? "127.0.0.1" : host.address;
        for (const e of EXPORTER_JOBS) {
          const runs = e.roles.length === 0 || e.roles.some((r) => host.roles.has(r as never));
          if (e.unit !== undefined) {
            const settings = file(c, host, `/etc/default/${e.unit}`);
            if (!runs) {
              expect(settings, `${e.unit} on ${host.name}`).toBeUndefined();
              continue;
            }
            const args = lines(settings).find((l) => l.startsWith("ARGS="))!;
            expect(args).toMatch(new RegExp(`-web\\.listen-address=${listenAt.replace(/\./g, "\\.")}:${e.port}[" ]`));
          } else if (runs) {
            const bind = lines(file(c, host, p.haproxyConfig)).map((l) => l.trim()).filter((l) => l.startsWith("bind ") && l.endsWith(`:${e.port}`));
            expect(bind).toEqual([`bind ${listenAt}:${e.port}`]);
          }
        }
        // ufw: every rule for an exporter port comes from the monitor host's address, and only
        // remote exporters get one; no exporter port is open to anyone.
        const rules = lines(file(c, host, p.firewallScript)).filter((l) => /^ufw (allow|limit) /.test(l));
        const exporterRules = rules.filter((l) => EXPORTER_PORTS.has(Number(/port (\d+)/.exec(l)?.[1] ?? /^ufw (?:allow|limit) (\d+)\//.exec(l)?.[1])));
        const expectedPorts = host.name === monitor.name ? [] : EXPORTER_JOBS.filter((e) => e.roles.length === 0 || e.roles.some((r) => host.roles.has(r as never))).map((e) => e.port);
        expect(exporterRules.map((l) => /^ufw allow proto tcp from (\S+) to any port (\d+) /.exec(l)?.slice(1).join(":"))).toEqual(
          expectedPorts.map((port) => `${monitor.address}:${port}`),
        );
        // The monitor's own daemons are on loopback: no rule opens them.
        for (const port of [9090, 9093, 9094, 9115]) expect(rules.some((l) => new RegExp(`port ${port}\\b|^ufw allow ${port}/`).test(l)), `port ${port}`).toBe(false);
      });
    }
  }
});

describe("novacloud-render flows", () => {
  const cli = join(ROOT, "dist", "cli.cjs");
  const model = join(ROOT, "fixtures", "ha-cluster", "novacloud.toml");

  it("prints one line per flow and entry point, and needs no secrets", () => {
    const r = run(process.execPath, [cli, "flows", model], { env: { PATH: process.env.PATH ?? "" } });
    expect(r.code, r.output).toBe(0);
    expect(r.stdout).toContain("app1 -> db1:5432/tcp postgres (Django)\n");
    expect(r.stdout).toContain("db2 -> db1:5432/tcp postgres (streaming replication)\n");
    expect(r.stdout).toContain("app1 -> db2:5432/tcp postgres (Django reads)\n");
    expect(r.stdout).toContain("worker1 -> db3:5432/tcp postgres (Django reads)\n");
    expect(r.stdout).toContain("anywhere -> lb1:443/tcp https (HAProxy: HTTPS)\n");
  });

  it("--format json gives the same table as the library, and --host filters it", () => {
    const r = run(process.execPath, [cli, "flows", model, "--format", "json", "--host", "cache1"]);
    expect(r.code, r.output).toBe(0);
    const json = JSON.parse(r.stdout) as { flows: { from: string; to: string; port: number }[] };
    const table = flowTable(loadFixture("ha-cluster").model);
    const expected = table.flows.filter((f) => f.from.name === "cache1" || f.to.name === "cache1").map((f) => `${f.from.name}->${f.to.name}:${f.port}`);
    expect(json.flows.map((f) => `${f.from}->${f.to}:${f.port}`)).toEqual(expected);
    expect(expected.length).toBeGreaterThan(0);
  });

  it("refuses an unknown host with exit 2", () => {
    const r = run(process.execPath, [cli, "flows", model, "--host", "nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no such host");
  });
});
