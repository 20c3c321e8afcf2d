/**
 * Issue #9, items 11 and 13: a PostgreSQL standby can become the primary, the old primary comes
 * back as its standby with pg_rewind, and every client on another host verifies the server's
 * certificate against the CA the model names (sslmode=verify-full).
 *
 * The ha-cluster fixture's db1, db2 and app1 run as network namespaces with their model
 * addresses; PostgreSQL 15 listens on them as rendered (conf.d, pg_hba.conf, .pgpass), with a
 * certificate per member signed by a test CA and naming its address. Configuration lives
 * outside the data directory, as on Debian (/etc/postgresql/15/main), so neither pg_basebackup
 * nor pg_rewind copies it. The runbooks' database steps run as rendered, their paths moved into
 * the sandbox and `systemctl` standing in for the cluster's unit (pg_ctl):
 *   1. db1 (primary) and db2 (a fresh cluster, as Debian's package makes it) follow their
 *      runbooks: db2 is cloned and streams from db1 over verify-full; a second run changes
 *      nothing;
 *   2. the app's .env connects to db1 with its DB_SSLMODE/DB_SSLROOTCERT; a name the
 *      certificate does not carry, or another CA, is refused; it reads from db2, the first of
 *      DB_REPLICA_HOSTS, with DB_REPLICA_SSLMODE/DB_REPLICA_SSLROOTCERT, and cannot write there;
 *   3. db2 is promoted with the failover step's command while db1 still takes a write (the two
 *      diverge); the model is changed (db2 "db", db1 "db-standby") and rendered again, and the
 *      new runbooks run: db1 is rewound as the rewind role and streams from db2, with db2's
 *      writes and without its own diverged one.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pathsOf, type Paths } from "../../src/artifacts/paths.js";
import { stepLines, type Step } from "../../src/artifacts/steps.js";
import { parseModel } from "../../src/model/parse.js";
import type { Model } from "../../src/model/normalize.js";
import { renderHosts, type RenderedHost } from "../../src/render.js";
import { loadFixture } from "../helpers/fixtures.js";
import { netnsAvailable, startNetwork, type NetHost } from "../helpers/netns.js";
import { BIN, giveToPostgres, put, stopCluster } from "../helpers/postgres.js";
import { programsAvailable, relocate, run, sandbox, stopAll, waitFor, type RunResult, type Sandbox } from "../helpers/programs.js";

const available =
  programsAvailable("PostgreSQL failover", {
    [`${BIN}/initdb`]: "postgresql-15",
    [`${BIN}/pg_ctl`]: "postgresql-15",
    [`${BIN}/pg_rewind`]: "postgresql-15",
    [`${BIN}/pg_basebackup`]: "postgresql-15",
    [`${BIN}/pg_receivewal`]: "postgresql-15",
    [`${BIN}/pg_controldata`]: "postgresql-15",
    psql: "postgresql-client",
    runuser: "util-linux",
    openssl: "openssl",
  }) && netnsAvailable("PostgreSQL failover");

const fixture = loadFixture("ha-cluster");
const SECRETS = fixture.sources.env!;

/** The ha-cluster model, optionally with db2 promoted (db1 its standby): the model after a failover. */
function deployment(promoted: boolean): { model: Model; hosts: RenderedHost[] } {
  const raw = parseToml(readFileSync(fixture.modelPath, "utf8")) as Record<string, any>;
  if (promoted) {
    raw.hosts.db1.roles = ["db-standby"];
    raw.hosts.db2.roles = ["db"];
  }
  const parsed = parseModel(raw);
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  return { model: parsed.model, hosts: renderHosts(parsed.model, fixture.sources) };
}

let box: Sandbox;
let net: Map<string, NetHost>;
const before = available ? deployment(false) : undefined;
const after = available ? deployment(true) : undefined;
const p: Paths | undefined = before && pathsOf(before.model);
const clusters: string[] = [];

/** Where a member keeps what Debian keeps in /etc/postgresql/15/main and /var/lib/postgresql. */
const dirs = (host: string) => {
  const root = box.path(host);
  return { root, etc: join(root, "etc"), data: join(root, "data"), run: join(root, "run"), log: join(root, "server.log"), pgpass: join(root, "pgpass"), ssl: join(root, "ssl") };
};

/** Paths in a host's rendered files and commands, moved into the sandbox. */
function mapping(host: string): Record<string, string> {
  const d = dirs(host);
  const pg = before!.model.postgres;
  return {
    [p!.pgDataDir]: d.data,
    [p!.standbyPgpass]: d.pgpass,
    [p!.pgInitSql]: join(d.root, "init.sql"),
    [pg.ssl_certificate]: join(d.ssl, "server.crt"),
    [pg.ssl_key]: join(d.ssl, "server.key"),
    [pg.ssl_ca!]: box.path("ca.crt"),
  };
}

function fileOf(hosts: RenderedHost[], host: string, path: string): string | undefined {
  return hosts.find((h) => h.ctx.host.name === host)!.files.find((f) => f.path === path)?.content;
}

function stepsOf(hosts: RenderedHost[], host: string): readonly Step[] {
  return hosts.find((h) => h.ctx.host.name === host)!.steps;
}

/** Installs a member's rendered PostgreSQL files, as the runbook's files step does. */
function install(hosts: RenderedHost[], host: string): void {
  const d = dirs(host);
  const map = mapping(host);
  const confd = put(join(d.etc, "conf.d.conf"), relocate(fileOf(hosts, host, p!.pgConfD)!, map), 0o644);
  put(join(d.etc, "pg_hba.conf"), fileOf(hosts, host, p!.pgHba)!, 0o640);
  // Debian's postgresql.conf: initdb's defaults, the data directory elsewhere, conf.d last.
  const main = readFileSync(join(d.etc, "postgresql.initdb.conf"), "utf8");
  put(
    join(d.etc, "postgresql.conf"),
    `${main}\ndata_directory = '${d.data}'\nhba_file = '${join(d.etc, "pg_hba.conf")}'\nident_file = '${join(d.etc, "pg_ident.conf")}'\nunix_socket_directories = '${d.run}'\nfsync = off\nlog_connections = on\ninclude '${confd}'\n`,
    0o644,
  );
  const pgpass = fileOf(hosts, host, p!.standbyPgpass);
  if (pgpass !== undefined) put(d.pgpass, pgpass, 0o600);
  const init = fileOf(hosts, host, p!.pgInitSql);
  if (init !== undefined) writeFileSync(join(d.root, "init.sql"), init, { mode: 0o600 });
}

/** A fresh cluster, as installing postgresql-15 makes it, with `systemctl` for its unit. */
function createCluster(host: string): void {
  const d = dirs(host);
  for (const dir of [d.root, d.etc, d.run, d.ssl]) {
    mkdirSync(dir, { recursive: true });
    giveToPostgres(dir);
  }
  const init = run("runuser", ["-u", "postgres", "--", `${BIN}/initdb`, "-D", d.data, "-U", "postgres", "-A", "peer", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
  expect(init.code, init.output).toBe(0);
  put(join(d.etc, "postgresql.initdb.conf"), readFileSync(join(d.data, "postgresql.conf"), "utf8"), 0o644);
  put(join(d.etc, "pg_ident.conf"), "", 0o640);
  clusters.push(d.data);
  // The unit: systemctl stop/start/restart of the cluster, pg_ctl underneath (in the caller's
  // network namespace); enable and daemon-reload change nothing here.
  const ctl = (action: string) =>
    `runuser -u postgres -- ${BIN}/pg_ctl -D ${d.data} -o "-c config_file=${join(d.etc, "postgresql.conf")}" -l ${d.log} -w -t 60 ${action}`;
  const shim = [
    "#!/bin/bash",
    "set -eu",
    'action=$1; shift',
    'for unit in "$@"; do case "$unit" in postgresql|postgresql.service|postgresql@15-main|postgresql@15-main.service) ;; *) echo "systemctl: unknown unit $unit" >&2; exit 5;; esac; done',
    `running() { runuser -u postgres -- ${BIN}/pg_ctl -D ${d.data} status >/dev/null 2>&1; }`,
    'case "$action" in',
    "  enable|daemon-reload) ;;",
    `  stop) if running; then ${ctl("-m fast stop")}; fi ;;`,
    `  start) running || ${ctl("start")} ;;`,
    `  restart) if running; then ${ctl("-m fast stop")}; fi; ${ctl("start")} ;;`,
    '  *) echo "systemctl: $action?" >&2; exit 1 ;;',
    "esac",
    "",
  ].join("\n");
  mkdirSync(join(d.root, "bin"), { recursive: true });
  writeFileSync(join(d.root, "bin", "systemctl"), shim, { mode: 0o755 });
}

/** A certificate for a member from the test CA: its address as IP subjectAltName and common name, its name as DNS. */
function issue(host: string, address: string, ca: { key: string; cert: string }, dir: string): void {
  const key = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const ext = join(dir, "ext");
  writeFileSync(ext, `subjectAltName=IP:${address},DNS:${host}\n`);
  expect(run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${address}`, "-keyout", key, "-out", csr]).code).toBe(0);
  const signed = run("openssl", ["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", join(dir, "server.crt")]);
  expect(signed.code, signed.output).toBe(0);
  giveToPostgres(key);
  giveToPostgres(join(dir, "server.crt"));
  chmodSync(key, 0o600);
}

function ca(name: string): { key: string; cert: string } {
  const key = box.path(`${name}.key`);
  const cert = box.path(`${name}.crt`);
  const r = run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${name}`, "-keyout", key, "-out", cert]);
  expect(r.code, r.output).toBe(0);
  chmodSync(cert, 0o644);
  return { key, cert };
}

/** Runs a runbook line on a member: its paths in the sandbox, its systemctl, its socket for psql -p. */
function runLine(host: string, line: string): RunResult {
  const d = dirs(host);
  const command = relocate(line, mapping(host));
  return net.get(host)!.run("bash", ["-c", command], { env: { ...process.env, PATH: `${join(d.root, "bin")}:${process.env.PATH}`, PGHOST: d.run }, timeoutMs: 120_000 });
}

/** Runs every line of a host's PostgreSQL database steps, in runbook order, each with its guard. */
function runDatabaseSteps(hosts: RenderedHost[], host: string): string[] {
  const ran: string[] = [];
  for (const step of stepsOf(hosts, host).filter((s) => s.phase === "database" && s.id.startsWith("postgres."))) {
    for (const line of stepLines(step)) {
      const r = runLine(host, line);
      expect(r.code, `${host} ${step.id}: ${line}\n${r.output}\n${readLog(host)}`).toBe(0);
    }
    ran.push(step.id);
  }
  return ran;
}

function readLog(host: string): string {
  const log = dirs(host).log;
  return existsSync(log) ? readFileSync(log, "utf8").split("\n").slice(-30).join("\n") : "";
}

/** SQL as postgres over the member's socket. */
function psql(host: string, query: string, database: string) {
  return net.get(host)!.run("runuser", ["-u", "postgres", "--", `${BIN}/psql`, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", dirs(host).run, "-p", "5432", "-d", database, "-c", query]);
}

function sql(host: string, query: string, database = "postgres"): string {
  const r = psql(host, query, database);
  expect(r.code, `${host}: ${query}\n${r.output}`).toBe(0);
  return r.stdout.trim();
}

/** Waits until a query on a member returns `expected` (replication states settle within seconds). */
async function eventually(host: string, query: string, expected: string, database = "postgres"): Promise<void> {
  let last = "";
  try {
    // A query that fails (a table not replayed yet, a standby still starting) is "not yet".
    const attempt = () => {
      const r = psql(host, query, database);
      last = r.code === 0 ? r.stdout.trim() : `(exit ${r.code}) ${r.output.trim()}`;
      return r.code === 0 && last === expected;
    };
    await waitFor(`${host}: ${query} = ${expected}`, attempt, 30_000);
  } catch (error) {
    throw new Error(`${(error as Error).message} (last: ${JSON.stringify(last)})\n${readLog(host)}`);
  }
}

/** psql over TCP from app1 as the app's role, with the rendered .env's connection settings. */
/** The DB_* variables of app1's .env. */
function appDbEnv(): Record<string, string> {
  return Object.fromEntries(
    fileOf(before!.hosts, "app1", before!.model.project.envFile)!
      .split("\n")
      .filter((l) => /^DB_[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/**
 * psql on app1 to the first read replica, with what the .env gives a Django router
 * (DB_REPLICA_HOSTS, DB_REPLICA_SSLMODE, DB_REPLICA_SSLROOTCERT and the app's role).
 */
function fromAppToReplica(query: string): RunResult {
  const env = appDbEnv();
  const [host, port] = env.DB_REPLICA_HOSTS!.split(",")[0]!.split(":");
  const libpq = {
    PGHOST: host!,
    PGPORT: port!,
    PGUSER: env.DB_USER!,
    PGDATABASE: env.DB_NAME!,
    PGPASSWORD: SECRETS.NOVACLOUD_DB_PASSWORD!,
    PGSSLMODE: env.DB_REPLICA_SSLMODE!,
    PGSSLROOTCERT: relocate(env.DB_REPLICA_SSLROOTCERT!, mapping("app1")),
    PGPASSFILE: "/dev/null",
  };
  return net.get("app1")!.run(`${BIN}/psql`, ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", query], { env: { ...process.env, ...libpq } });
}

function fromApp(overrides: Record<string, string> = {}): RunResult {
  const env = appDbEnv();
  const libpq = {
    PGHOST: env.DB_HOST!,
    PGPORT: env.DB_PORT!,
    PGUSER: env.DB_USER!,
    PGDATABASE: env.DB_NAME!,
    PGPASSWORD: SECRETS.NOVACLOUD_DB_PASSWORD!,
    PGSSLMODE: env.DB_SSLMODE!,
    PGSSLROOTCERT: relocate(env.DB_SSLROOTCERT!, mapping("app1")),
    PGPASSFILE: "/dev/null",
    ...overrides,
  };
  return net.get("app1")!.run(`${BIN}/psql`, ["-X", "-At", "-c", "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"], { env: { ...process.env, ...libpq } });
}

beforeAll(async () => {
  if (!available) return;
  box = sandbox("ncr-failover-");
  giveToPostgres(box.dir);
  const addresses = Object.fromEntries(before!.model.topology.hosts.map((h) => [h.name, h.address]));
  net = await startNetwork(["db1", "db2", "app1"].map((name) => ({ name, address: addresses[name]! })));
  const authority = ca("ca");
  for (const host of ["db1", "db2"]) {
    createCluster(host);
    issue(host, addresses[host]!, authority, dirs(host).ssl);
  }
}, 120_000);

afterAll(async () => {
  if (!available) return;
  for (const data of clusters) await stopCluster(data);
  await stopAll();
  box.cleanup();
}, 120_000);

describe.skipIf(!available)("PostgreSQL failover and verify-full between the hosts (ha-cluster: db1, db2, app1)", () => {
  it("builds db1 and db2 as their runbooks say: db2 is cloned and streams from db1 over verify-full, and a second run changes nothing", { timeout: 180_000 }, async () => {
    install(before!.hosts, "db1");
    expect(runDatabaseSteps(before!.hosts, "db1")).toEqual(["postgres.restart", "postgres.init-sql"]);
    // db2: the cluster the package made, running, then the rendered files and the runbook.
    install(before!.hosts, "db2");
    expect(runLine("db2", "systemctl start postgresql").code).toBe(0);
    expect(runDatabaseSteps(before!.hosts, "db2")).toEqual(["postgres.rewind", "postgres.clone", "postgres.follow"]);
    expect(existsSync(join(dirs("db2").data, "standby.signal"))).toBe(true);

    await eventually("db2", "SELECT status, sender_host FROM pg_stat_wal_receiver", "streaming|10.0.0.31");
    // Over TLS, verified: the walsender's connection is SSL and db1 names the standby.
    await eventually("db1", "SELECT r.application_name, r.state, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)", "db2|streaming|t");
    expect(sql("db2", "SELECT slot_name FROM pg_replication_slots")).toBe("");
    await eventually("db1", "SELECT slot_name, active FROM pg_replication_slots", "db2|t");

    const db = before!.model.postgres.database;
    sql("db1", "CREATE TABLE failover (v text) ; INSERT INTO failover VALUES ('before the failover')", db);
    await eventually("db2", "SELECT string_agg(v, ',') FROM failover", "before the failover", db);

    // A second run of both runbooks: the clone is skipped, the standby streams again.
    runDatabaseSteps(before!.hosts, "db1");
    runDatabaseSteps(before!.hosts, "db2");
    await eventually("db2", "SELECT status FROM pg_stat_wal_receiver", "streaming");
    expect(sql("db2", "SELECT string_agg(v, ',') FROM failover", db)).toBe("before the failover");
  });

  it("the app's .env connects to db1 with verify-full; a name outside the certificate or another CA is refused", { timeout: 60_000 }, () => {
    const ok = fromApp();
    expect(ok.code, ok.output).toBe(0);
    expect(ok.stdout.trim()).toBe(`${before!.model.postgres.user}|t`);
    // By the host name the certificate also carries (hostaddr: no DNS here).
    const byName = fromApp({ PGHOST: "db1", PGHOSTADDR: "10.0.0.31" });
    expect(byName.code, byName.output).toBe(0);
    const wrongName = fromApp({ PGHOST: "db2", PGHOSTADDR: "10.0.0.31" });
    expect(wrongName.code).not.toBe(0);
    expect(wrongName.output).toMatch(/does not match host name "db2"/);
    const otherCa = ca("other-ca");
    const wrongCa = fromApp({ PGSSLROOTCERT: otherCa.cert });
    expect(wrongCa.code).not.toBe(0);
    expect(wrongCa.output).toMatch(/certificate verify failed/);
    // require (the default without postgres.ssl_ca) would have taken any certificate.
    expect(fromApp({ PGSSLMODE: "require", PGSSLROOTCERT: box.path("no-such-ca.crt") }).code).toBe(0);
  });

  it("the app reads from the replica its .env names (db2, over verify-full), and a write there is refused", { timeout: 60_000 }, async () => {
    const { user, database } = before!.model.postgres;
    // The table was made by postgres; the app may read it (granted on db1, replicated to db2).
    sql("db1", `GRANT SELECT ON failover TO ${user}`, database);
    await eventually("db2", `SELECT has_table_privilege('${user}', 'failover', 'SELECT')`, "t", database);
    const env = appDbEnv();
    const replicas = before!.model.topology.standbys.map((h) => `${h.address}:${before!.model.postgres.port}`);
    expect(env.DB_REPLICA_HOSTS).toBe(replicas.join(","));
    expect(replicas[0]).toBe("10.0.0.32:5432"); // db2, the standby running here
    const read = fromAppToReplica("SELECT current_user, ssl, pg_is_in_recovery(), (SELECT string_agg(v, ',') FROM failover) FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    expect(read.code, read.output).toBe(0);
    expect(read.stdout.trim()).toBe(`${user}|t|t|before the failover`);
    const write = fromAppToReplica("INSERT INTO failover VALUES ('on a replica')");
    expect(write.code).not.toBe(0);
    expect(write.output).toMatch(/read-only transaction/);
  });

  it("promotes db2, and the new runbooks rewind db1 into its standby: db2's writes arrive, db1's diverged one is gone", { timeout: 180_000 }, async () => {
    const db = before!.model.postgres.database;
    // The failover step's command, on db2.
    const failover = stepsOf(before!.hosts, "db2").find((s) => s.id === "postgres.failover")!;
    const promote = stepLines(failover).map((l) => l.replace(/^#\s*/, "")).find((l) => l.includes("pg_promote()"))!;
    expect(runLine("db2", promote).code).toBe(0);
    await eventually("db2", "SELECT pg_is_in_recovery()", "f");
    // db1 does not know yet: a write there is what a rewind must undo.
    sql("db1", "INSERT INTO failover VALUES ('only on the old primary')", db);
    sql("db2", "INSERT INTO failover VALUES ('on the new primary')", db);

    // The model after the failover, rendered and installed; then the runbooks, db2 first.
    install(after!.hosts, "db2");
    // What the runbook said before (issue #9, item 11): pg_rewind as postgres, which pg_hba.conf rejects.
    expect(runLine("db1", "systemctl stop postgresql").code).toBe(0);
    const asSuperuser = runLine("db1", `runuser -u postgres -- ${BIN}/pg_rewind -D ${p!.pgDataDir} --source-server 'host=10.0.0.32 port=5432 user=postgres dbname=postgres sslmode=require'`);
    expect(asSuperuser.code).not.toBe(0);
    expect(asSuperuser.output).toMatch(/no pg_hba\.conf entry for host "10\.0\.0\.31", user "postgres", database "postgres"/);
    expect(runDatabaseSteps(after!.hosts, "db2")).toEqual(["postgres.restart", "postgres.init-sql"]);
    install(after!.hosts, "db1");
    expect(runDatabaseSteps(after!.hosts, "db1")).toEqual(["postgres.rewind", "postgres.clone", "postgres.follow"]);
    expect(readLog("db1")).not.toMatch(/FATAL/);

    await eventually("db1", "SELECT status, sender_host FROM pg_stat_wal_receiver", "streaming|10.0.0.32");
    expect(sql("db1", "SELECT pg_is_in_recovery()")).toBe("t");
    await eventually("db2", "SELECT r.application_name, r.state, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)", "db1|streaming|t");
    await eventually("db2", "SELECT slot_name, active FROM pg_replication_slots", "db1|t");
    // The old primary keeps no slot of its former standby (it would pin WAL there).
    expect(sql("db1", "SELECT slot_name FROM pg_replication_slots")).toBe("");
    // pg_rewind connected to db2 as the rewind role, over TLS, from db1's address.
    const rewinder = after!.model.postgres.replication.rewind_user;
    expect(readFileSync(dirs("db2").log, "utf8")).toMatch(new RegExp(`connection authorized: user=${rewinder} database=postgres SSL enabled`));
    sql("db2", "INSERT INTO failover VALUES ('after the rewind')", db);
    await eventually("db1", "SELECT string_agg(v, ',' ORDER BY v) FROM failover", "after the rewind,before the failover,on the new primary", db);

    // Running db1's runbook again changes nothing: no rewind, no clone, still streaming.
    expect(runDatabaseSteps(after!.hosts, "db1")).toEqual(["postgres.rewind", "postgres.clone", "postgres.follow"]);
    await eventually("db1", "SELECT status, sender_host FROM pg_stat_wal_receiver", "streaming|10.0.0.32");
    expect(sql("db1", "SELECT string_agg(v, ',' ORDER BY v) FROM failover", db)).toBe("after the rewind,before the failover,on the new primary");
  });
});
