/**
 * The Compose bundle: its files and modes, compose.yaml's shape (errata DC-01..13), the same
 * environment variables as a host's .env with service names instead of addresses (ENV-06),
 * the composeEnv quoting read back exactly by a port of Compose v2's env-file parser, the nginx
 * version gate taken from the image, and the Mosquitto and gunicorn files in their container form.
 */
import { pbkdf2Js } from "../../src/crypto.js";
import { pbkdf2Sync } from "node:crypto";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import { hostContexts } from "../../src/artifacts/context.js";
import { composeFiles, composeNginxVersion, composePaths } from "../../src/artifacts/compose.js";
import { imageTagVersion } from "../../src/model/values.js";
import type { Model } from "../../src/model/normalize.js";
import { parseModel } from "../../src/model/parse.js";
import { resolveSecrets, type Secrets } from "../../src/model/secrets.js";
import { composeEnv } from "../../src/quote.js";
import type { FileSpec } from "../../src/tree.js";
import { loadFixture } from "../helpers/fixtures.js";

// ---------------------------------------------------------------------------------------------
// Compose v2's env_file reader, ported from compose-spec/compose-go dotenv/parser.go (v2.x:
// extractVarValue, extractQuotedValue, expandEscapes) with template interpolation reduced to
// what it does to `$`: `$$` is a dollar, `$NAME`/`${NAME}` are looked up (here: in `lookup`).

const GO_ESCAPES: Record<string, string> = { a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v", "\\": "\\", '"': '"' };

function expandEscapes(value: string): string {
  return value.replace(/\\(?:[abcfnrtv$"\\]|0\d{0,3})/g, (m) => {
    if (m === "\\$") return "$$";
    if (m.startsWith("\\0")) return String.fromCharCode(parseInt(m.slice(2) || "0", 8));
    return GO_ESCAPES[m[1]!]!;
  });
}

function interpolate(value: string, lookup: Record<string, string>): string {
  return value.replace(/\$(\$|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, all: string, braced?: string, bare?: string) =>
    all === "$" ? "$" : (lookup[(braced ?? bare)!] ?? ""),
  );
}

/** KEY -> value as Compose v2 reads an env_file. */
export function readComposeEnvV2(text: string, lookup: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  let src = text;
  for (;;) {
    // getStatementStart: skip blanks and comment lines.
    src = src.replace(/^\s+/, "");
    if (src === "") break;
    if (src.startsWith("#")) {
      const nl = src.indexOf("\n");
      if (nl === -1) break;
      src = src.slice(nl);
      continue;
    }
    const eq = src.search(/[=:\n]/);
    const key = src.slice(0, eq).trim();
    src = src.slice(eq + 1).replace(/^[ \t\v\f\r]+/, "");
    const quote = src[0];
    if (quote !== '"' && quote !== "'") {
      const nl = src.indexOf("\n");
      let value = nl === -1 ? src : src.slice(0, nl);
      src = nl === -1 ? "" : src.slice(nl);
      const comment = value.indexOf(" #");
      if (comment !== -1) value = value.slice(0, comment);
      out[key] = interpolate(value.replace(/\s+$/, ""), { ...lookup, ...out });
      continue;
    }
    let chars = "";
    let escaped = false;
    let end = -1;
    for (let i = 1; i < src.length; i++) {
      const c = src[i]!;
      if (escaped) {
        escaped = false;
        if (c !== quote) chars += "\\";
        chars += c;
      } else if (c === "\\") escaped = true;
      else if (c === quote) {
        end = i;
        break;
      } else chars += c;
    }
    if (end === -1) throw new Error(`unterminated quoted value for ${key}`);
    src = src.slice(end + 1);
    out[key] = quote === '"' ? interpolate(expandEscapes(chars), { ...lookup, ...out }) : chars;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function bundle(model: Model, secrets: Secrets): Map<string, FileSpec> {
  return new Map(composeFiles(model, secrets).map((f) => [f.path, f]));
}

function fixtureBundle(name: string) {
  const f = loadFixture(name);
  const secrets = resolveSecrets(f.model, f.sources).secrets;
  return { model: f.model, secrets, files: bundle(f.model, secrets) };
}

/** A fixture's model with keys changed. */
function variantModel(name: string, change: (raw: Record<string, any>) => void): Model {
  const raw = parseToml(readFileSync(loadFixture(name).modelPath, "utf8")) as Record<string, any>;
  change(raw);
  const parsed = parseModel(raw);
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  return parsed.model;
}

/** A fixture's model with keys changed and its bundle, secrets from its secrets.env. */
function variant(name: string, change: (raw: Record<string, any>) => void) {
  const model = variantModel(name, change);
  const secrets = resolveSecrets(model, loadFixture(name).sources).secrets;
  return { model, secrets, files: bundle(model, secrets) };
}

function content(files: Map<string, FileSpec>, path: string): string {
  const f = files.get(path);
  if (!f) throw new Error(`${path} not in the bundle: ${[...files.keys()].join(", ")}`);
  return f.content;
}

/** The lines of one service's block in compose.yaml (two-space indented service keys). */
function serviceBlock(yaml: string, service: string): string[] {
  const lines = yaml.split("\n");
  const start = lines.indexOf(`  ${service}:`);
  if (start === -1) throw new Error(`no service ${service}`);
  const end = lines.findIndex((l, i) => i > start && /^ {2}[a-z#]|^[a-z]/.test(l) && !l.startsWith("    "));
  return lines.slice(start + 1, end === -1 ? undefined : end);
}

const nasty = fixtureBundle("options").secrets;
const nastyValues = Object.values(nasty).filter((v): v is string => typeof v === "string");

describe("compose bundle: files", () => {
  it("renders nothing without a [compose] section", () => {
    const f = loadFixture("single-node");
    expect(composeFiles(f.model, resolveSecrets(f.model, f.sources).secrets)).toEqual([]);
  });

  it("has exactly the bundle's files, with paths relative to compose/ and secrets readable by the owner only", () => {
    const { model, secrets, files } = fixtureBundle("compose");
    const p = composePaths(model);
    expect([...files.keys()].sort()).toEqual(Object.values(p).sort());
    for (const path of files.keys()) expect(path.startsWith("/"), path).toBe(false);
    for (const path of [p.env, p.dbEnv, p.mosquittoPasswd]) expect(files.get(path)!.mode, path).toBe(0o600);
    const values = Object.values(secrets).filter((v): v is string => typeof v === "string");
    for (const f of files.values()) {
      if (f.mode === 0o600) continue;
      for (const s of values) expect(f.content.includes(s), `${f.path} (mode ${f.mode.toString(8)}) holds a secret`).toBe(false);
    }
  });

  it("compose.yaml: Compose Specification form, restart policies, healthchecks and depends_on conditions (DC-01, DC-02, DC-09, DC-12)", () => {
    const { model, files } = fixtureBundle("compose");
    const yaml = content(files, composePaths(model).compose);
    expect(yaml).not.toMatch(/^version:/m);
    expect(yaml).not.toMatch(/^name:/m);
    const services = ["db", "redis", "mqtt", "migrate", "web", "asgi", "celery", "celery-beat", "nginx"];
    expect(yaml.split("\n").flatMap((l) => /^ {2}([a-z][a-z_-]*):(?: \{\})?$/.exec(l)?.[1] ?? [])).toEqual([...services, "postgres_data", "redis_data", "mosquitto_data", "static", "media", "beat"]);
    for (const s of services) {
      const block = serviceBlock(yaml, s);
      expect(block, s).toContain(s === "migrate" ? '    restart: "no"' : "    restart: unless-stopped");
    }
    for (const s of ["db", "redis", "mqtt", "web", "asgi"]) expect(serviceBlock(yaml, s).some((l) => l.startsWith("    healthcheck:")), s).toBe(true);
    for (const s of ["web", "asgi", "celery", "celery-beat"]) {
      expect(serviceBlock(yaml, s), s).toContain("      migrate: {condition: service_completed_successfully}");
      expect(serviceBlock(yaml, s), s).toContain("      redis: {condition: service_healthy}");
    }
    expect(serviceBlock(yaml, "migrate")).toContain("      db: {condition: service_healthy}");
    expect(serviceBlock(yaml, "nginx")).toEqual(expect.arrayContaining(["      web: {condition: service_healthy}", "      asgi: {condition: service_healthy}"]));
  });

  it("publishes only HTTP, HTTPS and MQTT over TLS, never plain MQTT (DC-06, MQ-03)", () => {
    const { model, files } = fixtureBundle("compose");
    const yaml = content(files, composePaths(model).compose);
    const published = yaml.split("\n").filter((l) => l.trim().startsWith("ports:")).flatMap((l) => [...l.matchAll(/"(\d+):(\d+)"/g)].map((m) => `${m[1]}:${m[2]}`));
    const c = model.compose!;
    expect(published.sort()).toEqual([`${c.http_port}:80`, `${c.https_port}:443`, `${model.mqtt.tls_port}:${model.mqtt.tls_port}`].sort());
    const noTls = variant("compose", (raw) => {
      delete raw.mqtt.tls_port;
      raw.compose.http_port = 8080;
      raw.compose.https_port = 8443;
    });
    const yaml2 = content(noTls.files, "compose.yaml");
    expect(serviceBlock(yaml2, "mqtt").some((l) => l.includes("ports:"))).toBe(false);
    expect(serviceBlock(yaml2, "nginx")).toContain('    ports: ["8080:80", "8443:443"]');
    // The redirect and CSRF origins carry the published HTTPS port.
    expect(content(noTls.files, composePaths(noTls.model).nginxSite)).toContain("return 301 https://$host:8443$request_uri;");
    expect(readComposeEnvV2(content(noTls.files, "compose.env")).CSRF_TRUSTED_ORIGINS).toBe("https://iot.example.com:8443,https://www.iot.example.com:8443");
  });

  it("bind-mounts only the bundle's own config files, never the application's source (DC-04)", () => {
    const { model, files } = fixtureBundle("compose");
    const p = composePaths(model);
    const yaml = content(files, p.compose);
    const sources = [...yaml.matchAll(/"(\.{1,2}\/[^":]*|\.{1,2}):/g)].map((m) => m[1]!);
    expect(sources.length).toBeGreaterThan(0);
    for (const s of sources) {
      const rel = s.replace(/^\.\//, "");
      expect([...files.keys()].some((f) => f === rel || f.startsWith(`${rel}/`)), `${s} is not a rendered file or directory`).toBe(true);
    }
    expect(yaml).toContain(`build: "${model.compose!.build}"`);
  });

  it("compose.env: the host .env's variables, with the service names db, redis and mqtt (DC-03, ENV-06)", () => {
    const { model, files } = fixtureBundle("compose");
    const env = readComposeEnvV2(content(files, "compose.env"));
    expect(env.DB_HOST).toBe("db");
    expect(env.DB_PORT).toBe("5432");
    expect(env.REDIS_URL).toBe(`redis://redis:6379/${model.redis.database}`);
    expect(env.MQTT_BROKER_HOST).toBe("mqtt");
    expect(env.MQTT_BROKER_PORT).toBe(String(model.mqtt.port));
    // The same names a host gets: the compose model with one host, rendered by the app family.
    const hosted = variant("compose", (raw) => (raw.hosts = { node1: { address: "10.9.0.5", roles: ["web", "app", "asgi", "worker", "scheduler", "db", "redis", "mqtt"] } }));
    const hostEnv = appFamily.files(hostContexts(hosted.model, hosted.secrets, pbkdf2Js)[0]!).find((f) => f.path === hosted.model.project.envFile)!;
    const keys = (text: string) => text.split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.slice(0, l.indexOf("=")));
    expect(keys(content(files, "compose.env"))).toEqual(keys(hostEnv.content));
  });

  it("compose.env and .env.db: Compose v2 reads every secret back exactly, the DB password's `$` included (DC-11)", () => {
    const { model, secrets, files } = fixtureBundle("compose");
    expect(secrets.dbPassword).toContain("$");
    const env = readComposeEnvV2(content(files, "compose.env"), { ecret: "INTERPOLATED" });
    expect(env.DB_PASSWORD).toBe(secrets.dbPassword);
    expect(env.SECRET_KEY).toBe(secrets.secretKey);
    expect(env.MQTT_PASSWORD).toBe(secrets.mqttPassword);
    const db = readComposeEnvV2(content(files, composePaths(model).dbEnv), { ecret: "INTERPOLATED" });
    expect(db).toEqual({ POSTGRES_DB: model.postgres.database, POSTGRES_USER: model.postgres.user, POSTGRES_PASSWORD: secrets.dbPassword });
  });

  it("the options fixture's nasty secrets survive compose.env (email password included)", () => {
    const r = variant("options", (raw) => (raw.compose = {}));
    const env = readComposeEnvV2(content(r.files, "compose.env"), { HOME: "/root", USER: "root", x: "X" });
    expect(env.DB_PASSWORD).toBe(r.secrets.dbPassword);
    expect(env.SECRET_KEY).toBe(r.secrets.secretKey);
    expect(env.MQTT_PASSWORD).toBe(r.secrets.mqttPassword);
    expect(env.EMAIL_HOST_PASSWORD).toBe(r.secrets.emailPassword);
  });
});

describe("composeEnv", () => {
  it("is read back exactly by Compose v2's env-file reader, for the fixtures' nasty secrets and any printable value", () => {
    for (const value of nastyValues) expect(readComposeEnvV2(`K=${composeEnv(value)}\n`, { HOME: "/root", USER: "u" }).K).toBe(value);
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(..."aZ9 $#'\"\\`%{}()=:;,.-_/!\u00e9\u4e2d".split("")), maxLength: 40 }), (value) => {
        const text = `A=${composeEnv(value)}\nB=after\n`;
        expect(readComposeEnvV2(text, { a: "X", Z: "Y" })).toEqual({ A: value, B: "after" });
      }),
      { numRuns: 500 },
    );
  });

  it("chooses the form docker-compose 1.29 reads alike where one exists: bare, single quotes without a backslash", () => {
    expect(composeEnv("plain-value_1.2")).toBe("plain-value_1.2");
    expect(composeEnv("compose-db-$ecret")).toBe("'compose-db-$ecret'");
    expect(composeEnv("it's")).toBe("'it\\'s'");
    expect(composeEnv('a\\b "c" $d')).toBe('"a\\\\b \\"c\\" \\$d"');
    expect(() => composeEnv("line\nbreak")).toThrow(/control character/);
  });
});

describe("compose bundle: nginx, gunicorn and Mosquitto from the hosts' templates", () => {
  it("takes the nginx version from compose.nginx_version or the image tag, and picks the HTTP/2 syntax by it (NGX-02, DC-07)", () => {
    const base = fixtureBundle("compose");
    expect(composeNginxVersion(base.model)).toBe("1.26");
    const site = content(base.files, composePaths(base.model).nginxSite);
    expect(site).toMatch(/^\s*http2 on;$/m);
    expect(site).not.toMatch(/listen .*http2/);
    const old = variant("compose", (raw) => (raw.compose.nginx_image = "nginx:1.24.0-alpine"));
    expect(composeNginxVersion(old.model)).toBe("1.24.0");
    const oldSite = content(old.files, composePaths(old.model).nginxSite);
    expect(oldSite).toMatch(/listen 443 ssl http2;/);
    expect(oldSite).not.toMatch(/^\s*http2 on;/m);
    const pinned = variant("compose", (raw) => {
      raw.compose.nginx_image = "nginx:stable";
      raw.compose.nginx_version = "1.22.1";
    });
    expect(composeNginxVersion(pinned.model)).toBe("1.22.1");
    expect(imageTagVersion("registry.example.com:5000/mirror/nginx:1.27.3-bookworm")).toBe("1.27.3");
    expect(imageTagVersion("registry.example.com:5000/nginx")).toBeUndefined();
    expect(imageTagVersion("nginx@sha256:0123abcd")).toBeUndefined();
    expect(imageTagVersion("nginx:mainline-alpine")).toBeUndefined();
    // A tag that names no version is a model error at compose.nginx_version, not a crash.
    expect(() => variantModel("compose", (raw) => (raw.compose.nginx_image = "nginx:stable"))).toThrow(/^compose\.nginx_version: /m);
  });

  it("nginx proxies to the web and asgi services, logs to the container's stdout and serves the shared volumes (DC-07)", () => {
    const { model, files } = fixtureBundle("compose");
    const site = content(files, composePaths(model).nginxSite);
    expect(site).toContain(`server web:${model.gunicorn.port};`);
    expect(site).toContain(`server asgi:${model.daphne.port};`);
    expect(site).not.toContain("127.0.0.1");
    expect(site).toContain("access_log /dev/stdout;");
    expect(site).toContain(`alias ${model.project.staticDir}/;`);
    const yaml = content(files, "compose.yaml");
    expect(serviceBlock(yaml, "nginx")).toContain(`      - "static:${model.project.staticDir}:ro"`);
    expect(serviceBlock(yaml, "migrate")).toContain(`    volumes: ["static:${model.project.staticDir}"]`);
  });

  it("gunicorn_config.py binds every container address and trusts the forwarded headers (only nginx reaches it)", () => {
    const { model, files } = fixtureBundle("compose");
    const py = content(files, "gunicorn_config.py");
    expect(py).toContain(`bind = "0.0.0.0:${model.gunicorn.port}"`);
    expect(py).toContain('forwarded_allow_ips = "*"');
    expect(py).toContain('accesslog = "-"');
    const yaml = content(files, "compose.yaml");
    expect(serviceBlock(yaml, "web").join("\n")).toContain(`"./gunicorn_config.py:/etc/${model.project.name}/gunicorn_config.py:ro"`);
  });

  it("Mosquitto in its standalone form: persistence, stdout logging, listener on every container address, TLS, auth (MQ-11, DC-06)", () => {
    const { model, secrets, files } = fixtureBundle("compose");
    const p = composePaths(model);
    const conf = content(files, p.mosquittoConf).split("\n").filter((l) => l && !l.startsWith("#"));
    expect(conf).toEqual([
      "persistence true",
      "persistence_location /mosquitto/data/",
      "log_dest stdout",
      "per_listener_settings false",
      "allow_anonymous false",
      "password_file /mosquitto/config/passwd",
      "acl_file /mosquitto/config/acl",
      `listener ${model.mqtt.port}`,
      `listener ${model.mqtt.tls_port}`,
      "certfile /mosquitto/certs/fullchain.pem",
      "keyfile /mosquitto/certs/privkey.pem",
      "tls_version tlsv1.2",
    ]);
    const entry = content(files, p.mosquittoPasswd).split("\n").find((l) => l.startsWith(`${model.mqtt.username}:`))!;
    const [, , iterations, salt, hash] = entry.slice(model.mqtt.username.length + 1).split("$");
    expect(pbkdf2Sync(secrets.mqttPassword!, Buffer.from(salt!, "base64"), Number(iterations), 64, "sha512").toString("base64")).toBe(hash);
    expect(content(files, p.mosquittoAcl)).toMatch(new RegExp(`^user ${model.mqtt.username}\\ntopic readwrite #$`, "m"));
    // The container paths are the ones compose.yaml mounts.
    const yaml = content(files, p.compose);
    expect(serviceBlock(yaml, "mqtt")).toEqual(expect.arrayContaining(['      - "./mosquitto/config:/mosquitto/config"', '      - "mosquitto_data:/mosquitto/data"']));
    expect(serviceBlock(yaml, "mqtt").some((l) => l.includes(":/mosquitto/certs/privkey.pem:ro"))).toBe(true);
  });
});
