/**
 * The backup job run by the real programs (issue #9 items 7, 10, 11):
 * - on a real PostgreSQL 15 primary and a streaming standby cloned from it: the standby's job
 *   exits 0 without a dump and says why, the primary's dumps, and the standby dumps once
 *   promoted (pg_is_in_recovery());
 * - with the real GNU tar on an upload being appended while it is archived: tar exits 1 ("file
 *   changed as we read it"), the archive and the database dump are kept, the run succeeds with
 *   a warning; with a media directory tar cannot read (exit 2) the dump is still kept and the
 *   run fails, naming the media;
 * - media in S3: the real rclone copies the bucket from a small S3 endpoint served by this test
 *   (ListObjects and GET, recording each request's signature) with the keys from the app's
 *   .env, and the copy is archived; a bucket it cannot read fails the run;
 * - the timer: `systemd-analyze calendar` computes the OnCalendar= times, which must be the
 *   times cron fires the model's schedule (a cron reader below, Vixie cron's rules), and every
 *   rendered backup service and timer passes `systemd-analyze verify` and `security --offline`.
 *
 * Scripts run as root against sandboxes (libpq checks the password file's mode, not its
 * owner); paths and the PostgreSQL port are relocated into the sandbox. age is a stand-in that
 * records its arguments.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import { backupFamily } from "../../src/artifacts/backup.js";
import { onCalendar } from "../../src/artifacts/calendar.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { sqlLiteral } from "../../src/quote.js";
import { fixtureNames, loadFixture, renderedAcrossFixtures } from "../helpers/fixtures.js";
import { asPostgres, BIN, giveToPostgres, stopCluster } from "../helpers/postgres.js";
import { freePort, IN_CI, programsAvailable, relocate, run, sandbox, startServer, stopAll, waitFor, type RunResult, type Sandbox } from "../helpers/programs.js";
import { contextOf, hostContexts } from "../artifacts/systemd-scripts-support.js";

const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  if (IN_CI) throw new Error("backup lint: the script runs need root (CI runs as root)");
  console.warn("SKIPPED backup runs: not root");
}
const pgTools =
  isRoot &&
  programsAvailable("backup against PostgreSQL", {
    [`${BIN}/initdb`]: "postgresql-15",
    [`${BIN}/pg_basebackup`]: "postgresql-15",
    [`${BIN}/pg_dump`]: "postgresql-client-15",
    [`${BIN}/psql`]: "postgresql-client-15",
    tar: "tar",
    flock: "util-linux",
  });
const rcloneTools = isRoot && programsAvailable("backup of S3 media", { rclone: "rclone", tar: "tar", flock: "util-linux" });
const systemdTools = programsAvailable("backup units", { "systemd-analyze": "systemd" });

const boxes: Sandbox[] = [];
function box(prefix: string): Sandbox {
  const b = sandbox(`ncr-${prefix}-`);
  boxes.push(b);
  return b;
}
const dataDirs: string[] = [];
afterEach(async () => {
  await stopAll();
});
afterAll(async () => {
  await stopAll();
  for (const dir of dataDirs.reverse()) await stopCluster(dir);
  for (const b of boxes) b.cleanup();
});

function rendered(ctx: HostContext, path: string): string {
  const f = backupFamily.files(ctx).find((s) => s.path === path);
  if (!f) throw new Error(`${ctx.host.name} has no ${path}`);
  return f.content;
}

/** The host's backup.sh and .pgpass in the sandbox: paths relocated, PostgreSQL on `port`. */
function install(ctx: HostContext, b: Sandbox, port?: number): string {
  const p = pathsOf(ctx.model);
  const model = ctx.model;
  const mapping = {
    [model.backup.dir]: b.path("backups"),
    [p.backupPgpass]: b.path("backup.pgpass"),
    [model.project.root]: b.path("app"),
    // The tests put the app's .env beside the code in the sandbox.
    [model.project.envFile]: b.path("app/.env"),
    // node_exporter's textfile directory (monitored models).
    [p.metricsDir]: b.path("metrics"),
  };
  let script = relocate(rendered(ctx, p.backupScript), mapping);
  if (port !== undefined) {
    script = script.replace(`readonly DB_PORT=${model.postgres.port}\n`, `readonly DB_PORT=${port}\n`);
    expect(script).toContain(`readonly DB_PORT=${port}\n`);
    const pgpass = rendered(ctx, p.backupPgpass).replace(`127.0.0.1:${model.postgres.port}:`, `127.0.0.1:${port}:`);
    b.write("backup.pgpass", pgpass, 0o600);
  }
  if (!existsSync(b.path("backups"))) mkdirSync(b.path("backups"), { mode: 0o700 });
  if (!existsSync(b.path("metrics"))) mkdirSync(b.path("metrics"), { mode: 0o755 });
  // No age needed: a stand-in that records its arguments and writes the output file.
  b.write("bin/age", '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done\necho encrypted > "$out"\n', 0o755);
  return b.write("backup.sh", script, 0o755);
}

const pathFor = (b: Sandbox) => `${b.path("bin")}:${BIN}:${process.env.PATH}`;

/**
 * The environment systemd gives the service: a PATH and little else (nothing of this machine's,
 * such as an AWS_CA_BUNDLE that would change what rclone does).
 */
const serviceEnv = (b: Sandbox) => ({ PATH: pathFor(b), LC_ALL: "C", HOME: b.dir });

function backup(b: Sandbox, script: string): RunResult {
  return run("bash", [script], { env: serviceEnv(b), timeoutMs: 120_000 });
}

/** run() without blocking the event loop, so a server in this process can answer the script. */
function backupAsync(b: Sandbox, script: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script], { env: serviceEnv(b), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr, output: `${stdout}${stderr}` }));
  });
}

/** The backup directory's files, timestamps replaced by TS. */
const kept = (b: Sandbox) =>
  readdirSync(b.path("backups"))
    .filter((f) => !f.startsWith("."))
    .map((f) => f.replace(/\d{8}T\d{6}Z/, "TS"))
    .sort();
const newest = (b: Sandbox, kind: string) =>
  join(b.path("backups"), readdirSync(b.path("backups")).filter((f) => f.includes(`_${kind}_`)).sort().at(-1)!);

// --- PostgreSQL ---------------------------------------------------------------------------------

interface Cluster {
  readonly data: string;
  readonly socket: string;
  readonly port: number;
}

async function startCluster(b: Sandbox, name: string, port: number, data = b.path(name, "data")): Promise<Cluster> {
  const socket = b.path(name, "socket");
  mkdirSync(socket, { recursive: true, mode: 0o700 });
  giveToPostgres(b.path(name));
  giveToPostgres(socket);
  dataDirs.push(data);
  const r = asPostgres(`${BIN}/pg_ctl`, ["-D", data, "-l", b.path(name, "server.log"), "-w", "-t", "60", "start", "-o", `-p ${port} -k ${socket} -c listen_addresses=127.0.0.1 -c fsync=off`]);
  if (r.code !== 0) throw new Error(`pg_ctl start ${name}:\n${r.output}\n${existsSync(b.path(name, "server.log")) ? readFileSync(b.path(name, "server.log"), "utf8") : ""}`);
  return { data, socket, port };
}

function psql(c: Cluster, sql: string, database = "postgres"): RunResult {
  return asPostgres(`${BIN}/psql`, ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", c.socket, "-p", String(c.port), "-U", "postgres", "-d", database, "-c", sql]);
}

/** A fresh primary with the app's role and database (scram over TCP, trust on the socket). */
async function primaryFor(ctx: HostContext, b: Sandbox): Promise<Cluster> {
  const data = b.path("primary", "data");
  mkdirSync(data, { recursive: true, mode: 0o700 });
  giveToPostgres(b.path("primary"));
  giveToPostgres(data);
  const init = asPostgres(`${BIN}/initdb`, ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"]);
  if (init.code !== 0) throw new Error(`initdb:\n${init.output}`);
  const c = await startCluster(b, "primary", await freePort(), data);
  const pg = ctx.model.postgres;
  for (const sql of [`CREATE ROLE ${pg.user} LOGIN PASSWORD ${sqlLiteral(ctx.secrets.dbPassword!)}`, `CREATE DATABASE ${pg.database} OWNER ${pg.user}`]) {
    const r = psql(c, sql);
    if (r.code !== 0) throw new Error(`${sql}: ${r.output}`);
  }
  const r = psql(c, "CREATE TABLE devices (id int); INSERT INTO devices VALUES (1); ALTER TABLE devices OWNER TO " + pg.user, pg.database);
  if (r.code !== 0) throw new Error(r.output);
  return c;
}

describe.skipIf(!pgTools)("backup on a PostgreSQL primary and its standby (issue #9 item 11)", () => {
  const contexts = hostContexts("ha-cluster");
  const primaryCtx = contextOf(contexts, "db1");
  const standbyCtx = contextOf(contexts, "db2");
  let b: Sandbox;
  let primary: Cluster;
  let standby: Cluster;

  beforeAll(async () => {
    b = box("backup-pg");
    primary = await primaryFor(primaryCtx, b);
    // The standby as the runbook makes one: pg_basebackup -R (here over the socket, as postgres).
    const data = b.path("standby", "data");
    mkdirSync(b.path("standby"), { recursive: true });
    giveToPostgres(b.path("standby"));
    const clone = run("runuser", ["-u", "postgres", "--", `${BIN}/pg_basebackup`, "-h", primary.socket, "-p", String(primary.port), "-U", "postgres", "-D", data, "-R", "-X", "stream", "--checkpoint=fast"], { timeoutMs: 90_000 });
    if (clone.code !== 0) throw new Error(`pg_basebackup (exit ${clone.code}):\n${clone.output}`);
    standby = await startCluster(b, "standby", await freePort(), data);
    expect(psql(standby, "SELECT pg_is_in_recovery()").stdout.trim()).toBe("t");
  }, 120_000);

  it("every cluster member has the job, the same script on each", () => {
    const p = pathsOf(primaryCtx.model);
    for (const ctx of contexts.filter((c) => c.host.roles.has("db") || c.host.roles.has("db-standby"))) {
      expect(rendered(ctx, p.backupScript), ctx.host.name).toBe(rendered(primaryCtx, p.backupScript));
    }
  });

  it("on the standby: exits 0 without a dump and says why", () => {
    const sb = box("backup-standby");
    const script = install(standbyCtx, sb, standby.port);
    const r = backup(sb, script);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout).toContain("PostgreSQL on this host is a standby (pg_is_in_recovery() is true): no dump here");
    expect(kept(sb)).toEqual([]);
  });

  it("on the primary: a dump pg_restore reads", () => {
    const pb = box("backup-primary");
    const script = install(primaryCtx, pb, primary.port);
    const r = backup(pb, script);
    expect(r.code, r.output).toBe(0);
    expect(kept(pb)).toEqual(["novacloud_db_TS.dump"]);
    expect(run(`${BIN}/pg_restore`, ["--list", newest(pb, "db")]).stdout).toMatch(/TABLE DATA public devices/);
  });

  it("on the standby once it is promoted: a dump, with no change to any file", async () => {
    const promote = asPostgres(`${BIN}/pg_ctl`, ["-D", standby.data, "-w", "promote"]);
    expect(promote.code, promote.output).toBe(0);
    await waitFor("the promotion", () => psql(standby, "SELECT pg_is_in_recovery()").stdout.trim() === "f", 30_000);
    const sb = box("backup-promoted");
    const script = install(standbyCtx, sb, standby.port);
    const r = backup(sb, script);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout).not.toContain("standby");
    expect(kept(sb)).toEqual(["novacloud_db_TS.dump"]);
    expect(run(`${BIN}/pg_restore`, ["--list", newest(sb, "db")]).stdout).toMatch(/TABLE DATA public devices/);
  });
});

// --- the last success, for monitoring (issue 13) -------------------------------------------------

describe.skipIf(!pgTools)("a monitored backup records its last success for node_exporter's textfile collector", () => {
  const ctx = contextOf(hostContexts("ha-monitored"), "db1");
  const metric = "novacloud_backup_last_success_timestamp_seconds";
  let b: Sandbox;
  let primary: Cluster;

  beforeAll(async () => {
    b = box("backup-metric");
    primary = await primaryFor(ctx, b);
  }, 120_000);

  it("writes the time of a good run as a readable .prom file, by a rename (no temporary file left)", () => {
    const mb = box("backup-metric-ok");
    const script = install(ctx, mb, primary.port);
    const before = Math.floor(Date.now() / 1000);
    const r = backup(mb, script);
    expect(r.code, r.output).toBe(0);
    expect(readdirSync(mb.path("metrics"))).toEqual(["backup.prom"]);
    const file = mb.path("metrics", "backup.prom");
    // The script runs with umask 077; node_exporter (user prometheus) must still read the file.
    expect(statSync(file).mode & 0o777).toBe(0o644);
    const text = readFileSync(file, "utf8");
    expect(text).toMatch(new RegExp(`^# HELP ${metric} .+\n# TYPE ${metric} gauge\n${metric} \\d+\n$`));
    const value = Number(/ (\d+)\n$/.exec(text)![1]);
    expect(value).toBeGreaterThanOrEqual(before);
    expect(value).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });

  it("leaves the last success as it was when a run fails", async () => {
    const mb = box("backup-metric-failed");
    const script = install(ctx, mb, await freePort());
    mb.write("metrics/backup.prom", `${metric} 1000\n`, 0o644);
    const r = backup(mb, script);
    expect(r.code, r.output).toBe(1);
    expect(readFileSync(mb.path("metrics", "backup.prom"), "utf8")).toBe(`${metric} 1000\n`);
    expect(readdirSync(mb.path("metrics"))).toEqual(["backup.prom"]);
  });

  it("an unmonitored model's backup.sh writes no metric", () => {
    const plain = contextOf(hostContexts("ha-cluster"), "db1");
    expect(rendered(plain, pathsOf(plain.model).backupScript)).not.toContain(metric);
  });
});

// --- tar on live media --------------------------------------------------------------------------

describe.skipIf(!pgTools)("a media archive problem never costs the dump (issue #9 item 10)", () => {
  // options/iot1: database, media and the age-encrypted .env on one host.
  const ctx = contextOf(hostContexts("options"), "iot1");
  let b: Sandbox;
  let db: Cluster;

  beforeAll(async () => {
    b = box("backup-tar");
    db = await primaryFor(ctx, b);
  }, 120_000);

  function prepare(name: string, port = db.port) {
    const sb = box(name);
    const script = install(ctx, sb, port);
    sb.write("app/.env", appFamily.files(ctx).find((f) => f.path === ctx.model.project.envFile)!.content, 0o640);
    sb.write("app/media/uploads/photo.jpg", "jpeg");
    return { sb, script };
  }
  const mediaArchives = (sb: Sandbox) => readdirSync(sb.path("backups")).filter((f) => f.startsWith("iotcloud_media_")).sort();

  it("keeps the archive of a file appended while tar reads it, with the dump, and succeeds with a warning", async () => {
    const { sb, script } = prepare("backup-live");
    // Random bytes gzip slowly, so tar spends a while on this file while the writer appends.
    const upload = sb.write("app/media/uploads/stream.bin", "");
    writeFileSync(upload, randomBytes(24 * 1024 * 1024));
    const writer = startServer("bash", ["-c", `while :; do printf 'more data\\n' >> ${upload}; done`]);
    await waitFor("the writer to append", () => readFileSync(upload).length > 24 * 1024 * 1024);
    const r = await backupAsync(sb, script);
    await writer.stop();
    // The case under test happened: the real tar saw the file change and exited 1.
    expect(r.stderr, r.output).toMatch(/stream\.bin: file changed as we read it/);
    expect(r.code, r.output).toBe(0);
    expect(r.stderr).toContain("backup: warning: media changed while they were archived");
    expect(kept(sb)).toEqual(["iotcloud_db_TS.dump", "iotcloud_env_TS.age", "iotcloud_media_TS.tar.gz"]);
    expect(run(`${BIN}/pg_restore`, ["--list", newest(sb, "db")]).stdout).toMatch(/TABLE DATA public devices/);
    const members = run("tar", ["-tzf", newest(sb, "media")]).stdout.split("\n").filter(Boolean).sort();
    expect(members).toEqual(["media/", "media/uploads/", "media/uploads/photo.jpg", "media/uploads/stream.bin"]);
  });

  it("keeps the dump when tar cannot archive the media, and fails naming the media", () => {
    const { sb, script } = prepare("backup-no-media");
    // An old media archive survives: only a new archive of its kind prunes old ones.
    const old = "iotcloud_media_20000101T000000Z.tar.gz";
    writeFileSync(join(sb.path("backups"), old), "old");
    const ancient = new Date(Date.now() - (ctx.model.backup.keep_days + 5) * 86400_000);
    utimesSync(join(sb.path("backups"), old), ancient, ancient);
    rmSync(sb.path("app/media"), { recursive: true });
    const r = backup(sb, script);
    expect(r.code, r.output).toBe(1);
    expect(r.stderr).toMatch(/tar: media: Cannot stat: No such file or directory/);
    expect(r.stderr).toContain("backup: FAILED: media: tar exited with status 2");
    expect(mediaArchives(sb)).toEqual([old]);
    expect(readdirSync(sb.path("backups")).filter((f) => /_(db|env)_/.test(f)).map((f) => f.replace(/\d{8}T\d{6}Z/, "TS")).sort()).toEqual(["iotcloud_db_TS.dump", "iotcloud_env_TS.age"]);
    expect(run(`${BIN}/pg_restore`, ["--list", newest(sb, "db")]).stdout).toMatch(/TABLE DATA public devices/);
    expect(readdirSync(sb.path("backups")).filter((f) => f.startsWith(".tmp"))).toEqual([]);
  });

  it("archives the media when the database does not answer, and fails naming the database", async () => {
    const { sb, script } = prepare("backup-no-db", await freePort());
    const r = backup(sb, script);
    expect(r.code, r.output).toBe(1);
    expect(r.stderr).toContain("backup: FAILED: database: PostgreSQL did not answer");
    expect(kept(sb)).toEqual(["iotcloud_env_TS.age", "iotcloud_media_TS.tar.gz"]);
  });

  it("takes its lock before anything: a second run at the same time refuses", async () => {
    const { sb, script } = prepare("backup-lock");
    // --no-fork: sleep itself holds the lock, so stopping it by its PID releases the lock.
    const holder = startServer("flock", ["--no-fork", sb.path("backups/.lock"), "sleep", "30"]);
    await waitFor("the lock", () => run("flock", ["-n", sb.path("backups/.lock"), "true"]).code !== 0);
    const r = backup(sb, script);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("another backup is still running");
    expect(kept(sb)).toEqual([]);
    await holder.stop();
  });
});

// --- S3 media through rclone --------------------------------------------------------------------

interface FakeS3 {
  readonly url: string;
  readonly requests: { method: string; url: string; authorization: string }[];
  close(): Promise<void>;
}

const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * Just enough of the S3 API for `rclone sync` from a bucket (path-style): ListObjects (v1 and
 * v2, prefix and delimiter), HEAD and GET of an object. `deny` answers 403 to everything.
 */
async function fakeS3(bucket: string, objects: Record<string, string>, deny = false): Promise<FakeS3> {
  const requests: FakeS3["requests"] = [];
  const modified = new Date("2026-01-02T03:04:05Z");
  const server: HttpServer = createServer((req: IncomingMessage, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", authorization: String(req.headers.authorization ?? "") });
    const url = new URL(req.url ?? "/", "http://s3.test");
    const [, name, ...rest] = url.pathname.split("/");
    const key = decodeURIComponent(rest.join("/"));
    if (deny || name !== bucket) {
      res.writeHead(403, { "Content-Type": "application/xml" }).end("<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>");
      return;
    }
    if (key === "") {
      const prefix = url.searchParams.get("prefix") ?? "";
      const delimiter = url.searchParams.get("delimiter") ?? "";
      const contents: string[] = [];
      const prefixes = new Set<string>();
      for (const k of Object.keys(objects).sort()) {
        if (!k.startsWith(prefix)) continue;
        const after = k.slice(prefix.length);
        const cut = delimiter === "" ? -1 : after.indexOf(delimiter);
        if (cut >= 0) prefixes.add(prefix + after.slice(0, cut + 1));
        else {
          const md5 = createHash("md5").update(objects[k]!).digest("hex");
          contents.push(`<Contents><Key>${xml(k)}</Key><LastModified>${modified.toISOString()}</LastModified><ETag>"${md5}"</ETag><Size>${Buffer.byteLength(objects[k]!)}</Size><StorageClass>STANDARD</StorageClass></Contents>`);
        }
      }
      const common = [...prefixes].map((cp) => `<CommonPrefixes><Prefix>${xml(cp)}</Prefix></CommonPrefixes>`).join("");
      res
        .writeHead(200, { "Content-Type": "application/xml" })
        .end(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name><Prefix>${xml(prefix)}</Prefix><KeyCount>${contents.length + prefixes.size}</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>${xml(delimiter)}</Delimiter><IsTruncated>false</IsTruncated>${contents.join("")}${common}</ListBucketResult>`);
      return;
    }
    const body = objects[key];
    if (body === undefined) {
      res.writeHead(404, { "Content-Type": "application/xml" }).end("<Error><Code>NoSuchKey</Code></Error>");
      return;
    }
    const md5 = createHash("md5").update(body).digest("hex");
    res.writeHead(200, { "Content-Length": Buffer.byteLength(body), ETag: `"${md5}"`, "Last-Modified": modified.toUTCString(), "Content-Type": "application/octet-stream" });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe.skipIf(!rcloneTools)("media in S3: the bucket copied with rclone and archived (issue #9 item 7)", () => {
  // ha-sentinel: media in S3; app1 (the migrator) backs them up.
  const ctx = contextOf(hostContexts("ha-sentinel"), "app1");
  const s3Media = (m: typeof ctx.model.media) => {
    if (m.storage !== "s3") throw new Error("ha-sentinel keeps its media in S3");
    return m;
  };
  const media = s3Media(ctx.model.media);
  const objects = { "uploads/photo.jpg": "jpeg bytes", "uploads/2026/report.pdf": "%PDF-1.7 report", "avatar.png": "png bytes" };

  function prepare(name: string, endpoint: string) {
    const sb = box(name);
    const script = install(ctx, sb);
    expect(script).toBeDefined();
    const text = readFileSync(script, "utf8");
    expect(text).toContain(`export RCLONE_CONFIG_MEDIA_ENDPOINT=${media.endpoint}\n`);
    writeFileSync(script, text.replace(`export RCLONE_CONFIG_MEDIA_ENDPOINT=${media.endpoint}\n`, `export RCLONE_CONFIG_MEDIA_ENDPOINT=${endpoint}\n`));
    sb.write("app/.env", appFamily.files(ctx).find((f) => f.path === ctx.model.project.envFile)!.content, 0o640);
    return { sb, script };
  }

  it("only app1 has a backup job among the Django hosts, and it has no database part", () => {
    const all = hostContexts("ha-sentinel");
    const p = pathsOf(ctx.model);
    const withJob = all.filter((c) => backupFamily.files(c).some((f) => f.path === p.backupScript)).map((c) => c.host.name);
    expect(withJob).toEqual(["app1", "data1", "data2"]);
    expect(rendered(ctx, p.backupScript)).not.toContain("pg_dump");
  });

  it("copies every object with the app's keys and archives the copy", async () => {
    const s3 = await fakeS3(media.bucket, objects);
    try {
      const { sb, script } = prepare("backup-s3", s3.url);
      const r = await backupAsync(sb, script);
      expect(r.code, r.output).toBe(0);
      // The mirror stays for the next run; the archive is this run's copy.
      expect(kept(sb)).toEqual(["novacloud_media_TS.tar.gz", "s3-mirror"]);
      const members = run("tar", ["-tzf", newest(sb, "media")]).stdout.split("\n").filter((m) => m && !m.endsWith("/")).sort();
      expect(members).toEqual(Object.keys(objects).map((k) => `media/${k}`).sort());
      const extracted = box("backup-s3-restore");
      expect(run("tar", ["-xzf", newest(sb, "media"), "-C", extracted.dir]).code).toBe(0);
      for (const [k, v] of Object.entries(objects)) expect(readFileSync(extracted.path("media", k), "utf8")).toBe(v);
      // Signed with the access key of the .env, for the model's region (AWS SigV4 names both).
      expect(s3.requests.length).toBeGreaterThan(0);
      for (const req of s3.requests) expect(req.authorization).toContain(`Credential=${ctx.secrets.mediaAccessKeyId}/`);
      expect(s3.requests[0]!.authorization).toMatch(new RegExp(`/${media.region}/s3/aws4_request`));
      // A second run transfers nothing new (the mirror stays) and archives again.
      const gets = s3.requests.filter((q) => q.method === "GET" && !q.url.includes("?")).length;
      const again = await backupAsync(sb, script);
      expect(again.code, again.output).toBe(0);
      expect(s3.requests.filter((q) => q.method === "GET" && !q.url.includes("?")).length).toBe(gets);
    } finally {
      await s3.close();
    }
  });

  it("fails the run and keeps no archive when the bucket cannot be read", async () => {
    const s3 = await fakeS3(media.bucket, objects, true);
    try {
      const { sb, script } = prepare("backup-s3-denied", s3.url);
      const r = await backupAsync(sb, script);
      expect(r.code, r.output).toBe(1);
      expect(r.stderr).toContain(`backup: FAILED: media: rclone could not copy the bucket ${media.bucket}`);
      expect(kept(sb)).toEqual([]);
      // The secret never reaches rclone's output or the script's.
      expect(r.output).not.toContain(ctx.secrets.mediaSecretAccessKey!);
    } finally {
      await s3.close();
    }
  });
});

// --- The timer ----------------------------------------------------------------------------------

const MACROS: Record<string, string> = {
  "@hourly": "0 * * * *",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@weekly": "0 0 * * 0",
  "@monthly": "0 0 1 * *",
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
};

/**
 * When cron runs a schedule, read independently of src/artifacts/calendar.ts: Vixie cron's
 * fields (0 and 7 are Sunday; `a/step` runs from a to the field's maximum, as cronie and systemd
 * read it), and its day rule: when both day fields are restricted (neither starts with `*`),
 * either one matching is enough, otherwise both must.
 */
function cronMatches(schedule: string, t: Date): boolean {
  const [minute, hour, dom, month, dow] = (MACROS[schedule] ?? schedule).split(" ") as [string, string, string, string, string];
  const field = (spec: string, value: number, min: number, max: number) =>
    spec.split(",").some((part) => {
      const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part)!;
      const lo = m[1] === "*" ? min : Number(m[2]);
      const hi = m[1] === "*" ? max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : lo;
      const step = m[4] === undefined ? 1 : Number(m[4]);
      return value >= lo && value <= hi && (value - lo) % step === 0;
    });
  const day = t.getUTCDay();
  const domOk = field(dom, t.getUTCDate(), 1, 31);
  const dowOk = field(dow, day, 0, 7) || (day === 0 && field(dow, 7, 0, 7));
  const days = dom.startsWith("*") || dow.startsWith("*") ? domOk && dowOk : domOk || dowOk;
  return field(minute, t.getUTCMinutes(), 0, 59) && field(hour, t.getUTCHours(), 0, 23) && field(month, t.getUTCMonth() + 1, 1, 12) && days;
}

/** The first `n` minutes from `from` (UTC, a midnight) at which cron runs the schedule. */
function cronTimes(schedule: string, from: Date, n: number): string[] {
  const out: string[] = [];
  const day = new Date(from.getTime());
  // Up to 400 years: the leap day runs 40 times in 160.
  for (let d = 0; out.length < n && d < 366 * 400; d++, day.setUTCDate(day.getUTCDate() + 1)) {
    // A day on which cron runs nothing at 00:00 may still run later: only the date part decides
    // whether the day is looked at minute by minute.
    const anyTime = (MACROS[schedule] ?? schedule).split(" ").slice(2).join(" ");
    if (!cronMatches(`* * ${anyTime}`, day)) continue;
    for (let m = 0; m < 1440 && out.length < n; m++) {
      const t = new Date(day.getTime() + m * 60_000);
      if (cronMatches(schedule, t)) out.push(t.toISOString().slice(0, 16));
    }
  }
  return out;
}

/** The first `n` times systemd fires the OnCalendar= values after `base`, in UTC. */
function systemdTimes(values: string[], base: Date, n: number): string[] {
  const r = run("systemd-analyze", ["calendar", `--base-time=@${Math.floor(base.getTime() / 1000)}`, `--iterations=${n}`, ...values], { env: { ...process.env, TZ: "UTC", SYSTEMD_COLORS: "0" } });
  if (r.code !== 0) throw new Error(`systemd-analyze calendar ${values.join(" | ")}:\n${r.output}`);
  const times = [...r.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d):00 UTC/g)].map((m) => m[1]!.replace(" ", "T"));
  return [...new Set(times)].sort().slice(0, n);
}

describe.skipIf(!systemdTools)("the backup timer fires when cron would have run the schedule", () => {
  const fromFixtures = fixtureNames().map((f) => loadFixture(f).model.backup.schedule);
  const schedules = [
    ...new Set([
      ...fromFixtures,
      "*/15 * * * *",
      "5/20 8-18 * * 1-5",
      "0,30 9-17/2 * * *",
      "0 0 1 * 0",
      "15 4 1,15 * 5",
      "0 12 */2 * *",
      "0 0 * */3 *",
      "0 6 * * 0",
      "0 6 * * 7",
      "0 6 * * 5-7",
      "0 22 * * */2",
      "30 1 * 2-11/3 1,3-4",
      "0 0 29 2 *",
      ...Object.keys(MACROS),
    ]),
  ];
  // A minute before midnight on Wednesday 31 December 2025, UTC.
  const base = new Date("2025-12-31T23:59:30Z");

  it.each(schedules)("%s", (schedule) => {
    const calendar = onCalendar(schedule);
    const n = 40;
    expect(systemdTimes(calendar, base, n), `OnCalendar=${calendar.join(" + OnCalendar=")}`).toEqual(cronTimes(schedule, new Date("2026-01-01T00:00:00Z"), n));
  });

  it("the check fails on a calendar that is off by one (cron's weekday 1 is Monday)", () => {
    expect(systemdTimes(["Sun *-*-* 06:00:00"], base, 5)).not.toEqual(cronTimes("0 6 * * 1", new Date("2026-01-01T00:00:00Z"), 5));
  });
});

describe.skipIf(!systemdTools)("systemd reads the backup units", () => {
  const cases = fixtureNames()
    .filter((fixture) => loadFixture(fixture).model.topology.hosts.length > 0)
    .flatMap((fixture) => hostContexts(fixture).map((ctx) => ({ name: `${fixture}/${ctx.host.name}`, ctx })))
    .filter(({ ctx }) => backupFamily.files(ctx).some((f) => f.path.startsWith("/etc/systemd/system/")));

  /** The host's backup units with ExecStart pointing at a stub in a sandbox. */
  function prepare(ctx: HostContext, edit: (content: string) => string = (c) => c) {
    const b = box("backup-units");
    const p = pathsOf(ctx.model);
    const stub = b.write("backup.sh", "#!/bin/sh\nexit 0\n", 0o755);
    return backupFamily
      .files(ctx)
      .filter((f) => f.path.startsWith(`${p.unitDir}/`))
      .map((f) => ({ original: f.path, path: b.write(`units/${f.path.slice(p.unitDir.length + 1)}`, edit(relocate(f.content, { [p.backupScript]: stub }))) }));
  }
  const verify = (files: string[]) => run("systemd-analyze", ["verify", "--man=no", ...files], { env: { ...process.env, SYSTEMD_LOG_COLOR: "0", SYSTEMD_PAGER: "" } });

  it("has a case for every host that any fixture gives a backup timer", () => {
    const hosts = renderedAcrossFixtures((path) => /\/etc\/systemd\/system\/[^/]+-backup\.timer$/.test(path)).map((p) => p.split("/").slice(0, 2).join("/"));
    expect(cases.map((c) => c.name).sort()).toEqual(hosts.sort());
    expect(cases.length).toBeGreaterThanOrEqual(10);
  });

  it.each(cases)("$name: verify says nothing, and the service's exposure is in the OK band", ({ ctx }) => {
    const units = prepare(ctx);
    expect(units.map((u) => u.original.replace(/^.*\//, "")).sort()).toEqual([pathsOf(ctx.model).backupService, pathsOf(ctx.model).backupTimer].sort());
    const r = verify(units.map((u) => u.path));
    expect(r.code, r.output).toBe(0);
    expect(r.output.trim(), r.output).toBe("");
    const service = units.find((u) => u.original.endsWith(".service"))!;
    const security = run("systemd-analyze", ["security", "--offline=true", "--threshold=40", "--no-pager", service.path]);
    expect(security.code, security.output).toBe(0);
  });

  it("the check fails on a misspelt directive", () => {
    const units = prepare(cases[0]!.ctx, (c) => c.replace(/^Persistent=true$/m, "Persistant=true"));
    const r = verify(units.map((u) => u.path));
    expect(r.output).toMatch(/Unknown key 'Persistant' in section \[Timer\]/);
  });
});
