/**
 * What a change to a rendered file requires on its host, in one place: nothing, a reload or a
 * restart of a unit, `systemctl daemon-reload`, or running one of the host's steps again. The
 * Ansible playbook turns these into handlers and re-runs (src/artifacts/ansible.ts), `--check`
 * into its plan (src/plan.ts), and render() stamps them on every file of a host.
 *
 * A rendered file no rule here names is undecided: it gets no effect, and
 * test/artifacts/effects.test.ts fails until a rule says what a change to it requires.
 */
import { shell } from "../quote.js";
import type { FileSpec } from "../tree.js";
import type { HostContext } from "./context.js";
import { hostUnits } from "./systemd.js";

export type Effect =
  /** `systemctl daemon-reload`: systemd reads changed unit files. */
  | { readonly kind: "daemon-reload" }
  /** Restart the unit (after `test` succeeds, when given). */
  | { readonly kind: "restart"; readonly unit: string; readonly test?: string }
  /** Reload the unit (after `test` succeeds, when given). */
  | { readonly kind: "reload"; readonly unit: string; readonly test?: string }
  /**
   * PostgreSQL's configuration: a reload, then a restart when a changed setting can only change
   * at server start (pg_settings.context = postmaster); the server says which (pending_restart).
   */
  | { readonly kind: "postgres-settings"; readonly unit: string; readonly dataDir: string }
  /** Run this host's step `step` again (a tool runs it the first time too). */
  | { readonly kind: "rerun"; readonly step: string };

export interface FileHandling {
  readonly effects: readonly Effect[];
  /** Why, in a few words: the plan prints it. */
  readonly why: string;
  /**
   * The program rewrites the installed file (Redis Sentinel and sentinel.conf): installing the
   * rendered file on every run would undo its state and report a change each time, so a tool
   * keeps the rendered copy under Paths.appliedDir and installs it only when that copy changes.
   */
  readonly rewritten?: true;
}

const DAEMON_RELOAD: Effect = { kind: "daemon-reload" };
const NOTHING = (why: string): FileHandling => ({ effects: [], why });

/** A unit name as systemd and Ansible's service facts spell it: `nginx` -> `nginx.service`. */
export function unitName(unit: string): string {
  return /\.[a-z]+$/.test(unit) ? unit : `${unit}.service`;
}

/** A restart of `unit` (after `test`, when given). */
export function restartUnit(unit: string, test?: string): Effect {
  return { kind: "restart", unit: unitName(unit), ...(test === undefined ? {} : { test }) };
}

/** A reload of `unit` (after `test`, when given). */
export function reloadUnit(unit: string, test?: string): Effect {
  return { kind: "reload", unit: unitName(unit), ...(test === undefined ? {} : { test }) };
}

/** The rules of one host: rendered path -> what a change to it requires. */
export function fileRules(ctx: HostContext): Map<string, FileHandling> {
  const paths = ctx.paths;
  const rules = new Map<string, FileHandling>();
  const units = hostUnits(ctx);
  // The app: systemd reads EnvironmentFile= when a unit starts, so every unit reading the .env
  // restarts; gunicorn re-reads gunicorn_config.py on SIGHUP (its reload; bind changes too:
  // gunicorn's Arbiter.reloadUnit() reopens the listeners when the address changed).
  rules.set(ctx.model.project.envFile, { effects: units.map((u) => restartUnit(u.name)), why: "the units read it (EnvironmentFile=) only when they start" });
  const wsgi = units.find((u) => u.reloads);
  if (wsgi) rules.set(paths.gunicornConfig, { effects: [reloadUnit(wsgi.name)], why: "gunicorn re-reads its configuration on SIGHUP" });
  for (const u of units) {
    rules.set(`${paths.unitDir}/${u.name}`, { effects: [DAEMON_RELOAD, restartUnit(u.name)], why: "systemd reads a unit file at daemon-reload; the unit restarts with it" });
  }
  // nginx and HAProxy reload gracefully, after their own configuration test.
  const nginx = { effects: [reloadUnit("nginx", "nginx -t")], why: "nginx reloads its configuration gracefully" };
  for (const path of [paths.nginxSite, paths.nginxAcmeSite, paths.nginxSecurityHeaders, paths.nginxProxyHeaders]) rules.set(path, nginx);
  rules.set(paths.haproxyConfig, { effects: [reloadUnit("haproxy", `haproxy -c -f ${paths.haproxyConfig}`)], why: "HAProxy reloads its configuration gracefully" });
  // PostgreSQL: pg_hba.conf and most settings take a reload; the server says when a setting
  // needs a restart. One effect for both files, so a change to both reloads once.
  const pg: FileHandling = { effects: [{ kind: "postgres-settings", unit: paths.pgService, dataDir: paths.pgDataDir }], why: "PostgreSQL re-reads its configuration on reload" };
  rules.set(paths.pgConfD, pg);
  rules.set(paths.pgHba, { ...pg, why: "PostgreSQL re-reads pg_hba.conf on reload" });
  rules.set(paths.pgInitSql, { effects: [{ kind: "rerun", step: "postgres.init-sql" }], why: "the roles and passwords are set by running it" });
  rules.set(paths.standbyPgpass, NOTHING("libpq reads the password file at each connection"));
  // Redis reads its configuration only at start; Sentinel rewrites its file.
  rules.set(paths.redisFragment, { effects: [restartUnit("redis-server")], why: "Redis reads its configuration only at start" });
  rules.set(paths.sentinelConf, { effects: [restartUnit("redis-sentinel")], why: "Sentinel reads it at start and then rewrites it", rewritten: true });
  // Mosquitto re-reads the password file, the ACL and certificates on SIGHUP (mosquitto.conf(5):
  // "Reloaded on reload signal"); listeners and bridges only at start.
  rules.set(paths.mosquittoConf, { effects: [restartUnit("mosquitto")], why: "listeners and bridges are read only at start" });
  rules.set(paths.mosquittoPasswd, { effects: [reloadUnit("mosquitto")], why: "Mosquitto re-reads password_file on SIGHUP" });
  rules.set(paths.mosquittoAcl, { effects: [reloadUnit("mosquitto")], why: "Mosquitto re-reads acl_file on SIGHUP" });
  rules.set(paths.mosquittoDeviceAcl, { effects: [reloadUnit("mosquitto")], why: "Mosquitto re-reads acl_file on SIGHUP" });
  // The backup: its timer re-arms when restarted; the oneshot service is read at its next start.
  rules.set(paths.backupScript, NOTHING("the timer runs the new script next time"));
  rules.set(paths.backupPgpass, NOTHING("libpq reads the password file at each connection"));
  rules.set(`${paths.unitDir}/${paths.backupService}`, { effects: [DAEMON_RELOAD], why: "systemd reads the unit at daemon-reload; the timer starts it next time" });
  rules.set(`${paths.unitDir}/${paths.backupTimer}`, { effects: [DAEMON_RELOAD, restartUnit(paths.backupTimer)], why: "a timer takes a changed schedule when it restarts" });
  // Kernel settings: applied by running the step again (systemd-sysctl reads them at boot).
  rules.set(paths.sysctlConf, { effects: [{ kind: "rerun", step: "sysctl.apply" }], why: "sysctl applies the settings when it runs" });
  // NFS: exportfs -ra applies a changed export list without disturbing clients; the server reads
  // nfs.conf.d at start; a mount takes new options on a remount (systemctl reload of a .mount).
  rules.set(paths.nfsExports, { effects: [{ kind: "rerun", step: "media.export" }], why: "exportfs -ra applies the export list" });
  rules.set(paths.nfsConf, { effects: [restartUnit("nfs-server")], why: "the NFS server reads its settings at start" });
  rules.set(`${paths.unitDir}/${paths.mediaMountUnit}`, { effects: [DAEMON_RELOAD, reloadUnit(paths.mediaMountUnit)], why: "a mount takes changed options when it is remounted" });
  rules.set(paths.updateScript, NOTHING("run by hand at the next deploy"));
  rules.set(paths.logrotate, NOTHING("logrotate reads it at its next daily run"));
  rules.set(paths.firewallScript, { effects: [{ kind: "rerun", step: "firewall.enable" }], why: "the rules change when the script runs" });
  rules.set(paths.certbotDeployHook, { effects: [{ kind: "rerun", step: "certbot.deploy-hook" }], why: "the copies it makes change when it runs" });
  // Monitoring: the /etc/default files are EnvironmentFile=s, read at start; Prometheus,
  // Alertmanager and the blackbox exporter re-read their configuration on SIGHUP (their units'
  // ExecReload), after the check their own tool makes; the nginx exporter's stub_status server
  // is nginx's configuration.
  for (const unit of ["prometheus-node-exporter", "prometheus-postgres-exporter", "prometheus-redis-exporter", "prometheus-nginx-exporter", "prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"]) {
    rules.set(`/etc/default/${unit}`, { effects: [restartUnit(unit)], why: "the unit reads its settings (EnvironmentFile=) only when it starts" });
  }
  rules.set(paths.postgresExporterQueries, { effects: [restartUnit("prometheus-postgres-exporter")], why: "the exporter reads its queries only at start" });
  const promCheck = `promtool check config ${shell(paths.prometheusConfig)}`;
  rules.set(paths.prometheusConfig, { effects: [reloadUnit("prometheus", promCheck)], why: "Prometheus re-reads its configuration on SIGHUP" });
  rules.set(paths.prometheusRules, { effects: [reloadUnit("prometheus", promCheck)], why: "Prometheus re-reads its rule files on SIGHUP" });
  rules.set(paths.alertmanagerConfig, { effects: [reloadUnit("prometheus-alertmanager", `amtool check-config ${shell(paths.alertmanagerConfig)}`)], why: "Alertmanager re-reads its configuration on SIGHUP" });
  rules.set(paths.blackboxConfig, { effects: [reloadUnit("prometheus-blackbox-exporter")], why: "the blackbox exporter re-reads its modules on SIGHUP" });
  rules.set(paths.nginxStubStatus, nginx);
  rules.set(paths.runbook, NOTHING("documentation"));
  return rules;
}

/**
 * The host's files, each with what a change to it requires (FileSpec.handling); a file no rule
 * names gets none, and test/artifacts/effects.test.ts fails until a rule decides.
 */
export function withHandling(ctx: HostContext, files: readonly FileSpec[], rules: ReadonlyMap<string, FileHandling> = fileRules(ctx)): FileSpec[] {
  return files.map((f) => {
    const handling = rules.get(f.path);
    return handling === undefined ? f : { ...f, handling };
  });
}

/**
 * The order a tool applies effects in, whatever order the files changed in: systemd's unit
 * files first, then the services others connect to (PostgreSQL, Redis, Mosquitto), then the
 * app's units, then the front ends (nginx, HAProxy); a restart before a reload of the same
 * unit. Re-runs are not ordered here: they run at their step.
 */
export function effectRank(effect: Effect, appUnits: readonly string[]): [number, string, number] {
  switch (effect.kind) {
    case "daemon-reload":
      return [0, "", 0];
    case "rerun":
      return [9, effect.step, 0];
    case "postgres-settings":
      return [2, effect.unit, 0];
    case "restart":
    case "reload": {
      const kind = effect.kind === "restart" ? 0 : 1;
      // The app's units in their own order (gunicorn, daphne, worker, beat).
      const app = appUnits.indexOf(effect.unit);
      if (app >= 0) return [4, String(app).padStart(4, "0"), kind];
      const tier = ["redis-server.service", "redis-sentinel.service", "mosquitto.service"].includes(effect.unit) ? 3 : ["nginx.service", "haproxy.service"].includes(effect.unit) ? 5 : 6;
      return [tier, effect.unit, kind];
    }
  }
}

export function compareRanks(a: [number, string, number], b: [number, string, number]): number {
  return a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || a[2] - b[2];
}

/** The effect as a person reads it: "reload nginx.service (after nginx -t)". */
export function describeEffect(effect: Effect): string {
  switch (effect.kind) {
    case "daemon-reload":
      return "systemctl daemon-reload";
    case "restart":
    case "reload":
      return `${effect.kind} ${effect.unit}${effect.test === undefined ? "" : ` (after ${effect.test})`}`;
    case "postgres-settings":
      return `reload ${effect.unit}, restart it if a changed setting needs that`;
    case "rerun":
      return `run ${effect.step} again`;
  }
}

/** The same effect, whatever file asked for it. */
export function effectKey(effect: Effect): string {
  switch (effect.kind) {
    case "daemon-reload":
      return "daemon-reload";
    case "rerun":
      return `rerun ${effect.step}`;
    case "postgres-settings":
      return `${effect.unit} settings`;
    case "restart":
    case "reload":
      return `${effect.kind} ${effect.unit}`;
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL settings: which need a restart.

/**
 * pg_settings.context of the settings the conf.d file sets (and a few a reviewer may add by
 * hand), from the PostgreSQL documentation (runtime-config-*.html: "This parameter can only be
 * set at server start" is `postmaster`; "only in postgresql.conf or on the server command line"
 * is `sighup`). The same in 12 to 17 for these names; test/lint/postgres-effects.test.ts
 * compares the table with a running PostgreSQL's pg_settings.
 */
export const POSTGRES_SETTING_CONTEXTS: Readonly<Record<string, "postmaster" | "sighup" | "superuser" | "user">> = {
  listen_addresses: "postmaster",
  port: "postmaster",
  max_connections: "postmaster",
  shared_buffers: "postmaster",
  password_encryption: "user",
  ssl: "sighup",
  ssl_cert_file: "sighup",
  ssl_key_file: "sighup",
  wal_level: "postmaster",
  max_wal_senders: "postmaster",
  max_replication_slots: "postmaster",
  wal_keep_size: "sighup",
  wal_keep_segments: "sighup",
  max_slot_wal_keep_size: "sighup",
  hot_standby: "postmaster",
  wal_log_hints: "postmaster",
  work_mem: "user",
  maintenance_work_mem: "user",
  effective_cache_size: "user",
  log_min_duration_statement: "superuser",
};

/** `name = value` settings of a postgresql.conf-style file (comments and blank lines skipped). */
export function postgresSettings(text: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const m = /^([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*)$/.exec(line);
    if (!m || line.startsWith("#")) continue;
    settings.set(m[1]!.toLowerCase(), settingValue(m[2]!));
  }
  return settings;
}

/** The value part of a setting line: a quoted string (with '' inside) or a word; no comment. */
function settingValue(rest: string): string {
  if (!rest.startsWith("'")) return rest.replace(/\s*#.*$/, "").trim();
  let value = "";
  for (let i = 1; i < rest.length; i++) {
    if (rest[i] === "'" && rest[i + 1] === "'") {
      value += "'";
      i++;
    } else if (rest[i] === "'") return value;
    else value += rest[i];
  }
  return value;
}

export interface SettingChange {
  readonly name: string;
  /** The setting's context, when the table knows it. */
  readonly context: string | undefined;
}

/** The settings whose value differs between two versions of a file (added and removed ones too). */
export function changedPostgresSettings(before: string | undefined, after: string): SettingChange[] {
  const a = postgresSettings(before ?? "");
  const b = postgresSettings(after);
  const names = [...new Set([...a.keys(), ...b.keys()])].filter((n) => a.get(n) !== b.get(n)).sort();
  return names.map((name) => ({ name, context: POSTGRES_SETTING_CONTEXTS[name] }));
}

/**
 * The shell a tool runs for a `postgres-settings` effect: reload the cluster in `dataDir`, wait
 * until the postmaster has re-read its files (pg_conf_load_time() moves on: a session started
 * after the reload sees the postmaster's time), then print the settings that wait for a restart
 * (pg_settings.pending_restart), space-separated, nothing if none. It reaches the server on the
 * port and socket directory it runs with now (postmaster.pid, lines 4 and 5), which is not the
 * configured port when the port itself changed.
 */
export function postgresReloadScript(dataDir: string): string {
  const pid = `${dataDir}/postmaster.pid`;
  return [
    "set -e",
    `pid=${shell(pid)}`,
    `[ -r "$pid" ] || { echo "PostgreSQL is not running: no $pid" >&2; exit 1; }`,
    `q() { runuser -u postgres -- psql -X -h "$(sed -n 5p "$pid")" -p "$(sed -n 4p "$pid")" -d postgres -Atc "$1"; }`,
    `before=$(q 'SELECT pg_conf_load_time()')`,
    `q 'SELECT pg_reload_conf()' >/dev/null`,
    `for _ in $(seq 100); do [ "$(q 'SELECT pg_conf_load_time()')" != "$before" ] && break; sleep 0.1; done`,
    `[ "$(q 'SELECT pg_conf_load_time()')" != "$before" ] || { echo 'PostgreSQL did not reload its configuration' >&2; exit 1; }`,
    `q "SELECT coalesce(string_agg(name, ' ' ORDER BY name), '') FROM pg_settings WHERE pending_restart"`,
  ].join("\n");
}
