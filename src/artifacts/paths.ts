/**
 * Every path and unit name that more than one file mentions, defined once. A unit that
 * logrotate signals, a certificate HAProxy reads and the deploy hook writes, a site the runbook
 * enables: all come from here, so the files agree by construction.
 */
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

/** The MQTT certificate's live directory for Let's Encrypt (its own name may differ from the site's). */
export function mqttLetsEncryptLive(model: Model): string {
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

/** The paths of a model; render() computes them once and hands them to every family (ctx.paths). */
export function pathsOf(model: Model) {
  const n = model.project.name;
  const root = model.project.root;
  const etc = model.project.etcDir;
  const pg = `/etc/postgresql/${model.postgres.version}/main`;
  return {
    // systemd
    unitDir: "/etc/systemd/system",
    /** gunicorn's config (app family), read by the WSGI unit's ExecStart. */
    gunicornConfig: `${root}/gunicorn_config.py`,
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
    mosquittoPasswd: "/etc/mosquitto/passwd",
    mosquittoAcl: "/etc/mosquitto/acl",
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
    // Scripts, schedules, rotation, firewall
    backupScript: `${root}/backup.sh`,
    updateScript: `${root}/update.sh`,
    backupCron: `/etc/cron.d/${n}-backup`,
    logrotate: `/etc/logrotate.d/${n}`,
    firewallScript: `/usr/local/sbin/${n}-firewall`,
    certbotDeployHook: `/etc/letsencrypt/renewal-hooks/deploy/${n}`,
    runbook: `/usr/local/share/doc/${n}/runbook.md`,
    /**
     * Rendered files as last applied, for a tool (root only, 0700): the rendered sentinel.conf
     * Sentinel rewrites once installed, and the files a step is run again for (the init SQL).
     */
    appliedDir: `/var/lib/${n}-render`,
  };
}

export type Paths = ReturnType<typeof pathsOf>;
