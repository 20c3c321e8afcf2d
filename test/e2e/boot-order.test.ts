/**
 * Issue #9, item 9: after a reboot the daemons that listen on a host's private address must
 * come up even when the network configures that address after they start (Debian's units order
 * them only after network.target). Each case boots a host as a network namespace *without* its
 * address, starts the real daemon from the host's rendered files, then adds the address and
 * connects from another host's namespace:
 *   - as the hosts were rendered before, with no kernel setting: redis-server exits, PostgreSQL
 *     starts on loopback only and stays unreachable on its address (the failure of the issue);
 *   - with the host's rendered /etc/sysctl.d file applied by systemd-sysctl (what boot runs
 *     before any service): every daemon starts and answers on its address once it is up.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { pathsOf } from "../../src/artifacts/paths.js";
import type { Model } from "../../src/model/normalize.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { giveToMosquitto } from "../helpers/mosquitto.js";
import { netnsAvailable, startNetwork, type NetHost } from "../helpers/netns.js";
import { nginxMainConf } from "../helpers/nginx.js";
import { asPostgres, BIN, giveToPostgres, put } from "../helpers/postgres.js";
import { programsAvailable, relocate, run, sandbox, selfSignedCertificate, stopAll, waitFor, type RunResult, type Sandbox } from "../helpers/programs.js";

const SYSTEMD_SYSCTL = "/lib/systemd/systemd-sysctl";

const available =
  programsAvailable("boot order", {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    mosquitto: "mosquitto",
    nginx: "nginx",
    curl: "curl",
    ss: "iproute2",
    [`${BIN}/initdb`]: "postgresql-15",
    [`${BIN}/pg_ctl`]: "postgresql-15",
    [`${BIN}/pg_isready`]: "postgresql-client-15",
    [SYSTEMD_SYSCTL]: "systemd",
    openssl: "openssl",
  }) && netnsAvailable("boot order");

interface Rendered {
  readonly model: Model;
  readonly tree: Tree;
}

const rendered = new Map<string, Rendered>();
function fixture(name: string): Rendered {
  if (!rendered.has(name)) {
    const f = loadFixture(name);
    rendered.set(name, { model: f.model, tree: render(f.model, f.sources) });
  }
  return rendered.get(name)!;
}

function fileOf(r: Rendered, host: string, path: string): string {
  const file = r.tree.get(`${host}${path}`);
  if (!file) throw new Error(`${host} has no rendered ${path}`);
  return file.content;
}

/** A daemon of one host as rendered, started inside that host's namespace. */
interface Daemon {
  readonly label: string;
  readonly fixture: string;
  readonly host: string;
  /** A host of the same fixture that connects to it (a flow of the table). */
  readonly client: string;
  readonly port: (m: Model) => number;
  /** Starts the daemon; resolves once it has started (or rejects with its words if it exits). */
  start(ns: NetHost, box: Sandbox, r: Rendered): Promise<{ alive(): boolean; log(): string }>;
  /** Asks the daemon from the client's namespace; true when it answered. */
  answers(client: NetHost, address: string, port: number): Promise<boolean>;
}

/** Waits until a started program is either listening on `port` in its namespace or has exited. */
async function listeningOrExited(ns: NetHost, port: number, exited: () => boolean): Promise<void> {
  await waitFor(`a listener on port ${port}`, () => exited() || ns.run("ss", ["-Hltn", `sport = :${port}`]).stdout.trim() !== "");
}

function answered(r: RunResult, pattern: RegExp): boolean {
  return r.code !== null && pattern.test(r.output);
}

const redisDaemon: Daemon = {
  label: "redis-server (ha-cluster cache1)",
  fixture: "ha-cluster",
  host: "cache1",
  client: "worker1",
  port: (m) => m.redis.port,
  async start(ns, box, r) {
    const conf = box.write("redis/fragment.conf", fileOf(r, "cache1", pathsOf(r.model).redisFragment), 0o600);
    const server = ns.start("redis-server", [conf, "--dir", box.path("redis"), "--daemonize", "no"]);
    await listeningOrExited(ns, r.model.redis.port, () => server.process.exitCode !== null);
    return { alive: () => server.process.exitCode === null, log: () => server.output() };
  },
  async answers(client, address, port) {
    // No password: the NOAUTH refusal is Redis answering.
    return answered(client.run("redis-cli", ["-h", address, "-p", String(port), "ping"]), /NOAUTH|PONG/);
  },
};

const sentinelDaemon: Daemon = {
  label: "redis-sentinel (ha-sentinel data1)",
  fixture: "ha-sentinel",
  host: "data1",
  client: "app1",
  port: (m) => m.redis.sentinel_port,
  async start(ns, box, r) {
    const dir = box.path("sentinel");
    mkdirSync(dir, { recursive: true });
    // Debian's daemon, pid, log and data paths moved into the sandbox; Sentinel rewrites its file.
    const conf = fileOf(r, "data1", pathsOf(r.model).sentinelConf)
      .replace(/^daemonize .*$/m, "daemonize no")
      .replace(/^pidfile .*$/m, `pidfile ${join(dir, "sentinel.pid")}`)
      .replace(/^logfile .*$/m, 'logfile ""')
      .replace(/^dir .*$/m, `dir ${dir}`);
    const file = box.write("sentinel/sentinel.conf", conf, 0o600);
    const server = ns.start("redis-server", [file, "--sentinel"]);
    await listeningOrExited(ns, r.model.redis.sentinel_port, () => server.process.exitCode !== null);
    return { alive: () => server.process.exitCode === null, log: () => server.output() };
  },
  async answers(client, address, port) {
    return answered(client.run("redis-cli", ["-h", address, "-p", String(port), "ping"]), /NOAUTH|PONG/);
  },
};

const postgresDaemon: Daemon = {
  label: "PostgreSQL 15 (ha-cluster db1)",
  fixture: "ha-cluster",
  host: "db1",
  client: "app1",
  port: (m) => m.postgres.port,
  async start(ns, box, r) {
    const p = pathsOf(r.model);
    const dir = box.path("pg");
    const data = join(dir, "data");
    mkdirSync(dir, { recursive: true });
    giveToPostgres(dir);
    const init = asPostgres(`${BIN}/initdb`, ["-D", data, "-U", "postgres", "-A", "peer", "--no-sync", "--no-instructions"]);
    if (init.code !== 0) throw new Error(`initdb: ${init.output}`);
    const cert = selfSignedCertificate(box, "pg-server", "db1");
    giveToPostgres(cert.cert);
    giveToPostgres(cert.key);
    chmodSync(cert.key, 0o600);
    // The rendered conf.d as is (listen_addresses = 'localhost,<private address>', port), the
    // socket in the sandbox, the certificate moved to a test pair.
    const confd = put(join(dir, "conf.d.conf"), relocate(fileOf(r, "db1", p.pgConfD), { [r.model.postgres.ssl_certificate]: cert.cert, [r.model.postgres.ssl_key]: cert.key }));
    const main = readFileSync(join(data, "postgresql.conf"), "utf8");
    put(join(data, "postgresql.conf"), `${main}\ninclude '${confd}'\nunix_socket_directories = '${dir}'\nfsync = off\n`);
    const log = join(dir, "server.log");
    const started = ns.run("runuser", ["-u", "postgres", "--", `${BIN}/pg_ctl`, "-D", data, "-l", log, "-w", "-t", "30", "start"]);
    const serverLog = () => (existsSync(log) ? readFileSync(log, "utf8") : "");
    if (started.code !== 0) throw new Error(`pg_ctl start: ${started.output}\n${serverLog()}`);
    const pid = () => Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    const postmaster = pid();
    stopLater.push(() => {
      try {
        process.kill(postmaster, "SIGQUIT");
      } catch {
        // already gone
      }
    });
    return {
      alive: () => existsSync(`/proc/${postmaster}`),
      log: serverLog,
    };
  },
  async answers(client, address, port) {
    // pg_isready: exit 0 "accepting connections", 2 "no response".
    return client.run(`${BIN}/pg_isready`, ["-h", address, "-p", String(port)]).code === 0;
  },
};

const mosquittoDaemon: Daemon = {
  label: "Mosquitto (ha-cluster mqtt1)",
  fixture: "ha-cluster",
  host: "mqtt1",
  client: "app1",
  port: (m) => m.mqtt.port,
  async start(ns, box, r) {
    const p = pathsOf(r.model);
    const cert = selfSignedCertificate(box, "mqtt-server", r.model.mqtt.domain);
    const dir = box.path("mosquitto");
    mkdirSync(dir, { recursive: true });
    const mapping = {
      [p.mosquittoPasswd]: box.write("mosquitto/passwd", fileOf(r, "mqtt1", p.mosquittoPasswd), 0o600),
      [p.mosquittoAcl]: box.write("mosquitto/acl", fileOf(r, "mqtt1", p.mosquittoAcl), 0o600),
      // The device password file is the operator's: the runbook creates it empty.
      [p.mosquittoDevicePasswd]: box.write("mosquitto/devices.passwd", "", 0o600),
      [p.mosquittoDeviceAcl]: box.write("mosquitto/devices.acl", fileOf(r, "mqtt1", p.mosquittoDeviceAcl), 0o600),
      [p.mosquittoCert]: box.write("mosquitto/cert.pem", readFileSync(cert.cert, "utf8"), 0o600),
      [p.mosquittoKey]: box.write("mosquitto/key.pem", readFileSync(cert.key, "utf8"), 0o600),
    };
    // The conf.d file as the broker's whole configuration (Debian's main file adds only pid,
    // persistence and the log file), logging to stderr.
    const conf = box.write("mosquitto/mosquitto.conf", `log_dest stderr\n${relocate(fileOf(r, "mqtt1", p.mosquittoConf), mapping)}`);
    giveToMosquitto(dir);
    const server = ns.start("mosquitto", ["-c", conf]);
    await listeningOrExited(ns, r.model.mqtt.port, () => server.process.exitCode !== null);
    return { alive: () => server.process.exitCode === null, log: () => server.output() };
  },
  async answers(client, address, port) {
    // An MQTT CONNECT without credentials: the broker answers with CONNACK "not authorised".
    return answered(client.run("mosquitto_pub", ["-h", address, "-p", String(port), "-t", "boot/check", "-m", "x"]), /not authori[sz]ed/i);
  },
};

const nginxDaemon: Daemon = {
  label: "nginx behind the lb (ha-cluster app1)",
  fixture: "ha-cluster",
  host: "app1",
  client: "lb1",
  port: (m) => m.haproxy.backend_port,
  async start(ns, box, r) {
    const p = pathsOf(r.model);
    const dir = box.path("nginx");
    mkdirSync(join(dir, "logs"), { recursive: true });
    mkdirSync(join(dir, "tmp"), { recursive: true });
    const mapping = {
      [p.nginxSecurityHeaders]: box.write("nginx/security-headers.conf", fileOf(r, "app1", p.nginxSecurityHeaders)),
      [p.nginxProxyHeaders]: box.write("nginx/proxy-headers.conf", fileOf(r, "app1", p.nginxProxyHeaders)),
      [p.nginxAccessLog]: join(dir, "logs/site-access.log"),
      [p.nginxErrorLog]: join(dir, "logs/site-error.log"),
    };
    const site = box.write("nginx/site.conf", relocate(fileOf(r, "app1", p.nginxSite), mapping));
    const conf = box.write("nginx/nginx.conf", nginxMainConf(dir, site, { daemonOff: true }));
    const server = ns.start("nginx", ["-p", `${dir}/`, "-e", join(dir, "logs/error.log"), "-c", conf]);
    await listeningOrExited(ns, r.model.haproxy.backend_port, () => server.process.exitCode !== null);
    return { alive: () => server.process.exitCode === null, log: () => `${server.output()}${existsSync(join(dir, "logs/error.log")) ? readFileSync(join(dir, "logs/error.log"), "utf8") : ""}` };
  },
  async answers(client, address, port) {
    // Any HTTP answer is nginx listening (gunicorn is not running: 502).
    return answered(client.run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", `http://${address}:${port}/`]), /^\d{3}$/);
  },
};

const DAEMONS = [redisDaemon, sentinelDaemon, postgresDaemon, mosquittoDaemon, nginxDaemon];

let box: Sandbox | undefined;
const stopLater: (() => void)[] = [];

afterEach(async () => {
  await stopAll();
  while (stopLater.length > 0) stopLater.pop()!();
  box?.cleanup();
  box = undefined;
});
afterAll(stopAll);

/** The daemon's host without its address, and the client host with its own. */
async function boot(d: Daemon) {
  const r = fixture(d.fixture);
  const address = r.model.topology.hosts.find((h) => h.name === d.host)!.address;
  const clientAddress = r.model.topology.hosts.find((h) => h.name === d.client)!.address;
  const net = await startNetwork([
    { name: d.host, address, later: true },
    { name: d.client, address: clientAddress },
  ]);
  return { r, address, server: net.get(d.host)!, client: net.get(d.client)! };
}

describe.skipIf(!available)("daemons started before their private address exists (a reboot)", () => {
  it("every rendered sysctl.d file applies cleanly with systemd-sysctl, each setting read back", { timeout: 60_000 }, () => {
    box = sandbox("ncr-boot-");
    const files = fixtureNames().flatMap((name) => [...fixture(name).tree].filter(([path]) => path.endsWith(pathsOf(fixture(name).model).sysctlConf)).map(([path, f]) => ({ path: `${name}/${path}`, content: f.content })));
    expect(files.length).toBeGreaterThanOrEqual(10);
    for (const f of files) {
      const file = box.write(`sysctl/${f.path.replace(/\//g, "_")}`, f.content);
      const settings = f.content.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")).map((l) => l.split("=").map((x) => x.trim()));
      // A fresh network namespace: net.* settings there never reach the machine's own.
      const readBack = settings.map(([key]) => `sysctl -n ${key}`).join("; ");
      const r = run("unshare", ["-n", "sh", "-c", `${SYSTEMD_SYSCTL} "$1" && ${readBack}`, "sh", file]);
      expect(r.stderr, `${f.path}: systemd-sysctl complained`).toBe("");
      expect(r.code, r.output).toBe(0);
      expect(r.stdout.trim().split("\n"), f.path).toEqual(settings.map(([, value]) => value));
    }
  });

  it("without the kernel setting: redis-server exits, PostgreSQL stays on loopback only (the failure)", { timeout: 90_000 }, async () => {
    box = sandbox("ncr-boot-");
    const redis = await boot(redisDaemon);
    const started = await redisDaemon.start(redis.server, box, redis.r);
    await waitFor("redis-server to exit", () => !started.alive());
    expect(started.log()).toMatch(/Could not create server TCP listening socket .*Cannot assign requested address/);
    await stopAll();

    const pg = await boot(postgresDaemon);
    const postgres = await postgresDaemon.start(pg.server, box, pg.r);
    expect(postgres.alive(), "PostgreSQL starts anyway").toBe(true);
    expect(postgres.log()).toMatch(new RegExp(`could not bind IPv4 address "${pg.address.replace(/\./g, "\\.")}": Cannot assign requested address`));
    pg.server.addAddress();
    expect(await postgresDaemon.answers(pg.client, pg.address, pg.r.model.postgres.port), "PostgreSQL answered on an address it never bound").toBe(false);
  });

  for (const d of DAEMONS) {
    it(`${d.label}: with the rendered sysctl.d file applied as at boot, it starts and answers once the address is up`, { timeout: 90_000 }, async () => {
      box = sandbox("ncr-boot-");
      const { r, address, server, client } = await boot(d);
      const sysctl = box.write("sysctl.conf", fileOf(r, d.host, pathsOf(r.model).sysctlConf));
      // What boot runs before any service: systemd-sysctl with the host's file.
      const applied = server.run(SYSTEMD_SYSCTL, [sysctl]);
      expect(applied.code, applied.output).toBe(0);
      expect(server.run("sysctl", ["-n", "net.ipv4.ip_nonlocal_bind"]).stdout.trim()).toBe("1");

      const daemon = await d.start(server, box, r);
      expect(daemon.alive(), `${d.label} did not start before its address existed:\n${daemon.log()}`).toBe(true);
      expect(server.run("ip", ["-4", "-brief", "address", "show", "to", `${address}/32`]).stdout.trim(), "the address is not there yet").toBe("");
      server.addAddress();
      await waitFor(`${d.label} to answer on ${address}`, () => d.answers(client, address, d.port(r.model)));
      expect(daemon.alive()).toBe(true);
    });
  }
});
