/**
 * The rendered Mosquitto files, run by the real broker (2.0.11 on Debian 12): for every fixture
 * and mqtt host, Debian's main file includes the rendered conf.d file (include_dir) and the
 * broker must stay up (2.0 has no --test-config, MQ-10); anonymous clients and a wrong password
 * are refused, the platform user with the fixture's password (the options fixture's is full of
 * quotes, `$`, `#`, backslashes and spaces) publishes and subscribes, over TLS too. The two
 * bridged brokers of ha-sentinel carry a message from the leaf to the hub and back, and a
 * conf.d file that repeats Debian's `log_dest file` is caught (MQ-01). The device listener
 * refuses the platform user (its password file holds device accounts only), and
 * mosquitto_passwd edits every rendered password file without losing a user.
 */
import { pbkdf2Js } from "../../src/crypto.js";
import { readFileSync } from "node:fs";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { pathsOf } from "../../src/artifacts/paths.js";
import { hostContexts } from "../../src/artifacts/context.js";
import type { Model } from "../../src/model/normalize.js";
import { resolveSecrets } from "../../src/model/secrets.js";
import { mosquittoFamily } from "../../src/artifacts/mosquitto.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { programsAvailable, run, sandbox, selfSignedCertificate, stopAll, type Sandbox } from "../helpers/programs.js";
import { clientConfig, debianMainConf, publish, roundTrip, startBroker } from "../helpers/mosquitto.js";

const available = programsAvailable("mosquitto lint", {
  mosquitto: "mosquitto",
  mosquitto_passwd: "mosquitto",
  mosquitto_pub: "mosquitto-clients",
  mosquitto_sub: "mosquitto-clients",
  openssl: "openssl",
});

const boxes: Sandbox[] = [];
afterEach(async () => {
  await stopAll();
});
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

/**
 * The mosquitto family's files per host, rendered the way render() does for each host (only this
 * family, so work in progress elsewhere cannot break this check): "<host><path>" -> content.
 */
function renderMosquitto(name: string): Tree {
  const f = loadFixture(name);
  const { secrets } = resolveSecrets(f.model, f.sources);
  const entries = hostContexts(f.model, secrets, pbkdf2Js).flatMap((ctx) =>
    mosquittoFamily.files(ctx).map((spec) => [`${ctx.host.name}${spec.path}`, spec.content] as const),
  );
  return new Map(entries);
}

type Tree = ReadonlyMap<string, string>;

function file(tree: Tree, host: string, path: string): string {
  const content = tree.get(`${host}${path}`);
  if (content === undefined) throw new Error(`${host}${path} was not rendered`);
  return content;
}

/** Starts one host's broker from its rendered files, certificates replaced by a test CA. */
async function hostBroker(box: Sandbox, model: Model, tree: Tree, host: string, rewrite?: (conf: string) => string) {
  const p = pathsOf(model);
  const cert = selfSignedCertificate(box, `${host}-mqtt`, model.mqtt.domain);
  const broker = await startBroker(
    box,
    host,
    {
      conf: file(tree, host, p.mosquittoConf),
      files: {
        [p.mosquittoPasswd]: file(tree, host, p.mosquittoPasswd),
        [p.mosquittoAcl]: file(tree, host, p.mosquittoAcl),
        // With a device listener: its rendered ACL, and the device password file as the
        // runbook creates it (empty).
        ...(tree.has(`${host}${p.mosquittoDeviceAcl}`) ? { [p.mosquittoDeviceAcl]: file(tree, host, p.mosquittoDeviceAcl), [p.mosquittoDevicePasswd]: "" } : {}),
        [p.mosquittoCert]: readCert(cert.cert),
        [p.mosquittoKey]: readCert(cert.key),
      },
      ...(rewrite ? { rewrite } : {}),
    },
    true,
  );
  return { broker, cafile: cert.cert };
}

const readCert = (path: string) => readFileSync(path, "utf8");

function mqttHosts(model: Model): string[] {
  return model.topology.mqtt.map((h) => h.name);
}

const cases = fixtureNames().flatMap((name) => {
  const f = loadFixture(name);
  return mqttHosts(f.model).map((host) => ({ name, host }));
});

describe.skipIf(!available)("mosquitto 2.0.11 runs the rendered configuration", () => {
  it("covers every fixture with an mqtt host", () => {
    expect(cases.length).toBeGreaterThan(0);
    expect(new Set(cases.map((c) => c.name))).toContain("options");
  });

  it.each(cases)("$name/$host: stays up, refuses anonymous and wrong passwords, round-trips as the platform user (not on the device listener)", async ({ name, host }) => {
    const f = loadFixture(name);
    const model = f.model;
    const tree = renderMosquitto(name);
    const box = sandbox("ncr-mq-");
    boxes.push(box);
    const { broker, cafile } = await hostBroker(box, model, tree, host);
    const where = `${name}/${host}${pathsOf(model).mosquittoConf} (started as ${broker.mainConf})`;
    const password = mqttPassword(name);
    const good = clientConfig(box, "good", password);
    const wrong = clientConfig(box, "wrong", `${password}x`);
    const none = clientConfig(box, "anonymous", undefined);
    const user = model.mqtt.username;

    // The device listener: the TLS one without an lb, the plain one on device_port behind it.
    const isDevices = (l: { port: number; tls: boolean }) => model.mqtt.tls_port !== undefined && (model.topology.lb ? l.port === model.mqtt.device_port : l.tls);
    for (const l of broker.listeners) {
      const port = l.sandboxPort;
      const tls = l.tls ? { cafile } : {};
      const anonymous = publish({ port, config: none, ...tls }, "t/anon", "x");
      expect(anonymous.code, `${where}: anonymous publish on listener ${l.port} ${l.address ?? "*"} was accepted:\n${anonymous.output}\n${broker.log()}`).not.toBe(0);
      expect(anonymous.output, `${where}: listener ${l.port}`).toMatch(/not authori[sz]ed/);
      const bad = publish({ port, user, config: wrong, ...tls }, "t/wrong", "x");
      expect(bad.code, `${where}: a wrong password was accepted on listener ${l.port}:\n${bad.output}\n${broker.log()}`).not.toBe(0);
      expect(bad.output, `${where}: listener ${l.port}`).toMatch(/not authori[sz]ed/);
      if (isDevices(l)) {
        // Device accounts only: the platform user is refused there (its password file is not this listener's).
        const platform = publish({ port, user, config: good, ...tls }, "t/platform", "x");
        expect(platform.code, `${where}: the platform user logged in on the device listener ${l.port}:\n${platform.output}`).not.toBe(0);
        expect(platform.output).toMatch(/not authori[sz]ed/);
        continue;
      }
      const rt = await roundTrip({ port, user, config: good, ...tls }, { port, user, config: good, ...tls }, `${model.project.name}/lint/${l.sandboxPort}`, `hello ${l.port}`);
      expect(rt.received, `${where}: no round trip as ${user} on listener ${l.port} ${l.address ?? "*"}:\n${rt.output}\n${broker.log()}`).toBe(`hello ${l.port}`);
    }
    expect(broker.listeners.filter(isDevices), `${where}: one device listener exactly when mqtt.tls_port is set`).toHaveLength(model.mqtt.tls_port === undefined ? 0 : 1);
    expect(broker.server.process.exitCode, broker.log()).toBeNull();
  });

  it.each(cases)("$name/$host: mosquitto_passwd -b edits the rendered password file and keeps every rendered user (issue #9 item 6)", ({ name, host }) => {
    const model = loadFixture(name).model;
    const tree = renderMosquitto(name);
    const box = sandbox("ncr-mq-passwd-");
    boxes.push(box);
    const original = file(tree, host, pathsOf(model).mosquittoPasswd);
    const copy = box.write("passwd", original, 0o600);
    // -b puts the password on the command line: fine for a test, not for the runbook.
    const r = run("mosquitto_passwd", ["-b", copy, "extra-user", "extra-password"]);
    expect(r.code, r.output).toBe(0);
    expect(r.output, `${name}/${host}: mosquitto_passwd rejected the rendered file`).not.toMatch(/corrupt/i);
    const after = readFileSync(copy, "utf8").trim().split("\n");
    // Every rendered user is still there, hash and all, so its password still works.
    for (const line of original.trim().split("\n")) expect(after, `${name}/${host}: ${line.split(":")[0]} was dropped`).toContain(line);
    expect(after.map((l) => l.split(":")[0])).toContain("extra-user");
  });

  it("ha-sentinel: the leaf's bridge carries messages to the hub and back (star of bridges)", async () => {
    const name = "ha-sentinel";
    const f = loadFixture(name);
    const model = f.model;
    const tree = renderMosquitto(name);
    const hubName = model.topology.mqttHub!.name;
    const hubHost = model.topology.mqtt[0]!;
    const leafName = model.topology.mqtt[1]!.name;
    const box = sandbox("ncr-mq-bridge-");
    boxes.push(box);
    const hub = await hostBroker(box, model, tree, hubName);
    const hubPrivate = hub.broker.port((l) => l.address === hubHost.address && !l.tls);
    const bridgeLine = `address ${hubHost.address}:${model.mqtt.port}`;
    expect(file(tree, leafName, pathsOf(model).mosquittoConf)).toContain(bridgeLine);
    // The leaf reaches the hub's private listener: in the sandbox, that listener's loopback port.
    const leaf = await hostBroker(box, model, tree, leafName, (conf) => conf.replace(bridgeLine, `address 127.0.0.1:${hubPrivate}`));
    const password = mqttPassword(name);
    const config = clientConfig(box, "platform", password);
    const user = model.mqtt.username;
    const onHub = { port: hub.broker.port((l) => l.address === "127.0.0.1"), user, config };
    const onLeaf = { port: leaf.broker.port((l) => l.address === "127.0.0.1"), user, config };
    const logs = () => `--- hub ${hubName} ---\n${hub.broker.log()}\n--- leaf ${leafName} ---\n${leaf.broker.log()}`;

    const up = await roundTrip(onHub, onLeaf, "devices/sensor-1/up", "leaf to hub");
    expect(up.received, `${name}/${leafName}${pathsOf(model).mosquittoConf}: published on the leaf, not received on the hub:\n${up.output}\n${logs()}`).toBe("leaf to hub");
    const down = await roundTrip(onLeaf, onHub, "devices/sensor-1/down", "hub to leaf");
    expect(down.received, `${name}/${leafName}${pathsOf(model).mosquittoConf}: published on the hub, not received on the leaf:\n${down.output}\n${logs()}`).toBe("hub to leaf");
  });

  it("MQ-01: a conf.d file that repeats Debian's `log_dest file` stops the broker, and the lint reports it", async () => {
    const name = "single-node";
    const model = loadFixture(name).model;
    const host = mqttHosts(model)[0]!;
    const tree = renderMosquitto(name);
    const debianLogDest = debianMainConf().split("\n").find((l) => l.startsWith("log_dest file"));
    expect(debianLogDest, "Debian's main mosquitto.conf has a log_dest file line").toBeDefined();
    const box = sandbox("ncr-mq-dup-");
    boxes.push(box);
    // The same line the guide's conf.d file has; relocated into the sandbox like the main file's.
    const broken = hostBroker(box, model, tree, host, (conf) => `${conf}\n${debianLogDest!.replace("/var/log/mosquitto/", `${box.path(host)}/log/`)}\n`);
    await expect(broken).rejects.toThrow(/Duplicate "log_dest file" value/);
  });
});

/** The platform user's password, resolved from the fixture's secrets like render() does. */
function mqttPassword(fixture: string): string {
  const f = loadFixture(fixture);
  const value = resolveSecrets(f.model, f.sources).secrets.mqttPassword;
  if (value === undefined) throw new Error(`${fixture}: mqtt.password did not resolve`);
  return value;
}
