/**
 * What a change to a Mosquitto file requires (src/artifacts/effects.ts), checked against the
 * real broker (2.0.11 on Debian 12), not only against the rule table: a rotated password in the
 * rendered password file takes effect on SIGHUP (`systemctl reload mosquitto`), so the rule
 * "reload" is enough; a changed listener in the rendered conf.d file does not (mosquitto.conf(5):
 * listeners are read at start only), so the rule must be "restart".
 */
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { hostContexts } from "../../src/artifacts/context.js";
import { fileRules } from "../../src/artifacts/effects.js";
import { mosquittoFamily } from "../../src/artifacts/mosquitto.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { pbkdf2Js } from "../../src/crypto.js";
import { resolveSecrets } from "../../src/model/secrets.js";
import { loadFixture } from "../helpers/fixtures.js";
import { clientConfig, publish, startBroker, type Broker } from "../helpers/mosquitto.js";
import { freePort, programsAvailable, sandbox, selfSignedCertificate, stopAll, waitFor, type Sandbox } from "../helpers/programs.js";

const available = programsAvailable("mosquitto reload-vs-restart", {
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

const FIXTURE = "single-node";
const ROTATED = "rotated-mqtt-password-1";

/** The host's Mosquitto files and their rules, rendered with `env` as the secrets. */
function rendered(env: Readonly<Record<string, string | undefined>> = {}) {
  const f = loadFixture(FIXTURE);
  const { secrets } = resolveSecrets(f.model, { ...f.sources, env });
  const ctx = hostContexts(f.model, secrets, pbkdf2Js).find((c) => c.host.roles.has("mqtt"))!;
  const files = new Map(mosquittoFamily.files(ctx).map((s) => [s.path, s.content]));
  return { model: f.model, ctx, files, password: secrets.mqttPassword! };
}

/** Sends SIGHUP the way `systemctl reload mosquitto` does (Debian's unit: ExecReload=/bin/kill -HUP $MAINPID). */
async function reload(broker: Broker): Promise<void> {
  const before = broker.log().length;
  process.kill(broker.server.process.pid!, "SIGHUP");
  await waitFor("mosquitto to say it reloaded", async () => broker.log().slice(before).includes("Reloading config"));
}

describe.skipIf(!available)("a change to a Mosquitto file, applied as its rule says (mosquitto 2.0.11)", () => {
  it("a rotated password in the password file: the reload the rule asks for is enough", async () => {
    const f = loadFixture(FIXTURE);
    const before = rendered(f.sources.env);
    const after = rendered({ ...f.sources.env, NOVACLOUD_MQTT_PASSWORD: ROTATED });
    const p = pathsOf(before.model);
    expect(fileRules(before.ctx).get(p.mosquittoPasswd)?.effects.map((e) => e.kind)).toEqual(["reload"]);
    expect(after.files.get(p.mosquittoPasswd), "the rotated password must change the rendered file").not.toBe(before.files.get(p.mosquittoPasswd));

    const box = sandbox("ncr-mq-effects-");
    boxes.push(box);
    const broker = await startRendered(box, before);
    const port = broker.port((l) => l.address === "127.0.0.1");
    const user = before.model.mqtt.username;
    const old = clientConfig(box, "old", before.password);
    const rotated = clientConfig(box, "rotated", ROTATED);
    expect(publish({ port, user, config: old }, "t/old", "x").code, broker.log()).toBe(0);

    // Install the new file over the old one (same owner and mode), then reload.
    const installed = box.path("mqtt", "files", "passwd");
    expect(readFileSync(installed, "utf8")).toBe(before.files.get(p.mosquittoPasswd));
    writeFileSync(installed, after.files.get(p.mosquittoPasswd)!);
    await reload(broker);

    const withRotated = publish({ port, user, config: rotated }, "t/rotated", "x");
    expect(withRotated.code, `the rotated password is refused after a reload:\n${withRotated.output}\n${broker.log()}`).toBe(0);
    const withOld = publish({ port, user, config: old }, "t/old", "x");
    expect(withOld.code, "the old password still works after a reload").not.toBe(0);
    expect(broker.server.process.exitCode).toBeNull();
  });

  it("a changed listener in conf.d: a reload does not apply it, so the rule asks for a restart", async () => {
    const model = loadFixture(FIXTURE).model;
    const current = rendered(loadFixture(FIXTURE).sources.env);
    const p = pathsOf(model);
    expect(fileRules(current.ctx).get(p.mosquittoConf)?.effects.map((e) => e.kind)).toEqual(["restart"]);

    const box = sandbox("ncr-mq-effects-");
    boxes.push(box);
    const broker = await startRendered(box, current);
    const port = broker.port((l) => l.address === "127.0.0.1");
    const moved = await freePort();
    const confFile = box.path("mqtt", "conf.d", "rendered.conf");
    const conf = readFileSync(confFile, "utf8");
    expect(conf).toContain(`listener ${port} 127.0.0.1`);
    writeFileSync(confFile, conf.replace(`listener ${port} 127.0.0.1`, `listener ${moved} 127.0.0.1`));
    await reload(broker);

    const user = model.mqtt.username;
    const config = clientConfig(box, "platform", current.password);
    expect(publish({ port, user, config }, "t/still", "x").code, "the old listener is still served after a reload").toBe(0);
    const onMoved = publish({ port: moved, user, config }, "t/moved", "x");
    expect(onMoved.code, `a reload opened the changed listener: a reload would be enough\n${broker.log()}`).not.toBe(0);
  });
});

/** The host's broker started from the rendered files, its certificate replaced by a test one. */
async function startRendered(box: Sandbox, r: ReturnType<typeof rendered>): Promise<Broker> {
  const p = pathsOf(r.model);
  const cert = selfSignedCertificate(box, "mqtt-cert", r.model.mqtt.domain);
  const files: Record<string, string> = {};
  for (const [path, content] of r.files) if (path !== p.mosquittoConf) files[path] = content;
  if (r.files.has(p.mosquittoDeviceAcl)) files[p.mosquittoDevicePasswd] = "";
  files[p.mosquittoCert] = readFileSync(cert.cert, "utf8");
  files[p.mosquittoKey] = readFileSync(cert.key, "utf8");
  return startBroker(box, "mqtt", { conf: r.files.get(p.mosquittoConf)!, files }, true);
}
