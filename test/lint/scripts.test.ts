/**
 * The real programs read and run the rendered scripts:
 * - `bash -n` and `shellcheck -s bash -S style` (0.9.0) on every script of every host;
 * - `logrotate -d -f` on the rendered logrotate file;
 * - `ufw --dry-run` on every rule of the firewall script, inside a private mount namespace whose
 *   /etc/ufw and /etc/default/ufw are sandbox copies (ufw 0.36 rewrites ufw.conf on
 *   `--dry-run enable`, so it never sees the machine's own files);
 * - the backup script against a throw-away PostgreSQL with the nastiest password of the
 *   fixtures, succeeding, refusing to run twice and failing without pruning;
 * - update.sh (with real git against a sandbox repository) and the certbot deploy hook with stub
 *   commands that record what they were asked.
 *
 * Accounts: logrotate's `su` and `create` need an existing user, and creating one would write
 * the machine's /etc/passwd, so those two lines name nobody:nogroup in the sandbox. The backup
 * runs as root against the sandbox (libpq checks the password file's mode, not its owner).
 */
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { pathsOf, siteCertificate, mqttLetsEncryptLive } from "../../src/artifacts/paths.js";
import { scriptFamilies as scriptsFamily } from "../helpers/families.js";
import { sqlLiteral } from "../../src/quote.js";
import type { FileSpec } from "../../src/tree.js";
import { fixtureNames, loadFixture, renderedAcrossFixtures } from "../helpers/fixtures.js";
import { freePort, IN_CI, programsAvailable, relocate, run, sandbox, startServer, stopAll, waitFor, type RunResult, type Sandbox } from "../helpers/programs.js";
import { contextOf, hostContexts } from "../artifacts/systemd-scripts-support.js";
import { KEEP_RELEASES } from "../../src/artifacts/update.js";
import { gitEnv, gitOrigin, runSteps } from "../helpers/release.js";

const PG_BIN = "/usr/lib/postgresql/15/bin";

const shellTools = programsAvailable("scripts lint", { bash: "bash", shellcheck: "shellcheck" });
const logrotateTool = programsAvailable("logrotate lint", { logrotate: "logrotate" });
const ufwTools = programsAvailable("ufw lint", { ufw: "ufw", unshare: "util-linux", mount: "mount" });
const pgTools = programsAvailable("backup against PostgreSQL", {
  [`${PG_BIN}/initdb`]: "postgresql-15",
  [`${PG_BIN}/postgres`]: "postgresql-15",
  [`${PG_BIN}/pg_dump`]: "postgresql-client-15",
  [`${PG_BIN}/psql`]: "postgresql-client-15",
  setpriv: "util-linux",
  flock: "util-linux",
});

const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  if (IN_CI) throw new Error("scripts lint: the script runs need root (CI runs as root)");
  console.warn("SKIPPED script runs: not root");
}

/** Whether this process may make a private mount namespace (root with CAP_SYS_ADMIN). */
function canUnshare(): boolean {
  if (!ufwTools || !isRoot) return false;
  const ok = run("unshare", ["-m", "true"]).code === 0;
  if (!ok) {
    if (IN_CI) throw new Error("ufw lint: `unshare -m` is not permitted here; CI must run the firewall check");
    console.warn("SKIPPED ufw lint: `unshare -m` is not permitted here");
  }
  return ok;
}

const contexts = fixtureNames()
  .filter((fixture) => loadFixture(fixture).model.topology.hosts.length > 0)
  .flatMap((fixture) => hostContexts(fixture).map((ctx) => ({ fixture, ctx })));

const scripts = contexts.flatMap(({ fixture, ctx }) =>
  scriptsFamily
    .files(ctx)
    .filter((f) => f.mode === 0o755)
    .map((f) => ({ name: `${fixture}/${ctx.host.name}${f.path}`, file: f })),
);

const boxes: Sandbox[] = [];
function box(prefix: string): Sandbox {
  const b = sandbox(`ncr-${prefix}-`);
  boxes.push(b);
  return b;
}
afterEach(async () => {
  await stopAll();
});
afterAll(async () => {
  await stopAll();
  for (const b of boxes) b.cleanup();
});

/** run() without blocking, so the many short ufw and shellcheck runs can overlap. */
function runAsync(command: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr, output: `${stdout}${stderr}` }));
  });
}

function scriptOf(ctx: HostContext, path: string): FileSpec {
  const f = scriptsFamily.files(ctx).find((s) => s.path === path);
  if (!f) throw new Error(`${ctx.host.name} has no ${path}`);
  return f;
}

function shellcheck(path: string) {
  return runAsync("shellcheck", ["-s", "bash", "-S", "style", path]);
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(!shellTools)("bash -n and shellcheck", () => {
  it("covers every executable file any fixture renders", () => {
    expect(scripts.map((s) => s.name).sort()).toEqual(renderedAcrossFixtures((_, f) => f.mode === 0o755));
  });

  it.concurrent.each(scripts)("$name", async ({ name, file }) => {
    const b = box("sh");
    const path = b.write(file.path.slice(1), file.content, 0o755);
    const syntax = run("bash", ["-n", path]);
    expect(syntax.code, `bash -n ${name} (written to ${path}):\n${syntax.output}`).toBe(0);
    const sc = await shellcheck(path);
    expect(sc.code, `shellcheck -s bash -S style ${name} (written to ${path}):\n${sc.output}`).toBe(0);
  });

  it("fails with shellcheck's own finding when an expansion loses its quotes", async () => {
    const ctx = contextOf(hostContexts("single-node"), "node1");
    const file = scriptOf(ctx, pathsOf(ctx.model).backupScript);
    const broken = file.content.replace('pg_restore --list "$tmp/db.dump"', "pg_restore --list $tmp/db.dump");
    expect(broken).not.toBe(file.content);
    const path = box("sh").write("backup.sh", broken, 0o755);
    const sc = await shellcheck(path);
    expect(sc.code).not.toBe(0);
    expect(sc.output).toMatch(/SC2086 \(info\): Double quote to prevent globbing and word splitting/);
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!logrotateTool)("logrotate -d", () => {
  const appHosts = contexts.filter(({ ctx }) => ctx.host.roles.has("app")).map(({ fixture, ctx }) => ({ name: `${fixture}/${ctx.host.name}`, ctx }));

  function prepare(ctx: HostContext, edit: (c: string) => string = (c) => c) {
    const b = box("logrotate");
    const p = pathsOf(ctx.model);
    const logDir = b.path("log");
    b.write("log/gunicorn-access.log", "GET / 200\n", 0o640);
    b.write("log/gunicorn-error.log", "[INFO] Booting worker\n", 0o640);
    const { user, group } = ctx.model.project;
    const content = relocate(scriptsFamily.files(ctx).find((f) => f.path === p.logrotate)!.content, { [ctx.model.project.logDir]: logDir })
      .replace(`su ${user} ${group}`, "su nobody nogroup")
      .replace(`create 0640 ${user} ${group}`, "create 0640 nobody nogroup");
    const conf = b.write("logrotate.conf", edit(content));
    return { conf, state: b.path("state"), original: p.logrotate };
  }

  it("covers every app host (14 over the fixtures)", () => {
    expect(appHosts).toHaveLength(14);
  });

  it.each(appHosts)("$name: rotates (forced) as the account and runs only the USR1 postrotate", ({ ctx }) => {
    const prep = prepare(ctx);
    const r = run("logrotate", ["-d", "-f", "-s", prep.state, prep.conf]);
    const message = `logrotate -d -f on ${prep.original} (relocated: ${prep.conf}):\n${r.output}`;
    expect(r.code, message).toBe(0);
    expect(r.output, message).not.toMatch(/^error:/m);
    expect(r.output, message).toMatch(/switching euid from 0 to \d+/);
    expect(r.output, message).toContain("running postrotate script");
    expect(r.output, message).toMatch(/systemctl kill --signal=USR1 --kill-whom?=main \S+\.service/);
    expect(r.output, message).toMatch(/rotating pattern: .*\/log\/\*\.log\s+forced from command line \(\d+ rotations\)/);
  });

  it("fails with logrotate's own message on an unknown directive", () => {
    const ctx = contextOf(hostContexts("single-node"), "node1");
    const prep = prepare(ctx, (c) => c.replace(/^ {4}delaycompress$/m, "    delaycompres"));
    const r = run("logrotate", ["-d", "-s", prep.state, prep.conf]);
    expect(r.output).toMatch(/^error: .*logrotate\.conf:\d+ unknown option 'delaycompres' -- ignoring line$/m);
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!canUnshare())("ufw --dry-run", () => {
  const firewalls = contexts
    .map(({ fixture, ctx }) => ({ name: `${fixture}/${ctx.host.name}`, ctx, file: scriptsFamily.files(ctx).find((f) => f.path === pathsOf(ctx.model).firewallScript) }))
    .filter((c) => c.file !== undefined);
  // Hosts whose scripts run the same commands (only the header comment differs, e.g. three app
  // nodes behind one lb) are checked once; each ufw call costs a Python start.
  const commandsOf = (content: string) => content.split("\n").filter((l) => !l.startsWith("#")).join("\n");
  const groups = new Map<string, typeof firewalls>();
  for (const c of firewalls) groups.set(commandsOf(c.file!.content), [...(groups.get(commandsOf(c.file!.content)) ?? []), c]);
  const distinct = [...groups.values()].map((group) => ({
    name: group.map((c) => c.name).join(", "),
    ctx: group[0]!.ctx,
    file: group[0]!.file,
  }));

  const fingerprint = () =>
    ["/etc/ufw", "/etc/default/ufw"]
      .flatMap((p) => (statSync(p).isDirectory() ? readdirSync(p, { recursive: true }).map((e) => join(p, String(e))) : [p]))
      .filter((p) => statSync(p).isFile())
      .sort()
      .map((p) => `${p} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`)
      .join("\n");
  let before = "";
  beforeAll(() => {
    before = fingerprint();
  });
  afterAll(() => {
    // The namespace kept the machine's own ufw files out of reach; prove it.
    expect(fingerprint()).toBe(before);
  });

  /** Runs the script with `ufw` meaning `ufw --dry-run`, against sandbox copies of ufw's files. */
  function dryRun(content: string) {
    const b = box("ufw");
    mkdirSync(b.path("etc-ufw"));
    execFileSync("cp", ["-a", "/etc/ufw/.", b.path("etc-ufw")]);
    b.write("default-ufw", readFileSync("/etc/default/ufw", "utf8"));
    b.write("bin/ufw", '#!/bin/sh\nexec /usr/sbin/ufw --dry-run "$@"\n', 0o755);
    const script = b.write("firewall", content, 0o755);
    const inner = [
      `mount --bind ${b.path("etc-ufw")} /etc/ufw`,
      `mount --bind ${b.path("default-ufw")} /etc/default/ufw`,
      `PATH=${b.path("bin")}:$PATH exec bash ${script}`,
    ].join(" && ");
    return { script, result: runAsync("unshare", ["-m", "--propagation", "private", "sh", "-c", inner]) };
  }

  it("covers every host (41 over the fixtures)", () => {
    expect(firewalls).toHaveLength(41);
  });

  it.concurrent.each(distinct)("$name: ufw accepts every rule", async ({ ctx, file }) => {
    const { script, result: pending } = dryRun(file!.content);
    const result = await pending;
    const message = `ufw --dry-run on ${pathsOf(ctx.model).firewallScript} (written to ${script}):\n${result.output}`;
    expect(result.code, message).toBe(0);
    expect(result.output, message).not.toMatch(/^ERROR/m);
    expect(result.output, message).toContain("Rules updated");
  });

  it("fails with ufw's own message on a bad rule", async () => {
    const ctx = contextOf(hostContexts("ha-cluster"), "db1");
    const file = scriptsFamily.files(ctx).find((f) => f.path === pathsOf(ctx.model).firewallScript)!;
    const result = await dryRun(file.content.replace("from 10.0.0.11 to any port 5432", "from 10.0.0.311 to any port 5432")).result;
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/ERROR: Bad source address/);
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!pgTools || !isRoot)("backup.sh against a throw-away PostgreSQL", () => {
  // options: port 5433, database iot, role iot_app, media, age, and a password with quotes, $,
  // backslashes, # and % in it.
  const ctx = contextOf(hostContexts("options"), "iot1");
  const p = pathsOf(ctx.model);
  const model = ctx.model;
  let b: Sandbox;
  let port = 0;
  let socketDir = "";

  const asPostgres = (cmd: string, args: string[]) =>
    run("setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", cmd, ...args], { env: { ...process.env, LC_ALL: "C" } });

  beforeAll(async () => {
    b = box("backup");
    port = await freePort();
    socketDir = b.path("socket");
    for (const dir of ["pgdata", "socket"]) {
      mkdirSync(b.path(dir), { mode: 0o700 });
      chownSync(b.path(dir), Number(execFileSync("id", ["-u", "postgres"]).toString()), Number(execFileSync("id", ["-g", "postgres"]).toString()));
    }
    const init = asPostgres(`${PG_BIN}/initdb`, ["-D", b.path("pgdata"), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]);
    if (init.code !== 0) throw new Error(`initdb failed:\n${init.output}`);
  });

  let created = false;
  /** Starts the server (every test stops it again) and creates the role and database once. */
  async function startPostgres() {
    const server = startServer("setpriv", [
      "--reuid=postgres", "--regid=postgres", "--init-groups",
      `${PG_BIN}/postgres`, "-D", b.path("pgdata"), "-p", String(port), "-k", socketDir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
    ]);
    await waitFor("postgres", () => run(`${PG_BIN}/pg_isready`, ["-h", socketDir, "-p", String(port)]).code === 0);
    if (created) return server;
    created = true;
    const psql = (sql: string) => {
      const r = asPostgres(`${PG_BIN}/psql`, ["-h", socketDir, "-p", String(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql]);
      if (r.code !== 0) throw new Error(`psql failed: ${r.output}`);
    };
    psql(`CREATE ROLE ${model.postgres.user} LOGIN PASSWORD ${sqlLiteral(ctx.secrets.dbPassword!)}`);
    psql(`CREATE DATABASE ${model.postgres.database} OWNER ${model.postgres.user}`);
    const r = asPostgres(`${PG_BIN}/psql`, ["-h", socketDir, "-p", String(port), "-U", model.postgres.user, "-d", model.postgres.database, "-v", "ON_ERROR_STOP=1", "-c", "CREATE TABLE devices (id int); INSERT INTO devices VALUES (1);"]);
    if (r.code !== 0) throw new Error(`psql failed: ${r.output}`);
    return server;
  }

  /** The rendered script and password file, pointed at the sandbox and the test server's port. */
  function install(password = ctx.secrets.dbPassword!) {
    const script = scriptOf(ctx, p.backupScript).content;
    const pgpass = scriptOf(ctx, p.backupPgpass).content;
    const mapping = {
      [model.backup.dir]: b.path("backups"),
      [p.backupPgpass]: b.path("backup.pgpass"),
      [model.project.root]: b.path("app"),
      [model.project.envFile]: b.path("etc/app.env"),
    };
    const relocated = relocate(script, mapping).replace(`readonly DB_PORT=${model.postgres.port}\n`, `readonly DB_PORT=${port}\n`);
    expect(relocated).toContain(`readonly DB_PORT=${port}\n`);
    const pgpassLine = pgpass.replace(`127.0.0.1:${model.postgres.port}:`, `127.0.0.1:${port}:`);
    expect(pgpassLine).toContain(`127.0.0.1:${port}:`);
    b.write("backup.pgpass", password === ctx.secrets.dbPassword ? pgpassLine : pgpassLine.replace(/:[^:\n]*\n$/, `:${password}\n`), 0o600);
    b.write("app/media/uploads/photo.jpg", "jpeg");
    b.write("etc/app.env", appFamily.files(ctx).find((f) => f.path === model.project.envFile)!.content, 0o640);
    // No age on this machine: a stand-in that records its arguments and writes the output file.
    b.write("bin/age", '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/age.args"\nwhile [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done\necho encrypted > "$out"\n', 0o755);
    if (!existsSync(b.path("backups"))) mkdirSync(b.path("backups"), { mode: 0o700 });
    return b.write("backup.sh", relocated, 0o755);
  }

  function backup(script: string) {
    return run("bash", [script], { env: { ...process.env, PATH: `${b.path("bin")}:${PG_BIN}:${process.env.PATH}`, LC_ALL: "C" } });
  }

  const listing = () => readdirSync(b.path("backups")).filter((f) => !f.startsWith(".lock")).sort();

  it("dumps, checks, archives media, encrypts the .env and prunes only old files", async () => {
    await startPostgres();
    const script = install();
    const old = join(b.path("backups"), "iotcloud_db_20000101T000000Z.dump");
    writeFileSync(old, "old");
    const ancient = new Date(Date.now() - (model.backup.keep_days + 5) * 86400_000);
    utimesSync(old, ancient, ancient);
    const r = backup(script);
    expect(r.code, `backup.sh (relocated: ${script}):\n${r.output}`).toBe(0);
    const files = listing();
    expect(files.map((f) => f.replace(/\d{8}T\d{6}Z/, "TS"))).toEqual(["iotcloud_db_TS.dump", "iotcloud_env_TS.age", "iotcloud_media_TS.tar.gz"]);
    for (const f of files) expect((statSync(join(b.path("backups"), f)).mode & 0o777).toString(8), f).toBe("600");
    const dump = join(b.path("backups"), files[0]!);
    const list = run(`${PG_BIN}/pg_restore`, ["--list", dump]);
    expect(list.output).toMatch(/TABLE DATA public devices/);
    const tar = run("tar", ["-tzf", join(b.path("backups"), files[2]!)]);
    expect(tar.stdout.split("\n").filter(Boolean).sort()).toEqual(["media/", "media/uploads/", "media/uploads/photo.jpg"]);
    expect(readFileSync(b.path("bin/age.args"), "utf8").split("\n")).toEqual(["--encrypt", "--recipient", model.backup.age_recipient, "--output", expect.stringMatching(/\/\.tmp\.\w+\/env\.age$/), b.path("etc/app.env"), ""]);
    expect(readdirSync(b.path("backups")).filter((f) => f.startsWith(".tmp"))).toEqual([]);
  });

  it("refuses to run while another backup holds the lock", async () => {
    const script = install();
    // --no-fork: sleep itself holds the lock, so stopping it by its PID releases the lock.
    const holder = startServer("flock", ["--no-fork", b.path("backups/.lock"), "sleep", "30"]);
    await waitFor("the lock", () => run("flock", ["-n", b.path("backups/.lock"), "true"]).code !== 0);
    const r = backup(script);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("another backup is still running");
    await holder.stop();
  });

  it("fails on a wrong password without keeping a dump or pruning one", async () => {
    await startPostgres();
    const dumps = () => listing().filter((f) => f.startsWith("iotcloud_db_"));
    const before = dumps();
    const old = before[0]!;
    const ancient = new Date(Date.now() - (model.backup.keep_days + 5) * 86400_000);
    utimesSync(join(b.path("backups"), old), ancient, ancient);
    const script = install("not-the-password");
    const r = backup(script);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/password authentication failed for user "iot_app"/);
    expect(r.stderr).toContain("backup: FAILED: database: PostgreSQL did not answer");
    // The database part failed; the media and the .env are still kept (test/lint/backup.test.ts).
    expect(dumps()).toEqual(before);
    expect(readdirSync(b.path("backups")).filter((f) => f.startsWith(".tmp"))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

/** A directory of stand-in commands that append `name args...` (one per line) to calls.log. */
function stubs(b: Sandbox, names: string[]): { bin: string; calls: () => string[] } {
  for (const name of names) {
    b.write(`bin/${name}`, `#!/bin/bash\nprintf '%s' ${name} >> ${b.path("calls.log")}\nprintf ' %s' "$@" >> ${b.path("calls.log")}\necho >> ${b.path("calls.log")}\n`, 0o755);
  }
  return { bin: b.path("bin"), calls: () => (existsSync(b.path("calls.log")) ? readFileSync(b.path("calls.log"), "utf8").split("\n").filter(Boolean) : []) };
}

describe.skipIf(!shellTools || !isRoot)("update.sh with stand-in commands", () => {
  // options: Ubuntu 24.04, whose Python fits (the system's venv and the venv's pip), a database on
  // the same host (backup first), every Django role, secrets full of quoting hazards. git is the
  // real one, against a repository in the sandbox; python3 (for `-m venv`), the venv's pip,
  // runuser and systemctl are stand-ins that record what they are asked.
  const ctx = contextOf(hostContexts("options"), "iot1");
  const pth = pathsOf(ctx.model);
  const model = ctx.model;
  const p = model.project;

  function prepare() {
    const b = box("update");
    const log = b.path("calls.log");
    const record = (name: string) => `printf '%s' ${name} >> ${log}\nprintf ' %s' "$@" >> ${log}\necho >> ${log}\n`;
    const { bin, calls } = stubs(b, ["systemctl"]);
    // python3 -m venv DIR: a venv whose pip records its call and keeps the gunicorn pin of the
    // requirements (what the runtime check below reports).
    b.write("pip", `#!/bin/bash\n${record("pip")}grep "^gunicorn==" "$3" > "$(dirname "$0")/../runtime" || true\n`, 0o755);
    b.write("bin/python3", `#!/bin/bash\n${record("python3")}[ "$1 $2" = "-m venv" ] || exit 1\nmkdir -p "$3/bin"\ncp ${b.path("pip")} "$3/bin/pip"\n`, 0o755);
    // runuser: records the call and the environment manage.py gets; `python -c` (the runtime
    // check) prints what the venv's pip installed; `manage.py check` fails where FAIL_CHECK is.
    b.write(
      "bin/runuser",
      `#!/bin/bash\nn=$(ls ${b.path("env")} 2>/dev/null | wc -l)\nmkdir -p ${b.path("env")}\nenv -0 > ${b.path("env")}/$n\n${record("runuser")}` +
        `if [ "$5" = -c ]; then cat "$(dirname "$4")/../runtime"; fi\nif [ "$6 $7" = "check --deploy" ] && [ -e FAIL_CHECK ]; then echo "SystemCheckError" >&2; exit 1; fi\nexit 0\n`,
      0o755,
    );
    const origin = gitOrigin(b.path("origin"), p.branch);
    const mapping = {
      [p.repository!]: origin.dir,
      [p.root]: b.path("app"),
      [p.etcDir]: b.path("etc"),
      [`/run/lock/${p.name}-update.lock`]: b.path("update.lock"),
    };
    const at = (path: string) => relocate(path, mapping);
    b.write(at(p.envFile).slice(b.dir.length + 1), appFamily.files(ctx).find((f) => f.path === p.envFile)!.content, 0o640);
    const script = b.write("update.sh", relocate(scriptOf(ctx, pth.updateScript).content, mapping), 0o755);
    const env = { ...gitEnv, PATH: `${bin}:${process.env.PATH}` };
    const commit = (version: string, extra: Record<string, string | null> = {}) =>
      origin.commit({ "requirements.txt": `gunicorn==23.0.0\nrelease==${version}\n`, "manage.py": "", ...extra }, version);
    const first = commit("1");
    runSteps(appFamily.steps!(ctx), ["app.repository", "app.release"], mapping, env);
    writeFileSync(log, "");
    const envOf = (i: number) =>
      new Map(
        readFileSync(join(b.path("env"), String(i)), "utf8")
          .split("\0")
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as const),
      );
    rmSync(b.path("env"), { recursive: true, force: true });
    const update = (...args: string[]) => run("bash", [script, ...args], { env });
    return { b, calls, envOf, update, at, commit, first };
  }

  it("builds the release beside the running one, checks, migrates, collects, switches and reloads, in that order", () => {
    const { calls, update, at, commit, first } = prepare();
    const next = commit("2");
    const r = update(p.branch);
    expect(r.code, r.output).toBe(0);
    const release = at(`${p.releases}/${next}`);
    const running = at(`${p.releases}/${first}`);
    const manage = (args: string) => `runuser -u iot -- ${release}/venv/bin/python manage.py ${args}`;
    const runtime = (dir: string) => `runuser -u iot -- ${dir}/venv/bin/python -c import sys, gunicorn; print(sys.version, gunicorn.__version__)`;
    expect(calls()).toEqual([
      `runuser -u iot -- ${at(pth.backupScript)}`,
      `python3 -m venv ${release}/venv`,
      `pip install --requirement ${release}/requirements.txt`,
      manage("check --deploy"),
      manage("migrate --noinput"),
      manage("collectstatic --noinput"),
      runtime(running),
      runtime(release),
      "systemctl reload iotcloud.service",
      "systemctl restart iotcloud-asgi.service iotcloud-celery.service iotcloud-celerybeat.service",
    ]);
    expect(readlinkSync(at(p.current))).toBe(release);
    expect(readlinkSync(at(pth.previousRelease))).toBe(running);
    // The release is the commit's files, exported: no .git, nothing of the mirror.
    expect(readdirSync(release).sort()).toEqual(["manage.py", "requirements.txt", "venv"]);
  });

  it("hands manage.py the .env values byte for byte (quotes, $, backslashes, # and % included)", () => {
    const { update, envOf, commit } = prepare();
    commit("2");
    expect(update(p.branch).code).toBe(0);
    const seen = envOf(1); // 0 is the backup, 1 is `check --deploy`
    expect(seen.get("DB_PASSWORD")).toBe(ctx.secrets.dbPassword);
    expect(seen.get("SECRET_KEY")).toBe(ctx.secrets.secretKey);
    expect(seen.get("MQTT_PASSWORD")).toBe(ctx.secrets.mqttPassword);
    expect(seen.get("REDIS_PASSWORD")).toBe(ctx.secrets.redisPassword);
    expect(seen.get("EMAIL_HOST_PASSWORD")).toBe(ctx.secrets.emailPassword);
    expect(seen.get("DJANGO_SETTINGS_MODULE")).toBe(model.project.settingsModule);
  });

  it("refuses a missing or option-like ref before touching anything, and an unknown one after fetching only", () => {
    const { update, calls, at, first } = prepare();
    for (const args of [[], ["--force"], ["a", "b"]]) {
      const r = update(...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/^usage: /);
    }
    expect(calls()).toEqual([]);
    const r = update("no-such-tag");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`update.sh: no-such-tag is no tag, branch or commit of ${at(pth.repositoryMirror)}; nothing changed`);
    expect(readdirSync(at(p.releases))).toEqual([first]);
    expect(calls().filter((c) => !c.includes("backup.sh"))).toEqual([]);
  });

  it("a failing check removes the new release, keeps the running one, reloads nothing and says so", () => {
    const { update, calls, at, commit, first } = prepare();
    const bad = commit("2", { FAIL_CHECK: "" });
    const r = update(bad);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`update.sh: ${bad} (${bad}) NOT deployed: ${at(`${p.releases}/${first}`)} still runs, unchanged`);
    expect(r.stderr.split("NOT deployed").length - 1, r.stderr).toBe(1);
    expect(readlinkSync(at(p.current))).toBe(at(`${p.releases}/${first}`));
    expect(readdirSync(at(p.releases))).toEqual([first]);
    expect(calls().some((c) => c.startsWith("systemctl") || c.includes("migrate"))).toBe(false);
  });

  it("restarts gunicorn instead of reloading it when the new release brings another gunicorn", () => {
    const { update, calls, commit } = prepare();
    commit("2", { "requirements.txt": "gunicorn==23.0.1\nrelease==2\n" });
    expect(update(p.branch).code).toBe(0);
    expect(calls()).toContain("systemctl restart iotcloud.service");
    expect(calls()).not.toContain("systemctl reload iotcloud.service");
  });

  it(`keeps the ${KEEP_RELEASES} newest releases, and the current and previous ones always`, () => {
    const { update, at, commit, first } = prepare();
    const deployed = [first];
    for (let i = 2; i <= KEEP_RELEASES + 3; i++) {
      deployed.push(commit(String(i)));
      expect(update(p.branch).code).toBe(0);
    }
    expect(readdirSync(at(p.releases)).sort()).toEqual(deployed.slice(-KEEP_RELEASES).sort());
    // After a rollback to an old release, a deploy keeps it as the previous one.
    const old = deployed.at(-KEEP_RELEASES)!;
    execFileSync("bash", ["-c", `ln -sfn ${at(`${p.releases}/${old}`)} ${at(p.current)}`]);
    deployed.push(commit("latest"));
    expect(update(p.branch).code).toBe(0);
    expect(readlinkSync(at(pth.previousRelease))).toBe(at(`${p.releases}/${old}`));
    expect(existsSync(at(`${p.releases}/${old}`))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!shellTools || !isRoot)("certbot deploy hook with stand-in systemctl", () => {
  function prepare(fixture: string, hostName: string) {
    const ctx = contextOf(hostContexts(fixture), hostName);
    const p = pathsOf(ctx.model);
    const b = box("hook");
    const { bin, calls } = stubs(b, ["systemctl"]);
    const site = siteCertificate(ctx.model).certificate.replace(/\/fullchain\.pem$/, "");
    const live = b.path("live");
    const mapping = {
      "/etc/letsencrypt/live": live,
      "/etc/haproxy": b.path("haproxy"),
      "/etc/mosquitto": b.path("mosquitto"),
    };
    for (const lineage of [site, mqttLetsEncryptLive(ctx.model), "/etc/letsencrypt/live/other.example.org"]) {
      const dir = relocate(lineage, mapping);
      b.write(`${dir.slice(b.dir.length + 1)}/fullchain.pem`, `CHAIN ${lineage}\n`);
      b.write(`${dir.slice(b.dir.length + 1)}/privkey.pem`, `KEY ${lineage}\n`, 0o600);
    }
    const hook = b.write("hook", relocate(scriptOf(ctx, p.certbotDeployHook).content, mapping), 0o755);
    const runHook = (lineage: string | undefined) =>
      run("bash", [hook], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, ...(lineage ? { RENEWED_LINEAGE: relocate(lineage, mapping) } : {}) } });
    return { ctx, p, b, calls, runHook, site, relocated: (path: string) => relocate(path, mapping) };
  }

  const modeOf = (path: string) => (statSync(path).mode & 0o777).toString(8);

  it("builds HAProxy's PEM (chain + key, 0600) atomically and reloads HAProxy on the lb", () => {
    const { p, calls, runHook, site, relocated, b } = prepare("ha-cluster", "lb1");
    const r = runHook(site);
    expect(r.code, r.output).toBe(0);
    const pem = relocated(p.haproxyPem);
    expect(readFileSync(pem, "utf8")).toBe(`CHAIN ${site}\nKEY ${site}\n`);
    expect(modeOf(pem)).toBe("600");
    expect(readdirSync(b.path("haproxy")).filter((f) => f.startsWith("."))).toEqual([]);
    expect(calls()).toEqual(["systemctl reload haproxy"]);
  });

  it("copies the MQTT certificate for mosquitto (0640/0600) and reloads nginx and mosquitto on a single node", () => {
    const { p, calls, runHook, site, relocated } = prepare("single-node", "node1");
    const r = runHook(site);
    expect(r.code, r.output).toBe(0);
    const cert = relocated(p.mosquittoCert);
    const key = relocated(p.mosquittoKey);
    expect(readFileSync(cert, "utf8")).toBe(`CHAIN ${site}\n`);
    expect(readFileSync(key, "utf8")).toBe(`KEY ${site}\n`);
    expect([modeOf(cert), modeOf(key)]).toEqual(["640", "600"]);
    const mosquitto = Number(execFileSync("id", ["-u", "mosquitto"]).toString());
    expect([statSync(cert).uid, statSync(key).uid]).toEqual([mosquitto, mosquitto]);
    expect(calls()).toEqual(["systemctl reload nginx", "systemctl reload mosquitto"]);
  });

  it("does nothing for another certificate, and refuses to run without RENEWED_LINEAGE", () => {
    const { calls, runHook, relocated, p } = prepare("single-node", "node1");
    expect(runHook("/etc/letsencrypt/live/other.example.org").code).toBe(0);
    expect(calls()).toEqual([]);
    expect(existsSync(relocated(p.mosquittoCert))).toBe(false);
    const r = runHook(undefined);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("RENEWED_LINEAGE");
  });

  it("leaves nothing behind when the key cannot be read", () => {
    const { runHook, site, b, calls } = prepare("ha-cluster", "lb1");
    chmodSync(b.path(`live/${site.slice("/etc/letsencrypt/live/".length)}`), 0o755);
    execFileSync("rm", [b.path(`live/${site.slice("/etc/letsencrypt/live/".length)}/privkey.pem`)]);
    const r = runHook(site);
    expect(r.code).not.toBe(0);
    expect(readdirSync(b.path("haproxy"), { recursive: true }).map(String).filter((f) => f.includes(".pem"))).toEqual([]);
    expect(calls()).toEqual([]);
  });
});
