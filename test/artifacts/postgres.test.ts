/**
 * The PostgreSQL family (errata section 9, PG-01..09; INST-03/04): which hosts get which files,
 * the version gates, pg_hba.conf against the topology and against the app's .env, the init
 * SQL's SCRAM verifiers (recomputed here with node:crypto), the standby's password file read
 * back the way libpq reads it, and the runbook steps.
 */
import { commandsOf, stepLines, stepPackages } from "../../src/artifacts/steps.js";
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { pgSizeMegabytes, postgresFamily, scramSafe, slotName } from "../../src/artifacts/postgres.js";
import { parseSecretsFile } from "../../src/node/files.js";
import { secretForms } from "../../src/redact.js";
import { contextOf, fixtureContexts, fixtureNames, loadFixture } from "../helpers/fixtures.js";

/** Every host of a fixture as a family sees it, optionally with the raw model changed first. */

function fileOf(ctx: HostContext, path: string) {
  return postgresFamily.files(ctx).find((f) => f.path === path);
}

/** postgresql.conf settings: name -> value with the quotes removed. */
function settings(conf: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of conf.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const m = /^([a-z_]+)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new Error(`not a setting: ${raw}`);
    const v = m[2]!.trim();
    out.set(m[1]!, v.startsWith("'") ? v.slice(1, -1).replace(/''/g, "'").replace(/\\\\/g, "\\") : v);
  }
  return out;
}

interface HbaRule {
  type: string;
  database: string;
  user: string;
  address?: string;
  method: string;
}

/** pg_hba.conf records (no quoting needed by the fixtures' names). */
function hbaRules(text: string): HbaRule[] {
  return text
    .split("\n")
    .map((l) => l.replace(/#.*$/, "").trim())
    .filter((l) => l !== "")
    .map((l) => {
      const f = l.split(/\s+/);
      return f[0] === "local"
        ? { type: f[0]!, database: f[1]!, user: f[2]!, method: f[3]! }
        : { type: f[0]!, database: f[1]!, user: f[2]!, address: f[3]!, method: f[4]! };
    });
}

/** A .pgpass line split the way libpq does (\ escapes the next character, : separates). */
function pgpassFields(line: string): string[] {
  const fields: string[] = [];
  let current = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) current += line[++i];
    else if (c === ":") {
      fields.push(current);
      current = "";
    } else current += c;
  }
  fields.push(current);
  return fields;
}

/** True when `verifier` (SCRAM-SHA-256$iter:salt$StoredKey:ServerKey) was made from `password`. */
function scramMatches(verifier: string, password: string): boolean {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(verifier);
  if (!m) return false;
  const salted = pbkdf2Sync(password, Buffer.from(m[2]!, "base64"), Number(m[1]), 32, "sha256");
  const storedKey = createHash("sha256").update(createHmac("sha256", salted).update("Client Key").digest()).digest("base64");
  const serverKey = createHmac("sha256", salted).update("Server Key").digest("base64");
  return storedKey === m[3] && serverKey === m[4];
}

function envOf(ctx: HostContext): Record<string, string> {
  const env = appFamily.files(ctx).find((f) => f.path === ctx.model.project.envFile);
  if (!env) throw new Error(`${ctx.host.name} has no .env`);
  return parseSecretsFile(env.content, env.path);
}

const ALL = fixtureNames().flatMap((name) => (loadFixture(name).model.topology.hosts.length > 0 ? fixtureContexts(name).map((c) => ({ name, ctx: c })) : []));

describe("PostgreSQL family", () => {
  it("gives db hosts conf.d + pg_hba.conf, the primary the init SQL, standbys the password file", () => {
    for (const { name, ctx } of ALL) {
      const p = pathsOf(ctx.model);
      const files = postgresFamily.files(ctx);
      const byPath = new Map(files.map((f) => [f.path, f]));
      const primary = ctx.host.roles.has("db");
      const standby = ctx.host.roles.has("db-standby");
      const where = `${name}/${ctx.host.name}`;
      if (!primary && !standby) {
        expect(files, where).toEqual([]);
        // Hosts that connect with verify-full only check that the CA is there.
        const ids = postgresFamily.steps!(ctx).map((s) => s.id);
        const verifies = ctx.model.postgres.ssl_ca !== undefined && ctx.flows.flows.some((f) => f.from.name === ctx.host.name && f.service === "postgres");
        expect(ids, where).toEqual(verifies ? ["postgres.certificates"] : []);
        continue;
      }
      expect([...byPath.keys()].sort(), where).toEqual(
        [p.pgConfD, p.pgHba, ...(primary ? [p.pgInitSql] : []), ...(standby ? [p.standbyPgpass] : [])].sort(),
      );
      expect(p.pgConfD.startsWith(`/etc/postgresql/${ctx.model.postgres.version}/main/conf.d/`)).toBe(true);
      expect(byPath.get(p.pgConfD)).toMatchObject({ mode: 0o644, owner: "postgres", group: "postgres" });
      expect(byPath.get(p.pgHba)).toMatchObject({ mode: 0o640, owner: "postgres", group: "postgres" });
      if (primary) expect(byPath.get(p.pgInitSql)).toMatchObject({ mode: 0o600, owner: "root", group: "root" });
      if (standby) expect(byPath.get(p.standbyPgpass)).toMatchObject({ mode: 0o600, owner: "postgres", group: "postgres" });
      expect(byPath.get(p.pgInitSql)?.content.startsWith("-- Generated by novacloud-render") ?? true).toBe(true);
    }
  });

  it("never mentions recovery.conf settings, trigger files or md5 (PG-03/04/05), for every version; primary_conninfo only in a standby's conf.d", () => {
    for (const version of [12, 13, 14, 15, 16, 17]) {
      for (const ctx of fixtureContexts("pg12", (raw) => (raw.postgres.version = version))) {
        // Settings and statements only: comments may explain what is left out.
        const text = postgresFamily.files(ctx)
          .flatMap((f) => f.content.split("\n"))
          .filter((l) => !/^\s*(#|--)/.test(l))
          .join("\n");
        // primary_conninfo is a setting since 12 (recovery.conf is gone): the standby's conf.d names its primary.
        const conf = settings(fileOf(ctx, pathsOf(ctx.model).pgConfD)!.content);
        expect(conf.has("primary_conninfo"), `${version} ${ctx.host.name}`).toBe(ctx.host.roles.has("db-standby"));
        const runbook = postgresFamily.steps!(ctx).flatMap((st) => stepLines(st)).filter((c) => !c.startsWith("#")).join("\n");
        for (const banned of [/^\s*standby_mode/m, /^\s*(promote_)?trigger_file/m, /\bmd5\b/, /\btrust\b/]) {
          expect(text, `${version} ${ctx.host.name}: ${banned}`).not.toMatch(banned);
        }
        expect(runbook).not.toMatch(/trigger_file|recovery\.conf|standby_mode|\bmd5\b|PASSWORD/);
      }
    }
  });

  it("emits the WAL retention setting of each version (PG-01, PG-08)", () => {
    for (const version of [12, 13, 14, 15, 16, 17]) {
      const ctxs = fixtureContexts("pg12", (raw) => {
        raw.postgres.version = version;
        raw.postgres.replication.wal_keep_size = "2GB";
        raw.postgres.replication.max_slot_wal_keep_size = "30GB";
      });
      for (const name of ["node1", "node2"]) {
        const ctx = contextOf(ctxs, name);
        const s = settings(fileOf(ctx, pathsOf(ctx.model).pgConfD)!.content);
        expect(s.get("wal_level")).toBe("replica");
        expect(s.get("hot_standby")).toBe("on");
        expect(s.get("wal_log_hints")).toBe("on");
        expect(Number(s.get("max_wal_senders"))).toBeGreaterThanOrEqual(4);
        if (version >= 13) {
          expect(s.get("wal_keep_size")).toBe("2GB");
          expect(s.get("max_slot_wal_keep_size")).toBe("30GB");
          expect(s.has("wal_keep_segments")).toBe(false);
        } else {
          // 2GB of 16MB segments.
          expect(s.get("wal_keep_segments")).toBe(String((2 * 1024) / 16));
          expect(s.has("wal_keep_size")).toBe(false);
          expect(s.has("max_slot_wal_keep_size")).toBe(false);
        }
      }
    }
    expect(pgSizeMegabytes("1GB")).toBe(1024);
    expect(pgSizeMegabytes("100kB")).toBe(1);
    expect(pgSizeMegabytes("1TB")).toBe(1024 * 1024);
  });

  it("listens on the private address only when another host connects (PG-02)", () => {
    const single = contextOf(fixtureContexts("single-node"), "node1");
    expect(settings(fileOf(single, pathsOf(single.model).pgConfD)!.content).get("listen_addresses")).toBe("localhost");
    for (const { name, ctx } of ALL) {
      const conf = fileOf(ctx, pathsOf(ctx.model).pgConfD);
      if (!conf) continue;
      const s = settings(conf.content);
      expect(s.get("password_encryption"), name).toBe("scram-sha-256");
      expect(s.get("port"), name).toBe(String(ctx.model.postgres.port));
      const t = ctx.model.topology;
      const others = [...t.django, ...(t.db ? [t.db] : []), ...t.standbys].some((h) => h.name !== ctx.host.name);
      expect(s.get("listen_addresses"), `${name}/${ctx.host.name}`).toBe(others ? `localhost,${ctx.host.address}` : "localhost");
    }
  });

  it("agrees with every app host's .env: address listened on, hba line, sslmode", () => {
    for (const { name, ctx } of ALL) {
      if (!ctx.model.topology.django.some((h) => h.name === ctx.host.name)) continue;
      const env = envOf(ctx);
      const dbCtx = contextOf(fixtureContexts(name), ctx.model.topology.db!.name);
      const p = pathsOf(ctx.model);
      const listen = settings(fileOf(dbCtx, p.pgConfD)!.content).get("listen_addresses")!.split(",");
      const rules = hbaRules(fileOf(dbCtx, p.pgHba)!.content);
      const where = `${name}: .env of ${ctx.host.name}`;
      expect(env.DB_NAME, where).toBe(ctx.model.postgres.database);
      expect(env.DB_USER, where).toBe(ctx.model.postgres.user);
      expect(env.DB_PORT, where).toBe(String(ctx.model.postgres.port));
      expect(listen.includes(env.DB_HOST === "127.0.0.1" ? "localhost" : env.DB_HOST!), where).toBe(true);
      const from = env.DB_HOST === "127.0.0.1" ? "127.0.0.1" : ctx.host.address;
      const rule = rules.find((r) => r.address === `${from}/32` && r.database === env.DB_NAME && r.user === env.DB_USER);
      expect(rule, `${where}: no pg_hba.conf line for ${from}`).toBeDefined();
      expect(rule!.method).toBe("scram-sha-256");
      if (rule!.type === "hostssl") {
        const ca = ctx.model.postgres.ssl_ca;
        expect(env.DB_SSLMODE, where).toBe(ca === undefined ? "require" : "verify-full");
        expect(env.DB_SSLROOTCERT, where).toBe(ca);
      } else {
        expect(env.DB_SSLMODE, where).toBeUndefined();
        expect(env.DB_SSLROOTCERT, where).toBeUndefined();
      }
    }
  });

  it("names every standby as a read replica in each app host's .env, and each one listens and admits that host (issue 13 item 4)", () => {
    let checked = 0;
    for (const { name, ctx } of ALL) {
      if (!ctx.model.topology.django.some((h) => h.name === ctx.host.name)) continue;
      const env = envOf(ctx);
      const standbys = ctx.model.topology.standbys;
      const where = `${name}: .env of ${ctx.host.name}`;
      if (standbys.length === 0) {
        expect(env.DB_REPLICA_HOSTS, where).toBeUndefined();
        continue;
      }
      const entries = env.DB_REPLICA_HOSTS!.split(",");
      expect(entries, where).toEqual(standbys.map((h) => `${h.name === ctx.host.name ? "127.0.0.1" : h.address}:${ctx.model.postgres.port}`));
      for (const [i, standby] of standbys.entries()) {
        const sCtx = contextOf(fixtureContexts(name), standby.name);
        const p = pathsOf(sCtx.model);
        const conf = settings(fileOf(sCtx, p.pgConfD)!.content);
        const address = entries[i]!.split(":")[0]!;
        expect(conf.get("listen_addresses")!.split(","), `${where}: ${standby.name} listens`).toContain(address === "127.0.0.1" ? "localhost" : address);
        expect(conf.get("hot_standby"), standby.name).toBe("on");
        const from = address === "127.0.0.1" ? "127.0.0.1" : ctx.host.address;
        const rule = hbaRules(fileOf(sCtx, p.pgHba)!.content).find((r) => r.address === `${from}/32` && r.database === env.DB_NAME && r.user === env.DB_USER);
        expect(rule, `${where}: no pg_hba.conf line on ${standby.name}`).toBeDefined();
        if (rule!.type === "hostssl") {
          const ca = ctx.model.postgres.ssl_ca;
          expect(env.DB_REPLICA_SSLMODE, where).toBe(ca === undefined ? "require" : "verify-full");
          expect(env.DB_REPLICA_SSLROOTCERT, where).toBe(ca);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(4);
  });

  it("keeps hot_standby_feedback off unless the model asks, in every version", () => {
    for (const version of [12, 13, 14, 15, 16, 17]) {
      for (const feedback of [undefined, true, false]) {
        const ctxs = fixtureContexts("pg12", (raw) => {
          raw.postgres.version = version;
          if (feedback !== undefined) raw.postgres.replication.hot_standby_feedback = feedback;
        });
        for (const host of ["node1", "node2"]) {
          const ctx = contextOf(ctxs, host);
          const s = settings(fileOf(ctx, pathsOf(ctx.model).pgConfD)!.content);
          expect(s.get("hot_standby_feedback"), `${version} ${host}`).toBe(feedback ? "on" : "off");
        }
      }
    }
    const single = contextOf(fixtureContexts("single-node"), "node1");
    expect(settings(fileOf(single, pathsOf(single.model).pgConfD)!.content).has("hot_standby_feedback")).toBe(false);
  });

  it("admits replication from every other member on every member, so any standby can be promoted (PG-03, PG-09)", () => {
    const ctxs = fixtureContexts("ha-cluster");
    const members = ["db1", "db2", "db3"];
    for (const name of members) {
      const ctx = contextOf(ctxs, name);
      const rules = hbaRules(fileOf(ctx, pathsOf(ctx.model).pgHba)!.content);
      const repl = rules.filter((r) => r.database === "replication");
      const expected = members.filter((m) => m !== name).map((m) => `${contextOf(ctxs, m).host.address}/32`);
      expect(repl.map((r) => r.address).sort(), name).toEqual(expected.sort());
      for (const r of repl) expect(r).toMatchObject({ type: "hostssl", user: "replicator", method: "scram-sha-256" });
      // Debian's local lines first; the backup's loopback line on every member.
      expect(rules.slice(0, 2)).toEqual([
        { type: "local", database: "all", user: "postgres", method: "peer" },
        { type: "local", database: "all", user: "all", method: "peer" },
      ]);
      expect(rules.some((r) => r.type === "host" && r.address === "127.0.0.1/32" && r.database === "novacloud_db")).toBe(true);
      expect(rules.every((r) => ["peer", "scram-sha-256"].includes(r.method))).toBe(true);
    }
  });

  it("uses host instead of hostssl and leaves ssl alone when postgres.ssl = false", () => {
    const ctx = contextOf(
      fixtureContexts("ha-cluster", (raw) => {
        raw.postgres.ssl = false;
        delete raw.postgres.ssl_ca;
      }),
      "db1",
    );
    const p = pathsOf(ctx.model);
    const s = settings(fileOf(ctx, p.pgConfD)!.content);
    expect(s.has("ssl")).toBe(false);
    const rules = hbaRules(fileOf(ctx, p.pgHba)!.content);
    expect(rules.some((r) => r.type === "hostssl")).toBe(false);
    expect(rules.filter((r) => r.type === "host").length).toBeGreaterThan(1);
    const withSsl = settings(fileOf(contextOf(fixtureContexts("options"), "iot1"), p.pgConfD.replace("/15/", "/16/").replace("novacloud", "iotcloud"))!.content);
    expect(withSsl.get("ssl")).toBe("on");
    expect(withSsl.get("ssl_cert_file")).toBe("/etc/ssl/certs/ssl-cert-snakeoil.pem");
  });

  it("quotes names pg_hba.conf would read as keywords", () => {
    const ctx = contextOf(fixtureContexts("single-node", (raw) => (raw.postgres.database = "replication")), "node1");
    const hba = fileOf(ctx, pathsOf(ctx.model).pgHba)!.content;
    expect(hba).toMatch(/^host\s+"replication"\s+novacloud\s+127\.0\.0\.1\/32\s+scram-sha-256$/m);
  });

  it("sets passwords as SCRAM verifiers of the real passwords, never in clear (INST-03)", () => {
    for (const { name, ctx } of ALL) {
      const sql = fileOf(ctx, pathsOf(ctx.model).pgInitSql)?.content;
      if (!sql) continue;
      const verifiers = [...sql.matchAll(/^ALTER ROLE (\S+) WITH .* PASSWORD '([^']+)';$/gm)].map((m) => ({ role: m[1]!, verifier: m[2]! }));
      const pg = ctx.model.postgres;
      const roles = [pg.user, ...(ctx.model.topology.standbys.length > 0 ? [pg.replication.user, pg.replication.rewind_user] : [])];
      expect(verifiers.map((v) => v.role), name).toEqual(roles);
      const passwords = { [pg.user]: ctx.secrets.dbPassword!, [pg.replication.user]: ctx.secrets.replicationPassword, [pg.replication.rewind_user]: ctx.secrets.rewindPassword };
      for (const v of verifiers) expect(scramMatches(v.verifier, passwords[v.role]!), `${name}: verifier of ${v.role}`).toBe(true);
      for (const secret of Object.values(passwords).filter((s): s is string => s !== undefined)) {
        for (const form of secretForms(secret)) expect(sql.includes(form), `${name}: a password in clear`).toBe(false);
      }
      // INST-04: owner, no GRANT ALL; \gexec for CREATE DATABASE.
      expect(sql).toMatch(/CREATE DATABASE %I OWNER %I/);
      expect(sql).toMatch(/\\gexec$/m);
      expect(sql).not.toMatch(/^\s*GRANT ALL/im);
      expect(sql).not.toMatch(/^\s*DO\s/m);
    }
  });

  it("falls back to the quoted cleartext for a password SASLprep could change, and says why", () => {
    const password = "pässwörd 'x' \\";
    expect(scramSafe(password)).toBe(false);
    expect(scramSafe("db p@ss \"dq\" 'sq' $HOME \\back\\slash #hash 100%")).toBe(true);
    const ctx = contextOf(fixtureContexts("options", undefined, { IOT_DB_PASSWORD: password }), "iot1");
    const sql = fileOf(ctx, pathsOf(ctx.model).pgInitSql)!.content;
    expect(sql).toContain(`PASSWORD 'pässwörd ''x'' \\';`);
    expect(sql).toMatch(/SASLprep/);
    expect(sql).toMatch(/^SET password_encryption = 'scram-sha-256';$/m);
  });

  it("hands the schema public to the owner before 15 only (INST-04)", () => {
    for (const version of [12, 13, 14, 15, 16, 17]) {
      const ctx = contextOf(fixtureContexts("single-node", (raw) => (raw.postgres.version = version)), "node1");
      const sql = fileOf(ctx, pathsOf(ctx.model).pgInitSql)!.content;
      const hands = /ALTER SCHEMA public OWNER TO novacloud;/.test(sql) && /REVOKE CREATE ON SCHEMA public FROM PUBLIC;/.test(sql);
      expect(hands, String(version)).toBe(version < 15);
    }
  });

  it("writes the standby's .pgpass so libpq reads back the replication and rewind passwords", () => {
    const password = "repl:pw\\with:colons \\ and #";
    const rewind = "rew:ind\\ #pw";
    const ctxs = fixtureContexts("ha-cluster", undefined, { NOVACLOUD_REPLICATION_PASSWORD: password, NOVACLOUD_REWIND_PASSWORD: rewind });
    const ctx = contextOf(ctxs, "db2");
    const lines = fileOf(ctx, pathsOf(ctx.model).standbyPgpass)!.content.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
    const parsed = lines.map(pgpassFields);
    expect(parsed).toEqual([
      ["10.0.0.31", "5432", "replication", "replicator", password],
      ["10.0.0.31", "5432", "postgres", "rewinder", rewind],
      ["10.0.0.33", "5432", "replication", "replicator", password],
      ["10.0.0.33", "5432", "postgres", "rewinder", rewind],
    ]);
  });

  it("clones a standby as the errata orders it, with a slot named after the host (PG-06, PG-08)", () => {
    const ctx = contextOf(fixtureContexts("ha-cluster"), "db2");
    const p = pathsOf(ctx.model);
    const steps = postgresFamily.steps!(ctx);
    const clone = steps.find((s) => s.id === "postgres.clone")!;
    const commands = commandsOf(clone);
    // Done once: standby.signal marks a standby, and a second run leaves the standby alone.
    expect(clone.action.kind === "commands" && clone.action.commands.every((c) => c.creates === `${p.pgDataDir}/standby.signal`)).toBe(true);
    expect(clone.after).toEqual([{ host: "db1", id: "postgres.init-sql" }]);
    expect(commands[0]).toBe(`systemctl stop ${p.pgService}`);
    // From /: find returns to its starting directory, which postgres may not enter (root's home).
    expect(commands[1]).toBe(`(cd / && runuser -u postgres -- find ${p.pgDataDir} -mindepth 1 -delete)`);
    const bb = commands[2]!.split(" ");
    const arg = (flag: string) => bb[bb.indexOf(flag) + 1];
    expect(bb.slice(0, 4)).toEqual(["runuser", "-u", "postgres", "--"]);
    expect(bb[4]).toBe(`${p.pgBinDir}/pg_basebackup`);
    // The connection as primary_conninfo has it: the primary's address, verify-full against the CA.
    const conninfo = /-d '([^']*)'/.exec(commands[2]!)![1]!;
    expect(conninfo).toBe(settings(fileOf(ctx, p.pgConfD)!.content).get("primary_conninfo"));
    expect(conninfo).toContain("host=10.0.0.31 port=5432 user=replicator");
    expect(conninfo).toContain(`passfile=${p.standbyPgpass} sslmode=verify-full sslrootcert=${ctx.model.postgres.ssl_ca}`);
    expect(arg("-D")).toBe(p.pgDataDir);
    expect(arg("-X")).toBe("stream");
    // No -R: conf.d names the primary; postgresql.auto.conf would win over it.
    expect(bb).not.toContain("-R");
    expect(bb).toContain("-C");
    expect(arg("-S")).toBe("db2");
    expect(commands[3]).toBe(`runuser -u postgres -- touch ${p.pgDataDir}/standby.signal`);
    expect(settings(fileOf(ctx, p.pgConfD)!.content).get("primary_slot_name")).toBe("db2");
    const verify = steps.filter((s) => s.phase === "verify").flatMap((s) => stepLines(s));
    expect(verify.some((c) => c.includes("pg_is_in_recovery()"))).toBe(true);
    expect(verify.some((c) => c.includes("pg_stat_wal_receiver"))).toBe(true);
    expect(verify.some((c) => c.includes("pg_promote()"))).toBe(true);

    const noSlots = contextOf(fixtureContexts("ha-cluster", (raw) => (raw.postgres.replication.slots = false)), "db2");
    const bb2 = postgresFamily.steps!(noSlots).flatMap(commandsOf).find((c) => c.includes("pg_basebackup"))!;
    expect(bb2).not.toMatch(/ -C | -S /);
    expect(settings(fileOf(noSlots, p.pgConfD)!.content).has("primary_slot_name")).toBe(false);
    expect(postgresFamily.steps!(noSlots).flatMap(commandsOf).some((c) => c.includes("pg_receivewal"))).toBe(false);

    const dashed = fixtureContexts("ha-cluster", (raw) => {
      raw.hosts["db-west-2"] = raw.hosts.db2;
      delete raw.hosts.db2;
    });
    const slot = slotName(contextOf(dashed, "db-west-2").host);
    expect(slot).toBe("db_west_2");
    expect(slot).toMatch(/^[a-z0-9_]{1,63}$/);
  });

  it("rewinds a diverged member before the clone, then streams from the primary named in conf.d (issue #9 item 11)", () => {
    const ctx = contextOf(fixtureContexts("ha-cluster"), "db3");
    const p = pathsOf(ctx.model);
    const steps = postgresFamily.steps!(ctx);
    expect(steps.filter((s) => s.phase === "database").map((s) => s.id)).toEqual(["postgres.rewind", "postgres.clone", "postgres.follow"]);
    const rewind = steps.find((s) => s.id === "postgres.rewind")!;
    if (rewind.action.kind !== "commands") throw new Error("rewind runs commands");
    // Skipped on a standby and on a cluster that is not a copy of the primary's (a new host).
    const guards = new Set(rewind.action.commands.map((c) => c.unless));
    expect(guards.size).toBe(1);
    const guard = [...guards][0]!;
    expect(guard.startsWith(`test -e ${p.pgDataDir}/standby.signal || `)).toBe(true);
    expect(guard).toContain("IDENTIFY_SYSTEM");
    expect(guard).toContain(`${p.pgBinDir}/pg_controldata ${p.pgDataDir}`);
    // The guard run for real, psql and pg_controldata stood in for: it rewinds only a copy of the
    // primary's cluster on an older timeline (the old primary); a cluster made from the same
    // image as the primary's (same identifier, same timeline) is cloned instead (the fleet).
    const dir = mkdtempSync(join(tmpdir(), "ncr-rewind-guard-"));
    try {
      writeFileSync(
        join(dir, "runuser"),
        `#!/bin/bash\nshift 3\ncase "$1" in\n  psql) [ -n "$IDENT" ] && echo "$IDENT" ;;\n` +
          `  */pg_controldata) printf 'Database system identifier:           7001\\nLatest checkpoint'"'"'s TimeLineID:       %s\\n' "$TLI" ;;\n  *) exit 9 ;;\nesac\n`,
        { mode: 0o755 },
      );
      const rewinds = (ident: string, tli: string) =>
        spawnSync("bash", ["-c", guard], { env: { PATH: `${dir}:/usr/bin:/bin`, IDENT: ident, TLI: tli } }).status !== 0;
      expect(rewinds("7001|2|0/3000000|", "1"), "old primary, behind the promoted standby").toBe(true);
      expect(rewinds("7001|1|0/3000000|", "1"), "same image, same timeline").toBe(false);
      expect(rewinds("7001|2|0/3000000|", "2"), "already on the primary's timeline").toBe(false);
      expect(rewinds("8002|2|0/3000000|", "1"), "another cluster").toBe(false);
      expect(rewinds("", "1"), "primary unreachable: pg_rewind runs and fails, nothing is wiped").toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const run = commandsOf(rewind);
    expect(run[0]).toBe(`systemctl stop ${p.pgService}`);
    expect(run[1]).toBe(
      `runuser -u postgres -- ${p.pgBinDir}/pg_rewind -D ${p.pgDataDir} --source-server 'host=10.0.0.31 port=5432 user=rewinder dbname=postgres passfile=${p.standbyPgpass} sslmode=verify-full sslrootcert=${ctx.model.postgres.ssl_ca}'`,
    );
    expect(run[2]).toBe(`runuser -u postgres -- touch ${p.pgDataDir}/standby.signal`);
    expect(rewind.after).toEqual([{ host: "db1", id: "postgres.init-sql" }]);

    const follow = commandsOf(steps.find((s) => s.id === "postgres.follow")!);
    expect(follow[0]).toMatch(new RegExp(`^runuser -u postgres -- ${p.pgBinDir}/pg_receivewal -d '[^']*' --create-slot --if-not-exists -S db3$`));
    expect(follow.slice(1)).toEqual([
      `systemctl stop ${p.pgService} && runuser -u postgres -- sed -i -E '/^[[:space:]]*primary_(conninfo|slot_name)[[:space:]]*=/d' ${p.pgDataDir}/postgresql.auto.conf`,
      `systemctl start ${p.pgService}`,
    ]);
    // Only when postgresql.auto.conf has such a line: a second run leaves a streaming standby alone.
    const edit = steps.find((s) => s.id === "postgres.follow")!.action;
    expect(edit.kind === "commands" && edit.commands[1]!.unless).toBe(
      `! grep -qE '^[[:space:]]*primary_(conninfo|slot_name)[[:space:]]*=' ${p.pgDataDir}/postgresql.auto.conf`,
    );

    // After a failover the model names db2: db3 follows it, and db1 is rewound from it.
    const after = fixtureContexts("ha-cluster", (raw) => {
      raw.hosts.db1.roles = ["db-standby"];
      raw.hosts.db2.roles = ["db"];
    });
    const db3 = contextOf(after, "db3");
    expect(settings(fileOf(db3, p.pgConfD)!.content).get("primary_conninfo")).toMatch(/^host=10\.0\.0\.32 /);
    const db1 = contextOf(after, "db1");
    expect(commandsOf(postgresFamily.steps!(db1).find((s) => s.id === "postgres.rewind")!)[1]).toContain("--source-server 'host=10.0.0.32 ");
    expect(fileOf(db1, p.pgInitSql)).toBeUndefined();
    expect(fileOf(contextOf(after, "db2"), p.pgInitSql)).toBeDefined();
  });

  it("restarts the primary, then runs the init SQL from the file as postgres, then verifies", () => {
    const ctx = contextOf(fixtureContexts("ha-cluster"), "db1");
    const p = pathsOf(ctx.model);
    const steps = postgresFamily.steps!(ctx);
    const database = steps.filter((s) => s.phase === "database").flatMap((s) => stepLines(s));
    expect(database).toEqual([
      "systemctl enable postgresql",
      "systemctl restart postgresql",
      `runuser -u postgres -- psql -p 5432 -v ON_ERROR_STOP=1 -d postgres < ${p.pgInitSql}`,
    ]);
    const verify = steps.filter((s) => s.phase === "verify").flatMap((s) => stepLines(s));
    expect(verify.some((c) => c.includes("pg_stat_replication"))).toBe(true);
    expect(verify.some((c) => c.includes("pg_file_settings") && c.includes("pg_hba_file_rules"))).toBe(true);
  });

  it("installs the distribution's PostgreSQL, or sets up apt.postgresql.org for another version", () => {
    const debian = contextOf(fixtureContexts("single-node"), "node1");
    const own = postgresFamily.steps!(debian).filter((s) => s.phase === "packages");
    expect(own.flatMap(stepPackages)).toEqual(["postgresql-15"]);
    expect(own.some((s) => /apt\.postgresql\.org/.test(s.why ?? ""))).toBe(true);
    const pg12 = contextOf(fixtureContexts("pg12"), "node1");
    const pgdg = postgresFamily.steps!(pg12).filter((s) => s.phase === "packages");
    expect(pgdg.flatMap((s) => s.packages ?? [])).toEqual([]);
    expect(pgdg.flatMap(commandsOf)).toEqual([
      "apt-get install -y postgresql-common",
      "/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y",
      "apt-get install -y postgresql-12",
    ]);
  });

  it("keeps every secret out of world-readable files and the runbook steps", () => {
    for (const { name, ctx } of ALL) {
      const secrets = Object.values(ctx.secrets).filter((s): s is string => s !== undefined);
      const forms = secrets.flatMap(secretForms);
      const steps = JSON.stringify(postgresFamily.steps!(ctx));
      for (const form of forms) expect(steps.includes(form), `${name}/${ctx.host.name}: a secret in the runbook`).toBe(false);
      for (const f of postgresFamily.files(ctx)) {
        if ((f.mode & 0o004) === 0) continue;
        for (const form of forms) expect(f.content.includes(form), `${name}/${ctx.host.name}${f.path}`).toBe(false);
      }
    }
  });
});
