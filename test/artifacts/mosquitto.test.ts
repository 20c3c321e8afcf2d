/**
 * The Mosquitto family: which hosts get which files, the listeners each one needs, hashes that
 * mosquitto_passwd would accept (checked with node:crypto, not with the code under test), the
 * star of bridges, modes and owners, and a runbook that never shows a password.
 */
import { stepPackages, unguardedLines } from "../../src/artifacts/steps.js";
import { pbkdf2Js } from "../../src/crypto.js";
import { pbkdf2Sync } from "node:crypto";
import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import type { Step } from "../../src/artifacts/steps.js";
import { haproxyFamily } from "../../src/artifacts/haproxy.js";
import { DEVICE_PLACEHOLDER, mosquittoFamily } from "../../src/artifacts/mosquitto.js";
import { nginxFamily } from "../../src/artifacts/nginx.js";
import { hostContexts } from "../../src/artifacts/context.js";
import { flowsTo, flowTable } from "../../src/model/flows.js";
import { mqttLetsEncryptLive, pathsOf, siteCertificate } from "../../src/artifacts/paths.js";
import type { Model } from "../../src/model/normalize.js";
import { parseModel } from "../../src/model/parse.js";
import { resolveSecrets, type Secrets } from "../../src/model/secrets.js";
import type { FileSpec } from "../../src/tree.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";

interface Rendered {
  readonly model: Model;
  readonly secrets: Secrets;
  readonly files: (host: string) => FileSpec[];
  readonly steps: (host: string) => Step[];
}

function rendered(model: Model, secrets: Secrets): Rendered {
  const contexts = hostContexts(model, secrets, pbkdf2Js);
  const ctx = (name: string): HostContext => {
    const found = contexts.find((c) => c.host.name === name);
    if (!found) throw new Error(`no host ${name}`);
    return found;
  };
  return { model, secrets, files: (h) => mosquittoFamily.files(ctx(h)), steps: (h) => mosquittoFamily.steps!(ctx(h)) };
}

function fixture(name: string): Rendered {
  const f = loadFixture(name);
  return rendered(f.model, resolveSecrets(f.model, f.sources).secrets);
}

/** A fixture's model with some keys changed (secrets from its secrets.env). */
function variant(name: string, change: (raw: Record<string, any>) => void): Rendered {
  const f = loadFixture(name);
  const raw = parseToml(readFileSync(f.modelPath, "utf8")) as Record<string, any>;
  change(raw);
  const parsed = parseModel(raw);
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  return rendered(parsed.model, resolveSecrets(parsed.model, f.sources).secrets);
}

function byPath(files: FileSpec[], path: string): FileSpec {
  const f = files.find((x) => x.path === path);
  if (!f) throw new Error(`${path} not rendered; got ${files.map((x) => x.path).join(", ")}`);
  return f;
}

const lines = (text: string) => text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));

/** The conf.d file as its listener blocks: "listener PORT [ADDRESS]" -> the lines under it. */
function listenerBlocks(conf: string): Map<string, string[]> {
  const blocks = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const l of lines(conf)) {
    if (l.startsWith("listener ")) blocks.set(l, (current = []));
    else if (l.startsWith("connection ")) current = undefined;
    else current?.push(l);
  }
  return blocks;
}

/** The minimal model with its broker on a host of its own and no lb (it terminates MQTT over TLS itself). */
function separateBroker(change: (raw: Record<string, any>) => void = () => {}): Rendered {
  return variant("minimal", (raw) => {
    raw.hosts = { server: { address: "192.168.1.10", roles: ["web", "app", "db", "redis"] }, broker: { address: "192.168.1.20", roles: ["mqtt"] } };
    raw.mqtt.tls_port = 8883;
    raw.mqtt.domain = "mqtt.example.org";
    change(raw);
  });
}

describe("mosquitto family: files", () => {
  it("renders the conf.d file, the password file and the ACL on mqtt hosts (and the device ACL with a device listener), nothing elsewhere", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const p = pathsOf(r.model);
      for (const host of r.model.topology.hosts) {
        const files = r.files(host.name).map((f) => f.path).sort();
        const expected = host.roles.has("mqtt") ? [p.mosquittoAcl, p.mosquittoConf, p.mosquittoPasswd, ...(r.model.mqtt.tls_port === undefined ? [] : [p.mosquittoDeviceAcl])] : [];
        expect(files, `${name}/${host.name}`).toEqual(expected.sort());
        // The device password file is the operator's: never rendered, so never overwritten.
        expect(files).not.toContain(p.mosquittoDevicePasswd);
      }
    }
  });

  it("never repeats what Debian's main file sets (MQ-01), gives every listener its own authentication and has no cafile (MQ-04, MQ-07)", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const p = pathsOf(r.model);
      for (const host of r.model.topology.mqtt) {
        const content = byPath(r.files(host.name), p.mosquittoConf).content;
        const conf = lines(content);
        const where = `${name}/${host.name}`;
        expect(conf.filter((l) => /^(log_dest|pid_file|persistence|include_dir)\b/.test(l)), where).toEqual([]);
        expect(conf.filter((l) => /^(cafile|capath|require_certificate)\b/.test(l)), where).toEqual([]);
        // per_listener_settings true, before any listener, and every listener with all three
        // auth lines: never a listener that falls back to anonymous access.
        expect(conf.indexOf("per_listener_settings true"), where).toBe(0);
        const blocks = listenerBlocks(content);
        for (const [listener, block] of blocks) {
          const devices = r.model.mqtt.tls_port !== undefined && listener === [...blocks.keys()].at(-1);
          const auth = devices ? [p.mosquittoDevicePasswd, p.mosquittoDeviceAcl] : [p.mosquittoPasswd, p.mosquittoAcl];
          expect(block.filter((l) => /^(allow_anonymous|password_file|acl_file) /.test(l)), `${where}: ${listener}`).toEqual([
            "allow_anonymous false",
            `password_file ${auth[0]}`,
            `acl_file ${auth[1]}`,
          ]);
        }
      }
    }
  });

  it("listens in plain text on loopback, on the private address only for remote clients, never on every address (MQ-03)", () => {
    const plain = (r: Rendered, host: string) =>
      lines(byPath(r.files(host), pathsOf(r.model).mosquittoConf).content).filter((l) => l.startsWith(`listener ${r.model.mqtt.port}`));
    const single = fixture("single-node");
    expect(plain(single, "node1")).toEqual(["listener 1883 127.0.0.1"]);
    const options = fixture("options");
    expect(plain(options, "iot1")).toEqual([`listener ${options.model.mqtt.port} 127.0.0.1`]);
    expect(options.model.mqtt.port).toBe(1884);
    // ha-cluster: the app and worker hosts have no broker and use mqtt1's private address.
    const cluster = fixture("ha-cluster");
    expect(plain(cluster, "mqtt1")).toEqual(["listener 1883 127.0.0.1", "listener 1883 10.0.0.51"]);
    const clients = (r: Rendered, host: string) => flowsTo(flowTable(r.model), r.model.topology.hosts.find((h) => h.name === host)!, "mqtt").map((f) => `${f.from.name} (${f.client})`);
    expect(clients(cluster, "mqtt1")).toEqual(["app1 (django)", "app2 (django)", "app3 (django)", "worker1 (django)"]);
    // ha-sentinel: the hub data1 serves the app hosts and the leaf's bridge; the leaf only itself.
    const sentinel = fixture("ha-sentinel");
    expect(plain(sentinel, "data1")).toEqual(["listener 1883 127.0.0.1", "listener 1883 10.1.0.21"]);
    expect(plain(sentinel, "data2")).toEqual(["listener 1883 127.0.0.1"]);
    expect(clients(sentinel, "data1")).toEqual(["app1 (django)", "app2 (django)", "data2 (bridge)"]);
    expect(clients(sentinel, "data2")).toEqual([]);
  });

  it("has a device listener exactly when mqtt.tls_port is set: TLS on every address without an lb, plain on the private address behind one (issue #9 item 5)", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const p = pathsOf(r.model);
      for (const host of r.model.topology.mqtt) {
        const content = byPath(r.files(host.name), p.mosquittoConf).content;
        const conf = lines(content);
        const tls = r.model.mqtt.tls_port;
        const deviceListeners = [...listenerBlocks(content)].filter(([, block]) => block.includes(`password_file ${p.mosquittoDevicePasswd}`));
        if (tls === undefined) {
          expect(conf.filter((l) => /^(certfile|keyfile|tls_version)\b/.test(l)), name).toEqual([]);
          expect(deviceListeners, name).toEqual([]);
          continue;
        }
        expect(deviceListeners, `${name}/${host.name}`).toHaveLength(1);
        const [listener, block] = deviceListeners[0]!;
        if (r.model.topology.lb) {
          // HAProxy terminated TLS: plain MQTT from the lb only, on the private address.
          expect(listener).toBe(`listener ${r.model.mqtt.device_port} ${host.address}`);
          expect(block.filter((l) => /^(certfile|keyfile|tls_version)\b/.test(l))).toEqual([]);
        } else {
          expect(listener).toBe(`listener ${tls}`);
          expect(block.slice(0, 3)).toEqual([`certfile ${p.mosquittoCert}`, `keyfile ${p.mosquittoKey}`, "tls_version tlsv1.2"]);
        }
      }
    }
  });

  it("writes mosquitto_passwd hashes that PBKDF2-SHA512 of the password reproduces, and never the password", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const p = pathsOf(r.model);
      for (const host of r.model.topology.mqtt) {
        const passwd = byPath(r.files(host.name), p.mosquittoPasswd);
        expect([passwd.mode, passwd.owner, passwd.group], `${name}: MQ-09`).toEqual([0o600, "mosquitto", "mosquitto"]);
        // Nothing but user:hash lines: mosquitto_passwd calls a comment line corruption and
        // drops the users it could not read (issue #9 item 6).
        expect(passwd.content.split("\n").filter((l) => l !== "" && !/^[^#:\s][^:\s]*:\$7\$/.test(l)), `${name}/${host.name}`).toEqual([]);
        const entries = new Map(lines(passwd.content).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
        const expected: [string, string][] = [[r.model.mqtt.username, r.secrets.mqttPassword!]];
        if (r.model.topology.mqtt.length > 1 && host.name === r.model.topology.mqttHub!.name) expected.push([r.model.mqtt.bridge_username, r.secrets.mqttBridgePassword!]);
        expect([...entries.keys()].sort(), `${name}/${host.name}`).toEqual(expected.map(([u]) => u).sort());
        for (const [user, password] of expected) {
          const m = /^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(entries.get(user)!);
          expect(m, `${name}: ${user}'s entry is in mosquitto's $7$ format`).not.toBeNull();
          const [, iterations, salt, hash] = m!;
          expect(Buffer.from(salt!, "base64")).toHaveLength(12);
          const recomputed = pbkdf2Sync(Buffer.from(password, "utf8"), Buffer.from(salt!, "base64"), Number(iterations), 64, "sha512");
          expect(recomputed.toString("base64"), `${name}: ${user}`).toBe(hash);
          expect(passwd.content).not.toContain(password);
        }
      }
    }
  });

  it("gives each user the ACL it needs: the platform (and the hub's bridge user) everything, devices their own subtree (MQ-08)", () => {
    const sentinel = fixture("ha-sentinel");
    const p = pathsOf(sentinel.model);
    const hubAcl = lines(byPath(sentinel.files("data1"), p.mosquittoAcl).content);
    const leafAcl = lines(byPath(sentinel.files("data2"), p.mosquittoAcl).content);
    const platform = sentinel.model.mqtt.username;
    const bridge = sentinel.model.mqtt.bridge_username;
    const device = `pattern readwrite ${sentinel.model.mqtt.device_prefix}/%u/#`;
    expect(hubAcl).toEqual([`user ${platform}`, "topic readwrite #", `user ${bridge}`, "topic readwrite #"]);
    expect(leafAcl).toEqual([`user ${platform}`, "topic readwrite #"]);
    // Devices log in on their own listener, whose ACL has the pattern only.
    for (const broker of ["data1", "data2"]) expect(lines(byPath(sentinel.files(broker), p.mosquittoDeviceAcl).content)).toEqual([device]);
    for (const path of [p.mosquittoAcl, p.mosquittoDeviceAcl]) {
      const acl = byPath(sentinel.files("data1"), path);
      // The broker (as mosquitto) reads it; from 2.0.16 it warns about files it does not own or others can read.
      expect([acl.mode & 0o007, acl.owner]).toEqual([0, "mosquitto"]);
    }
  });

  it("bridges every other broker to the hub (a star), with the bridge password only in a file the broker's group reads", () => {
    const r = fixture("ha-sentinel");
    const p = pathsOf(r.model);
    const hub = r.model.topology.mqttHub!;
    expect(hub.name).toBe("data1");
    const hubConf = byPath(r.files("data1"), p.mosquittoConf);
    expect(lines(hubConf.content).filter((l) => l.startsWith("connection "))).toEqual([]);
    // Without a bridge the file holds no secret and stays a plain config.
    expect([hubConf.mode, hubConf.content.includes(r.secrets.mqttBridgePassword!)]).toEqual([0o644, false]);
    const leaf = byPath(r.files("data2"), p.mosquittoConf);
    const conf = lines(leaf.content);
    const at = conf.findIndex((l) => l.startsWith("connection "));
    expect(at).toBeGreaterThan(0);
    expect(conf.slice(at)).toEqual(
      expect.arrayContaining([
        `address ${hub.address}:${r.model.mqtt.port}`,
        `remote_username ${r.model.mqtt.bridge_username}`,
        `remote_password ${r.secrets.mqttBridgePassword}`,
        "topic # both 1",
        "try_private true",
        "notifications false",
        "bridge_protocol_version mqttv311",
      ]),
    );
    expect(conf.slice(at).some((l) => l.startsWith("cleansession "))).toBe(true);
    expect([leaf.mode, leaf.owner, leaf.group]).toEqual([0o640, "root", "mosquitto"]);
    // Single-broker fixtures have no bridge and no bridge user.
    const single = fixture("single-node");
    expect(byPath(single.files("node1"), pathsOf(single.model).mosquittoConf).content).not.toMatch(/^connection /m);
  });

  it("never writes a secret into a file others can read", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const secrets = Object.values(r.secrets).filter((v): v is string => typeof v === "string");
      for (const host of r.model.topology.mqtt) {
        for (const f of r.files(host.name)) {
          if ((f.mode & 0o004) === 0) continue;
          for (const s of secrets) expect(f.content.includes(s), `${name}/${host.name}${f.path} (mode ${f.mode.toString(8)}) holds a secret`).toBe(false);
        }
      }
    }
  });
});

describe("mosquitto family: runbook", () => {
  const allCommands = (steps: Step[]) => steps.flatMap(unguardedLines);

  it("installs mosquitto and its clients, restarts it, and never shows a password on a command line", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const secrets = Object.values(r.secrets).filter((v): v is string => typeof v === "string");
      for (const host of r.model.topology.hosts) {
        const steps = r.steps(host.name);
        if (!host.roles.has("mqtt")) {
          expect(steps, `${name}/${host.name}`).toEqual([]);
          continue;
        }
        expect(steps.flatMap(stepPackages)).toEqual(expect.arrayContaining(["mosquitto", "mosquitto-clients"]));
        const commands = allCommands(steps);
        expect(commands).toContain("systemctl restart mosquitto");
        for (const c of commands) {
          expect(c, `${name}/${host.name}: -P on a command line`).not.toMatch(/(^|\s)-P\s+(?!%s)/);
          for (const s of secrets) expect(c.includes(s), `${name}/${host.name}: a secret in "${c}"`).toBe(false);
        }
        // The password reaches the clients through their options file, written by a shell builtin.
        expect(commands.some((c) => c.includes("XDG_CONFIG_HOME=") && c.includes("mosquitto_pub"))).toBe(true);
      }
    }
  });

  it("behind an lb the broker needs no certificate: HAProxy terminates MQTT over TLS with the lb's, which names mqtt.domain (issue #9 item 5)", () => {
    const r = fixture("ha-cluster");
    expect(r.model.mqtt.domain).toBe("mqtt.iot.example.com");
    const steps = r.steps("mqtt1");
    expect(steps.filter((s) => s.phase === "certificates")).toEqual([]);
    expect(allCommands(steps).filter((c) => c.includes("certbot"))).toEqual([]);
    const lb = hostContexts(r.model, r.secrets, pbkdf2Js).find((c) => c.host.name === "lb1")!;
    const certbot = allCommands(haproxyFamily.steps!(lb)).filter((c) => c.startsWith("certbot "));
    expect(certbot).toHaveLength(1);
    expect(certbot[0]).toContain(`-d ${r.model.site.domain} -d www.iot.example.com -d ${r.model.mqtt.domain} `);
  });

  it("Let's Encrypt: a broker of its own (no lb) gets its own certificate for mqtt.domain with certbot --standalone, for the deploy hook to copy", () => {
    const r = separateBroker();
    const p = pathsOf(r.model);
    const certbot = allCommands(r.steps("broker")).filter((c) => c.startsWith("certbot "));
    expect(certbot).toHaveLength(1);
    expect(certbot[0]).toMatch(/^certbot certonly --standalone /);
    expect(certbot[0]).toContain(`-d ${r.model.mqtt.domain}`);
    // The lineage certbot creates is the one the deploy hook is run for (paths.ts).
    expect(certbot[0]).toContain(`--cert-name ${r.model.mqtt.domain}`);
    expect(mqttLetsEncryptLive(r.model)).toBe(`/etc/letsencrypt/live/${r.model.mqtt.domain}`);
    expect(r.steps("broker").find((s) => s.phase === "certificates")!.why).toContain(p.certbotDeployHook);
  });

  it("Let's Encrypt on the public web host: the site's certificate is the MQTT one, and names mqtt.domain when it is another name", () => {
    const single = fixture("single-node");
    const commands = allCommands(single.steps("node1"));
    expect(commands.filter((c) => c.startsWith("certbot "))).toEqual([]);
    expect(single.model.mqtt.domain).toBe(single.model.site.domain);
    expect(single.steps("node1").find((s) => s.phase === "certificates")!.why).toMatch(/site certificate/);
    const other = variant("single-node", (raw) => (raw.mqtt.domain = "mqtt.iot.example.com"));
    expect(allCommands(other.steps("node1")).filter((c) => c.startsWith("certbot "))).toEqual([]);
    // nginx's certbot line (webroot, port 80 is nginx's) asks for the site's names and mqtt.domain in one lineage.
    const node = hostContexts(other.model, other.secrets, pbkdf2Js)[0]!;
    const nginx = allCommands(nginxFamily.steps!(node)).filter((c) => c.startsWith("certbot "));
    expect(nginx).toHaveLength(1);
    expect(nginx[0]).toContain("-d mqtt.iot.example.com");
    // nginx's port 80 answers the challenge for it; HTTPS serves the site's names only.
    const site = nginxFamily.files(node).find((f) => f.path === pathsOf(other.model).nginxSite)!.content;
    const serverNames = site.split("\n").filter((l) => l.trim().startsWith("server_name ") && !l.includes(" _;"));
    expect(serverNames.map((l) => l.includes("mqtt.iot.example.com"))).toEqual([true, false]);
    expect(mqttLetsEncryptLive(other.model)).toBe(siteCertificate(other.model).certificate.replace(/\/fullchain\.pem$/, ""));
  });

  it("creates the device password file once, empty, for the broker, and says how to add a device without a password on the command line (issue #9 item 6)", () => {
    for (const [r, host, others] of [
      [fixture("single-node"), "node1", []],
      [fixture("ha-sentinel"), "data2", ["data1"]],
    ] as const) {
      const p = pathsOf(r.model);
      const steps = r.steps(host);
      const file = steps.find((s) => s.id === "mosquitto.devices-file")!;
      expect(file.phase).toBe("files");
      expect(file.action).toEqual({ kind: "commands", commands: [{ run: `install -m 0600 -o mosquitto -g mosquitto /dev/null ${p.mosquittoDevicePasswd}`, creates: p.mosquittoDevicePasswd }] });
      // Before the broker starts: it refuses to start without its password files.
      expect(steps.indexOf(file)).toBeLessThan(steps.findIndex((s) => s.id === "mosquitto.restart"));
      const add = steps.find((s) => s.id === "mosquitto.add-device")!;
      expect(add.interactive).toBe(true);
      expect(add.action).toEqual({ kind: "manual", lines: [`mosquitto_passwd ${p.mosquittoDevicePasswd} ${DEVICE_PLACEHOLDER}`, "systemctl reload mosquitto"] });
      for (const other of others) expect(add.why).toContain(other);
    }
    // No device listener (no tls_port): no device file and nothing to add.
    const minimal = fixture("minimal");
    expect(minimal.steps("server").filter((s) => s.id.startsWith("mosquitto.devices") || s.id === "mosquitto.add-device")).toEqual([]);
  });

  it("certificate files: copied for the mosquitto user from the site certificate paths, key 0600", () => {
    const r = variant("options", (raw) => (raw.mqtt.tls_port = 8883));
    const p = pathsOf(r.model);
    const cert = siteCertificate(r.model);
    const commands = allCommands(r.steps("iot1"));
    expect(commands).toContain(`install -D -o mosquitto -g mosquitto -m 0600 ${cert.key} ${p.mosquittoKey}`);
    expect(commands.some((c) => c.includes(`${cert.certificate} ${p.mosquittoCert}`) && c.includes("-o mosquitto"))).toBe(true);
    expect(commands.filter((c) => c.startsWith("certbot "))).toEqual([]);
  });
});

describe("MQTT over TLS in the model (issue #9 item 5)", () => {
  const warnings = (raw: Record<string, any>) => {
    const parsed = parseModel(raw);
    if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
    return parsed.warnings.filter((w) => w.path.startsWith("mqtt."));
  };
  const raw = (name: string) => parseToml(readFileSync(loadFixture(name).modelPath, "utf8")) as Record<string, any>;

  it("warns that no device can reach a broker without mqtt.tls_port, single host or not", () => {
    const single = warnings(raw("minimal"));
    expect(single.map((w) => w.path)).toEqual(["mqtt.tls_port"]);
    expect(single[0]!.message).toMatch(/no device can reach it/);
    const cluster = raw("ha-cluster");
    delete cluster.mqtt.tls_port;
    expect(warnings(cluster).map((w) => w.path)).toEqual(["mqtt.tls_port"]);
    for (const name of ["single-node", "ha-cluster", "ha-sentinel"]) expect(warnings(raw(name)), name).toEqual([]);
  });

  it("behind an lb: devices enter on the lb's TLS port, and only the lb reaches the brokers' device listeners", () => {
    const m = loadFixture("ha-sentinel").model;
    const table = flowTable(m);
    expect(table.entries.filter((e) => e.service === "mqtt-tls").map((e) => `${e.to.name}:${e.port}`)).toEqual(["lb:8883"]);
    // No port 80 on a broker for a certificate it does not need (the name resolves to the lb).
    expect(table.entries.filter((e) => m.topology.mqtt.some((b) => b.name === e.to.name) && e.service !== "ssh")).toEqual([]);
    const devices = table.flows.filter((f) => f.service === "mqtt-devices").map((f) => `${f.from.name} -> ${f.to.name}:${f.port}`);
    expect(devices).toEqual(["lb -> data1:1884", "lb -> data2:1884"]);
  });

  it("without an lb: devices enter on the broker itself, which answers its own ACME challenge on port 80 when it is not the site's host", () => {
    const single = loadFixture("single-node").model;
    expect(flowTable(single).entries.filter((e) => e.service === "mqtt-tls").map((e) => `${e.to.name}:${e.port}`)).toEqual(["node1:8883"]);
    const r = separateBroker();
    const entries = flowTable(r.model).entries.filter((e) => e.to.name === "broker" && e.service !== "ssh");
    expect(entries.map((e) => `${e.service}:${e.port}`)).toEqual(["mqtt-tls:8883", "http:80"]);
    expect(flowTable(r.model).flows.filter((f) => f.service === "mqtt-devices")).toEqual([]);
  });
});
