/**
 * The alert rules Prometheus evaluates on the monitor host, as data: the rules file template
 * prints them, the README lists them, and test/lint/monitoring.test.ts gives each one a
 * `promtool test rules` case that fires it and one that keeps it quiet.
 *
 * Sources: the node_exporter mixin (docs/node-mixin/alerts/alerts.libsonnet: filesystem space
 * filling up by predict_linear over 6 h, only below 40 % free and on writable file systems;
 * memory and systemd unit alerts) and the awesome-prometheus-alerts collection
 * (samber/awesome-prometheus-alerts, _data/rules.yml: host, PostgreSQL, Redis, HAProxy v2 and
 * blackbox sections), adjusted to the exporters Debian 12 ships and to what this model renders.
 * PromQL strings use single quotes, so the YAML file needs no escapes.
 */
import { BLACKBOX_JOBS, EXPORTERS } from "../model/monitoring.js";

export type Severity = "critical" | "warning";

export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  /** How long the condition must hold before the alert fires (pending until then). */
  readonly for: string | undefined;
  readonly severity: Severity;
  readonly summary: string;
  readonly description: string;
  /** What it watches, for the README. */
  readonly watches: string;
}

/** The node_exporter metric backup.sh writes through the textfile collector. */
export const BACKUP_METRIC = "novacloud_backup_last_success_timestamp_seconds";

/** File systems whose space is no disk (kernel and container overlays). */
const REAL_FS = "fstype!~'tmpfs|ramfs|squashfs|overlay|nsfs|fuse.lxcfs',mountpoint!~'/run($|/.*)'";

/** Seconds in a Prometheus duration of one unit ("26h" -> 93600), as the schema allows them. */
export function durationSeconds(duration: string): number {
  const m = /^([0-9]+)(ms|s|m|h|d)$/.exec(duration);
  if (!m) throw new Error(`internal: ${duration} is not a duration`);
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "ms" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

/** Every alert rule, in the order of the rules file: hosts, then services, then the outside view. */
export function alertRules(options: { readonly backupMaxAge: string }): AlertRule[] {
  const pg = EXPORTERS["postgres-exporter"].job;
  const redis = EXPORTERS["redis-exporter"].job;
  return [
    {
      alert: "InstanceDown",
      expr: "up == 0",
      for: "2m",
      severity: "critical",
      summary: "{{ $labels.job }} on {{ $labels.host }} is down",
      description: "Prometheus could not scrape {{ $labels.instance }} (job {{ $labels.job }}) for 2 minutes: the host, the exporter or the network between them is down.",
      watches: "every scrape target (the host or its exporter is unreachable)",
    },
    {
      alert: "DiskFillingUp",
      // The selector once per operand the others match on (same labels), not on every one.
      expr: `(node_filesystem_avail_bytes{${REAL_FS}} / node_filesystem_size_bytes < 0.40) and (predict_linear(node_filesystem_avail_bytes{${REAL_FS}}[6h], 24 * 3600) < 0) and (node_filesystem_readonly == 0)`,
      for: "1h",
      severity: "warning",
      summary: "{{ $labels.mountpoint }} on {{ $labels.host }} fills up within 24 hours",
      description: "At the rate of the last 6 hours, {{ $labels.mountpoint }} on {{ $labels.host }} has no space left within a day (less than 40 % is free now).",
      watches: "a file system that the last 6 hours' trend fills within 24 h (predict_linear)",
    },
    {
      alert: "DiskAlmostFull",
      expr: `(node_filesystem_avail_bytes{${REAL_FS}} / node_filesystem_size_bytes < 0.10) and (node_filesystem_readonly == 0)`,
      for: "15m",
      severity: "critical",
      summary: "{{ $labels.mountpoint }} on {{ $labels.host }} has less than 10 % free",
      description: "{{ $labels.mountpoint }} on {{ $labels.host }} has {{ $value | humanizePercentage }} of its space left.",
      watches: "a file system with less than 10 % free",
    },
    {
      alert: "HighCpuLoad",
      expr: "1 - avg by (host, instance) (rate(node_cpu_seconds_total{mode='idle'}[5m])) > 0.90",
      for: "15m",
      severity: "warning",
      summary: "CPU on {{ $labels.host }} is over 90 % busy",
      description: "The CPUs of {{ $labels.host }} have been {{ $value | humanizePercentage }} busy for 15 minutes.",
      watches: "CPUs more than 90 % busy for 15 minutes",
    },
    {
      alert: "MemoryPressure",
      expr: "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.10",
      for: "10m",
      severity: "warning",
      summary: "{{ $labels.host }} has less than 10 % of its memory available",
      description: "MemAvailable on {{ $labels.host }} is {{ $value | humanizePercentage }} of the total: the kernel is about to swap or kill processes.",
      watches: "less than 10 % of memory available for 10 minutes",
    },
    {
      alert: "SystemdUnitFailed",
      expr: "node_systemd_unit_state{state='failed'} == 1",
      for: "5m",
      severity: "warning",
      summary: "{{ $labels.name }} failed on {{ $labels.host }}",
      description: "The systemd unit {{ $labels.name }} on {{ $labels.host }} is in the failed state (journalctl -u {{ $labels.name }} says why).",
      watches: "a failed systemd unit (a NovaCloud service, the backup, any other)",
    },
    {
      alert: "HaproxyBackendDown",
      // A backend with servers none of which is UP (haproxy_backend_active_servers would also
      // count the stats proxy, which has no servers, as a backend without one).
      expr: `max by (job, instance, host, proxy) (haproxy_server_status{job='${EXPORTERS["haproxy-metrics"].job}',state='UP'}) == 0`,
      for: "1m",
      severity: "critical",
      summary: "HAProxy backend {{ $labels.proxy }} has no server up",
      description: "Every server of {{ $labels.proxy }} on {{ $labels.host }} fails its health check: requests to it get 503.",
      watches: "an HAProxy backend with no server passing its health check",
    },
    {
      alert: "HaproxyServerDown",
      expr: `haproxy_server_status{job='${EXPORTERS["haproxy-metrics"].job}',state='DOWN'} == 1`,
      for: "2m",
      severity: "warning",
      summary: "{{ $labels.server }} in HAProxy backend {{ $labels.proxy }} is down",
      description: "HAProxy on {{ $labels.host }} took {{ $labels.server }} out of {{ $labels.proxy }}: it fails its health check.",
      watches: "one server of an HAProxy backend failing its health check",
    },
    {
      alert: "PostgresqlDown",
      expr: `pg_up{job='${pg}'} == 0`,
      for: "1m",
      severity: "critical",
      summary: "PostgreSQL on {{ $labels.host }} is down",
      description: "The PostgreSQL exporter on {{ $labels.host }} cannot connect to the server.",
      watches: "PostgreSQL not answering its exporter",
    },
    {
      alert: "PostgresqlStandbyNotStreaming",
      expr: `pg_standby_is_standby{job='${pg}'} == 1 and pg_standby_streaming{job='${pg}'} == 0`,
      for: "2m",
      severity: "critical",
      summary: "The standby {{ $labels.host }} does not stream from the primary",
      description: "{{ $labels.host }} is in recovery but has no streaming WAL receiver: it falls behind and cannot take over safely.",
      watches: "a standby without a streaming WAL receiver",
    },
    {
      alert: "PostgresqlStandbyLagging",
      expr: `pg_standby_is_standby{job='${pg}'} == 1 and pg_standby_replay_lag_seconds{job='${pg}'} > 300`,
      for: "5m",
      severity: "warning",
      summary: "The standby {{ $labels.host }} replays WAL {{ $value | humanizeDuration }} behind",
      description: "{{ $labels.host }} has WAL it received but not yet replayed, and the last replayed transaction is more than 5 minutes old.",
      watches: "a standby replaying more than 5 minutes behind what it received",
    },
    {
      alert: "BackupTooOld",
      expr: `time() - ${BACKUP_METRIC} > ${durationSeconds(options.backupMaxAge)}`,
      for: "10m",
      severity: "warning",
      summary: "The last good backup on {{ $labels.host }} is {{ $value | humanizeDuration }} old",
      description: `backup.sh on {{ $labels.host }} has not completed for longer than ${options.backupMaxAge} (monitoring.backup_max_age): the timer stopped or every run fails.`,
      watches: "the last successful backup.sh run older than monitoring.backup_max_age",
    },
    {
      alert: "CertificateExpiringSoon",
      expr: "probe_ssl_earliest_cert_expiry - time() < 14 * 86400",
      for: "1h",
      severity: "warning",
      summary: "The certificate of {{ $labels.instance }} expires in {{ $value | humanizeDuration }}",
      description: "Let's Encrypt certificates are renewed 30 days before they expire; 14 days left means renewal has failed for two weeks (certbot renew --dry-run says why).",
      watches: "the site's or MQTT's certificate expiring within 14 days, as seen from outside",
    },
    {
      alert: "RedisDown",
      expr: `redis_up{job='${redis}'} == 0`,
      for: "1m",
      severity: "critical",
      summary: "Redis on {{ $labels.host }} is down",
      description: "The Redis exporter on {{ $labels.host }} cannot reach Redis: cache, Channels and Celery's broker are gone.",
      watches: "Redis not answering its exporter",
    },
    {
      alert: "RedisPrimaryChanged",
      expr: `(redis_instance_info{job='${redis}',role='master'} unless on (instance) (redis_instance_info{job='${redis}',role='master'} offset 10m)) and on (instance) (redis_instance_info{job='${redis}'} offset 10m)`,
      for: undefined,
      severity: "warning",
      summary: "{{ $labels.host }} became the Redis primary",
      description: "Redis on {{ $labels.host }} was a replica 10 minutes ago and is the primary now: Sentinel failed over. Find out why the old primary failed.",
      watches: "a Redis replica that became the primary in the last 10 minutes (a Sentinel failover)",
    },
    {
      alert: "MqttBrokerUnreachable",
      expr: `probe_success{job='${BLACKBOX_JOBS.mqtt}'} == 0`,
      for: "2m",
      severity: "critical",
      summary: "MQTT over TLS at {{ $labels.instance }} is unreachable",
      description: "The blackbox exporter cannot complete a TLS handshake with {{ $labels.instance }}: devices cannot connect.",
      watches: "MQTT over TLS not answering a TLS handshake on its public name",
    },
    {
      alert: "SiteDown",
      expr: `probe_success{job='${BLACKBOX_JOBS.https}'} == 0`,
      for: "2m",
      severity: "critical",
      summary: "{{ $labels.instance }} fails from outside",
      description: "The blackbox exporter's HTTPS request to {{ $labels.instance }} did not get a 2xx answer with a valid certificate.",
      watches: "the site's health check over HTTPS not answering 2xx with a valid certificate",
    },
  ];
}
