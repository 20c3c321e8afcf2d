/**
 * Every path and unit name that more than one file mentions, defined once. A unit that
 * logrotate signals, a certificate HAProxy reads and the deploy hook writes, a site the runbook
 * enables: all come from here, so the files agree by construction.
 */
import { siteTlsHost } from "../model/flows.js";
import type { Model } from "../model/normalize.js";

export function unitNames(model: Model) {
  const n = model.project.name;
  return {
    /** gunicorn (WSGI), named like the project as in the guide. */
    wsgi: `${n}.service`,
    asgi: `${n}-asgi.service`,
    worker: `${n}-celery.service`,
    beat: `${n}-celerybeat.service`,
  };
}

/** The site certificate on the host that terminates TLS (lb, or the single web host). */
export function siteCertificate(model: Model): { certificate: string; key: string } {
  const tls = model.site.tls;
  if (tls.mode === "files") return { certificate: tls.certificate, key: tls.key };
  const live = `/etc/letsencrypt/live/${model.site.domain}`;
  return { certificate: `${live}/fullchain.pem`, key: `${live}/privkey.pem` };
}

/**
 * The Let's Encrypt lineage the broker's certificate comes from: the site's when the broker is
 * the host that terminates the site's TLS (that certificate names mqtt.domain too), else its own.
 */
export function mqttLetsEncryptLive(model: Model): string {
  const site = siteTlsHost(model);
  if (site !== undefined && site.roles.has("mqtt")) return siteCertificate(model).certificate.replace(/\/fullchain\.pem$/, "");
  return `/etc/letsencrypt/live/${model.mqtt.domain}`;
}

/**
 * `scheme://host[:port]path`, the port only when it is not the scheme's default: the one way
 * every file and runbook writes a URL of the site.
 */
export function urlOf(scheme: "http" | "https", host: string, port: number, path = ""): string {
  const standard = scheme === "https" ? 443 : 80;
  return `${scheme}://${host}${port === standard ? "" : `:${port}`}${path}`;
}

/**
 * The path the load balancer checks daphne through (backend be_ws): nginx behind the lb proxies
 * exactly this path to daphne's health check, so the check exercises what /ws/ really reaches.
 * It lies under site.websocket_path, where HAProxy already sends requests to be_ws.
 */
export function asgiHealthCheckPath(model: Model): string {
  return `${model.site.websocket_path.replace(/\/$/, "")}${model.site.health_check_path}`;
}

/**
 * The unit name systemd gives a path (`systemd-escape --path`): slashes become '-', and every
 * byte outside [A-Za-z0-9:_.] (and a leading '.') becomes \xNN, so /opt/nova-cloud/media is
 * opt-nova\x2dcloud-media. A .mount unit must be named so (systemd.mount(5)).
 */
export function pathUnitName(path: string, suffix: string): string {
  const trimmed = path.replace(/\/+/g, "/").replace(/^\/|\/$/g, "");
  if (trimmed === "") return `-.${suffix}`;
  const escaped = [...new TextEncoder().encode(trimmed)]
    .map((byte, i) => {
      const c = String.fromCharCode(byte);
      if (c === "/") return "-";
      if (/[A-Za-z0-9:_]/.test(c) || (c === "." && i > 0)) return c;
      return `\\x${byte.toString(16).padStart(2, "0")}`;
    })
    .join("");
  return `${escaped}.${suffix}`;
}

/** The paths of a model; render() computes them once and hands them to every family (ctx.paths). */
export function pathsOf(model: Model) {
  const n = model.project.name;
  const root = model.project.root;
  const etc = model.project.etcDir;
  const pg = `/etc/postgresql/${model.postgres.version}/main`;
  return {
    // systemd
    unitDir: "/etc/systemd/system",
    /**
     * gunicorn's config (app family), read by the WSGI unit's ExecStart. Beside the .env in
     * /etc/<name>, outside every release: a deploy never replaces it.
     */
    gunicornConfig: `${etc}/gunicorn_config.py`,
    /** celery beat's schedule database, in the unit's StateDirectory= (errata SD-05). */
    celerybeatSchedule: `${model.project.stateDir}/celerybeat-schedule`,
    // nginx (Debian layout: sites-available/ linked from sites-enabled/, included in http{})
    nginxSite: `/etc/nginx/sites-available/${n}`,
    nginxSiteEnabled: `/etc/nginx/sites-enabled/${n}`,
    nginxAcmeSite: `/etc/nginx/sites-available/${n}-acme`,
    nginxAcmeSiteEnabled: `/etc/nginx/sites-enabled/${n}-acme`,
    /** Debian's packaged default site (default_server on :80), removed by the runbook. */
    nginxDefaultSiteEnabled: "/etc/nginx/sites-enabled/default",
    nginxSecurityHeaders: `/etc/nginx/snippets/${n}-security-headers.conf`,
    nginxProxyHeaders: `/etc/nginx/snippets/${n}-proxy-headers.conf`,
    nginxAccessLog: `/var/log/nginx/${n}-access.log`,
    nginxErrorLog: `/var/log/nginx/${n}-error.log`,
    acmeWebroot: "/var/www/letsencrypt",
    // HAProxy
    haproxyConfig: "/etc/haproxy/haproxy.cfg",
    haproxyPem: `/etc/haproxy/certs/${n}.pem`,
    // Mosquitto (Debian layout: conf.d/ included by the packaged mosquitto.conf)
    mosquittoConf: `/etc/mosquitto/conf.d/${n}.conf`,
    /** The platform's (and the bridges') password file: rendered. */
    mosquittoPasswd: "/etc/mosquitto/passwd",
    mosquittoAcl: "/etc/mosquitto/acl",
    /** Device accounts: created empty by the runbook, edited with mosquitto_passwd, never rendered. */
    mosquittoDevicePasswd: "/etc/mosquitto/devices.passwd",
    mosquittoDeviceAcl: "/etc/mosquitto/devices.acl",
    mosquittoCert: `/etc/mosquitto/certs/${n}-fullchain.pem`,
    mosquittoKey: `/etc/mosquitto/certs/${n}-privkey.pem`,
    // PostgreSQL (Debian layout)
    pgConfigDir: pg,
    pgConfD: `${pg}/conf.d/${n}.conf`,
    pgHba: `${pg}/pg_hba.conf`,
    pgDataDir: `/var/lib/postgresql/${model.postgres.version}/main`,
    pgBinDir: `/usr/lib/postgresql/${model.postgres.version}/bin`,
    pgCluster: `${model.postgres.version}/main`,
    pgService: `postgresql@${model.postgres.version}-main.service`,
    pgInitSql: `${etc}/postgres-init.sql`,
    /** Password file the backup reads (owner: the project user). */
    backupPgpass: `${etc}/backup.pgpass`,
    /** Password file of the postgres user on standbys (pg_basebackup and streaming). */
    standbyPgpass: "/var/lib/postgresql/.pgpass",
    // Redis (Debian layout: /etc/redis/redis.conf includes our fragment)
    redisConf: "/etc/redis/redis.conf",
    redisFragment: `/etc/redis/${n}.conf`,
    sentinelConf: "/etc/redis/sentinel.conf",
    // Releases (app family builds the first, update.sh the later ones)
    /** A mirror of the application's git repository: releases are exported from it. */
    repositoryMirror: `${root}/repo.git`,
    /** The release that was current before the last switch, for a rollback. */
    previousRelease: `${root}/previous`,
    /**
     * uv, where the system Python is too old: its own virtualenv (pip installs the pinned uv
     * from PyPI into it), never on PATH.
     */
    uvEnv: `${root}/uv`,
    uv: `${root}/uv/bin/uv`,
    /**
     * uv's managed interpreters (UV_PYTHON_INSTALL_DIR): root-owned and world-readable, so the
     * service account can run the venv's python under ProtectHome=yes. uv's default is the
     * invoking user's home (/root/.local/share/uv/python), which the units cannot see.
     */
    pythonInstallDir: `${root}/python`,
    // Scripts, schedules, rotation, firewall
    backupScript: `${root}/backup.sh`,
    updateScript: `${root}/update.sh`,
    /** The backup's oneshot service and the timer that starts it (systemd, not cron). */
    backupService: `${n}-backup.service`,
    backupTimer: `${n}-backup.timer`,
    // Media on NFS: the export on the server (exportfs reads /etc/exports.d/*.exports), its
    // NFSv4-only settings (nfs.conf.d), and the mount unit on the hosts that mount it.
    nfsExports: `/etc/exports.d/${n}-media.exports`,
    nfsConf: `/etc/nfs.conf.d/${n}.conf`,
    mediaMountUnit: pathUnitName(model.project.mediaDir, "mount"),
    logrotate: `/etc/logrotate.d/${n}`,
    firewallScript: `/usr/local/sbin/${n}-firewall`,
    /** Kernel settings (sysctl family), applied at boot by systemd-sysctl. */
    sysctlConf: `/etc/sysctl.d/60-${n}.conf`,
    certbotDeployHook: `/etc/letsencrypt/renewal-hooks/deploy/${n}`,
    runbook: `/usr/local/share/doc/${n}/runbook.md`,
    // Monitoring (Debian's prometheus-* packages: /etc/prometheus, settings in /etc/default)
    prometheusConfig: "/etc/prometheus/prometheus.yml",
    prometheusRules: `/etc/prometheus/${n}-alerts.yml`,
    alertmanagerConfig: "/etc/prometheus/alertmanager.yml",
    blackboxConfig: "/etc/prometheus/blackbox.yml",
    postgresExporterQueries: `/etc/prometheus/${n}-postgres-queries.yml`,
    /** The nginx server that answers stub_status on loopback, for the nginx exporter. */
    nginxStubStatus: `/etc/nginx/conf.d/${n}-stub-status.conf`,
    /**
     * node_exporter's textfile collector directory: the backup account writes its last success
     * here (Debian's /var/lib/prometheus/node-exporter belongs to root).
     */
    metricsDir: `/var/lib/${n}-metrics`,
    /** Prometheus' storage (Debian's default --storage.tsdb.path). */
    prometheusData: "/var/lib/prometheus/metrics2",
    /**
     * Rendered files as last applied, for a tool (root only, 0700): the rendered sentinel.conf
     * Sentinel rewrites once installed, and the files a step is run again for (the init SQL).
     */
    appliedDir: `/var/lib/${n}-render`,
  };
}

export type Paths = ReturnType<typeof pathsOf>;
