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
import { mosquittoFamily } from "../../src/artifacts/mosquitto.js";
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

describe("mosquitto family: files", () => {
  it("renders exactly the conf.d file, the password file and the ACL on mqtt hosts, and nothing elsewhere", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const p = pathsOf(r.model);
      for (const host of r.model.topology.hosts) {
        const files = r.files(host.name).map((f) => f.path).sort();
        expect(files, `${name}/${host.name}`).toEqual(host.roles.has("mqtt") ? [p.mosquittoAcl, p.mosquittoConf, p.mosquittoPasswd].sort() : []);
      }
    }
  });

  it("never repeats what Debian's main file sets (MQ-01), authenticates every listener alike and has no cafile (MQ-04, MQ-07)", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const p = pathsOf(r.model);
      for (const host of r.model.topology.mqtt) {
        const conf = lines(byPath(r.files(host.name), p.mosquittoConf).content);
        const where = `${name}/${host.name}`;
        expect(conf.filter((l) => /^(log_dest|pid_file|persistence|include_dir)\b/.test(l)), where).toEqual([]);
        expect(conf.filter((l) => /^(cafile|capath|require_certificate)\b/.test(l)), where).toEqual([]);
        expect(conf, where).toEqual(expect.arrayContaining(["per_listener_settings false", "allow_anonymous false", `password_file ${p.mosquittoPasswd}`, `acl_file ${p.mosquittoAcl}`]));
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

  it("has a TLS listener on every address with the copied certificate exactly when mqtt.tls_port is set", () => {
    for (const name of fixtureNames()) {
      const r = fixture(name);
      const p = pathsOf(r.model);
      for (const host of r.model.topology.mqtt) {
        const conf = lines(byPath(r.files(host.name), p.mosquittoConf).content);
        const tls = r.model.mqtt.tls_port;
        if (tls === undefined) {
          expect(conf.filter((l) => /^(certfile|keyfile|tls_version)\b/.test(l)), name).toEqual([]);
          continue;
        }
        const at = conf.indexOf(`listener ${tls}`);
        expect(at, `${name}/${host.name}: listener ${tls}`).toBeGreaterThanOrEqual(0);
        expect(conf.slice(at + 1, at + 4)).toEqual([`certfile ${p.mosquittoCert}`, `keyfile ${p.mosquittoKey}`, "tls_version tlsv1.2"]);
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
    expect(hubAcl).toEqual([`user ${platform}`, "topic readwrite #", `user ${bridge}`, "topic readwrite #", device]);
    expect(leafAcl).toEqual([`user ${platform}`, "topic readwrite #", device]);
    const acl = byPath(sentinel.files("data1"), p.mosquittoAcl);
    // The broker (as mosquitto) reads it; from 2.0.16 it warns about files it does not own or others can read.
    expect([acl.mode & 0o007, acl.owner]).toEqual([0, "mosquitto"]);
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

  it("Let's Encrypt: a separate mqtt host gets its own certificate for mqtt.domain with certbot --standalone, for the deploy hook to copy", () => {
    const r = fixture("ha-cluster");
    const p = pathsOf(r.model);
    const commands = allCommands(r.steps("mqtt1"));
    const certbot = commands.filter((c) => c.startsWith("certbot "));
    expect(certbot).toHaveLength(1);
    expect(certbot[0]).toMatch(/^certbot certonly --standalone /);
    expect(certbot[0]).toContain(`-d ${r.model.mqtt.domain}`);
    expect(r.model.mqtt.domain).toBe("mqtt.iot.example.com");
    // The lineage certbot creates is the one the deploy hook is run for (paths.ts).
    expect(certbot[0]).toContain(`--cert-name ${r.model.mqtt.domain}`);
    expect(mqttLetsEncryptLive(r.model)).toBe(`/etc/letsencrypt/live/${r.model.mqtt.domain}`);
    expect(r.steps("mqtt1").find((s) => s.phase === "certificates")!.why).toContain(p.certbotDeployHook);
  });

  it("Let's Encrypt on the public web host: the site's certificate when mqtt.domain is the site name, webroot for an alias", () => {
    const single = fixture("single-node");
    const commands = allCommands(single.steps("node1"));
    expect(commands.filter((c) => c.startsWith("certbot "))).toEqual([]);
    expect(single.model.mqtt.domain).toBe(single.model.site.domain);
    expect(single.steps("node1").find((s) => s.phase === "certificates")!.why).toMatch(/site certificate/);
    const alias = variant("single-node", (raw) => (raw.mqtt.domain = "www.iot.example.com"));
    const certbot = allCommands(alias.steps("node1")).filter((c) => c.startsWith("certbot "));
    expect(certbot).toHaveLength(1);
    expect(certbot[0]).toMatch(new RegExp(`^certbot certonly --webroot -w ${pathsOf(alias.model).acmeWebroot} `));
    expect(certbot[0]).toContain("-d www.iot.example.com");
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
