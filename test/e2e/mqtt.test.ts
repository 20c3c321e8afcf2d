/**
 * Devices and MQTT over TLS with several brokers, from the rendered files and the runbook's own
 * commands, with the real mosquitto, mosquitto_passwd and HAProxy (issue #9 items 5 and 6; that
 * mosquitto_passwd can edit every rendered password file is in test/lint/mosquitto.test.ts):
 *   - HAProxy on the lb terminates MQTT over TLS for both brokers of a bridged pair, its check
 *     sees each broker refuse an anonymous login, and a device with no account is refused;
 *   - a device added the way the runbook says (its add-device step, on every broker) logs in
 *     through the lb and on each broker, its messages reach the platform over the bridge, the
 *     platform's reach it, and it can neither write nor read another device's topics;
 *   - its account survives a re-render, a re-install of the rendered files (as the runbook
 *     installs them) and a restart.
 * Every listener is moved to a free port on 127.0.0.1 (test/helpers/mosquitto.ts); HAProxy's
 * servers and the leaf's bridge follow the move. Everything is stopped by its PID.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostContexts } from "../../src/artifacts/context.js";
import { DEVICE_PLACEHOLDER, mosquittoFamily } from "../../src/artifacts/mosquitto.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { type Step } from "../../src/artifacts/steps.js";
import type { Model } from "../../src/model/normalize.js";
import { parseModel } from "../../src/model/parse.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import { haproxyServers, rendered } from "../helpers/edge.js";
import { clientConfig, giveToMosquitto, publish, roundTrip, startBroker, type Broker, type ClientOptions } from "../helpers/mosquitto.js";
import { freePort, programsAvailable, relocate, run, sandbox, selfSignedCertificate, startServer, stopAll, waitFor, type Sandbox, type Server } from "../helpers/programs.js";

const available = programsAvailable("MQTT devices end-to-end", {
  mosquitto: "mosquitto",
  mosquitto_passwd: "mosquitto",
  mosquitto_pub: "mosquitto-clients",
  mosquitto_sub: "mosquitto-clients",
  haproxy: "haproxy",
  curl: "curl",
  openssl: "openssl",
});

const DOMAIN = "iot.example.com";
const SECRETS = {
  MQ_DB_PASSWORD: "mq-db-password",
  MQ_REDIS_PASSWORD: "mq-redis-password",
  MQ_MQTT_PASSWORD: `platform "pw" $x #y`,
  MQ_BRIDGE_PASSWORD: "bridge-pw-31f0",
  MQ_SECRET_KEY: "mq-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789",
};
const DEVICE = "sensor-1";
const DEVICE_PASSWORD = `dev "pw" $HOME 'q'`;

let box: Sandbox;
let model: Model;
let tree: Tree;
let cert: { cert: string; key: string };
const brokers = new Map<string, Broker>();
/** Where the sandbox keeps each broker's device password file. */
const devicePasswd = new Map<string, string>();
let haproxy: Server;
let tlsPort: number;

async function ports(n: number): Promise<number[]> {
  const picked = new Set<number>();
  while (picked.size < n) picked.add(await freePort());
  return [...picked];
}

/** The lb, one web host (not started: HAProxy's MQTT part needs none), the hub data1 and the leaf data2. */
async function modelOf(): Promise<Model> {
  const [http, https, backend, stats, acme, mqtt, tls, device] = await ports(8);
  const parsed = parseModel({
    project: { django_module: "refapp" },
    site: { domain: DOMAIN, tls: { mode: "files", certificate: "/etc/ssl/mq/fullchain.pem", key: "/etc/ssl/mq/privkey.pem" }, ipv6: false, http_port: http, https_port: https },
    hosts: {
      lb: { address: "127.0.0.1", roles: ["lb"] },
      web1: { address: "127.0.0.11", roles: ["web", "app"] },
      data1: { address: "127.0.0.21", roles: ["db", "redis", "mqtt"] },
      data2: { address: "127.0.0.22", roles: ["mqtt"] },
    },
    postgres: { password: { env: "MQ_DB_PASSWORD" } },
    redis: { password: { env: "MQ_REDIS_PASSWORD" } },
    mqtt: { port: mqtt, tls_port: tls, device_port: device, password: { env: "MQ_MQTT_PASSWORD" }, bridge_password: { env: "MQ_BRIDGE_PASSWORD" } },
    django: { secret_key: { env: "MQ_SECRET_KEY" } },
    haproxy: { backend_port: backend, stats_port: stats, acme_port: acme },
  });
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  return parsed.model;
}

function stepsOf(host: string): Step[] {
  return mosquittoFamily.steps!(hostContexts(model, {}).find((c) => c.host.name === host)!);
}

function step(host: string, id: string): Step {
  const found = stepsOf(host).find((s) => s.id === id);
  if (!found) throw new Error(`${host}'s runbook has no step ${id}`);
  return found;
}

/** Runs the runbook's device-file step on `host`, its path moved into the sandbox (guards included). */
function createDeviceFile(host: string): void {
  const p = pathsOf(model);
  const s = step(host, "mosquitto.devices-file");
  if (s.action.kind !== "commands") throw new Error("the device-file step runs no command");
  for (const c of s.action.commands) {
    const line = relocate(c.creates ? `test -e ${c.creates} || ${c.run}` : c.run, { [p.mosquittoDevicePasswd]: devicePasswd.get(host)! });
    const r = run("bash", ["-c", line]);
    expect(r.code, `${line}\n${r.output}`).toBe(0);
  }
}

/**
 * The runbook's add-device step on `host`, as an operator runs it: the device's name in place of
 * the placeholder, the password typed twice at mosquitto_passwd's prompt, and
 * `systemctl reload mosquitto`, which is Debian's ExecReload: SIGHUP to the broker.
 */
function addDevice(host: string, device: string, password: string): void {
  const p = pathsOf(model);
  const s = step(host, "mosquitto.add-device");
  if (s.action.kind !== "manual") throw new Error("the add-device step is not the operator's");
  for (const line of s.action.lines) {
    if (line === "systemctl reload mosquitto") {
      process.kill(brokers.get(host)!.server.pid, "SIGHUP");
      continue;
    }
    const command = relocate(line, { [p.mosquittoDevicePasswd]: devicePasswd.get(host)!, [DEVICE_PLACEHOLDER]: device });
    const r = run("bash", ["-c", command], { input: `${password}\n${password}\n` });
    expect(r.code, `${command}\n${r.output}`).toBe(0);
  }
}

/** The device listener of a broker (plain behind the lb) and its platform listener on loopback. */
const deviceListener = (host: string) => brokers.get(host)!.port((l) => l.port === model.mqtt.device_port);
const platformListener = (host: string) => brokers.get(host)!.port((l) => l.address === "127.0.0.1" && l.port === model.mqtt.port);

async function startBrokers(): Promise<void> {
  const p = pathsOf(model);
  const hub = model.topology.mqttHub!;
  for (const host of model.topology.mqtt) {
    const dir = box.path(host.name);
    devicePasswd.set(host.name, `${dir}/files/devices.passwd`);
    box.write(`${host.name}/files/.keep`, "");
    giveToMosquitto(dir);
    createDeviceFile(host.name);
    const leafBridge = `address ${hub.address}:${model.mqtt.port}`;
    const broker = await startBroker(
      box,
      host.name,
      {
        conf: rendered(tree, host.name, p.mosquittoConf),
        files: {
          [p.mosquittoPasswd]: rendered(tree, host.name, p.mosquittoPasswd),
          [p.mosquittoAcl]: rendered(tree, host.name, p.mosquittoAcl),
          [p.mosquittoDeviceAcl]: rendered(tree, host.name, p.mosquittoDeviceAcl),
        },
        mapping: { [p.mosquittoDevicePasswd]: devicePasswd.get(host.name)! },
        // The leaf reaches the hub's private listener: in the sandbox, its loopback port.
        ...(host.name !== hub.name
          ? { rewrite: (conf: string) => conf.replace(leafBridge, `address 127.0.0.1:${brokers.get(hub.name)!.port((l) => l.address === hub.address && l.port === model.mqtt.port)}`) }
          : {}),
      },
      true,
    );
    brokers.set(host.name, broker);
  }
}

beforeAll(async () => {
  if (!available) return;
  box = sandbox("ncr-mqtt-");
  model = await modelOf();
  tree = render(model, { env: SECRETS });
  cert = selfSignedCertificate(box, "lb", DOMAIN);
  await startBrokers();
  // HAProxy from the lb's file: the PEM in the sandbox, public binds on loopback, and be_mqtt's
  // servers where the brokers' device listeners now are.
  const p = pathsOf(model);
  const pem = box.write("haproxy/site.pem", `${readFileSync(cert.cert, "utf8")}${readFileSync(cert.key, "utf8")}`, 0o600);
  const servers = Object.fromEntries(model.topology.mqtt.map((h) => [`${h.address}:${model.mqtt.device_port}`, `127.0.0.1:${deviceListener(h.name)}`]));
  const cfg = box.write(
    "haproxy/haproxy.cfg",
    relocate(rendered(tree, "lb", p.haproxyConfig), { [p.haproxyPem]: pem, "/run/haproxy/admin.sock": box.path("haproxy/admin.sock"), ...servers }).replace(/^(\s*bind) :/gm, "$1 127.0.0.1:"),
  );
  const check = run("haproxy", ["-c", "-f", cfg]);
  expect(check.code, check.output).toBe(0);
  haproxy = startServer("haproxy", ["-db", "-f", cfg]);
  tlsPort = model.mqtt.tls_port!;
}, 120_000);

afterAll(async () => {
  if (!available) return;
  await stopAll();
  box.cleanup();
}, 60_000);

const platform = (host: string): ClientOptions => ({ port: platformListener(host), user: model.mqtt.username, config: clientConfig(box, "platform", SECRETS.MQ_MQTT_PASSWORD) });
const device = (port: number, tls: boolean): ClientOptions => ({ port, user: DEVICE, config: clientConfig(box, DEVICE, DEVICE_PASSWORD), ...(tls ? { cafile: cert.cert } : {}) });
const viaLb = () => device(tlsPort, true);
const logs = () => [...brokers].map(([name, b]) => `--- ${name} ---\n${b.log()}`).join("\n") + `\n--- haproxy ---\n${haproxy.output()}`;

/**
 * What `sub` receives on `topics` while `pub` publishes `denied` to its topic and then, until it
 * arrives, `allowed`: messages from one publisher arrive in order, so once the allowed one is
 * in, the denied one would have been too.
 */
async function deliveredOf(sub: ClientOptions, topics: string[], pub: ClientOptions, denied: [string, string], allowed: [string, string]): Promise<string[]> {
  const args = ["-h", "127.0.0.1", "-p", String(sub.port), "-u", sub.user!, ...topics.flatMap((t) => ["-t", t]), "-v", "-W", "15", ...(sub.cafile ? ["--cafile", sub.cafile] : [])];
  const child = spawn("mosquitto_sub", args, { env: { ...process.env, XDG_CONFIG_HOME: sub.config, HOME: sub.config }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    for (let i = 0; i < 40 && !out.includes(allowed[1]); i++) {
      publish(pub, denied[0], denied[1]);
      publish(pub, allowed[0], allowed[1]);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
  return out.trim().split("\n");
}

describe.skipIf(!available)("devices on bridged brokers behind the lb", () => {
  it("item 5: HAProxy terminates MQTT over TLS for both brokers; its check sees each refuse an anonymous login", { timeout: 60_000 }, async () => {
    let states: string[] = [];
    await waitFor("be_mqtt's brokers to be checked UP", async () => {
      const servers = (await haproxyServers(model).catch(() => [])).filter((s) => s.backend === "be_mqtt");
      states = servers.map((s) => `${s.backend}/${s.server} ${s.status} ${s.check}`);
      return servers.length === 2 && servers.every((s) => s.status === "UP" && s.check === "L7OK");
    }, 40_000).catch(() => undefined);
    expect(states.sort(), logs()).toEqual(["be_mqtt/data1 UP L7OK", "be_mqtt/data2 UP L7OK"]);
    // Through the lb, over TLS: no anonymous client and no device without an account.
    const anonymous = publish({ port: tlsPort, cafile: cert.cert, config: clientConfig(box, "anonymous", undefined) }, "devices/x/state", "x");
    expect(anonymous.code, anonymous.output).not.toBe(0);
    expect(anonymous.output).toMatch(/not authori[sz]ed/);
    const unknown = publish(viaLb(), `devices/${DEVICE}/state`, "before the account exists");
    expect(unknown.code, unknown.output).not.toBe(0);
    expect(unknown.output).toMatch(/not authori[sz]ed/);
  });

  it("item 6: a device added the runbook's way logs in through the lb and on each broker, and its messages cross the bridge both ways", { timeout: 90_000 }, async () => {
    for (const host of model.topology.mqtt) addDevice(host.name, DEVICE, DEVICE_PASSWORD);
    const topic = `${model.mqtt.device_prefix}/${DEVICE}/state`;
    const lb = await roundTrip(platform("data1"), viaLb(), topic, "through the lb");
    expect(lb.received, `${lb.output}\n${logs()}`).toBe("through the lb");
    // On the leaf: the device's message reaches the platform on the hub, and back.
    const up = await roundTrip(platform("data1"), device(deviceListener("data2"), false), topic, "leaf to hub");
    expect(up.received, `${up.output}\n${logs()}`).toBe("leaf to hub");
    const command = `${model.mqtt.device_prefix}/${DEVICE}/command`;
    const down = await roundTrip(device(deviceListener("data2"), false), platform("data1"), command, "hub to leaf");
    expect(down.received, `${down.output}\n${logs()}`).toBe("hub to leaf");
  });

  it("item 6: the device may neither write nor read another device's topics or the platform's", { timeout: 60_000 }, async () => {
    const own = `${model.mqtt.device_prefix}/${DEVICE}/state`;
    const other = `${model.mqtt.device_prefix}/sensor-2/state`;
    // Writes: the platform, subscribed to everything, gets the device's own topic only.
    const written = await deliveredOf(platform("data1"), ["#"], device(deviceListener("data1"), false), [other, "forged"], [own, "genuine"]);
    expect(written, logs()).toContain(`${own} genuine`);
    expect(written.filter((l) => l.includes("forged"))).toEqual([]);
    const platformTopic = await deliveredOf(platform("data1"), ["#"], device(deviceListener("data1"), false), [`${model.project.name}/jobs`, "forged"], [own, "again"]);
    expect(platformTopic.filter((l) => l.includes("forged"))).toEqual([]);
    // Reads: subscribed to both, the device gets its own messages and never the other device's.
    const read = await deliveredOf(device(deviceListener("data1"), false), [`${model.mqtt.device_prefix}/#`], platform("data1"), [other, "not yours"], [own, "yours"]);
    expect(read, logs()).toContain(`${own} yours`);
    expect(read.filter((l) => l.includes("not yours"))).toEqual([]);
  });

  it("item 6: the account survives a re-render, a re-install of the rendered files and a restart", { timeout: 90_000 }, async () => {
    const p = pathsOf(model);
    const again = render(model, { env: SECRETS });
    for (const host of model.topology.mqtt) {
      // The runbook's install lines: every rendered file of the host, with its mode and owner.
      for (const path of [p.mosquittoPasswd, p.mosquittoAcl, p.mosquittoDeviceAcl]) {
        const f = again.get(`${host.name}${path}`)!;
        const target = box.write(`${host.name}/files/${path.split("/").pop()}`, f.content, f.mode);
        giveToMosquitto(target);
      }
      expect([...again.keys()].filter((k) => k.startsWith(`${host.name}/`) && k.endsWith(p.mosquittoDevicePasswd))).toEqual([]);
      // The setup step again (a second run of the runbook): its guard leaves the file alone.
      const before = readFileSync(devicePasswd.get(host.name)!, "utf8");
      createDeviceFile(host.name);
      expect(readFileSync(devicePasswd.get(host.name)!, "utf8")).toBe(before);
      expect(before).toMatch(new RegExp(`^${DEVICE}:`, "m"));
      brokers.set(host.name, await brokers.get(host.name)!.restart());
    }
    const topic = `${model.mqtt.device_prefix}/${DEVICE}/state`;
    for (const host of model.topology.mqtt) {
      const trip = await roundTrip(platform("data1"), device(deviceListener(host.name), false), topic, `after the re-install on ${host.name}`);
      expect(trip.received, `${trip.output}\n${logs()}`).toBe(`after the re-install on ${host.name}`);
    }
  });
});
