/**
 * What a change to PostgreSQL's configuration requires, asked of the installed server (15): the
 * context table the --check plan reads (POSTGRES_SETTING_CONTEXTS) is pg_settings.context, and
 * the playbook's handler script (postgresReloadScript) reloads a running cluster, waits until it
 * has re-read its files, and names exactly the changed settings that wait for a restart, while
 * the others are applied by the reload. The cluster runs from the rendered conf.d file in a
 * sandbox, reached over its own socket, as the postgres OS user.
 */
import { chmodSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POSTGRES_SETTING_CONTEXTS, postgresReloadScript } from "../../src/artifacts/effects.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { loadFixture, renderFixture } from "../helpers/fixtures.js";
import { AS_ROOT, asPostgres, BIN, giveToPostgres, INSTALLED, put, stopCluster } from "../helpers/postgres.js";
import { freePort, programsAvailable, run, sandbox, selfSignedCertificate, type Sandbox } from "../helpers/programs.js";

const available = programsAvailable("PostgreSQL effects", {
  [`${BIN}/initdb`]: `postgresql-${INSTALLED}`,
  [`${BIN}/pg_ctl`]: `postgresql-${INSTALLED}`,
  psql: `postgresql-client-${INSTALLED}`,
  runuser: "util-linux",
  openssl: "openssl",
});
if (available && !AS_ROOT) {
  // The handler runs psql as the postgres OS user (runuser), which only root can do.
  if (process.env.CI === "true") throw new Error("PostgreSQL effects: the tests must run as root under CI");
  console.warn("SKIPPED PostgreSQL effects: run the tests as root (runuser -u postgres)");
}

let box: Sandbox;
let data: string;
let main: string;
let confd: string;

/** postgresql.conf: Debian-like main part, the rendered conf.d, then the sandbox's own settings. */
function writeConf(local: Record<string, string>): void {
  const lines = Object.entries(local).map(([k, v]) => `${k} = ${v}`);
  put(join(data, "postgresql.conf"), `${main}\ninclude '${confd}'\n${lines.join("\n")}\n`);
}

function sql(query: string): string {
  const pid = readFileSync(join(data, "postmaster.pid"), "utf8").split("\n");
  const r = asPostgres(`${BIN}/psql`, ["-X", "-At", "-h", pid[4]!, "-p", pid[3]!, "-d", "postgres", "-c", query]);
  if (r.code !== 0) throw new Error(r.output);
  return r.stdout.trim();
}

describe.skipIf(!available || !AS_ROOT)("PostgreSQL 15 decides what a changed setting needs", () => {
  let local: Record<string, string>;
  beforeAll(async () => {
    box = sandbox("ncr-pg-effects-");
    giveToPostgres(box.dir);
    data = box.path("data");
    const init = asPostgres(`${BIN}/initdb`, ["-D", data, "-U", "postgres", "-A", "peer", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
    if (init.code !== 0) throw new Error(`initdb failed:\n${init.output}`);
    main = readFileSync(join(data, "postgresql.conf"), "utf8");
    const cert = selfSignedCertificate(box, "server", "localhost");
    for (const f of [cert.cert, cert.key]) giveToPostgres(f);
    chmodSync(cert.key, 0o600);
    const model = loadFixture("ha-cluster").model;
    const p = pathsOf(model);
    const rendered = renderFixture("ha-cluster").get(`db1${p.pgConfD}`)!.content;
    confd = put(box.path("conf.d.conf"), rendered.split(model.postgres.ssl_certificate).join(cert.cert).split(model.postgres.ssl_key).join(cert.key));
    mkdirSync(box.path("socket"));
    giveToPostgres(box.path("socket"));
    local = { listen_addresses: "''", port: String(await freePort()), unix_socket_directories: `'${box.path("socket")}'`, fsync: "off" };
    writeConf(local);
    const start = asPostgres(`${BIN}/pg_ctl`, ["-D", data, "-l", box.path("server.log"), "-w", "-t", "30", "start"]);
    if (start.code !== 0) throw new Error(`pg_ctl start failed:\n${start.output}`);
  }, 60_000);
  afterAll(async () => {
    if (data) await stopCluster(data);
    box?.cleanup();
  });

  it("the context table is pg_settings.context", () => {
    const names = Object.keys(POSTGRES_SETTING_CONTEXTS);
    const rows = sql(`SELECT name || '=' || context FROM pg_settings WHERE name IN (${names.map((n) => `'${n}'`).join(", ")}) ORDER BY name`).split("\n");
    // wal_keep_segments is PostgreSQL 12's (removed in 13): the installed 15 does not have it.
    const expected = names.filter((n) => n !== "wal_keep_segments").sort().map((n) => `${n}=${POSTGRES_SETTING_CONTEXTS[n]}`);
    expect(rows).toEqual(expected);
  });

  const handler = () => run("bash", ["-c", postgresReloadScript(data)], { timeoutMs: 60_000 });

  it("an unchanged configuration: a reload, and nothing waits for a restart", () => {
    const r = handler();
    expect(r.code, r.output).toBe(0);
    expect(r.stdout.trim()).toBe("");
  });

  it("a changed port (context postmaster) waits for a restart; a changed wal_keep_size (sighup) is applied by the reload", async () => {
    const oldPort = local.port!;
    local = { ...local, port: String(await freePort()), wal_keep_size: "'2GB'" };
    writeConf(local);
    const r = handler();
    expect(r.code, r.output).toBe(0);
    expect(r.stdout.trim()).toBe("port");
    expect(sql("SHOW wal_keep_size")).toBe("2GB");
    // Still on the port it started with: only a restart moves it.
    expect(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[3]).toBe(oldPort);
  });

  it("fails when it cannot reach the server, instead of deciding nothing is needed", () => {
    const r = run("bash", ["-c", postgresReloadScript(box.path("no-such-cluster"))], { timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
  });
});
