/**
 * The edge of a deployment in a sandbox, started from rendered files: the reference Django app
 * (test/reference-app, Debian's Django 3.2) under Debian's gunicorn and daphne the way the
 * rendered gunicorn_config.py, daphne unit and .env say, nginx with a web host's rendered site
 * and snippets, and HAProxy with the lb's rendered haproxy.cfg. Servers listen on the loopback
 * addresses the model gives the hosts (127.0.0.0/8 is all loopback), on free ports the model
 * chose; every one is stopped by its PID (stopAll).
 */
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathsOf, siteCertificate, unitNames } from "../../src/artifacts/paths.js";
import type { Model } from "../../src/model/normalize.js";
import type { Tree } from "../../src/tree.js";
import { ROOT } from "./fixtures.js";
import { nginxMainConf } from "./nginx.js";
import { relocate, run, startServer, waitFor, type Sandbox, type Server } from "./programs.js";

/** The reference app's package: models that run it set project.django_module to this. */
export const REFERENCE_APP_MODULE = "refapp";
export const REFERENCE_APP = join(ROOT, "test", "reference-app");
/** Debian's interpreter, the one its python3-django, gunicorn and daphne packages belong to. */
export const PYTHON = "/usr/bin/python3";

/** Debian packages the edge needs, for programsAvailable(). */
export const EDGE_PROGRAMS = {
  [PYTHON]: "python3",
  "/usr/bin/gunicorn": "gunicorn",
  "/usr/bin/daphne": "daphne",
  "/usr/lib/python3/dist-packages/django/__init__.py": "python3-django",
  "/usr/lib/python3/dist-packages/psycopg2/__init__.py": "python3-psycopg2",
  nginx: "nginx",
  haproxy: "haproxy",
  curl: "curl",
  openssl: "openssl",
} as const;

/** A host's rendered file. */
export function rendered(tree: Tree, host: string, path: string): string {
  const file = tree.get(`${host}${path}`);
  if (!file) throw new Error(`${host} has no rendered ${path}`);
  return file.content;
}

export interface CurlResult {
  /** curl's exit code (0: a response came back). */
  readonly code: number;
  readonly status: number;
  readonly headers: string;
  readonly body: string;
  readonly output: string;
}

export function curl(args: readonly string[]): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile("curl", ["-sS", "--max-time", "10", "-D", "-", ...args], { encoding: "utf8" }, (error, stdout, stderr) => {
      const split = stdout.indexOf("\r\n\r\n");
      const headers = split >= 0 ? stdout.slice(0, split) : stdout;
      const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(headers)?.[1] ?? 0);
      resolve({ code: error ? Number(error.code ?? 1) : 0, status, headers, body: split >= 0 ? stdout.slice(split + 4) : "", output: `${stdout}${stderr}` });
    });
  });
}

/**
 * The environment systemd's EnvironmentFile= gives a unit for the rendered .env, read back the
 * way update.sh reads it (bash `set -a; .`; the file is written for both).
 */
export function environmentOf(box: Sandbox, name: string, envFile: string): Record<string, string> {
  const path = box.write(`${name}.env`, envFile, 0o600);
  const env = run("bash", ["-c", 'set -a; . "$1"; set +a; env -0', "bash", path], { env: {} });
  if (env.code !== 0) throw new Error(`reading ${name}'s .env failed:\n${env.output}`);
  const vars = env.stdout.split("\0").filter((kv) => kv.includes("="));
  const entries = vars.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as const);
  // bash's own variables are not the file's.
  return Object.fromEntries(entries.filter(([k]) => !["PWD", "SHLVL", "_", "OLDPWD"].includes(k)));
}

export interface App {
  /** The project root (the checkout) in the sandbox. */
  readonly root: string;
  /** The unit's environment: the .env, and PATH. */
  readonly env: NodeJS.ProcessEnv;
}

/**
 * The reference app checked out at the host's project root in the sandbox, with the host's
 * rendered .env as its environment.
 */
export function installApp(box: Sandbox, tree: Tree, model: Model, host: string): App {
  if (model.project.djangoModule !== REFERENCE_APP_MODULE) throw new Error(`the model must set project.django_module = "${REFERENCE_APP_MODULE}"`);
  const root = box.path(host, model.project.root.replace(/^\//, ""));
  mkdirSync(root, { recursive: true });
  cpSync(REFERENCE_APP, root, { recursive: true });
  const env = environmentOf(box, host, rendered(tree, host, model.project.envFile));
  return { root, env: { ...env, PATH: "/usr/bin:/bin", PYTHONPATH: root, PYTHONDONTWRITEBYTECODE: "1" } };
}

/** `manage.py ARGS` in the app's environment (what the runbook's manage steps run). */
export function manage(app: App, args: readonly string[]) {
  return run(PYTHON, ["manage.py", ...args], { cwd: app.root, env: app.env, timeoutMs: 60_000 });
}

/** gunicorn with the host's rendered gunicorn_config.py (its log files moved into the sandbox). */
export async function startGunicorn(box: Sandbox, tree: Tree, model: Model, host: string, app: App): Promise<Server> {
  const logs = box.path(host, "logs");
  mkdirSync(logs, { recursive: true });
  // chdir, the running release's link, is the sandbox's code directory.
  const config = box.write(
    `${host}/gunicorn_config.py`,
    relocate(rendered(tree, host, pathsOf(model).gunicornConfig), { [model.project.logDir]: logs, [model.project.current]: app.root }),
  );
  const server = startServer("/usr/bin/gunicorn", ["--config", config], { cwd: app.root, env: app.env });
  const bind = /^bind = "([\d.]+):(\d+)"$/m.exec(readFileSync(config, "utf8"));
  if (!bind) throw new Error("gunicorn_config.py has no bind");
  await waitFor("gunicorn to listen", async () => (await curl([`http://${bind[1]}:${bind[2]}/`])).code === 0 || server.process.exitCode !== null, 30_000);
  if (server.process.exitCode !== null) throw new Error(`gunicorn exited:\n${server.output()}\n${readLogs(logs)}`);
  return server;
}

function readLogs(dir: string): string {
  return ["gunicorn-error.log", "gunicorn-access.log"].map((f) => join(dir, f)).filter(existsSync).map((f) => readFileSync(f, "utf8")).join("\n");
}

/**
 * daphne exactly as the host's rendered unit starts it (ExecStart=, the venv's daphne replaced
 * by Debian's), in its WorkingDirectory with its EnvironmentFile.
 */
export async function startDaphne(tree: Tree, model: Model, host: string, app: App): Promise<Server> {
  const unit = rendered(tree, host, `${pathsOf(model).unitDir}/${unitNames(model).asgi}`);
  const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1];
  if (!execStart || /["'\\]/.test(execStart)) throw new Error(`unexpected ExecStart in the daphne unit: ${execStart}`);
  const [binary, m, module, ...args] = execStart.split(" ");
  if (binary !== `${model.project.venv}/bin/python` || m !== "-m" || module !== "daphne") throw new Error(`the daphne unit runs ${binary} ${m} ${module}`);
  const server = startServer("/usr/bin/daphne", args, { cwd: app.root, env: app.env });
  const port = args[args.indexOf("--port") + 1];
  await waitFor("daphne to listen", async () => (await curl([`http://127.0.0.1:${port}/`])).code === 0 || server.process.exitCode !== null, 30_000);
  if (server.process.exitCode !== null) throw new Error(`daphne exited:\n${server.output()}`);
  return server;
}

/**
 * nginx with a web host's rendered site and snippets under a minimal nginx.conf: snippet,
 * certificate, log and static paths moved into the sandbox; public listens (`listen 443 ...`,
 * every address) moved to `publicAddress`. A private listen (behind the lb) stays as rendered.
 */
export async function startNginx(box: Sandbox, tree: Tree, model: Model, host: string, cert: { cert: string; key: string }, publicAddress = "127.0.0.1"): Promise<Server> {
  const p = pathsOf(model);
  const dir = box.path(`nginx-${host}`);
  const site = siteCertificate(model);
  const mapping: Record<string, string> = {
    [p.nginxSecurityHeaders]: join(dir, "snippets/security-headers.conf"),
    [p.nginxProxyHeaders]: join(dir, "snippets/proxy-headers.conf"),
    [p.nginxAccessLog]: join(dir, "logs/site-access.log"),
    [p.nginxErrorLog]: join(dir, "logs/site-error.log"),
    [site.certificate]: cert.cert,
    [site.key]: cert.key,
    [`${model.project.staticDir}/`]: `${box.path(host, model.project.staticDir.replace(/^\//, ""))}/`,
    [`${model.project.mediaDir}/`]: `${box.path(host, model.project.mediaDir.replace(/^\//, ""))}/`,
  };
  for (const snippet of [p.nginxSecurityHeaders, p.nginxProxyHeaders]) {
    mkdirSync(dirname(mapping[snippet]!), { recursive: true });
    writeFileSync(mapping[snippet]!, rendered(tree, host, snippet));
  }
  mkdirSync(join(dir, "logs"), { recursive: true });
  mkdirSync(join(dir, "tmp"), { recursive: true });
  const siteConf = relocate(rendered(tree, host, p.nginxSite), mapping).replace(/^(\s*listen )(\d+)([ ;])/gm, `$1${publicAddress}:$2$3`);
  writeFileSync(join(dir, "site.conf"), siteConf);
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, nginxMainConf(dir, join(dir, "site.conf"), { daemonOff: true }));
  const test = run("nginx", ["-p", `${dir}/`, "-e", join(dir, "logs/error.log"), "-c", conf, "-t"]);
  if (test.code !== 0) throw new Error(`nginx -t:\n${test.output}\n${siteConf}`);
  const server = startServer("nginx", ["-p", `${dir}/`, "-e", join(dir, "logs/error.log"), "-c", conf]);
  await waitFor("nginx to write its pid", () => existsSync(join(dir, "nginx.pid")) || server.process.exitCode !== null);
  if (server.process.exitCode !== null) throw new Error(`nginx exited:\n${server.output()}`);
  return server;
}

/**
 * HAProxy with the lb's rendered haproxy.cfg: the combined PEM and the admin socket moved into
 * the sandbox, public binds (`bind :PORT`, every address) moved to the lb's own address.
 * Everything else (chroot, user, checks, headers) runs as rendered.
 */
export function startHaproxy(box: Sandbox, tree: Tree, model: Model, lb: string, cert: { cert: string; key: string }): Server {
  const p = pathsOf(model);
  const host = model.topology.hosts.find((h) => h.name === lb)!;
  const pem = box.write(`haproxy-${lb}/site.pem`, `${readFileSync(cert.cert, "utf8")}${readFileSync(cert.key, "utf8")}`, 0o600);
  const cfg = box.write(
    `haproxy-${lb}/haproxy.cfg`,
    relocate(rendered(tree, lb, p.haproxyConfig), { [p.haproxyPem]: pem, "/run/haproxy/admin.sock": box.path(`haproxy-${lb}/admin.sock`) }).replace(
      /^(\s*bind) :/gm,
      `$1 ${host.address}:`,
    ),
  );
  const check = run("haproxy", ["-c", "-f", cfg]);
  if (check.code !== 0) throw new Error(`haproxy -c:\n${check.output}`);
  return startServer("haproxy", ["-db", "-f", cfg]);
}

export interface ServerState {
  readonly backend: string;
  readonly server: string;
  /** UP, DOWN, ... */
  readonly status: string;
  /** The last check's result (L7OK, L7STS, L4CON, ...) and its HTTP status. */
  readonly check: string;
  readonly code: string;
}

/** The servers on HAProxy's stats page (CSV, no login: the model sets no stats password). */
export async function haproxyServers(model: Model): Promise<ServerState[]> {
  const page = await curl([`http://127.0.0.1:${model.haproxy.stats_port}/;csv`]);
  if (page.status !== 200) throw new Error(`the stats page answered ${page.status}:\n${page.output}`);
  const [head, ...rows] = page.body.trim().split("\n");
  const columns = head!.replace(/^# /, "").split(",");
  const at = (row: string[], name: string) => row[columns.indexOf(name)] ?? "";
  return rows
    .map((r) => r.split(","))
    .filter((r) => !["FRONTEND", "BACKEND"].includes(at(r, "svname")) && at(r, "pxname") !== "stats")
    .map((r) => ({ backend: at(r, "pxname"), server: at(r, "svname"), status: at(r, "status"), check: at(r, "check_status"), code: at(r, "check_code") }));
}

/** "be_web/web1 UP L7OK 200": one line per server, for assertions and their messages. */
export function describeServers(servers: readonly ServerState[]): string[] {
  return servers.map((s) => `${s.backend}/${s.server} ${s.status} ${s.check}${s.code ? ` ${s.code}` : ""}`);
}
