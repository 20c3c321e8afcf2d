/**
 * The scripts family: which host gets which script, the backup's password file and schedule,
 * update.sh per role, logrotate, the ufw rules derived from the topology, the certbot deploy
 * hook, and the runbook steps (errata 6, 11-15). Running the scripts is in test/lint/scripts.
 */
import { stepLines, stepPackages } from "../../src/artifacts/steps.js";
import { describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { mqttLetsEncryptLive, pathsOf, siteCertificate, unitNames } from "../../src/artifacts/paths.js";
import { scriptFamilies as scriptsFamily } from "../helpers/families.js";
import type { FileSpec } from "../../src/tree.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { contextOf, contextsWith, hostContexts } from "./systemd-scripts-support.js";

const all = fixtureNames().flatMap((fixture) => (loadFixture(fixture).model.topology.hosts.length === 0 ? [] : hostContexts(fixture).map((ctx) => ({ fixture, ctx }))));

function files(ctx: HostContext): Map<string, FileSpec> {
  return new Map(scriptsFamily.files(ctx).map((f) => [f.path, f]));
}

function file(ctx: HostContext, path: string): FileSpec {
  const f = files(ctx).get(path);
  if (!f) throw new Error(`${ctx.host.name} has no ${path}`);
  return f;
}

const host = (fixture: string, name: string) => contextOf(hostContexts(fixture), name);

/** The minimal model with its broker on a host of its own and no lb: the broker terminates MQTT over TLS itself. */
const separateBroker = (changes: Record<string, unknown> = {}) =>
  contextsWith("minimal", {
    hosts: { server: { address: "192.168.1.10", roles: ["web", "app", "db", "redis"] }, broker: { address: "192.168.1.20", roles: ["mqtt"] } },
    mqtt: { tls_port: 8883, domain: "mqtt.example.org" },
    ...changes,
  });

/** Lines of a script that are not comments or blank. */
function code(content: string): string[] {
  return content.split("\n").filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
}

/** libpq's reading of one .pgpass line: fields split on unescaped ':', `\` escapes the next char. */
function pgpassFields(line: string): string[] {
  const fields: string[] = [];
  let field = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) field += line[++i]!;
    else if (c === ":") {
      fields.push(field);
      field = "";
    } else field += c;
  }
  return [...fields, field];
}

describe("which host gets which file", () => {
  it.each(all.map(({ fixture, ctx }) => ({ name: `${fixture}/${ctx.host.name}`, ctx })))("$name", ({ ctx }) => {
    const p = pathsOf(ctx.model);
    const roles = ctx.host.roles;
    const django = ctx.model.topology.django.some((h) => h.name === ctx.host.name);
    const le = ctx.model.site.tls.mode === "letsencrypt";
    const terminates = ctx.model.topology.lb ? roles.has("lb") : roles.has("web");
    const expected = new Map<string, [number, string, string]>();
    // Every PostgreSQL member, and the host that keeps the media (or copies them from S3).
    const media = ctx.model.media;
    const mediaHost =
      media.storage === "s3"
        ? ctx.model.topology.migrator?.name === ctx.host.name
        : media.storage === "nfs"
          ? media.server === ctx.host.name
          : ["web", "app", "asgi", "worker"].some((r) => roles.has(r as never));
    const database = roles.has("db") || roles.has("db-standby");
    if (database || mediaHost) {
      expected.set(p.backupScript, [0o755, "root", "root"]);
      expected.set(`${p.unitDir}/${p.backupService}`, [0o644, "root", "root"]);
      expected.set(`${p.unitDir}/${p.backupTimer}`, [0o644, "root", "root"]);
    }
    if (database) expected.set(p.backupPgpass, [0o600, ctx.model.project.user, ctx.model.project.group]);
    if (django) expected.set(p.updateScript, [0o755, "root", "root"]);
    if (roles.has("app")) expected.set(p.logrotate, [0o644, "root", "root"]);
    expected.set(p.firewallScript, [0o755, "root", "root"]);
    // A broker copies its own certificate only when it terminates MQTT over TLS itself (no lb).
    const brokerTls = roles.has("mqtt") && ctx.model.mqtt.tls_port !== undefined && !ctx.model.topology.lb;
    if (le && (terminates || brokerTls)) expected.set(p.certbotDeployHook, [0o755, "root", "root"]);
    const got = new Map([...files(ctx)].map(([path, f]) => [path, [f.mode, f.owner ?? "root", f.group ?? "root"]]));
    expect(got).toEqual(expected);
  });

  it("renders no firewall script when the firewall is disabled", () => {
    for (const ctx of contextsWith("ha-cluster", { firewall: { enabled: false } })) {
      expect([...files(ctx).keys()]).not.toContain(pathsOf(ctx.model).firewallScript);
    }
  });

  it("never writes a secret into a script, a unit or logrotate (only the 0600 password file holds one)", () => {
    for (const { ctx } of all) {
      for (const f of scriptsFamily.files(ctx)) {
        if (f.path === pathsOf(ctx.model).backupPgpass) continue;
        for (const secret of Object.values(ctx.secrets)) expect(f.content, f.path).not.toContain(secret);
      }
      for (const step of scriptsFamily.steps(ctx)) {
        for (const secret of Object.values(ctx.secrets)) expect(JSON.stringify(step)).not.toContain(secret);
      }
    }
  });
});

describe("backup (errata 11)", () => {
  it("has a password file libpq reads back as 127.0.0.1, the port, database, user and the exact password", () => {
    for (const [fixture, name] of [["options", "iot1"], ["ha-cluster", "db1"]] as const) {
      const ctx = host(fixture, name);
      const lines = code(file(ctx, pathsOf(ctx.model).backupPgpass).content);
      expect(lines).toHaveLength(1);
      const pg = ctx.model.postgres;
      expect(pgpassFields(lines[0]!)).toEqual(["127.0.0.1", String(pg.port), pg.database, pg.user, ctx.secrets.dbPassword]);
    }
  });

  it("connects the way the password file says, over TCP without prompting (BK-02)", () => {
    const ctx = host("options", "iot1");
    const script = file(ctx, pathsOf(ctx.model).backupScript).content;
    expect(script).toContain(`export PGPASSFILE=${pathsOf(ctx.model).backupPgpass}\n`);
    expect(script).toContain("readonly DB_PORT=5433\n");
    expect(script).toContain("readonly DB_NAME=iot\n");
    expect(script).toContain("readonly DB_USER=iot_app\n");
    expect(script).toMatch(/pg_dump -h 127\.0\.0\.1 -p "\$DB_PORT" -U "\$DB_USER" --no-password \\\n\s+--format=custom/);
    expect(script).not.toMatch(/PGPASSWORD/);
  });

  it("is strict, private and locked before it does anything, and keeps a dump only after checking it (BK-01, BK-03, BK-09)", () => {
    const members = all.filter(({ ctx }) => ctx.host.roles.has("db") || ctx.host.roles.has("db-standby"));
    expect(members.length).toBeGreaterThanOrEqual(7);
    for (const { ctx } of members) {
      const content = file(ctx, pathsOf(ctx.model).backupScript).content;
      expect(content.startsWith("#!/usr/bin/env bash\n")).toBe(true);
      const lines = code(content);
      const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
      expect(at(/^set -Eeuo pipefail$/)).toBe(0);
      expect(at(/^umask 077$/)).toBe(1);
      const flock = at(/flock -n 9/);
      const role = at(/SELECT pg_is_in_recovery\(\)/);
      const dump = at(/^elif pg_dump /);
      const check = at(/&& pg_restore --list "\$tmp\/db\.dump"/);
      const keep = at(/^ +keep db\.dump db dump$/);
      expect(flock).toBeGreaterThan(1);
      expect([flock < role, role < dump, dump < check, check < keep]).toEqual([true, true, true, true]);
      expect(lines.join("\n")).toContain(`readonly KEEP_DAYS=${ctx.model.backup.keep_days}`);
      expect(lines.join("\n")).toContain("date -u +%Y%m%dT%H%M%SZ");
    }
  });

  it("prunes a kind only right after a new file of that kind is in place", () => {
    const lines = code(file(host("options", "iot1"), "/srv/iotcloud/backup.sh").content);
    const body = lines.slice(lines.findIndex((l) => l.startsWith("keep() {")), lines.findIndex((l) => l.startsWith("keep() {")) + 6);
    expect(body).toEqual([
      "keep() {",
      '    local target="$BACKUP_DIR/${PREFIX}_$2_${ts}.$3"',
      '    mv -- "$tmp/$1" "$target"',
      '    find "$BACKUP_DIR" -maxdepth 1 -type f -name "${PREFIX}_$2_*.$3" -mtime +"$KEEP_DAYS" -delete',
      '    echo "backup: $target written"',
      "}",
    ]);
    expect(lines.filter((l) => l.includes("find "))).toHaveLength(1);
  });

  it("archives media with relative names where they live: the one media host, the NFS server, or S3's copy on the migrator (BK-10, BK-06)", () => {
    const single = file(host("single-node", "node1"), "/opt/novacloud/backup.sh").content;
    expect(single).toContain("readonly MEDIA_PARENT=/opt/novacloud\nreadonly MEDIA_NAME=media\n");
    expect(single).toContain('tar -C "$MEDIA_PARENT" -czf "$tmp/media.tar.gz" -- "$MEDIA_NAME"');
    // ha-cluster: on NFS from worker1; the database hosts archive no media.
    expect(file(host("ha-cluster", "worker1"), "/opt/novacloud/backup.sh").content).toContain("readonly MEDIA_PARENT=/opt/novacloud\nreadonly MEDIA_NAME=media\n");
    for (const name of ["db1", "db2"]) expect(code(file(host("ha-cluster", name), "/opt/novacloud/backup.sh").content).filter((l) => /\btar /.test(l))).toEqual([]);
    for (const name of ["app1", "app2", "app3"]) expect(files(host("ha-cluster", name)).has("/opt/novacloud/backup.sh")).toBe(false);
    // ha-sentinel: in S3; app1 copies the bucket into a mirror beside the backups and archives it.
    const s3 = file(host("ha-sentinel", "app1"), "/opt/novacloud/backup.sh").content;
    expect(s3).toContain("readonly MEDIA_PARENT=/opt/backups/s3-mirror\nreadonly MEDIA_NAME=media\n");
    expect(s3).toContain('exec rclone --config /dev/null --cache-dir "$tmp/rclone" sync "media:$S3_BUCKET" "$MEDIA_PARENT/$MEDIA_NAME"');
    expect(s3).toContain("export RCLONE_CONFIG_MEDIA_PROVIDER=Other\nexport RCLONE_CONFIG_MEDIA_ENDPOINT=https://objects.example.net\nexport RCLONE_CONFIG_MEDIA_REGION=eu-central-1\n");
    expect(files(host("ha-sentinel", "app2")).has("/opt/novacloud/backup.sh")).toBe(false);
  });

  it("treats tar's status 1 (a file changed while read) as a warning and any other as a media failure", () => {
    const lines = code(file(host("single-node", "node1"), "/opt/novacloud/backup.sh").content).map((l) => l.trim());
    const from = lines.indexOf("case $status in");
    expect(lines.slice(from, from + 8)).toEqual([
      "case $status in",
      "0) keep media.tar.gz media tar.gz ;;",
      "1)",
      'echo "backup: warning: media changed while they were archived (tar named the files above); the archive is kept" >&2',
      "keep media.tar.gz media tar.gz",
      ";;",
      '*) failed+=("media: tar exited with status $status (see above); no archive kept") ;;',
      "esac",
    ]);
  });

  it("stores the .env only encrypted to the age recipient, and only where the .env exists (BK-04)", () => {
    const ctx = host("options", "iot1");
    const script = file(ctx, pathsOf(ctx.model).backupScript).content;
    expect(script).toContain(`readonly AGE_RECIPIENT=${ctx.model.backup.age_recipient}\n`);
    expect(script).toContain('age --encrypt --recipient "$AGE_RECIPIENT" --output "$tmp/env.age" "$ENV_FILE"');
    expect(code(script).filter((l) => l.includes("ENV_FILE"))).toEqual([
      `readonly ENV_FILE=${ctx.model.project.envFile}`,
      'if age --encrypt --recipient "$AGE_RECIPIENT" --output "$tmp/env.age" "$ENV_FILE"; then',
      '    failed+=("env: age could not encrypt $ENV_FILE (see above)")',
    ]);
    // Without a recipient the .env is not touched at all.
    const plain = file(host("single-node", "node1"), "/opt/novacloud/backup.sh").content;
    expect(plain).not.toContain(".env");
    expect(plain).not.toContain("age ");
    // A db host without Django code has no .env to encrypt; the NFS server runs Django and has one.
    const recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const variant = contextsWith("ha-cluster", { backup: { age_recipient: recipient } });
    expect(file(contextOf(variant, "db1"), "/opt/novacloud/backup.sh").content).not.toContain(recipient);
    expect(file(contextOf(variant, "worker1"), "/opt/novacloud/backup.sh").content).toContain(`readonly AGE_RECIPIENT=${recipient}\n`);
  });
});

describe("backup schedule (errata 12): a systemd timer, no cron", () => {
  const unit = (ctx: HostContext, name: string) => file(ctx, `${pathsOf(ctx.model).unitDir}/${name}`).content;

  it.each([
    ["single-node", "node1", ["*-*-* 03:00:00"]],
    ["options", "iot1", ["Mon..Sat *-*-* 02:30:00"]],
    ["ha-cluster", "db2", ["*-*-* 03:00:00"]],
  ] as const)("%s/%s: the timer fires at the model's schedule and catches up after downtime", (fixture, name, calendar) => {
    const ctx = host(fixture, name);
    const timer = code(unit(ctx, pathsOf(ctx.model).backupTimer));
    expect(timer.filter((l) => l.startsWith("OnCalendar="))).toEqual(calendar.map((c) => `OnCalendar=${c}`));
    expect(timer).toContain("Persistent=true");
    expect(timer).toContain("WantedBy=timers.target");
  });

  it("the day-of-month OR weekday of cron becomes two OnCalendar= lines", () => {
    const ctx = contextOf(contextsWith("single-node", { backup: { schedule: "0 4 1,15 * 0" } }), "node1");
    expect(code(unit(ctx, "novacloud-backup.timer")).filter((l) => l.startsWith("OnCalendar="))).toEqual(["OnCalendar=*-*-01,15 04:00:00", "OnCalendar=Sun *-*-* 04:00:00"]);
  });

  it("the service runs the script once as the account, after PostgreSQL where there is one, without starting it", () => {
    const db = code(unit(host("ha-cluster", "db1"), "novacloud-backup.service"));
    expect(db).toEqual(expect.arrayContaining(["Type=oneshot", "User=novacloud", "Group=novacloud", "ExecStart=/opt/novacloud/backup.sh", "After=postgresql.service", "ReadWritePaths=/opt/backups"]));
    expect(db.filter((l) => l.startsWith("Wants="))).toEqual([]);
    // No "-" in front of ExecStart: a failed run is a failed unit.
    expect(db.filter((l) => l.startsWith("ExecStart=-"))).toEqual([]);
    const media = code(unit(host("ha-cluster", "worker1"), "novacloud-backup.service"));
    expect(media.filter((l) => l.includes("postgresql"))).toEqual([]);
    expect(media).toContain("IPAddressDeny=any");
    const s3 = code(unit(host("ha-sentinel", "app1"), "novacloud-backup.service"));
    expect(s3).toEqual(expect.arrayContaining(["Wants=network-online.target", "After=network-online.target"]));
    expect(s3.filter((l) => l.startsWith("IPAddress"))).toEqual([]);
  });

  it("renders no cron entry anywhere", () => {
    for (const { ctx } of all) for (const f of scriptsFamily.files(ctx)) expect(f.path).not.toMatch(/^\/etc\/cron/);
  });
});

describe("update.sh (errata 14)", () => {
  const script = (ctx: HostContext) => code(file(ctx, pathsOf(ctx.model).updateScript).content);

  it("migrates only on the migrator host and collects static files only where nginx serves them", () => {
    const contexts = hostContexts("ha-cluster");
    for (const ctx of contexts.filter((c) => c.model.topology.django.some((h) => h.name === c.host.name))) {
      const lines = script(ctx);
      expect(lines.includes("manage migrate --noinput"), ctx.host.name).toBe(ctx.host.name === ctx.model.topology.migrator!.name);
      expect(lines.includes("manage collectstatic --noinput"), ctx.host.name).toBe(ctx.host.roles.has("web"));
      expect(lines).toContain("manage check --deploy");
    }
    expect(contexts[0]!.model.topology.migrator!.name).toBe("app1");
  });

  it("reloads gunicorn (restarts it for a new interpreter or gunicorn) and restarts exactly the other units on this host", () => {
    const app = script(host("ha-cluster", "app1"));
    expect(app).toContain('systemctl "$wsgi" novacloud.service');
    expect(app).toContain("    wsgi=reload");
    expect(app).toContain("    wsgi=restart");
    expect(app).toContain("systemctl restart novacloud-asgi.service");
    const worker = script(host("ha-cluster", "worker1"));
    expect(worker.filter((l) => l.includes("wsgi"))).toEqual([]);
    expect(worker).toContain("systemctl restart novacloud-celery.service novacloud-celerybeat.service");
    expect(worker.join("\n")).not.toMatch(/systemctl restart novacloud\.service/);
  });

  it("backs up first only where the database is, and says where it is otherwise", () => {
    const single = host("single-node", "node1");
    expect(script(single)).toContain(`runuser -u "$APP_USER" -- ${pathsOf(single.model).backupScript}`);
    const app1 = file(host("ha-cluster", "app1"), "/opt/novacloud/update.sh").content;
    expect(code(app1).join("\n")).not.toContain("backup.sh");
    expect(app1).toContain("# The database is on db1: run its backup there before deploying");
  });

  it("builds the release beside the running one from the mirror, and switches by rename only after the checks (#9 item 8)", () => {
    const ctx = host("options", "iot1");
    const lines = script(ctx);
    const p = ctx.model.project;
    const pth = pathsOf(ctx.model);
    expect(lines).toContain(`readonly REPOSITORY=${pth.repositoryMirror}`);
    expect(lines).toContain(`readonly RELEASES=${p.releases}`);
    expect(lines).toContain(`readonly CURRENT=${p.current}`);
    expect(lines.join("\n")).not.toMatch(/git (checkout|pull|reset)|\bsource\b|activate/);
    const at = (line: string) => {
      const i = lines.indexOf(line);
      expect(i, line).toBeGreaterThan(-1);
      return i;
    };
    const order = [
      at('git --git-dir="$REPOSITORY" archive "$COMMIT" | tar -x -C "$RELEASE"'),
      // Python 3.12.3 on Ubuntu 24.04 fits: the system's venv and the venv's pip.
      // A virtualenv like the running release's: with the distribution's packages, or its own pip install.
      at(`if grep -qx 'include-system-site-packages = true' "$CURRENT/venv/pyvenv.cfg" 2>/dev/null; then`),
      at('    python3 -m venv --system-site-packages "$RELEASE/venv"'),
      at('    python3 -m venv "$RELEASE/venv"'),
      at('    "$RELEASE/venv/bin/pip" install --requirement "$RELEASE/requirements.txt"'),
      at("manage check --deploy"),
      at("manage migrate --noinput"),
      at("manage collectstatic --noinput"),
      at(`mv -T ${p.root}/.current.new "$CURRENT"`),
      at('systemctl "$wsgi" iotcloud.service'),
    ];
    expect([...order].sort((x, y) => x - y)).toEqual(order);
    // Until the switch, a failure removes the new release and says that nothing was deployed.
    expect(lines.indexOf("trap not_deployed ERR")).toBeLessThan(order[0]!);
    expect(lines.indexOf("trap - ERR")).toBeGreaterThan(order[6]!);
    expect(lines).toContain('    runuser -u "$APP_USER" -- "$RELEASE/venv/bin/python" manage.py "$@"');
    const env = ["set -a", '. "$ENV_FILE"', "set +a"];
    const e = lines.indexOf(env[0]!);
    expect(lines.slice(e, e + 3)).toEqual(env);
    expect(lines).toContain("readonly ENV_FILE=/etc/iotcloud/iotcloud.env");
  });

  it("builds the venv with the shared uv interpreter where the system Python is too old (#9 item 1)", () => {
    const ctx = host("single-node", "node1");
    const lines = script(ctx);
    const pth = pathsOf(ctx.model);
    expect(lines).toContain(`readonly UV=${pth.uv}`);
    expect(lines).toContain(`export UV_PYTHON_INSTALL_DIR=${pth.pythonInstallDir}`);
    expect(lines).toContain("export UV_PYTHON_DOWNLOADS=manual");
    expect(lines).toContain('"$UV" venv --python 3.12 "$RELEASE/venv"');
    expect(lines).toContain('"$UV" pip install --python "$RELEASE/venv/bin/python" --compile-bytecode --requirement "$RELEASE/requirements.txt"');
    expect(pth.pythonInstallDir.startsWith(`${ctx.model.project.root}/`)).toBe(true);
  });
});

describe("logrotate (errata 13)", () => {
  it("rotates gunicorn's logs as the account and reopens them with USR1 to the main process (LR-03, LR-04)", () => {
    const ctx = host("options", "iot1");
    const text = file(ctx, pathsOf(ctx.model).logrotate).content;
    const lines = code(text).map((l) => l.trim());
    expect(lines[0]).toBe(`${ctx.model.project.logDir}/*.log {`);
    for (const directive of ["su iot iot", "daily", "rotate 30", "compress", "delaycompress", "missingok", "notifempty", "create 0640 iot iot", "sharedscripts", "postrotate", "endscript", "}"]) {
      expect(lines).toContain(directive);
    }
    expect(lines).toContain(`systemctl kill --signal=USR1 --kill-whom=main ${unitNames(ctx.model).wsgi} >/dev/null 2>&1 || true`);
    expect(code(text).join("\n")).not.toMatch(/restart/);
    expect(text.split("\n").filter((l) => l.includes("/var/log/nginx") && !l.startsWith("#"))).toEqual([]);
  });

  it("spells the option --kill-who= before systemd 252 (capability gate)", () => {
    const ctx = contextOf(contextsWith("single-node", { platform: { distribution: "ubuntu-22.04" } }), "node1");
    const text = file(ctx, pathsOf(ctx.model).logrotate).content;
    expect(text).toContain("systemctl kill --signal=USR1 --kill-who=main novacloud.service");
    expect(text).not.toContain("--kill-whom");
  });
});

describe("firewall (errata 15)", () => {
  interface UfwRule {
    readonly verb: string;
    readonly port: number;
    readonly from: string | undefined;
  }

  function ufw(ctx: HostContext): { lines: string[]; rules: UfwRule[] } {
    const lines = code(file(ctx, pathsOf(ctx.model).firewallScript).content).filter((l) => l.startsWith("ufw "));
    const rules = lines.flatMap((l): UfwRule[] => {
      const simple = /^ufw (allow|limit) (\d+)\/tcp comment /.exec(l);
      if (simple) return [{ verb: simple[1]!, port: Number(simple[2]), from: undefined }];
      const sourced = /^ufw (allow|limit) proto tcp from (\S+) to any port (\d+) comment /.exec(l);
      if (sourced) return [{ verb: sourced[1]!, port: Number(sourced[3]), from: sourced[2]! }];
      return [];
    });
    return { lines, rules };
  }

  const sources = (ctx: HostContext, port: number) => ufw(ctx).rules.filter((r) => r.port === port).map((r) => r.from);

  it.each(all.map(({ fixture, ctx }) => ({ name: `${fixture}/${ctx.host.name}`, ctx })))("$name: deny by default, SSH first, enable last, no plain MQTT to the world", ({ ctx }) => {
    const { lines, rules } = ufw(ctx);
    expect(lines.slice(0, 2)).toEqual(["ufw default deny incoming", "ufw default allow outgoing"]);
    const ssh = rules.filter((r) => r.port === ctx.model.firewall.ssh_port);
    expect(ssh.length).toBeGreaterThan(0);
    expect(ssh.every((r) => r.verb === "limit")).toBe(true);
    expect(lines.at(-2)).toBe("ufw --force enable");
    expect(lines.at(-1)).toBe("ufw status verbose");
    expect(lines.indexOf("ufw --force enable")).toBeGreaterThan(lines.findIndex((l) => l.startsWith("ufw limit")));
    // MQ-03/UFW-01: the plain MQTT port only ever from named hosts.
    expect(rules.filter((r) => r.port === ctx.model.mqtt.port && r.from === undefined)).toEqual([]);
    // Every rule opens a port in the model or the public web ports, nothing else.
    for (const r of rules) expect(lines.join("\n")).toContain(String(r.port));
  });

  it("opens 80/443 only on the host that terminates TLS, and the MQTT TLS port where MQTT over TLS ends (issue #9 item 5)", () => {
    const public_ = (ctx: HostContext) => ufw(ctx).rules.filter((r) => r.from === undefined && r.port !== ctx.model.firewall.ssh_port).map((r) => r.port);
    // Behind an lb, HAProxy terminates MQTT over TLS: the broker opens nothing to the world,
    // not even port 80 for a challenge that would reach the lb (mqtt.domain resolves there).
    expect(public_(host("ha-cluster", "lb1"))).toEqual([80, 443, 8883]);
    expect(public_(host("ha-cluster", "app1"))).toEqual([]);
    expect(public_(host("ha-cluster", "mqtt1"))).toEqual([]);
    expect(public_(contextOf(contextsWith("ha-cluster", { site: { tls: { mode: "files", certificate: "/etc/ssl/c.pem", key: "/etc/ssl/k.pem" } } }), "mqtt1"))).toEqual([]);
    expect(public_(host("single-node", "node1"))).toEqual([80, 443, 8883]);
    // Without an lb, a broker of its own gets its Let's Encrypt certificate itself (HTTP-01 on port 80).
    expect(public_(contextOf(separateBroker(), "broker"))).toEqual([80, 8883]);
    expect(public_(contextOf(separateBroker({ site: { tls: { mode: "files", certificate: "/etc/ssl/c.pem", key: "/etc/ssl/k.pem" } } }), "broker"))).toEqual([8883]);
    expect(public_(host("options", "iot1"))).toEqual([80, 443]);
  });

  it("limits SSH to ssh_from on ssh_port when set", () => {
    const rules = ufw(host("options", "iot1")).rules.filter((r) => r.port === 2222);
    expect(rules).toEqual([{ verb: "limit", port: 2222, from: "203.0.113.0/24" }]);
    expect(ufw(host("options", "iot1")).rules.filter((r) => r.port === 22)).toEqual([]);
  });

  it("opens private ports only to the hosts that use them (ha-cluster, UFW-04)", () => {
    const app = ["10.0.0.11", "10.0.0.12", "10.0.0.13"];
    const worker = "10.0.0.21";
    expect(sources(host("ha-cluster", "app1"), 8080)).toEqual(["10.0.0.10"]);
    // Django hosts and the standbys reach the primary (sources in host-name order: app1-3, db2,
    // db3, worker1). A standby may be promoted, so it admits the same clients and the other
    // members (the flow table's "once this standby is promoted" flows).
    expect(sources(host("ha-cluster", "db1"), 5432)).toEqual([...app, "10.0.0.32", "10.0.0.33", worker]);
    expect(sources(host("ha-cluster", "db2"), 5432)).toEqual([...app, "10.0.0.31", "10.0.0.33", worker]);
    expect(sources(host("ha-cluster", "cache1"), 6379)).toEqual([...app, worker]);
    expect(sources(host("ha-cluster", "mqtt1"), 1883)).toEqual([...app, worker]);
    // Nobody needs gunicorn or daphne from outside: they listen on loopback.
    expect(sources(host("ha-cluster", "app1"), 8000)).toEqual([]);
    expect(sources(host("ha-cluster", "app1"), 8001)).toEqual([]);
  });

  it("opens Redis, Sentinel and the MQTT bridge between the data hosts (ha-sentinel)", () => {
    const apps = ["10.1.0.11", "10.1.0.12"];
    // data1: Redis from the apps, the arbiter's sentinel and data2 (replica and sentinel).
    expect(sources(host("ha-sentinel", "data1"), 6379)).toEqual([...apps, "10.1.0.30", "10.1.0.22"]);
    expect(sources(host("ha-sentinel", "arbiter"), 26379)).toEqual([...apps, "10.1.0.21", "10.1.0.22"]);
    // data1 is the MQTT hub: the apps and the bridging leaf data2; the leaf opens nothing.
    expect(sources(host("ha-sentinel", "data1"), 1883)).toEqual([...apps, "10.1.0.22"]);
    expect(sources(host("ha-sentinel", "data2"), 1883)).toEqual([]);
    expect(sources(host("ha-sentinel", "data2"), 5432)).toEqual([...apps, "10.1.0.21"]);
  });

  it("needs no private rule where everything is on one host", () => {
    const { rules } = ufw(host("single-node", "node1"));
    expect(rules.filter((r) => r.from !== undefined)).toEqual([]);
  });
});

describe("certbot deploy hook (TLS-01)", () => {
  it("acts on the site lineage on the host that terminates TLS and on the MQTT lineage on MQTT hosts", () => {
    const lb = file(host("ha-cluster", "lb1"), "/etc/letsencrypt/renewal-hooks/deploy/novacloud").content;
    const model = host("ha-cluster", "lb1").model;
    const site = siteCertificate(model).certificate.replace(/\/fullchain\.pem$/, "");
    expect(lb).toContain(`readonly SITE_LINEAGE=${site}\n`);
    expect(lb).toContain(`mv -f -- "$pem_tmp" ${pathsOf(model).haproxyPem}`);
    expect(lb).toContain("systemctl reload haproxy");
    expect(lb).not.toContain("mosquitto");
    expect(lb).not.toContain("nginx");
    // Behind the lb the broker holds no certificate (HAProxy terminates MQTT over TLS).
    expect([...files(host("ha-cluster", "mqtt1")).keys()]).not.toContain(pathsOf(model).certbotDeployHook);
    const broker = contextOf(separateBroker(), "broker");
    const mqtt = file(broker, "/etc/letsencrypt/renewal-hooks/deploy/novacloud").content;
    expect(mqttLetsEncryptLive(broker.model)).toBe("/etc/letsencrypt/live/mqtt.example.org");
    expect(mqtt).toContain(`readonly MQTT_LINEAGE=${mqttLetsEncryptLive(broker.model)}\n`);
    expect(mqtt).toContain(`mv -f -- ${pathsOf(model).mosquittoKey}.new ${pathsOf(model).mosquittoKey}`);
    expect(mqtt).toContain("install -o mosquitto -g mosquitto -m 0600 -- \"$lineage/privkey.pem\"");
    expect(mqtt).toContain("systemctl reload mosquitto");
    expect(mqtt).not.toContain("SITE_LINEAGE");
    const single = file(host("single-node", "node1"), "/etc/letsencrypt/renewal-hooks/deploy/novacloud").content;
    expect(code(single)).toContain("    systemctl reload nginx");
    expect(code(single)).toContain("    systemctl reload mosquitto");
  });

  it("is only rendered for Let's Encrypt", () => {
    for (const ctx of hostContexts("options")) expect([...files(ctx).keys()]).not.toContain(pathsOf(ctx.model).certbotDeployHook);
  });
});

describe("runbook steps", () => {
  const steps = (ctx: HostContext) => scriptsFamily.steps(ctx);
  const commands = (ctx: HostContext) => steps(ctx).flatMap((s) => stepLines(s));

  it("creates the backup directory 0700 for the account, enables the timer and runs one backup through the unit", () => {
    const ctx = host("options", "iot1");
    expect(commands(ctx)).toContain("install -d -o iot -g iot -m 0700 /var/backups/iotcloud");
    expect(commands(ctx)).toEqual(expect.arrayContaining(["systemctl daemon-reload", "systemctl enable --now iotcloud-backup.timer", "systemctl start iotcloud-backup.service"]));
    expect(steps(ctx).flatMap(stepPackages)).toEqual(expect.arrayContaining(["postgresql-client", "age", "ufw", "logrotate"]));
    expect(steps(ctx).flatMap(stepPackages)).not.toContain("cron");
    expect(steps(host("ha-sentinel", "app1")).flatMap(stepPackages)).toContain("rclone");
  });

  it("says how failures are watched: the failed unit, its journal, and the age of the newest backup", () => {
    const watch = steps(host("ha-cluster", "db2")).find((s) => s.id === "backup.watch")!;
    expect(stepLines(watch)).toEqual([
      "systemctl is-failed novacloud-backup.service",
      "journalctl -u novacloud-backup.service -n 20 --no-pager",
      "find /opt/backups -maxdepth 1 -type f -newermt '26 hours ago' -name 'novacloud_*'",
    ]);
    expect(watch.why).toContain("systemctl --failed");
    expect(watch.why).toContain("no MTA");
    const timer = steps(host("ha-cluster", "db2")).find((s) => s.id === "backup.timer")!;
    expect(timer.why).toContain("pg_is_in_recovery() is false");
  });

  it("runs the firewall with a warning to keep the SSH session open", () => {
    const step = steps(host("ha-cluster", "db1")).find((s) => stepLines(s).includes("/usr/local/sbin/novacloud-firewall"))!;
    expect(step.phase).toBe("network");
    expect(step.why).toMatch(/Keep the SSH session/);
  });

  it("installs the certificate copies by hand once and tests renewal", () => {
    const ctx = host("single-node", "node1");
    const cmds = commands(ctx);
    expect(cmds).toContain("RENEWED_LINEAGE=/etc/letsencrypt/live/iot.example.com /etc/letsencrypt/renewal-hooks/deploy/novacloud");
    expect(cmds).toContain("certbot renew --dry-run");
    expect(commands(host("options", "iot1"))).not.toContain("certbot renew --dry-run");
  });

  it("tells non-migrator hosts to wait for the migrator and to back up on the db host", () => {
    const why = steps(host("ha-cluster", "app2")).map((s) => s.why ?? "").join(" ");
    expect(why).toContain("Deploy on app1 first");
    expect(why).toContain("Back up the database on db1 first");
  });
});
