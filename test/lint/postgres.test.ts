/**
 * The rendered PostgreSQL files on the installed server (15): a throwaway cluster per db host,
 * its conf.d file included (certificates moved into the sandbox), the rendered pg_hba.conf in
 * place, reachable over a Unix socket in the sandbox only. The server must start (13-17) or
 * refuse with its own message (12: wal_keep_segments), report no configuration error, run the
 * init SQL twice, and let the roles log in with their passwords (the SCRAM verifiers match).
 */
import { stepLines } from "../../src/artifacts/steps.js";
import { pbkdf2Js } from "../../src/crypto.js";
import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { pathsOf } from "../../src/artifacts/paths.js";
import { hostContexts } from "../../src/artifacts/context.js";
import { postgresFamily } from "../../src/artifacts/postgres.js";
import type { Model } from "../../src/model/normalize.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { AS_ROOT, asPostgres, BIN, giveToPostgres, INSTALLED, put, stopCluster } from "../helpers/postgres.js";
import { freePort, programsAvailable, run, sandbox, selfSignedCertificate, type Sandbox } from "../helpers/programs.js";

const available = programsAvailable("PostgreSQL lint", {
  [`${BIN}/initdb`]: `postgresql-${INSTALLED}`,
  [`${BIN}/pg_ctl`]: `postgresql-${INSTALLED}`,
  [`${BIN}/psql`]: `postgresql-client-${INSTALLED}`,
  runuser: "util-linux",
  openssl: "openssl",
});

interface Case {
  readonly label: string;
  readonly model: Model;
  readonly tree: Tree;
  readonly host: string;
  readonly secrets: { db: string; replication: string | undefined; rewind: string | undefined };
}

function file(c: Case, path: string): string | undefined {
  return c.tree.get(`${c.host}${path}`)?.content;
}

function casesOf(label: string, model: Model, tree: Tree, secrets: Case["secrets"]): Case[] {
  const p = pathsOf(model);
  return model.topology.hosts
    .filter((h) => tree.has(`${h.name}${p.pgConfD}`))
    .map((h) => ({ label: `${label} ${h.name}`, model, tree, host: h.name, secrets }));
}

function fixtureCases(): Case[] {
  return fixtureNames().flatMap((name) => {
    const f = loadFixture(name);
    const tree = render(f.model, f.sources);
    const env = f.sources.env ?? {};
    const ref = (r: unknown) => (typeof r === "object" && r !== null && "env" in r ? env[(r as { env: string }).env] : (r as string | undefined));
    return casesOf(name, f.model, tree, {
      db: ref(f.model.postgres.password)!,
      replication: ref(f.model.postgres.replication.password),
      rewind: ref(f.model.postgres.replication.rewind_password),
    });
  });
}

/** The options fixture with a password PostgreSQL must SASLprep: the init SQL falls back to cleartext. */
function nonAsciiCase(): Case[] {
  const f = loadFixture("options");
  const password = "pässwörd Ⅸ 'q' \"d\" \\ $x :y";
  const tree = render(f.model, { ...f.sources, env: { ...f.sources.env, IOT_DB_PASSWORD: password } });
  return casesOf("options (non-ASCII password)", f.model, tree, { db: password, replication: undefined, rewind: undefined });
}

const CASES = [...fixtureCases(), ...nonAsciiCase()];

let box: Sandbox;
let template: string;
let cert: { cert: string; key: string };
const started: string[] = [];

/** Stops a throwaway cluster by the PID in its postmaster.pid (immediate shutdown) and waits for it to exit. */
async function stopAllClusters(): Promise<void> {
  while (started.length > 0) await stopCluster(started.pop()!);
}

describe.skipIf(!available)("PostgreSQL 15 accepts the rendered configuration", () => {
  beforeAll(() => {
    box = sandbox("ncr-pg-");
    giveToPostgres(box.dir);
    template = box.path("template");
    const r = asPostgres(`${BIN}/initdb`, ["-D", template, "-U", "postgres", "-A", "peer", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
    if (r.code !== 0) throw new Error(`initdb failed:\n${r.output}`);
    // One self-signed pair for every cluster, readable by the server (0600 postgres).
    cert = selfSignedCertificate(box, "server", "localhost");
    giveToPostgres(cert.key);
    giveToPostgres(cert.cert);
    chmodSync(cert.key, 0o600);
  }, 60_000);
  afterEach(stopAllClusters);
  afterAll(async () => {
    await stopAllClusters();
    box?.cleanup();
  });

  it("has a db host in every fixture with hosts", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(fixtureNames().length - 1);
  });

  for (const c of CASES) {
    it(`${c.label}`, { timeout: 60_000 }, async () => {
      const model = c.model;
      const p = pathsOf(model);
      const dir = box.path(c.label.replace(/[^A-Za-z0-9]+/g, "-"));
      const data = join(dir, "data");
      mkdirSync(dir, { recursive: true });
      giveToPostgres(dir);
      const copy = run("cp", ["-a", template, data]);
      expect(copy.code, copy.output).toBe(0);

      // conf.d file, with the certificate paths moved to a self-signed pair the server can read.
      const rendered = file(c, p.pgConfD)!;
      const confd = put(join(dir, "conf.d.conf"), rendered.split(model.postgres.ssl_certificate).join(cert.cert).split(model.postgres.ssl_key).join(cert.key));
      const port = await freePort();
      const main = readFileSync(join(data, "postgresql.conf"), "utf8");
      // Unix socket in the sandbox only; listen_addresses and port after the include win
      // (fsync off: a throwaway cluster).
      const local = `listen_addresses = ''\nport = ${port}\nunix_socket_directories = '${dir}'\nfsync = off\n`;
      put(join(data, "postgresql.conf"), `${main}\ninclude '${confd}'\n${local}`);
      const hbaPath = put(join(data, "pg_hba.conf"), file(c, p.pgHba)!);

      const log = join(dir, "server.log");
      const start = () => {
        started.push(data);
        return asPostgres(`${BIN}/pg_ctl`, ["-D", data, "-l", log, "-w", "-t", "30", "start"]);
      };
      const serverLog = () => (existsSync(log) ? readFileSync(log, "utf8") : "");
      let r = start();

      if (!model.caps.postgres.walKeepSize && model.topology.standbys.length > 0) {
        // PG-01: the 12 file names wal_keep_segments, which 13+ removed: 15 must refuse to start.
        expect(r.code, `${p.pgConfD} of PostgreSQL ${model.postgres.version} started on ${INSTALLED}:\n${serverLog()}`).not.toBe(0);
        expect(serverLog()).toContain('unrecognized configuration parameter "wal_keep_segments"');
        // Everything else must still be right: check the file without that one line.
        const without = rendered.replace(/^wal_keep_segments = .*\n/m, "");
        expect(without).not.toBe(rendered);
        put(confd, without.split(model.postgres.ssl_certificate).join(cert.cert).split(model.postgres.ssl_key).join(cert.key));
        r = start();
      }
      expect(r.code, `${p.pgConfD} / ${p.pgHba}: pg_ctl start failed:\n${r.output}\n${serverLog()}`).toBe(0);

      const psqlAsPostgres = (sql: string, extra: string[] = []) => asPostgres(`${BIN}/psql`, ["-h", dir, "-p", String(port), "-d", "postgres", "-X", "-At", ...extra, "-c", sql]);
      const errors = psqlAsPostgres(
        "SELECT sourcefile || ':' || sourceline || ' ' || coalesce(name, '') || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL " +
          "UNION ALL SELECT 'pg_hba.conf:' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL",
      );
      expect(errors.code, errors.output).toBe(0);
      expect(errors.stdout.trim(), `configuration errors in ${p.pgConfD} / ${p.pgHba}:\n${errors.output}`).toBe("");

      if (model.caps.postgres.walKeepSize || model.topology.standbys.length === 0) {
        const settings = psqlAsPostgres("SELECT name || '=' || setting FROM pg_settings WHERE name IN ('ssl', 'password_encryption', 'wal_level', 'wal_log_hints', 'wal_keep_size', 'max_slot_wal_keep_size') ORDER BY name");
        expect(settings.code, settings.output).toBe(0);
        expect(settings.stdout).toContain("password_encryption=scram-sha-256");
        expect(settings.stdout).toContain(`ssl=${model.postgres.ssl ? "on" : "off"}`);
        if (model.topology.standbys.length > 0) {
          expect(settings.stdout).toContain("wal_log_hints=on");
          expect(settings.stdout).toContain("wal_level=replica");
        }
      }

      // The runbook's own check queries, pointed at the sandbox socket.
      const prefix = `runuser -u postgres -- psql -p ${model.postgres.port} `;
      const checks = postgresFamily.steps!(hostContexts(model, {}, pbkdf2Js).find((x) => x.host.name === c.host)!)
        .filter((s) => s.phase === "verify")
        .flatMap((s) => stepLines(s))
        .filter((cmd) => cmd.startsWith(prefix));
      expect(checks.length).toBeGreaterThan(0);
      for (const check of checks) {
        const sandboxed = `${AS_ROOT ? "runuser -u postgres -- " : ""}${BIN}/psql -X -h ${dir} -p ${port} -d postgres ${check.slice(prefix.length)}`;
        const out = run("bash", ["-c", sandboxed]);
        expect(out.code, `runbook check failed: ${check}\n${out.output}`).toBe(0);
        if (check.includes("pg_file_settings")) expect(out.stdout.trim(), check).toBe("");
      }

      // The init SQL, as the runbook runs it (psql reading the file on standard input), twice.
      const initSql = file(c, p.pgInitSql);
      const isPrimary = initSql !== undefined;
      if (isPrimary) {
        for (const round of [1, 2]) {
          const init = asPostgres(`${BIN}/psql`, ["-h", dir, "-p", String(port), "-X", "-v", "ON_ERROR_STOP=1", "-d", "postgres"], { input: initSql });
          expect(init.code, `${p.pgInitSql} (run ${round}) failed:\n${init.output}`).toBe(0);
          expect(init.output, `${p.pgInitSql} (run ${round})`).not.toMatch(/ERROR|WARNING/);
        }

        // Logins with the passwords, over the socket: a test-only scram line ahead of the peer lines.
        const pg = model.postgres;
        const hba = readFileSync(hbaPath, "utf8");
        const testLines = [
          `local ${pg.database} ${pg.user} scram-sha-256`,
          ...(c.secrets.replication ? [`local replication ${pg.replication.user} scram-sha-256`] : []),
          ...(c.secrets.rewind ? [`local postgres ${pg.replication.rewind_user} scram-sha-256`] : []),
        ];
        put(hbaPath, `${testLines.join("\n")}\n${hba}`);
        expect(psqlAsPostgres("SELECT pg_reload_conf()").code).toBe(0);
        await new Promise((resolve) => setTimeout(resolve, 300));

        const login = (user: string, password: string, dbname: string, sql: string, extra = "") =>
          run(`${BIN}/psql`, ["-X", "-At", "-d", `host=${dir} port=${port} user=${user} dbname=${dbname}${extra}`, "-c", sql], {
            env: { ...process.env, PGPASSWORD: password, PGPASSFILE: "/dev/null" },
          });
        const app = login(pg.user, c.secrets.db, pg.database, "SELECT current_user || ' ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database(); CREATE TABLE ncr_migration_check (id int); DROP TABLE ncr_migration_check;");
        expect(app.code, `${pg.user} cannot log in with its password after ${p.pgInitSql}:\n${app.output}`).toBe(0);
        // Owner of the database, and able to create tables in public (INST-04).
        expect(app.stdout.trim().split("\n")[0]).toBe(`${pg.user} ${pg.user}`);
        const wrong = login(pg.user, `${c.secrets.db}x`, pg.database, "SELECT 1");
        expect(wrong.code).not.toBe(0);
        expect(wrong.output).toContain("password authentication failed");

        if (c.secrets.replication) {
          const repl = login(pg.replication.user, c.secrets.replication, "replication", "IDENTIFY_SYSTEM", " replication=true");
          expect(repl.code, `${pg.replication.user} cannot open a replication connection:\n${repl.output}`).toBe(0);
        }
        if (c.secrets.rewind) {
          // The calls pg_rewind makes (libpq_source.c), as the rewind role: granted, and nothing more.
          const rewinder = pg.replication.rewind_user;
          const calls = login(
            rewinder,
            c.secrets.rewind,
            "postgres",
            "SELECT count(*) > 0 FROM pg_ls_dir('.', true, false); SELECT size > 0 FROM pg_stat_file('global/pg_control', true); SELECT length(pg_read_binary_file('global/pg_control')) > 0; SELECT length(pg_read_binary_file('global/pg_control', 0, 8, true)) = 8;",
          );
          expect(calls.code, `${rewinder} cannot call pg_rewind's functions:\n${calls.output}`).toBe(0);
          expect(calls.stdout.trim().split("\n")).toEqual(["t", "t", "t", "t"]);
          const more = login(rewinder, c.secrets.rewind, "postgres", "SELECT pg_read_file('global/pg_control')");
          expect(more.output).toMatch(/permission denied for function pg_read_file/);
          const superuser = login(rewinder, c.secrets.rewind, "postgres", "SELECT rolsuper OR rolreplication OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user");
          expect(superuser.stdout.trim()).toBe("f");
        }
      }
    });
  }
});
