/**
 * A stack that boots from the rendered files. One model with an lb, an app host, a PostgreSQL
 * primary and standby and a Redis/MQTT host is rendered with free ports; every host address is
 * then relocated to 127.0.0.1 and every absolute path into a sandbox, and the real programs
 * start from the files:
 *   - PostgreSQL primary (conf.d, pg_hba.conf, init SQL run the way its runbook says), a row
 *     written as the app's role with the backup's .pgpass; the standby cloned with the
 *     pg_basebackup command of its runbook and its .pgpass, the row read back on it;
 *   - Mosquitto with the rendered password file and ACL: anonymous refused, the platform user
 *     publishes and subscribes;
 *   - gunicorn with the rendered gunicorn_config.py and .env serving a tiny WSGI app, nginx (the
 *     app host's site) in front of it, HAProxy (the lb's haproxy.cfg, TLS) in front of nginx;
 *     curl through HAProxy gets the app's answer and the security headers;
 *   - and the single-host shape: nginx terminating TLS itself in front of the same gunicorn.
 * Everything listens on 127.0.0.1 only, on free ports; every process is stopped by its PID in
 * afterAll, also when a test fails. Secrets are full of quoting hazards on purpose.
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostContexts } from "../../src/artifacts/context.js";
import { pathsOf, siteCertificate } from "../../src/artifacts/paths.js";
import { commandsOf } from "../../src/artifacts/steps.js";
import { postgresFamily } from "../../src/artifacts/postgres.js";
import { parseModel } from "../../src/model/parse.js";
import type { Model } from "../../src/model/normalize.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import { clientConfig, publish, roundTrip, startBroker } from "../helpers/mosquitto.js";
import { asPostgres, BIN, giveToPostgres, put, stopCluster } from "../helpers/postgres.js";
import { freePort, programsAvailable, relocate, run, sandbox, selfSignedCertificate, startServer, stopAll, waitFor, type Sandbox } from "../helpers/programs.js";
import { nginxMainConf } from "../helpers/nginx.js";

const available = programsAvailable("end-to-end stack", {
  [`${BIN}/initdb`]: "postgresql-15",
  [`${BIN}/pg_basebackup`]: "postgresql-15",
  [`${BIN}/psql`]: "postgresql-client-15",
  mosquitto: "mosquitto",
  mosquitto_pub: "mosquitto-clients",
  "/usr/bin/gunicorn": "gunicorn",
  nginx: "nginx",
  haproxy: "haproxy",
  curl: "curl",
  openssl: "openssl",
  runuser: "util-linux",
});

const DOMAIN = "iot.example.com";
const SECRETS = {
  E2E_DB_PASSWORD: `db "pw" 'x' $HOME \\b #h 100%`,
  E2E_REPL_PASSWORD: `repl:pw "q" $(id) \\ #`,
  E2E_REWIND_PASSWORD: `rewind 'pw' :x \\ $y`,
  E2E_REDIS_PASSWORD: "redis-pw-2e2e",
  E2E_MQTT_PASSWORD: `mqtt "pw" 'q' $USER \\n #c %s`,
  E2E_SECRET_KEY: "e2e-secret-key-with-$-and-\"quotes\"",
  E2E_STATS_PASSWORD: `stats 'pw' "x" $y`,
};
/** The addresses the model gives the hosts; every one becomes 127.0.0.1 in the sandbox. */
const ADDRESSES = /\b10\.77\.0\.\d{1,3}\b/g;

interface Ports {
  http: number;
  https: number;
  backend: number;
  gunicorn: number;
  daphne: number;
  postgres: number;
  standby: number;
  redis: number;
  mqtt: number;
  stats: number;
  acme: number;
  singleHttp: number;
  singleHttps: number;
}

function modelOf(ports: Ports, shape: "cluster" | "single"): Model {
  const secret = (env: keyof typeof SECRETS) => ({ env });
  const hosts =
    shape === "cluster"
      ? {
          lb: { address: "10.77.0.10", roles: ["lb"] },
          app: { address: "10.77.0.11", roles: ["web", "app"] },
          db1: { address: "10.77.0.21", roles: ["db"] },
          db2: { address: "10.77.0.22", roles: ["db-standby"] },
          svc: { address: "10.77.0.31", roles: ["redis", "mqtt"] },
        }
      : { node1: { address: "10.77.0.41", roles: ["web", "app", "db", "redis", "mqtt"] } };
  const parsed = parseModel({
    project: { django_module: "DjangoNovaCloud" },
    site: {
      domain: DOMAIN,
      tls: { mode: "files", certificate: "/etc/ssl/e2e/fullchain.pem", key: "/etc/ssl/e2e/privkey.pem" },
      ipv6: false,
      http_port: shape === "cluster" ? ports.http : ports.singleHttp,
      https_port: shape === "cluster" ? ports.https : ports.singleHttps,
    },
    hosts,
    gunicorn: { port: ports.gunicorn, workers: 2 },
    daphne: { port: ports.daphne },
    postgres: { port: ports.postgres, password: secret("E2E_DB_PASSWORD"), replication: { password: secret("E2E_REPL_PASSWORD"), rewind_password: secret("E2E_REWIND_PASSWORD") } },
    redis: { port: ports.redis, password: secret("E2E_REDIS_PASSWORD") },
    mqtt: { port: ports.mqtt, password: secret("E2E_MQTT_PASSWORD") },
    django: { secret_key: secret("E2E_SECRET_KEY") },
    haproxy: { backend_port: ports.backend, stats_port: ports.stats, acme_port: ports.acme, stats_password: secret("E2E_STATS_PASSWORD") },
  });
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  return parsed.model;
}

let box: Sandbox;
let cluster: Model;
let single: Model;
let tree: Tree;
let singleTree: Tree;
let ports: Ports;
let cert: { cert: string; key: string };
const dataDirs: string[] = [];

/** A rendered file of a host, its host addresses moved to loopback. */
function rendered(t: Tree, host: string, path: string): string {
  const file = t.get(`${host}${path}`);
  if (!file) throw new Error(`${host} has no rendered ${path}`);
  return file.content.replace(ADDRESSES, "127.0.0.1");
}

/** Where the sandbox keeps a host's copy of an absolute path. */
const at = (host: string, path: string) => box.path(host, path.replace(/^\//, ""));

function curl(args: string[]): Promise<{ code: number; status: number; headers: string; body: string; output: string }> {
  return new Promise((resolve) => {
    execFile("curl", ["-sS", "--max-time", "10", "-D", "-", ...args], { encoding: "utf8" }, (error, stdout, stderr) => {
      const split = stdout.indexOf("\r\n\r\n");
      const headers = split >= 0 ? stdout.slice(0, split) : stdout;
      const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(headers)?.[1] ?? 0);
      resolve({ code: error ? Number(error.code ?? 1) : 0, status, headers, body: split >= 0 ? stdout.slice(split + 4) : "", output: `${stdout}${stderr}` });
    });
  });
}

const header = (headers: string, name: string) => new RegExp(`^${name}: (.*)\\r?$`, "im").exec(headers)?.[1];

function expectSecurityHeaders(headers: string, what: string): void {
  for (const name of ["Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"]) {
    expect(header(headers, name), `${name} missing on ${what}:\n${headers}`).toBeTruthy();
    // Each exactly once: nginx owns them and hides the app's copies (NGX-15).
    expect(headers.match(new RegExp(`^${name}:`, "gim"))?.length, `${name} repeated on ${what}`).toBe(1);
  }
}

beforeAll(async () => {
  if (!available) return;
  box = sandbox("ncr-e2e-");
  const names = ["http", "https", "backend", "gunicorn", "daphne", "postgres", "standby", "redis", "mqtt", "stats", "acme", "singleHttp", "singleHttps"] as const;
  const picked = new Set<number>();
  ports = {} as Ports;
  for (const name of names) {
    let port = await freePort();
    while (picked.has(port)) port = await freePort();
    picked.add(port);
    ports[name] = port;
  }
  cluster = modelOf(ports, "cluster");
  single = modelOf(ports, "single");
  tree = render(cluster, { env: SECRETS });
  singleTree = render(single, { env: SECRETS });
  cert = selfSignedCertificate(box, "site", DOMAIN);
}, 60_000);

afterAll(async () => {
  if (!available) return;
  await stopAll();
  for (const dir of dataDirs.reverse()) await stopCluster(dir);
  box.cleanup();
}, 60_000);

describe.skipIf(!available)("the rendered stack boots", () => {
  it("PostgreSQL: the primary takes the rendered settings and init SQL, the standby is built as its runbook says and replicates", { timeout: 120_000 }, async () => {
    const p = pathsOf(cluster);
    const init = (host: string) => {
      const dir = at(host, "pg");
      const data = join(dir, "data");
      mkdirSync(dir, { recursive: true });
      giveToPostgres(dir);
      chmodSync(dir, 0o700);
      return { dir, data };
    };
    const certs = (dir: string) => {
      // The server reads its certificate as postgres (0600).
      const c = put(join(dir, "server.crt"), readFileSync(cert.cert, "utf8"));
      const k = put(join(dir, "server.key"), readFileSync(cert.key, "utf8"));
      return { [cluster.postgres.ssl_certificate]: c, [cluster.postgres.ssl_key]: k };
    };
    const configure = (host: string, dir: string, data: string, port: number) => {
      // The standby's primary_conninfo names its password file (passfile=).
      const confd = put(join(dir, "conf.d.conf"), relocate(rendered(tree, host, p.pgConfD), { ...certs(dir), [p.standbyPgpass]: join(dir, ".pgpass") }));
      put(join(data, "pg_hba.conf"), rendered(tree, host, p.pgHba));
      const main = readFileSync(join(data, "postgresql.conf"), "utf8").split("\n# e2e\n")[0];
      // After the include: loopback only, this host's port and socket, no fsync (throwaway).
      put(join(data, "postgresql.conf"), `${main}\n# e2e\ninclude '${confd}'\nlisten_addresses = '127.0.0.1'\nport = ${port}\nunix_socket_directories = '${dir}'\nfsync = off\n`);
    };
    const start = (data: string, dir: string) => {
      dataDirs.push(data);
      const r = asPostgres(`${BIN}/pg_ctl`, ["-D", data, "-l", join(dir, "server.log"), "-w", "-t", "60", "start"]);
      const log = existsSync(join(dir, "server.log")) ? readFileSync(join(dir, "server.log"), "utf8") : "";
      expect(r.code, `pg_ctl start (${data}):\n${r.output}\n${log}`).toBe(0);
    };
    const sql = (dir: string, port: number, query: string, extra: string[] = []) =>
      asPostgres(`${BIN}/psql`, ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-d", "postgres", ...extra, "-c", query]);

    // Primary: a fresh cluster with the rendered conf.d and pg_hba.conf.
    const primary = init("db1");
    const initdb = asPostgres(`${BIN}/initdb`, ["-D", primary.data, "-U", "postgres", "-A", "peer", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
    expect(initdb.code, initdb.output).toBe(0);
    configure("db1", primary.dir, primary.data, ports.postgres);
    start(primary.data, primary.dir);

    // The init SQL exactly as the primary's runbook runs it (PGHOST: the sandbox socket).
    const initSql = put(join(primary.dir, "init.sql"), rendered(tree, "db1", p.pgInitSql));
    const initStep = postgresFamily.steps!(hostContexts(cluster, {}).find((c) => c.host.name === "db1")!)
      .flatMap((s) => commandsOf(s))
      .find((c) => c.includes(p.pgInitSql));
    expect(initStep, "db1's runbook runs the init SQL").toBeDefined();
    const ran = run("bash", ["-c", initStep!.replace(p.pgInitSql, initSql)], { env: { ...process.env, PGHOST: primary.dir } });
    expect(ran.code, `${initStep}\n${ran.output}`).toBe(0);

    // A row written over TCP as the app's role, the password read from the backup's .pgpass.
    const pgpass = join(box.dir, "backup.pgpass");
    writeFileSync(pgpass, rendered(tree, "db1", p.backupPgpass), { mode: 0o600 });
    const appSql = (query: string) =>
      run(`${BIN}/psql`, ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(ports.postgres), "-U", cluster.postgres.user, "-d", cluster.postgres.database, "-c", query], {
        env: { ...process.env, PGPASSFILE: pgpass, PGSSLMODE: "require" },
      });
    const written = appSql("CREATE TABLE e2e (v text); INSERT INTO e2e VALUES ('written on the primary')");
    expect(written.code, written.output).toBe(0);

    // Standby: the runbook's pg_basebackup, with its rendered .pgpass and an empty data directory.
    const standby = init("db2");
    mkdirSync(standby.data, { mode: 0o700 });
    giveToPostgres(standby.data);
    put(join(standby.dir, ".pgpass"), rendered(tree, "db2", p.standbyPgpass));
    const clone = postgresFamily.steps!(hostContexts(cluster, {}).find((c) => c.host.name === "db2")!).find((s) => s.id === "postgres.clone");
    expect(clone, "db2's runbook clones the primary").toBeDefined();
    // Its commands after `systemctl stop`: empty the data directory, pg_basebackup, standby.signal.
    const commands = commandsOf(clone!).filter((c) => !c.startsWith("systemctl "));
    expect(commands.some((c) => c.includes("pg_basebackup"))).toBe(true);
    for (const c of commands) {
      const command = relocate(c.replace(ADDRESSES, "127.0.0.1"), { [p.pgDataDir]: standby.data, [p.standbyPgpass]: join(standby.dir, ".pgpass") }).replace(` -P`, "");
      const ran = run("bash", ["-c", command], { timeoutMs: 60_000 });
      expect(ran.code, `${command}\n${ran.output}`).toBe(0);
    }
    expect(existsSync(join(standby.data, "standby.signal")), "the clone marks the standby").toBe(true);
    expect(existsSync(join(standby.data, "recovery.conf"))).toBe(false);
    // primary_conninfo is in conf.d (the model's primary), not in postgresql.auto.conf, which would win over it.
    const autoConf = readFileSync(join(standby.data, "postgresql.auto.conf"), "utf8");
    expect(autoConf).not.toContain("primary_conninfo");
    expect(rendered(tree, "db2", p.pgConfD)).toContain("primary_conninfo");
    expect(rendered(tree, "db2", p.pgConfD)).not.toContain(SECRETS.E2E_REPL_PASSWORD);
    configure("db2", standby.dir, standby.data, ports.standby);
    start(standby.data, standby.dir);

    expect(sql(standby.dir, ports.standby, "SELECT pg_is_in_recovery()").stdout.trim()).toBe("t");
    await waitFor("the row to reach the standby", () => sql(standby.dir, ports.standby, "SELECT v FROM e2e", ["-d", cluster.postgres.database]).stdout.trim() === "written on the primary", 30_000);
    const streaming = sql(primary.dir, ports.postgres, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'");
    expect(streaming.stdout.trim(), streaming.output).toBe("1");
    const slot = sql(primary.dir, ports.postgres, "SELECT slot_name FROM pg_replication_slots WHERE active");
    expect(slot.stdout.trim()).toBe("db2");
  });

  it("Mosquitto: the rendered password file and ACL refuse anonymous clients and let the platform user publish and subscribe", { timeout: 60_000 }, async () => {
    const p = pathsOf(cluster);
    const broker = await startBroker(
      box,
      "mqtt",
      { conf: rendered(tree, "svc", p.mosquittoConf), files: { [p.mosquittoPasswd]: rendered(tree, "svc", p.mosquittoPasswd), [p.mosquittoAcl]: rendered(tree, "svc", p.mosquittoAcl) } },
      true,
    );
    const port = broker.port((l) => l.address === "127.0.0.1");
    const anonymous = publish({ port, config: clientConfig(box, "anonymous", undefined) }, "devices/x/state", "hello");
    expect(anonymous.code, anonymous.output).not.toBe(0);
    expect(anonymous.output).toMatch(/not authori[sz]ed/i);
    const platform = { port, user: cluster.mqtt.username, config: clientConfig(box, "platform", SECRETS.E2E_MQTT_PASSWORD) };
    const trip = await roundTrip(platform, platform, "devices/node7/state", "e2e round trip");
    expect(trip.received, `${trip.output}\n${broker.log()}`).toBe("e2e round trip");
  });

  it("HAProxy (TLS) -> nginx -> gunicorn: curl gets the app's answer and the security headers", { timeout: 90_000 }, async () => {
    const p = pathsOf(cluster);
    await startApp();

    // nginx on the app host, as rendered for the lb topology (private listen, real IP from the lb).
    const appNginx = await startNginx("app", tree, cluster);
    const direct = await curl(["-H", `Host: ${DOMAIN}`, `http://127.0.0.1:${ports.backend}/`]);
    expect(direct.status, `${direct.output}\n${appNginx.output()}`).toBe(200);

    // HAProxy on the lb: TLS with a self-signed combined PEM, binds moved from all addresses to loopback.
    const pem = box.write("haproxy/site.pem", `${readFileSync(cert.cert, "utf8")}${readFileSync(cert.key, "utf8")}`, 0o600);
    const cfg = box.write(
      "haproxy/haproxy.cfg",
      relocate(rendered(tree, "lb", p.haproxyConfig), { [p.haproxyPem]: pem, "/run/haproxy/admin.sock": box.path("haproxy/admin.sock") }).replace(/^(\s*bind) :/gm, "$1 127.0.0.1:"),
    );
    const check = run("haproxy", ["-c", "-f", cfg]);
    expect(check.code, check.output).toBe(0);
    const haproxy = startServer("haproxy", ["-db", "-f", cfg]);
    const https = ["--cacert", cert.cert, "--resolve", `${DOMAIN}:${ports.https}:127.0.0.1`];
    let answer = await curl([...https, `https://${DOMAIN}:${ports.https}/`]);
    await waitFor("HAProxy to see the app node up", async () => {
      answer = await curl([...https, `https://${DOMAIN}:${ports.https}/`]);
      return answer.status === 200 || haproxy.process.exitCode !== null;
    }, 30_000);
    expect(answer.status, `${answer.output}\n${haproxy.output()}`).toBe(200);
    // The app saw HTTPS (HAProxy sets X-Forwarded-Proto, nginx passes it on) and its .env.
    expect(answer.body).toBe("novacloud ok proto=https db=127.0.0.1:" + ports.postgres);
    expectSecurityHeaders(answer.headers, "the app's answer through HAProxy");
    expect(header(answer.headers, "X-Frame-Options")).toBe("DENY");

    // Static files from nginx keep the security headers too (NGX-01).
    const staticDir = at("app", cluster.project.staticDir);
    mkdirSync(staticDir, { recursive: true });
    writeFileSync(join(staticDir, "app.css"), "body{}\n");
    const css = await curl([...https, `https://${DOMAIN}:${ports.https}${cluster.site.static_url}app.css`]);
    expect(css.status, css.output).toBe(200);
    expect(css.body).toBe("body{}\n");
    expectSecurityHeaders(css.headers, "a static file through HAProxy");

    // Plain HTTP is redirected to HTTPS.
    const redirect = await curl(["--resolve", `${DOMAIN}:${ports.http}:127.0.0.1`, `http://${DOMAIN}:${ports.http}/x?y=1`]);
    expect(redirect.status).toBe(301);
    expect(header(redirect.headers, "Location")).toBe(`https://${DOMAIN}:${ports.https}/x?y=1`);

    // The stats page answers on loopback with the rendered credentials only.
    const statsUrl = `http://127.0.0.1:${ports.stats}/`;
    expect((await curl([statsUrl])).status).toBe(401);
    const auth = box.write("haproxy/auth", `Authorization: Basic ${Buffer.from(`${cluster.haproxy.stats_user}:${SECRETS.E2E_STATS_PASSWORD}`).toString("base64")}\n`, 0o600);
    const stats = await curl(["-H", `@${auth}`, statsUrl]);
    expect(stats.status, stats.output).toBe(200);
  });

  it("single host: nginx terminating TLS itself in front of the same gunicorn", { timeout: 60_000 }, async () => {
    await startApp();
    const site = await startNginx("node1", singleTree, single);
    const https = ["--cacert", cert.cert, "--resolve", `${DOMAIN}:${ports.singleHttps}:127.0.0.1`];
    let answer = await curl([...https, `https://${DOMAIN}:${ports.singleHttps}/`]);
    await waitFor("nginx to answer over TLS", async () => {
      answer = await curl([...https, `https://${DOMAIN}:${ports.singleHttps}/`]);
      return answer.status === 200 || site.process.exitCode !== null;
    });
    expect(answer.status, `${answer.output}\n${site.output()}`).toBe(200);
    expect(answer.body).toBe("novacloud ok proto=https db=127.0.0.1:" + ports.postgres);
    expectSecurityHeaders(answer.headers, "the app's answer from nginx");
    expect(header(answer.headers, "Strict-Transport-Security")).toBe(`max-age=${single.site.hsts.max_age}`);
  });
});

let app: Promise<void> | undefined;

/**
 * gunicorn from the app host's rendered gunicorn_config.py, in the rendered .env's environment
 * (what systemd's EnvironmentFile= gives the unit), serving a tiny WSGI module with the model's
 * dotted name. Started once; both nginx shapes proxy to it.
 */
function startApp(): Promise<void> {
  app ??= (async () => {
    const p = pathsOf(cluster);
    const root = at("app", cluster.project.root);
    const pkg = join(root, ...cluster.project.djangoModule.split("."));
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, "__init__.py"), "");
    writeFileSync(
      join(pkg, "wsgi.py"),
      [
        "import os",
        "def application(environ, start_response):",
        `    if environ["PATH_INFO"] == ${JSON.stringify(cluster.site.health_check_path)}:`,
        '        body = b"ok"',
        "    else:",
        '        body = ("novacloud ok proto=%s db=%s:%s" % (environ.get("HTTP_X_FORWARDED_PROTO"), os.environ["DB_HOST"], os.environ["DB_PORT"])).encode()',
        '    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Frame-Options", "SAMEORIGIN")])',
        "    return [body]",
        "",
      ].join("\n"),
    );
    const logs = at("app", cluster.project.logDir);
    mkdirSync(logs, { recursive: true });
    const config = join(root, "gunicorn_config.py");
    // chdir, the running release's link, is the sandbox's code directory.
    writeFileSync(config, relocate(rendered(tree, "app", p.gunicornConfig), { [cluster.project.logDir]: logs, [cluster.project.current]: root }));
    const envFile = join(root, ".env");
    writeFileSync(envFile, rendered(tree, "app", cluster.project.envFile), { mode: 0o600 });
    const env = run("bash", ["-c", `set -a; . "$1"; set +a; env -0`, "bash", envFile]);
    expect(env.code, env.output).toBe(0);
    const appEnv = Object.fromEntries(env.stdout.split("\0").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
    expect(appEnv.DB_PASSWORD).toBe(SECRETS.E2E_DB_PASSWORD);
    expect(appEnv.SECRET_KEY).toBe(SECRETS.E2E_SECRET_KEY);
    const gunicorn = startServer("/usr/bin/gunicorn", ["--config", config], { cwd: root, env: { ...appEnv, PATH: process.env.PATH ?? "/usr/bin:/bin", PYTHONPATH: root } });
    await waitFor("gunicorn to answer", async () => (await curl([`http://127.0.0.1:${ports.gunicorn}${cluster.site.health_check_path}`])).status === 200 || gunicorn.process.exitCode !== null);
    expect(gunicorn.process.exitCode, gunicorn.output()).toBeNull();
  })();
  return app;
}

/**
 * nginx with a host's rendered site and snippets, under a minimal nginx.conf in the sandbox:
 * snippet, certificate, log and static paths moved into the sandbox, listens on loopback.
 */
async function startNginx(host: string, t: Tree, model: Model) {
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
    [`${model.project.staticDir}/`]: `${at("app", model.project.staticDir)}/`,
    [`${model.project.mediaDir}/`]: `${at("app", model.project.mediaDir)}/`,
  };
  for (const snippet of [p.nginxSecurityHeaders, p.nginxProxyHeaders]) {
    mkdirSync(dirname(mapping[snippet]!), { recursive: true });
    writeFileSync(mapping[snippet]!, rendered(t, host, snippet));
  }
  mkdirSync(join(dir, "logs"), { recursive: true });
  mkdirSync(join(dir, "tmp"), { recursive: true });
  // Public listens ("listen 443 ssl ...") bind every address: keep them on loopback.
  const siteConf = relocate(rendered(t, host, p.nginxSite), mapping).replace(/^(\s*listen )(\d+)([ ;])/gm, "$1127.0.0.1:$2$3");
  writeFileSync(join(dir, "site.conf"), siteConf);
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, nginxMainConf(dir, join(dir, "site.conf"), { daemonOff: true }));
  const test = run("nginx", ["-p", `${dir}/`, "-e", join(dir, "logs/error.log"), "-c", conf, "-t"]);
  expect(test.code, `nginx -t:\n${test.output}\n${siteConf}`).toBe(0);
  const server = startServer("nginx", ["-p", `${dir}/`, "-e", join(dir, "logs/error.log"), "-c", conf]);
  await waitFor("nginx to write its pid", () => existsSync(join(dir, "nginx.pid")) || server.process.exitCode !== null);
  expect(server.process.exitCode, server.output()).toBeNull();
  return server;
}
