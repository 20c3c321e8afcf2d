/**
 * The fleet: the fixture `fleet` deployed by its rendered Ansible bundle onto Debian 13
 * machines (systemd, one network namespace each, the model's addresses), and what users depend
 * on checked from outside (the internet namespace) and on the hosts, one named test each.
 * `npm run test:fleet`. Needs root, systemd-nspawn, debootstrap, ansible; without them it skips
 * with one message, and fails under CI=true.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { bedUp, until, type Bed } from "./bed.js";
import { fleetCapability } from "./machines.js";
import { flowTable } from "../../src/model/flows.js";

const capability = fleetCapability();
if (!capability.ok && process.env.CI === "true") throw new Error(`the fleet cannot run here under CI=true: ${capability.why}`);
if (!capability.ok) console.warn(`fleet skipped: ${capability.why}`);

const WORK = process.env.NOVACLOUD_FLEET_DIR ?? "/var/tmp/novacloud-fleet/run";
const CACHE = process.env.NOVACLOUD_FLEET_CACHE ?? "/var/tmp/novacloud-fleet";
const CLIENTS = join(import.meta.dirname, "clients");
/** The scanner, to be sent to a host as base64 (one word on the command line). */
const fs_scan = () => readFileSync(join(CLIENTS, "scan.py")).toString("base64");

/**
 * To watch a check fail when its subject is broken (README, "The fleet"):
 * NOVACLOUD_FLEET_BREAK='[["app1", "systemctl stop novacloud-asgi"], ["worker1", "...", "periodic"]]'
 * runs each command over SSH once the playbook has run, or right before the check whose name
 * contains the third element; NOVACLOUD_FLEET_BREAK_RERENDER='[["mqtt1/etc/...", "from", "to"]]'
 * replaces text in those files of every later render (the re-render of the device check and
 * the second playbook run).
 */
const breaks = JSON.parse(process.env.NOVACLOUD_FLEET_BREAK ?? "[]") as [string, string, string?][];

describe.skipIf(!capability.ok)("the fleet", () => {
  let bed: Bed;
  const t0 = Date.now();

  beforeAll(async () => {
    bed = await bedUp({ dir: WORK, cacheDir: CACHE, log: (line) => console.log(`[fleet ${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`) });
    for (const [host, command] of breaks.filter(([, , check]) => check === undefined)) breakOnPurpose(host, command);
  }, 1_200_000);

  // Right before the check whose name contains the third element.
  beforeEach((context) => {
    for (const [host, command, check] of breaks) if (check !== undefined && context.task.name.includes(check)) breakOnPurpose(host, command);
  });
  const breakOnPurpose = (host: string, command: string) => {
    const r = bed.fleet.ssh(host, command);
    console.log(`broken on purpose: ${host}: ${command} (exit ${r.code})`);
  };

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

  it("a device publishes over MQTT/TLS from the internet and the platform stores it", async () => {
    const t = Date.now();
    const model = bed.fixture.model;
    const mqtt = model.topology.hosts.find((h) => h.roles.has("mqtt"))!.name;
    const device = "sensor-1";
    const password = `dev-${randomBytes(6).toString("hex")}`;
    writeFileSync(join(WORK, "device-password"), password, { mode: 0o600 });
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
    // Into the app's own table (its role owns it, so the backup's pg_dump may read it).
    const w = psql(primary, `INSERT INTO fleetapp_job (token, host, created) VALUES ('${mark}', '${primary}', now())`);
    expect(w.code, w.output).toBe(0);
    await until("the row on the standby", () => (psql(standby, `SELECT token FROM fleetapp_job WHERE token = '${mark}'`).stdout.trim() === mark ? true : undefined), 30_000);
    expect(psql(standby, "SELECT pg_is_in_recovery()").stdout.trim()).toBe("t");
    timed("check: replication", t);
  });

  it("after a reboot an app node's services come back", async () => {
    const t = Date.now();
    const host = appHosts()[1]!;
    await bed.fleet.reboot(host);
    bed.fleet.openSsh(host);
    const units = ["novacloud.service", "novacloud-asgi.service", "nginx.service"];
    // One unit per call: `systemctl is-active a b c` exits 0 when any one of them is active.
    await until(`${host}'s units active`, () => (units.every((u) => bed.fleet.ssh(host, `systemctl is-active ${u}`).code === 0) ? true : undefined), 60_000);
    await until(`${host} to answer through the lb`, () => {
      for (let i = 0; i < 6; i++) if (json("/whoami/").host === host) return true;
      return undefined;
    }, 60_000);
    timed("check: reboot", t);
  });

  it("every flow in the flow table works, and a scan finds nothing open beyond it", async () => {
    const t = Date.now();
    const model = bed.fixture.model;
    const table = flowTable(model);
    const hosts = model.topology.hosts;
    // Every port the table names, and the usual suspects a mistake would open.
    const ports = [...new Set([...table.flows.map((f) => f.port), ...table.entries.map((e) => e.port), 22, 80, 443, 1883, 1884, 5432, 6379, 8000, 8001, 8080, 8883, 26379])].sort((a, b) => a - b);
    const targets = hosts.flatMap((h) => ports.map((p) => `${h.address}:${p}`));
    const scan = fs_scan();
    const expected = (from: string | undefined) =>
      new Set([
        ...table.flows.filter((f) => f.from.name === from).map((f) => `${f.to.address}:${f.port}`),
        ...table.entries.filter((e) => e.from.length === 0).map((e) => `${e.to.address}:${e.port}`),
      ]);
    const open = (output: string) => new Set(output.split("\n").filter(Boolean));
    const report: string[] = [];
    const outside = bed.fromInternet(`python3 ${CLIENTS}/scan.py ${targets.join(" ")}`);
    expect(outside.code, outside.output).toBe(0);
    const fromInternet = open(outside.stdout);
    expect([...fromInternet].sort(), "open from the internet").toEqual([...expected(undefined)].sort());
    report.push(`internet: ${fromInternet.size} open`);
    // Every host scans at once (each scan takes one connect timeout).
    // Its own ports are loopback or its own business: only the other hosts are scanned.
    const others = (h: (typeof hosts)[number]) => targets.filter((x) => !x.startsWith(`${h.address}:`));
    const scans = await Promise.all(hosts.map((h) => bed.fleet.sshAsync(h.name, `echo ${scan} | base64 -d > /tmp/scan.py && python3 /tmp/scan.py ${others(h).join(" ")}; rm -f /tmp/scan.py`)));
    for (const [i, h] of hosts.entries()) {
      const r = scans[i]!;
      expect(r.code, r.output).toBe(0);
      const got = open(r.stdout);
      const want = new Set([...expected(h.name)].filter((x) => !x.startsWith(`${h.address}:`)));
      expect([...got].sort(), `open from ${h.name}`).toEqual([...want].sort());
      report.push(`${h.name}: ${got.size} open`);
    }
    console.log(`scan: ${report.join(", ")}`);
    timed("check: flows and scan", t);
  });

  // After the checks above, so that beat has usually run three times already (period 10 s).
  it("the periodic task runs once per period across the fleet", async () => {
    const t = Date.now();
    const ticksNow = () => json("/ticks/").ticks as [string, number][];
    const before = ticksNow().length;
    // At least three runs, one of them after this check began (beat is running now, not only
    // before): within two periods and a margin.
    const ticks = await until("three ticks, one of them new", () => {
      const list = ticksNow();
      return list.length >= Math.max(3, before + 1) ? list : undefined;
    }, 25_000, 1000);
    expect(new Set(ticks.map(([h]) => h))).toEqual(new Set([workerHost()]));
    // One beat: consecutive runs are a period (10 s) apart, never two in one period, none skipped.
    const gaps = ticks.slice(1).map(([, s], i) => s - ticks[i]![1]);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThan(8);
      expect(gap).toBeLessThan(20);
    }
    timed("check: periodic task", t);
  });

  it("a device account added as the runbook says survives a re-render and a re-apply", async () => {
    // The account was added by the MQTT check; the second playbook run (below) re-applies a
    // fresh render. Here: render again into the bundle and apply it, then the device logs in.
    const t = Date.now();
    const model = bed.fixture.model;
    bed.rerender();
    const r = bed.playbook(["--limit", "role_mqtt"]);
    expect(r.code, r.output.slice(-3000)).toBe(0);
    const payload = `again-${randomBytes(4).toString("hex")}`;
    const pub = bed.fromInternet(
      `mosquitto_pub -h ${model.mqtt.domain} -p ${model.mqtt.tls_port} --cafile ${bed.caFile} -u sensor-1 -P "$(cat ${join(WORK, "device-password")})" -q 1 -t devices/sensor-1/temperature -m '${payload}'`,
    );
    expect(pub.code, pub.output).toBe(0);
    await until("the message in the database", () => ((json("/messages/").messages as [string, string][]).some(([, p]) => p === payload) ? true : undefined), 60_000);
    timed("check: device account survives", t);
  });

  it("update.sh rolls out a new version with a migration while a client keeps requesting; a failing check leaves the old one serving", async () => {
    const t = Date.now();
    const django = bed.fixture.model.topology.hosts.filter((h) => h.roles.has("app") || h.roles.has("worker") || h.roles.has("asgi") || h.roles.has("scheduler"));
    const migrator = bed.fixture.model.topology.migrator!.name;
    const order = [migrator, ...django.map((h) => h.name).filter((n) => n !== migrator)];
    bed.publishApp((dir) => {
      const views = join(dir, "fleetapp/views.py");
      writeFileSync(views, readFileSync(views, "utf8").replace('RELEASE = "1"', 'RELEASE = "2"'));
      writeFileSync(
        join(dir, "fleetapp/migrations/0002_job_note.py"),
        'from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n    dependencies = [("fleetapp", "0001_initial")]\n    operations = [migrations.AddField("job", "note", models.CharField(max_length=40, default=""))]\n',
      );
      const models = join(dir, "fleetapp/models.py");
      writeFileSync(models, readFileSync(models, "utf8").replace("    token = models.CharField(max_length=64, unique=True)\n", '    token = models.CharField(max_length=64, unique=True)\n    note = models.CharField(max_length=40, default="")\n'));
    }, "release 2: a migration");
    // A client requesting all along, through the lb.
    rmSync(join(WORK, "stop-client"), { force: true });
    const client = spawn("ip", ["netns", "exec", bed.fleet.internet, "bash", "-c",
      `while [ ! -e ${join(WORK, "stop-client")} ]; do curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 --cacert ${bed.caFile} https://${site()}/whoami/; sleep 0.05; done`], { stdio: ["ignore", "pipe", "inherit"] });
    let codes = "";
    client.stdout.on("data", (d: Buffer) => (codes += d.toString()));
    const exited = new Promise((r) => client.once("exit", r));
    try {
      for (const host of order) {
        const r = bed.fleet.ssh(host, "/opt/novacloud/update.sh main", 600_000);
        expect(r.code, `${host}: ${r.output.slice(-3000)}`).toBe(0);
      }
      await until("release 2 everywhere", () => {
        const seen = new Set<string>();
        for (let i = 0; i < 8; i++) seen.add(String(json("/whoami/").release));
        return seen.size === 1 && seen.has("2") ? true : undefined;
      }, 60_000);
    } finally {
      writeFileSync(join(WORK, "stop-client"), "");
      await exited;
    }
    const all = codes.split("\n").filter(Boolean);
    expect(all.length).toBeGreaterThan(20);
    expect(all.filter((c) => c !== "200"), `${all.length} requests`).toEqual([]);
    console.log(`update: ${all.length} requests during the rollout, all 200`);
    const db = bed.fixture.model.postgres.database;
    expect(bed.fleet.ssh(bed.fixture.model.topology.db!.name, `cd / && runuser -u postgres -- psql -XAt -d ${db} -c "SELECT column_name FROM information_schema.columns WHERE table_name = 'fleetapp_job' AND column_name = 'note'"`).stdout.trim()).toBe("note");

    // Release 3 fails Django's checks (a system check error): update.sh stops before the
    // switch, and release 2 serves on.
    bed.publishApp((dir) => {
      writeFileSync(
        join(dir, "fleetapp/apps.py"),
        'from django.apps import AppConfig\nfrom django.core import checks\n\n\nclass FleetAppConfig(AppConfig):\n    name = "fleetapp"\n\n    def ready(self):\n' +
          '        checks.register(lambda app_configs, **kwargs: [checks.Error("release 3 is broken", id="fleetapp.E001")])\n',
      );
      const views = join(dir, "fleetapp/views.py");
      writeFileSync(views, readFileSync(views, "utf8").replace('RELEASE = "2"', 'RELEASE = "3"'));
    }, "release 3: fails check --deploy");
    const failed = bed.fleet.ssh(migrator, "/opt/novacloud/update.sh main", 600_000);
    expect(failed.code, failed.output.slice(-3000)).not.toBe(0);
    expect(failed.output).toMatch(/NOT deployed/);
    for (let i = 0; i < 6; i++) expect(json("/whoami/").release).toBe("2");
    timed("check: update and a failed update", t);
  });

  it("stopping the Redis primary leaves the app working after Sentinel's failover", async () => {
    const t = Date.now();
    const model = bed.fixture.model;
    const redisHosts = model.topology.hosts.filter((h) => h.roles.has("redis"));
    // Asked the runbook's way, on a host with Redis and a sentinel (the password is read from
    // the rendered Redis fragment there): the rendered line as it is.
    const sentinels = model.topology.hosts.filter((h) => h.roles.has("redis-sentinel") && h.roles.has("redis")).map((h) => h.name);
    const runbook = bed.tree.get(`${sentinels[0]}/usr/local/share/doc/${model.project.name}/runbook.md`)!.content;
    const ask = runbook.split("\n").find((l) => l.includes("sentinel get-master-addr-by-name"))!;
    const askOn = (host: string) => bed.fleet.ssh(host, ask).stdout.split("\n")[0]!.trim();
    const before = askOn(sentinels[0]!);
    const primary = redisHosts.find((h) => h.address === before);
    // Asked on a host whose Redis keeps running.
    const primaryAddress = () => askOn(sentinels.find((n) => n !== primary?.name)!);
    expect(primary, `sentinel names ${before}`).toBeDefined();
    const stop = bed.fleet.ssh(primary!.name, "systemctl stop redis-server");
    expect(stop.code, stop.output).toBe(0);
    try {
      const after = await until("Sentinel to promote a replica", () => {
        const a = primaryAddress();
        return a && a !== before ? a : undefined;
      }, 90_000, 1000).catch((e: unknown) => {
        // What the sentinels saw, for the failure's message.
        const sentinelLog = sentinels.map((n) => `${n}:\n${bed.fleet.ssh(n, "journalctl -u redis-sentinel --no-pager | tail -n 25; tail -n 25 /var/log/redis/redis-sentinel.log 2>/dev/null").output}`).join("\n");
        throw new Error(`${String(e)}\n${sentinelLog}`);
      });
      console.log(`redis failover: ${before} -> ${after} after ${((Date.now() - t) / 1000).toFixed(1)} s`);
      const token = `failover-${randomBytes(4).toString("hex")}`;
      await until("a task queued after the failover to run", () => {
        json(`/enqueue/${token}/`);
        return (json(`/jobs/${token}/`).host as string | null) ?? undefined;
      }, 90_000, 2000);
    } finally {
      // The old primary comes back as a replica of the new one.
      bed.fleet.ssh(primary!.name, "systemctl start redis-server");
    }
    timed("check: Redis failover", t);
  });

  it("backup.sh on the db host, then the runbook's restore into a fresh database gives the same rows", () => {
    const t = Date.now();
    const model = bed.fixture.model;
    const db = model.topology.db!.name;
    const name = model.postgres.database;
    const asPostgres = (sql: string, database = name) => `cd / && runuser -u postgres -- psql -XAt -v ON_ERROR_STOP=1 -d ${database} -c "${sql}"`;
    // Rows of the tables that only the checks write (the periodic task keeps adding ticks).
    const digest = (database: string) =>
      bed.fleet.ssh(db, asPostgres("SELECT (SELECT md5(string_agg(token || host, ',' ORDER BY token)) FROM fleetapp_job) || ' ' || (SELECT coalesce(md5(string_agg(topic || payload, ',' ORDER BY id)), 'none') FROM fleetapp_devicemessage)", database));
    const before = digest(name);
    expect(before.code, before.output).toBe(0);
    // The runbook's "Run one backup now".
    const backup = bed.fleet.ssh(db, `systemctl start ${model.project.name}-backup.service`, 300_000);
    expect(backup.code, backup.output + bed.fleet.ssh(db, `journalctl -u ${model.project.name}-backup.service --no-pager | tail -n 30`).output).toBe(0);
    const dump = bed.fleet.ssh(db, `ls -1 ${model.backup.dir}/${model.project.name}_db_*.dump | tail -n 1`).stdout.trim();
    expect(dump).toMatch(/\.dump$/);
    // "Restore a dump with pg_restore --clean --if-exists", into a fresh database.
    // The dump is root's (0600): root's shell opens it for pg_restore.
    const restore = bed.fleet.ssh(db, `cd / && runuser -u postgres -- createdb fleet_restore && runuser -u postgres -- pg_restore --clean --if-exists --no-owner -d fleet_restore < ${dump}`, 300_000);
    expect(restore.code, restore.output).toBe(0);
    try {
      const after = digest("fleet_restore");
      expect(after.code, after.output).toBe(0);
      expect(after.stdout.trim()).toBe(before.stdout.trim());
      // Rows, not nothing: the checks above wrote jobs (and device messages, unless MQTT failed).
      expect(after.stdout.trim()).toMatch(/^[0-9a-f]{32} ([0-9a-f]{32}|none)$/);
    } finally {
      bed.fleet.ssh(db, "cd / && runuser -u postgres -- dropdb --if-exists fleet_restore");
    }
    timed("check: backup and restore", t);
  });

  it("backup.sh on the media host copies the S3 bucket, and the runbook's restore gives the same files", () => {
    const t = Date.now();
    const model = bed.fixture.model;
    // The host whose backup.sh copies the bucket (media.storage "s3": a Django host's, as the
    // bucket's keys live in its .env).
    const [path] = [...bed.tree].find(([p, f]) => p.endsWith("/backup.sh") && f.content.includes("S3_BUCKET="))!;
    const host = path.split("/")[0]!;
    const backup = bed.fleet.ssh(host, `systemctl start ${model.project.name}-backup.service`, 300_000);
    expect(backup.code, backup.output + bed.fleet.ssh(host, `journalctl -u ${model.project.name}-backup.service --no-pager | tail -n 30`).output).toBe(0);
    const archive = bed.fleet.ssh(host, `ls -1 ${model.backup.dir}/${model.project.name}_media_*.tar.gz | tail -n 1`).stdout.trim();
    expect(archive).toMatch(/\.tar\.gz$/);
    // "media with tar -xzf FILE -C <parent directory>", into a fresh parent directory.
    const restored = bed.fleet.ssh(host, `rm -rf /tmp/media-restore && mkdir /tmp/media-restore && tar -xzf ${archive} -C /tmp/media-restore && cd /tmp/media-restore/media && find . -type f -print0 | sort -z | xargs -0 sha256sum`);
    expect(restored.code, restored.output).toBe(0);
    const sha = (file: string) => createHash("sha256").update(readFileSync(join(bed.bucketDir, file))).digest("hex");
    const uploaded = (dir: string): string[] => readdirSync(join(bed.bucketDir, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? uploaded(join(dir, e.name)) : [join(dir, e.name)]));
    const expected = uploaded(".").map((f) => `${sha(f)}  ./${f}`).sort();
    expect(expected.length).toBeGreaterThan(2);
    expect(restored.stdout.trim().split("\n").sort()).toEqual(expected);
    bed.fleet.ssh(host, "rm -rf /tmp/media-restore");
    timed("check: media backup and restore", t);
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
