/**
 * The fleet: the fixture `fleet` deployed by its rendered Ansible bundle onto Debian 13
 * machines (systemd, one network namespace each, the model's addresses), and what users depend
 * on checked from outside (the internet namespace) and on the hosts, one named test each.
 * `npm run test:fleet`. Needs root, systemd-nspawn, debootstrap, ansible; without them it skips
 * with one message, and fails under CI=true.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bedUp, until, type Bed } from "./bed.js";
import { fleetCapability } from "./machines.js";

const capability = fleetCapability();
if (!capability.ok && process.env.CI === "true") throw new Error(`the fleet cannot run here under CI=true: ${capability.why}`);
if (!capability.ok) console.warn(`fleet skipped: ${capability.why}`);

const WORK = process.env.NOVACLOUD_FLEET_DIR ?? "/var/tmp/novacloud-fleet/run";
const CACHE = process.env.NOVACLOUD_FLEET_CACHE ?? "/var/tmp/novacloud-fleet";
const CLIENTS = join(import.meta.dirname, "clients");

describe.skipIf(!capability.ok)("the fleet", () => {
  let bed: Bed;
  const t0 = Date.now();

  beforeAll(async () => {
    bed = await bedUp({ dir: WORK, cacheDir: CACHE, log: (line) => console.log(`[fleet ${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`) });
  }, 1_200_000);

  afterAll(async () => {
    const t = Date.now();
    await bed?.down();
    if (bed) {
      bed.timings.push(["teardown", (Date.now() - t) / 1000]);
      const report = bed.timings.map(([p, s]) => `${p}: ${s.toFixed(1)} s`).join("\n");
      writeFileSync(join(WORK, "..", "timings.txt"), `${report}\ntotal: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      console.log(`fleet timings:\n${report}`);
    }
  }, 120_000);

  const timed = (name: string, t: number) => bed.timings.push([name, (Date.now() - t) / 1000]);
  const site = () => bed.fixture.model.site.domain;
  /** curl from the internet namespace through the lb, verifying the site's certificate. */
  const https = (path: string, extra = "") => bed.fromInternet(`curl -sS --max-time 10 --cacert ${bed.caFile} ${extra} https://${site()}${path}`);
  const json = (path: string) => {
    const r = https(path);
    if (r.code !== 0) throw new Error(r.output);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const appHosts = () => bed.fixture.model.topology.hosts.filter((h) => h.roles.has("app")).map((h) => h.name);
  const workerHost = () => bed.fixture.model.topology.hosts.find((h) => h.roles.has("worker"))!.name;

  it("HTTPS through the lb reaches every app node", async () => {
    const t = Date.now();
    const seen = new Set<string>();
    await until("every app node to answer through the lb", () => {
      const r = json("/whoami/");
      expect(r.secure).toBe(true);
      seen.add(String(r.host));
      return appHosts().every((h) => seen.has(h)) ? true : undefined;
    }, 60_000, 100);
    expect([...seen].sort()).toEqual(appHosts().sort());
    // HTTP is redirected to HTTPS by the lb.
    const plain = bed.fromInternet(`curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' http://${site()}/whoami/`);
    expect(plain.stdout).toBe(`301 https://${site()}/whoami/`);
    timed("check: HTTPS", t);
  });

  it("a WebSocket round trip through lb, nginx and daphne", () => {
    const t = Date.now();
    const lb = bed.fixture.model.topology.hosts.find((h) => h.roles.has("lb"))!;
    const r = bed.fromInternet(`python3 ${CLIENTS}/ws_echo.py ${site()} ${lb.address} 443 /ws/echo/ ${bed.caFile} hello-fleet`);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout.trim()).toMatch(new RegExp(`^(${appHosts().join("|")}):hello-fleet$`));
    timed("check: WebSocket", t);
  });

  it("a web request queues a Celery task that runs on the worker host", async () => {
    const t = Date.now();
    const token = `job-${randomBytes(4).toString("hex")}`;
    expect(json(`/enqueue/${token}/`).queued).toBe(token);
    const host = await until("the task to run", () => (json(`/jobs/${token}/`).host as string | null) ?? undefined, 60_000);
    expect(host).toBe(workerHost());
    timed("check: Celery", t);
  });

  it("the periodic task runs once per period across the fleet", async () => {
    const t = Date.now();
    const ticks = await until("three ticks", () => {
      const list = json("/ticks/").ticks as [string, number][];
      return list.length >= 3 ? list : undefined;
    }, 60_000, 1000);
    expect(new Set(ticks.map(([h]) => h))).toEqual(new Set([workerHost()]));
    // One beat: consecutive runs are a period (10 s) apart, never two in one period.
    const gaps = ticks.slice(1).map(([, s], i) => s - ticks[i]![1]);
    for (const gap of gaps) expect(gap).toBeGreaterThan(8);
    timed("check: periodic task", t);
  });

  it("a device publishes over MQTT/TLS from the internet and the platform stores it", async () => {
    const t = Date.now();
    const model = bed.fixture.model;
    const mqtt = model.topology.hosts.find((h) => h.roles.has("mqtt"))!.name;
    const device = "sensor-1";
    const password = `dev-${randomBytes(6).toString("hex")}`;
    // The runbook's "Add a device account": mosquitto_passwd asks twice, then a reload.
    const add = bed.fleet.ssh(mqtt, `printf '%s\\n%s\\n' '${password}' '${password}' | mosquitto_passwd /etc/mosquitto/devices.passwd ${device} && systemctl reload mosquitto`);
    expect(add.code, add.output).toBe(0);
    const payload = `t=${randomBytes(4).toString("hex")}`;
    await until("the broker to accept the device", () => {
      const r = bed.fromInternet(
        `mosquitto_pub -h ${model.mqtt.domain} -p ${model.mqtt.tls_port} --cafile ${bed.caFile} -u ${device} -P '${password}' -q 1 -t devices/${device}/temperature -m '${payload}'`,
      );
      return r.code === 0 ? true : undefined;
    }, 30_000, 1000);
    const stored = await until("the message in the database", () => {
      const list = json("/messages/").messages as [string, string, string][];
      return list.find(([, p]) => p === payload);
    }, 60_000);
    expect(stored).toEqual([`devices/${device}/temperature`, payload, workerHost()]);
    // Another device's topic is refused (the device ACL): publishing there stores nothing.
    bed.fromInternet(`mosquitto_pub -h ${model.mqtt.domain} -p ${model.mqtt.tls_port} --cafile ${bed.caFile} -u ${device} -P '${password}' -q 1 -t devices/other/x -m stolen`);
    await new Promise((r) => setTimeout(r, 2000));
    expect((json("/messages/").messages as [string, string][]).some(([topic]) => topic === "devices/other/x")).toBe(false);
    timed("check: MQTT", t);
  });

  it("a row written on the primary is read on the standby", async () => {
    const t = Date.now();
    const model = bed.fixture.model;
    const primary = model.topology.db!.name;
    const standby = model.topology.hosts.find((h) => h.roles.has("db-standby"))!.name;
    const db = model.postgres.database;
    const mark = `row-${randomBytes(4).toString("hex")}`;
    const psql = (host: string, sql: string) => bed.fleet.ssh(host, `cd / && runuser -u postgres -- psql -XAt -d ${db} -c "${sql}"`);
    const w = psql(primary, `CREATE TABLE IF NOT EXISTS fleet_marks (mark text); INSERT INTO fleet_marks VALUES ('${mark}')`);
    expect(w.code, w.output).toBe(0);
    await until("the row on the standby", () => (psql(standby, `SELECT mark FROM fleet_marks WHERE mark = '${mark}'`).stdout.trim() === mark ? true : undefined), 30_000);
    expect(psql(standby, "SELECT pg_is_in_recovery()").stdout.trim()).toBe("t");
    timed("check: replication", t);
  });

  it("after a reboot an app node's services come back", async () => {
    const t = Date.now();
    const host = appHosts()[1]!;
    await bed.fleet.reboot(host);
    bed.fleet.openSsh(host);
    const units = ["novacloud.service", "novacloud-asgi.service", "nginx.service"];
    await until(`${host}'s units active`, () => (bed.fleet.ssh(host, `systemctl is-active ${units.join(" ")}`).code === 0 ? true : undefined), 60_000);
    await until(`${host} to answer through the lb`, () => {
      for (let i = 0; i < 6; i++) if (json("/whoami/").host === host) return true;
      return undefined;
    }, 60_000);
    timed("check: reboot", t);
  });

  it("a second playbook run reports zero changes", () => {
    const t = Date.now();
    const r = bed.playbook();
    writeFileSync(join(bed.dir, "logs", "playbook-2.log"), r.output);
    expect(r.code, r.output.slice(-4000)).toBe(0);
    const recap = r.stdout.slice(r.stdout.lastIndexOf("PLAY RECAP"));
    const changed = [...recap.matchAll(/^(\S+)\s+:.*changed=(\d+)/gm)].filter(([, , n]) => n !== "0").map(([, host, n]) => `${host}: ${n}`);
    const tasks = [...r.stdout.matchAll(/^changed: \[([^\]]+)\].*$/gm)].map((m) => m[0]);
    expect(changed, `changed tasks:\n${tasks.join("\n")}\n${recap}`).toEqual([]);
    timed("check: second run", t);
  });
});
