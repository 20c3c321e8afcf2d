/**
 * The Compose bundle read by real programs, offline: docker-compose 1.29.2 parses compose.yaml
 * with its env files (`config -q`) for every fixture with a bundle and for the options fixture's
 * nasty secrets, and tells what Compose v1 reads from compose.env; nginx 1.22 checks the
 * bundle's site (`nginx -t`, in a sandbox); Mosquitto 2.0 runs the bundle's standalone
 * mosquitto.conf, and the mqtt service's healthcheck command is run against it.
 */
import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { composeFiles, composePaths, MOSQUITTO_CONTAINER } from "../../src/artifacts/compose.js";
import { siteCertificate } from "../../src/artifacts/paths.js";
import type { Model } from "../../src/model/normalize.js";
import { parseModel } from "../../src/model/parse.js";
import { resolveSecrets, type Secrets, type SecretSources } from "../../src/model/secrets.js";
import type { FileSpec } from "../../src/tree.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { freePort, programsAvailable, relocate, run, sandbox, selfSignedCertificate, stopAll, type Sandbox } from "../helpers/programs.js";
import { nginxMainConf } from "../helpers/nginx.js";
import { clientConfig, publish, roundTrip, startBroker } from "../helpers/mosquitto.js";

const available = programsAvailable("compose lint", {
  "docker-compose": "docker-compose",
  "/usr/bin/python3": "python3-yaml",
  nginx: "nginx",
  mosquitto: "mosquitto",
  mosquitto_pub: "mosquitto-clients",
  openssl: "openssl",
});

const boxes: Sandbox[] = [];
afterEach(async () => {
  await stopAll();
});
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

interface Case {
  readonly name: string;
  readonly model: Model;
  readonly secrets: Secrets;
}

function fromRaw(fixture: string, change: (raw: Record<string, any>) => void): { model: Model; sources: SecretSources } {
  const f = loadFixture(fixture);
  const raw = parseToml(readFileSync(f.modelPath, "utf8")) as Record<string, any>;
  change(raw);
  const parsed = parseModel(raw);
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  return { model: parsed.model, sources: f.sources };
}

function caseOf(name: string, model: Model, sources: SecretSources): Case {
  return { name, model, secrets: resolveSecrets(model, sources).secrets };
}

/** Every fixture with a [compose] section, and the options fixture (nasty secrets) with one added. */
const cases: Case[] = [
  ...fixtureNames().flatMap((name) => {
    const f = loadFixture(name);
    return f.model.compose ? [caseOf(name, f.model, f.sources)] : [];
  }),
  (() => {
    const v = fromRaw("options", (raw) => (raw.compose = {}));
    return caseOf("options+compose (nasty secrets)", v.model, v.sources);
  })(),
];

/** Writes the bundle into a sandbox with its modes, as the CLI writes compose/. */
function writeBundle(box: Sandbox, files: readonly FileSpec[]): string {
  for (const f of files) box.write(`compose/${f.path}`, f.content, f.mode);
  return box.path("compose");
}

function yamlToJson(yaml: string): any {
  const r = run("/usr/bin/python3", ["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"], { input: yaml });
  if (r.code !== 0) throw new Error(`python3 yaml: ${r.output}`);
  return JSON.parse(r.stdout);
}

/** What docker-compose 1.29 (python-dotenv) reads from an env file, by its own function. */
function composeV1EnvFile(path: string): Record<string, string> {
  const r = run("/usr/bin/python3", ["-c", "import sys, json; from compose.config.environment import env_vars_from_file; json.dump(env_vars_from_file(sys.argv[1]), sys.stdout)", path]);
  if (r.code !== 0) throw new Error(`docker-compose's env_vars_from_file on ${path}: ${r.output}`);
  return JSON.parse(r.stdout);
}

/** docker-compose without a daemon or the caller's COMPOSE_* settings. */
function dockerCompose(dir: string, ...args: string[]) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("COMPOSE_") && !k.startsWith("DOCKER_")));
  return run("docker-compose", ["-f", "compose.yaml", ...args], { cwd: dir, env: { ...env, DOCKER_HOST: "unix:///nonexistent.sock" }, timeoutMs: 60_000 });
}

describe.skipIf(!available)("docker-compose 1.29.2 parses the bundle offline", () => {
  it("covers the compose fixture", () => {
    expect(cases.map((c) => c.name)).toContain("compose");
  });

  it.each(cases)("$name: `docker-compose config -q` accepts compose.yaml with its env files", ({ model, secrets }) => {
    const box = sandbox("ncr-compose-");
    boxes.push(box);
    const dir = writeBundle(box, composeFiles(model, secrets));
    const r = dockerCompose(dir, "config", "-q");
    expect(r.code, `docker-compose config -q on ${dir}/compose.yaml:\n${r.output}`).toBe(0);
    expect(r.output, `${dir}/compose.yaml`).not.toMatch(/WARN|obsolete|deprecated/i);

    const config = yamlToJson(dockerCompose(dir, "config").stdout);
    const services = config.services as Record<string, any>;
    expect(Object.keys(services).sort()).toEqual(["asgi", "celery", "celery-beat", "db", "migrate", "mqtt", "nginx", "redis", "web"]);
    const published = Object.values(services).flatMap((s: any) => (s.ports ?? []).map((p: any) => p.published));
    const c = model.compose!;
    expect(published.sort(), `${dir}/compose.yaml publishes`).toEqual([c.http_port, c.https_port, ...(model.mqtt.tls_port ? [model.mqtt.tls_port] : [])].sort());
    expect(published).not.toContain(model.mqtt.port);
    expect(services.web.depends_on.migrate.condition).toBe("service_completed_successfully");
    expect(services.web.depends_on.db.condition).toBe("service_healthy");
    // What the services get from compose.env, as Compose v1 read it (its config output escapes $).
    const unescape = (v: string) => v.replace(/\$\$/g, "$");
    expect(services.web.environment.DB_HOST).toBe("db");
    expect(services.web.environment.MQTT_BROKER_HOST).toBe("mqtt");
    expect(unescape(services.web.environment.MQTT_USERNAME)).toBe(model.mqtt.username);
  });

  it("compose fixture: Compose v1 reads every secret of compose.env and .env.db exactly, the DB password's `$` included", () => {
    const c = cases.find((x) => x.name === "compose")!;
    const box = sandbox("ncr-compose-v1-");
    boxes.push(box);
    const dir = writeBundle(box, composeFiles(c.model, c.secrets));
    const p = composePaths(c.model);
    const env = composeV1EnvFile(`${dir}/${p.env}`);
    expect(c.secrets.dbPassword).toContain("$");
    expect(env.DB_PASSWORD, `${dir}/${p.env}`).toBe(c.secrets.dbPassword);
    expect(env.SECRET_KEY).toBe(c.secrets.secretKey);
    expect(env.MQTT_PASSWORD).toBe(c.secrets.mqttPassword);
    expect(composeV1EnvFile(`${dir}/${p.dbEnv}`).POSTGRES_PASSWORD).toBe(c.secrets.dbPassword);
  });

  it("nasty secrets: Compose v1 reads them exactly except the backslash it keeps before `$` in a value with both (v2 reads all exactly)", () => {
    const c = cases.find((x) => x.name.startsWith("options+compose"))!;
    const box = sandbox("ncr-compose-nasty-");
    boxes.push(box);
    const dir = writeBundle(box, composeFiles(c.model, c.secrets));
    const env = composeV1EnvFile(`${dir}/compose.env`);
    const expected: Record<string, string | undefined> = {
      DB_PASSWORD: c.secrets.dbPassword,
      SECRET_KEY: c.secrets.secretKey,
      MQTT_PASSWORD: c.secrets.mqttPassword,
      EMAIL_HOST_PASSWORD: c.secrets.emailPassword,
    };
    for (const [key, value] of Object.entries(expected)) {
      const v1 = value!.includes("\\") ? value!.replace(/\$/g, "\\$") : value;
      expect(env[key], `${key} in ${dir}/compose.env as docker-compose 1.29 reads it`).toBe(v1);
    }
    // The fixture does exercise both cases.
    expect(Object.values(expected).some((v) => v!.includes("\\") && v!.includes("$"))).toBe(true);
    expect(Object.values(expected).some((v) => !v!.includes("\\") && v!.includes("$"))).toBe(true);
  });
});

/** The installed nginx's version, e.g. 1.22.1. */
function installedNginx(): string {
  const r = run("nginx", ["-v"]);
  const m = /nginx\/(\d+\.\d+\.\d+)/.exec(r.output);
  if (!m) throw new Error(`nginx -v: ${r.output}`);
  return m[1]!;
}

describe.skipIf(!available)("the bundle's nginx site and Mosquitto config, run by the real programs", () => {
  const nginxVersion = available ? installedNginx() : "0";

  it(`nginx -t accepts the bundle's site, rendered with compose.nginx_version = the installed ${nginxVersion} (the bundle's nginx:1.26 would write \`http2 on;\`, which 1.22 does not know)`, async () => {
    const v = fromRaw("compose", (raw) => (raw.compose.nginx_version = nginxVersion));
    const secrets = resolveSecrets(v.model, v.sources).secrets;
    const files = new Map(composeFiles(v.model, secrets).map((f) => [f.path, f.content]));
    const p = composePaths(v.model);
    const box = sandbox("ncr-compose-nginx-");
    boxes.push(box);
    const cert = selfSignedCertificate(box, "site", v.model.site.domain);
    const site = siteCertificate(v.model);
    const snippets = box.path("snippets");
    for (const path of [p.nginxSecurityHeaders, p.nginxProxyHeaders]) box.write(`snippets/${path.slice(path.lastIndexOf("/") + 1)}`, files.get(path)!);
    // /dev/stdout is the container's log pipe; under the test runner it is a socket nginx cannot open.
    let conf = relocate(files.get(p.nginxSite)!, {
      "/etc/nginx/snippets": snippets,
      [site.certificate]: cert.cert,
      [site.key]: cert.key,
      "/dev/stdout": box.path("logs/access.log"),
      "/dev/stderr": box.path("logs/site-error.log"),
    });
    // The service names resolve only on the compose network; the listens move to free ports.
    conf = conf.replace(/server (web|asgi):(\d+);/g, "server 127.0.0.1:$2;");
    for (const port of ["80", "443"]) {
      const free = await freePort();
      conf = conf.replace(new RegExp(`listen ${port}\\b`, "g"), `listen 127.0.0.1:${free}`);
    }
    const sitePath = box.write("conf.d/site.conf", conf);
    box.write("logs/.keep", "");
    box.write("tmp/.keep", "");
    const main = box.write("nginx.conf", nginxMainConf(box.dir, `${box.path("conf.d")}/*.conf`));
    box.write("tmp/.keep", "");
    const r = run("nginx", ["-p", `${box.dir}/`, "-e", box.path("logs/error.log"), "-c", main, "-t"]);
    expect(r.code, `nginx -t on compose/${p.nginxSite} (relocated: ${sitePath}):\n${r.output}`).toBe(0);
  });

  it("mosquitto runs the bundle's standalone mosquitto.conf; anonymous refused, the platform user round-trips, and the mqtt healthcheck passes", async () => {
    const c = cases.find((x) => x.name === "compose")!;
    const files = composeFiles(c.model, c.secrets);
    const byPath = new Map(files.map((f) => [f.path, f.content]));
    const p = composePaths(c.model);
    const box = sandbox("ncr-compose-mq-");
    boxes.push(box);
    const cert = selfSignedCertificate(box, "mqtt", c.model.mqtt.domain);
    const broker = await startBroker(
      box,
      "mqtt",
      {
        conf: byPath.get(p.mosquittoConf)!,
        files: {
          [MOSQUITTO_CONTAINER.passwd]: byPath.get(p.mosquittoPasswd)!,
          [MOSQUITTO_CONTAINER.acl]: byPath.get(p.mosquittoAcl)!,
          [MOSQUITTO_CONTAINER.cert]: readFileSync(cert.cert, "utf8"),
          [MOSQUITTO_CONTAINER.key]: readFileSync(cert.key, "utf8"),
        },
        mapping: { [`${MOSQUITTO_CONTAINER.data}/`]: `${box.path("mqtt")}/` },
      },
      false,
    );
    const where = `compose/${p.mosquittoConf} (started as ${broker.mainConf})`;
    const plain = broker.port((l) => l.port === c.model.mqtt.port);
    const tls = broker.port((l) => l.port === c.model.mqtt.tls_port);
    const anonymous = publish({ port: plain, config: clientConfig(box, "anon", undefined) }, "t", "x");
    expect(anonymous.code, `${where}: anonymous accepted\n${anonymous.output}\n${broker.log()}`).not.toBe(0);
    const good = clientConfig(box, "good", c.secrets.mqttPassword);
    const user = c.model.mqtt.username;
    const rt = await roundTrip({ port: plain, user, config: good }, { port: tls, user, config: good, cafile: cert.cert }, "devices/d1/up", "over tls");
    expect(rt.received, `${where}: no round trip (TLS publish, plain subscribe):\n${rt.output}\n${broker.log()}`).toBe("over tls");

    // The healthcheck compose.yaml gives the mqtt service, against this broker.
    const dir = writeBundle(box, files);
    const config = yamlToJson(dockerCompose(dir, "config").stdout);
    const test = config.services.mqtt.healthcheck.test as string[];
    expect(test[0]).toBe("CMD-SHELL");
    const command = test[1]!.replace(`-p ${c.model.mqtt.port} `, `-p ${plain} `);
    const env = { ...process.env, XDG_CONFIG_HOME: box.path("clients-anon"), HOME: box.path("clients-anon") };
    const healthy = run("sh", ["-c", command], { env });
    expect(healthy.code, `mqtt healthcheck \`${command}\` against ${where}:\n${healthy.output}\n${broker.log()}`).toBe(0);
    await broker.server.stop();
    const down = run("sh", ["-c", command], { env });
    expect(down.code, "the healthcheck fails once the broker is stopped").not.toBe(0);
  });
});
