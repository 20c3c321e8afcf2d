/**
 * Operator scripts and schedules: the database backup with its password file and cron entry
 * (errata 11, 12), update.sh (14), logrotate for gunicorn's logs (13), the ufw rules (15) and
 * the certbot deploy hook that refreshes every copy of a renewed certificate (6, TLS-01).
 */
import { runsDjango, type Host } from "../model/normalize.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { behindLb, has, required, terminatesSiteTls, type HostContext, type HostFamily, type RunbookStep } from "./context.js";
import { mqttPlainClients } from "./mosquitto.js";
import { mqttLetsEncryptLive, paths, siteCertificate, unitNames } from "./paths.js";
import { hostUnits } from "./systemd.js";

function backupTag(ctx: HostContext): string {
  return `${ctx.model.project.name}-backup`;
}

// --- backup (db host) ------------------------------------------------------------------------

function backupView(ctx: HostContext) {
  const { model } = ctx;
  const p = model.project;
  const mediaParent = p.mediaDir.slice(0, p.mediaDir.lastIndexOf("/")) || "/";
  return {
    project: p.name,
    user: p.user,
    dir: model.backup.dir,
    dbName: model.postgres.database,
    dbUser: model.postgres.user,
    dbPort: model.postgres.port,
    keepDays: model.backup.keep_days,
    pgpass: paths(model).backupPgpass,
    // BK-10: uploads live on the app hosts; they are archived where the database is only when
    // this host serves them too.
    media: has(ctx, "app") ? { parent: mediaParent, name: p.mediaDir.slice(mediaParent.length).replace(/^\//, ""), dir: p.mediaDir } : undefined,
    // BK-04: the .env (every secret) only encrypted, and only where it exists.
    age:
      model.backup.age_recipient !== undefined && runsDjango(ctx.host)
        ? { recipient: model.backup.age_recipient, envFile: p.envFile }
        : undefined,
  };
}

function backupFiles(ctx: HostContext): FileSpec[] {
  const { model } = ctx;
  const p = model.project;
  const pth = paths(model);
  const pgpass = {
    host: "127.0.0.1",
    port: String(model.postgres.port),
    database: model.postgres.database,
    user: model.postgres.user,
    password: required(ctx.secrets, "dbPassword"),
    account: p.user,
  };
  const cron = {
    project: p.name,
    schedule: model.backup.schedule,
    user: p.user,
    tag: backupTag(ctx),
    script: pth.backupScript,
  };
  return [
    templateFile(pth.backupScript, "scripts/backup.sh.njk", backupView(ctx), { comment: "#", mode: MODE.script }),
    // BK-02: the password lives here, readable by the backup account only (libpq refuses a
    // password file that group or others can read).
    templateFile(pth.backupPgpass, "scripts/backup.pgpass.njk", pgpass, { comment: "#", mode: MODE.secret, owner: p.user, group: p.group, secret: true }),
    templateFile(pth.backupCron, "scripts/backup.cron.njk", cron, { comment: "#", mode: MODE.config }),
  ];
}

// --- update.sh (hosts that run Django code) ---------------------------------------------------

function updateView(ctx: HostContext) {
  const { model } = ctx;
  const p = model.project;
  const t = model.topology;
  const units = hostUnits(ctx);
  return {
    project: p.name,
    root: p.root,
    user: p.user,
    envFile: p.envFile,
    venv: p.venv,
    systemPip: model.caps.python.systemPythonFits,
    migrator: t.migrator?.name === ctx.host.name,
    migratorHost: t.migrator?.name ?? "",
    collectstatic: has(ctx, "web"),
    backup: has(ctx, "db") ? paths(model).backupScript : undefined,
    dbHost: t.db?.name ?? "",
    // Unit names, each shell-quoted, joined into one argument list.
    reload: units.filter((u) => u.reloads).map((u) => shell(u.name)).join(" "),
    restart: units.filter((u) => !u.reloads).map((u) => shell(u.name)).join(" "),
    lock: `/run/lock/${p.name}-update.lock`,
  };
}

// --- logrotate (app hosts) ---------------------------------------------------------------------

function logrotateView(ctx: HostContext) {
  const { model } = ctx;
  return {
    logDir: model.project.logDir,
    user: model.project.user,
    group: model.project.group,
    keepDays: model.logs.keep_days,
    unit: unitNames(model).wsgi,
    killWhom: model.caps.systemd.killWhom ? "--kill-whom" : "--kill-who",
  };
}

// --- ufw (every host) --------------------------------------------------------------------------

interface FirewallSource {
  readonly address: string;
  readonly host: string;
  readonly why: string;
}

interface FirewallRule {
  readonly port: number;
  readonly service: string;
  readonly sources: readonly FirewallSource[];
}

/** Source-restricted rules: who on the private network needs which port of this host (UFW-04). */
export function privateFirewallRules(ctx: HostContext): FirewallRule[] {
  const { model, host } = ctx;
  const t = model.topology;
  const others = (hosts: readonly Host[]) => hosts.filter((h) => h.name !== host.name);
  const rules: FirewallRule[] = [];
  const rule = (port: number, service: string, groups: [readonly Host[], string][]) => {
    const byHost = new Map<string, { host: Host; why: string[] }>();
    for (const [hosts, why] of groups) {
      for (const h of others(hosts)) {
        const entry = byHost.get(h.name) ?? { host: h, why: [] };
        if (!entry.why.includes(why)) entry.why.push(why);
        byHost.set(h.name, entry);
      }
    }
    // In host order (hosts are sorted by name), without scanning every host for every rule.
    const sources = [...byHost.values()]
      .sort((a, b) => (a.host.name < b.host.name ? -1 : a.host.name > b.host.name ? 1 : 0))
      .map(({ host: h, why }) => ({ address: h.address, host: h.name, why: why.join(", ") }));
    if (sources.length > 0) rules.push({ port, service, sources });
  };
  if (has(ctx, "web") && behindLb(model) && t.lb) {
    rule(model.haproxy.backend_port, "nginx for the load balancer", [[[t.lb], "HAProxy"]]);
  }
  if (has(ctx, "db")) {
    // Replication connects standby -> primary, so standbys open nothing for it; after a
    // failover the promoted host gets the "db" role in the model and these rules.
    rule(model.postgres.port, "PostgreSQL", [
      [t.django, "Django"],
      [t.standbys, "streaming replication"],
    ]);
  }
  if (has(ctx, "redis")) {
    rule(model.redis.port, "Redis", [
      [t.django, "Django and Celery"],
      // Any replica can be promoted, so every Redis host may replicate from this one.
      [t.redis, "replication"],
      [t.sentinels, "Sentinel monitoring"],
    ]);
  }
  if (has(ctx, "redis-sentinel")) {
    rule(model.redis.sentinel_port, "Redis Sentinel", [
      // The app asks the sentinels for the primary only when Redis replicates.
      [t.redis.length > 1 ? t.django : [], "Django and Celery"],
      [t.sentinels, "the other sentinels"],
    ]);
  }
  if (has(ctx, "mqtt")) {
    // The same hosts the broker's private listener is for (mosquitto.ts).
    const clients = mqttPlainClients(model, host);
    rule(model.mqtt.port, "MQTT (plain, private)", [
      [clients.django, "Django"],
      [clients.bridges, "bridge to this hub"],
    ]);
  }
  return rules;
}

interface PublicPort {
  readonly port: number;
  readonly why: string;
}

export function publicFirewallPorts(ctx: HostContext): PublicPort[] {
  const { model } = ctx;
  const ports = new Map<number, string[]>();
  const add = (port: number, why: string) => ports.set(port, [...(ports.get(port) ?? []), why]);
  if (terminatesSiteTls(ctx)) {
    const server = has(ctx, "lb") ? "HAProxy" : "nginx";
    const acme = model.site.tls.mode === "letsencrypt" ? " and ACME challenges" : "";
    add(model.site.http_port, `${server}: HTTP redirect${acme}`);
    add(model.site.https_port, `${server}: HTTPS`);
  }
  if (has(ctx, "mqtt") && model.mqtt.tls_port !== undefined) {
    add(model.mqtt.tls_port, "MQTT over TLS for devices");
    if (model.site.tls.mode === "letsencrypt" && !terminatesSiteTls(ctx)) {
      add(80, "certbot: HTTP-01 challenges for the MQTT certificate");
    }
  }
  return [...ports.entries()].sort(([a], [b]) => a - b).map(([port, why]) => ({ port, why: why.join("; ") }));
}

function firewallView(ctx: HostContext) {
  const { model, host } = ctx;
  return {
    project: model.project.name,
    host: host.name,
    address: host.address,
    sshPort: model.firewall.ssh_port,
    sshFrom: model.firewall.ssh_from,
    public: publicFirewallPorts(ctx),
    private: privateFirewallRules(ctx),
    mqtt: has(ctx, "mqtt") ? { port: model.mqtt.port, tls: model.mqtt.tls_port !== undefined } : undefined,
  };
}

// --- certbot deploy hook -----------------------------------------------------------------------

function needsDeployHook(ctx: HostContext): boolean {
  const { model } = ctx;
  if (model.site.tls.mode !== "letsencrypt") return false;
  return terminatesSiteTls(ctx) || (has(ctx, "mqtt") && model.mqtt.tls_port !== undefined);
}

function deployHookView(ctx: HostContext) {
  const { model } = ctx;
  const pth = paths(model);
  const siteLive = siteCertificate(model).certificate.replace(/\/fullchain\.pem$/, "");
  const dirOf = (path: string) => path.slice(0, path.lastIndexOf("/"));
  return {
    project: model.project.name,
    hook: pth.certbotDeployHook,
    site: terminatesSiteTls(ctx)
      ? {
          live: siteLive,
          nginx: has(ctx, "web") && !behindLb(model),
          // The temporary PEM is written one level up (same file system, so the rename is
          // atomic), where a `crt <directory>` line would never load it.
          haproxy: has(ctx, "lb") ? { pem: pth.haproxyPem, dir: dirOf(pth.haproxyPem), tmpDir: dirOf(dirOf(pth.haproxyPem)) } : undefined,
        }
      : undefined,
    mqtt:
      has(ctx, "mqtt") && model.mqtt.tls_port !== undefined
        ? { live: mqttLetsEncryptLive(model), cert: pth.mosquittoCert, key: pth.mosquittoKey, dir: dirOf(pth.mosquittoCert) }
        : undefined,
  };
}

/** The certificate lineages whose renewal the hook on this host acts on. */
function deployHookLineages(ctx: HostContext): string[] {
  const v = deployHookView(ctx);
  return [...new Set([v.site?.live, v.mqtt?.live].filter((l): l is string => l !== undefined))];
}

// --- the family --------------------------------------------------------------------------------

function scriptsFiles(ctx: HostContext): FileSpec[] {
  const { model } = ctx;
  const pth = paths(model);
  const files: FileSpec[] = [];
  if (has(ctx, "db")) files.push(...backupFiles(ctx));
  if (runsDjango(ctx.host)) {
    files.push(templateFile(pth.updateScript, "scripts/update.sh.njk", updateView(ctx), { comment: "#", mode: MODE.script }));
  }
  if (has(ctx, "app")) {
    files.push(templateFile(pth.logrotate, "scripts/logrotate.njk", logrotateView(ctx), { comment: "#", mode: MODE.config }));
  }
  if (model.firewall.enabled) {
    files.push(templateFile(pth.firewallScript, "scripts/firewall.sh.njk", firewallView(ctx), { comment: "#", mode: MODE.script }));
  }
  if (needsDeployHook(ctx)) {
    files.push(templateFile(pth.certbotDeployHook, "scripts/certbot-deploy-hook.sh.njk", deployHookView(ctx), { comment: "#", mode: MODE.script }));
  }
  return files;
}

function scriptsSteps(ctx: HostContext): RunbookStep[] {
  const { model } = ctx;
  const p = model.project;
  const t = model.topology;
  const pth = paths(model);
  const steps: RunbookStep[] = [];
  if (has(ctx, "db")) {
    const age = backupView(ctx).age !== undefined;
    steps.push({
      phase: "database",
      title: "Create the backup directory",
      packages: ["cron", "postgresql-client", ...(age ? ["age"] : [])],
      commands: [`install -d -m 0700 -o ${shell(p.user)} -g ${shell(p.group)} ${shell(model.backup.dir)}`],
      why: `Dumps are readable by ${p.user} only (errata BK-03). They stay on this host: copy ${model.backup.dir} to another machine (restic, borg, rsync), or a lost host loses its backups too (BK-08).`,
    });
    steps.push({
      phase: "verify",
      title: "Run one backup now",
      commands: [
        `runuser -u ${shell(p.user)} -- ${shell(pth.backupScript)}`,
        `ls -l ${shell(model.backup.dir)}`,
        `pg_restore --list "$(ls -1 ${shell(`${model.backup.dir}/${p.name}_db_`)}*.dump | tail -n 1)" | head`,
      ],
      why: `cron runs it as ${p.user} at "${model.backup.schedule}" (UTC names, keep ${model.backup.keep_days} days); its output is in \`journalctl -t ${backupTag(ctx)}\`. Restore with pg_restore --clean --if-exists.`,
    });
  }
  if (runsDjango(ctx.host)) {
    const migrator = t.migrator?.name === ctx.host.name;
    const dbHere = has(ctx, "db");
    const order = migrator
      ? "This host migrates the database: deploy here first, then on the other Django hosts."
      : `Deploy on ${t.migrator?.name} first (it migrates the database), then here.`;
    const backup = dbHere
      ? "It backs up the database first."
      : `Back up the database on ${t.db?.name} first: runuser -u ${p.user} -- ${pth.backupScript}.`;
    steps.push({
      phase: "app",
      title: "Later deploys: update.sh",
      commands: [`# ${pth.updateScript} <git tag or commit>`],
      why: `${order} ${backup} Migrations must be backward compatible: the old code serves until the units reload (errata UP-07).`,
    });
  }
  if (has(ctx, "app")) {
    steps.push({
      phase: "verify",
      title: "Check the log rotation",
      packages: ["logrotate"],
      commands: [`logrotate --debug ${shell(pth.logrotate)}`],
      why: "Debug mode changes nothing; it shows what the daily run would rotate and that gunicorn gets USR1 instead of a restart (errata LR-03).",
    });
  }
  if (needsDeployHook(ctx)) {
    const lineages = deployHookLineages(ctx);
    steps.push({
      phase: "certificates",
      title: "Install the certificate copies and test the renewal",
      packages: ["certbot"],
      commands: [...lineages.map((l) => `RENEWED_LINEAGE=${shell(l)} ${shell(pth.certbotDeployHook)}`), "certbot renew --dry-run"],
      why: "certbot runs the hooks in renewal-hooks/deploy/ only on renewals, not on the first certonly, so the hook runs once by hand after the certificate exists; --dry-run does not run deploy hooks either (errata TLS-01).",
    });
  }
  if (model.firewall.enabled) {
    steps.push({
      phase: "services",
      title: "Enable the firewall",
      packages: ["ufw"],
      commands: [shell(pth.firewallScript), "ufw status verbose"],
      why: `Keep the SSH session you run this from open, and check that a second login on port ${model.firewall.ssh_port} works before closing it: a wrong rule locks you out. The script allows SSH before it enables ufw (errata UFW-02).`,
    });
  }
  return steps;
}

export const scriptsFamily: HostFamily = { files: scriptsFiles, steps: scriptsSteps };
