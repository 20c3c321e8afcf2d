/**
 * The deployment model: the contract users write (TOML or JSON). Keys and structure follow
 * issue #2; every option says its default in its description, which is where the README's
 * model reference and the exported JSON Schema come from.
 */
// A namespace import, so bundlers keep only the parts of zod the model uses.
import * as z from "zod";
import { DISTRIBUTION_NAMES, type Distribution } from "./capabilities.js";
import type { ModelInput, ParsedModel } from "../generated/model-types.js";
import type { Assert, Same } from "./values.js";
import {
  absPath,
  ageRecipient,
  cidr,
  network,
  cron,
  didYouMean,
  duration,
  email,
  envName,
  gitRef,
  gitUrl,
  hostKey,
  hostKeyMessage,
  hostname,
  imageRef,
  int,
  ipv4,
  nginxSize,
  pgIdentifier,
  pgSize,
  port,
  projectName,
  pythonModule,
  secret,
  shown,
  unixName,
  urlPath,
  version,
} from "./values.js";

export const ROLES = [
  "lb",
  "web",
  "app",
  "asgi",
  "worker",
  "scheduler",
  "db",
  "db-standby",
  "redis",
  "redis-sentinel",
  "mqtt",
  "monitor",
] as const;
export type Role = (typeof ROLES)[number];

const bool = (description: string, fallback: boolean) =>
  z.boolean({ error: (iss) => `${shown(iss.input)} is not a boolean (true or false)` }).default(fallback).describe(description);

const enumOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, {
    error: (iss) => `${shown(iss.input)} is not one of ${values.map((v) => JSON.stringify(v)).join(", ")}${didYouMean(iss.input, values)}`,
  });

/** Debian's self-signed certificate (package ssl-cert), the default of postgres.ssl_certificate. */
export const SNAKEOIL_CERTIFICATE = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/**
 * Builds the model schema. zod constructs every schema object eagerly, and building this one
 * was the largest part of `import("novacloud-render")` (about 15 ms of the import's --cpu-prof
 * samples): it is built on first use instead (modelSchema()), once per process, and then shared.
 */
function buildModelSchema() {
  const platform = z
    .strictObject({
      distribution: enumOf(DISTRIBUTION_NAMES as [Distribution, ...Distribution[]])
        .default("debian-12")
        .describe("Target distribution; it sets the versions below."),
      nginx: version().optional().describe("nginx version, if not the distribution's."),
      haproxy: version().optional().describe("HAProxy version, if not the distribution's (Debian 12: 2.6)."),
      mosquitto: version().optional().describe("Mosquitto version, if not the distribution's."),
      redis: version().optional().describe("Redis version, if not the distribution's."),
      python: version().optional().describe("Python version for the app's virtualenv (NovaCloud needs 3.12.3+); default the distribution's."),
      openssl: version().optional().describe("OpenSSL version, if not the distribution's."),
      systemd: version().optional().describe("systemd version, if not the distribution's."),
    })
    .prefault({})
    .describe("Target platform. Output that differs by version asks the capability table, fed from here.");

  const project = z
    .strictObject({
      name: projectName().default("novacloud").describe("Prefix of units, sites, logrotate files and paths."),
      django_module: pythonModule().describe("Django project package: NAME.wsgi:application, NAME.asgi:application, celery -A NAME."),
      settings_module: pythonModule().optional().describe("DJANGO_SETTINGS_MODULE. Default <django_module>.settings."),
      root: absPath().optional().describe("Base directory on the Django hosts: releases/ (one per deployed commit), the current link, static/ and media/. Default /opt/<name>."),
      user: unixName().optional().describe("System user the services run as. Default <name>."),
      group: unixName().optional().describe("Group of that user. Default <user>."),
      repository: gitUrl().optional().describe("Git remote of the application: the runbook mirrors it, update.sh fetches from it."),
      branch: gitRef().default("main").describe("Branch or tag the runbook builds the first release from."),
    })
    .describe("The application and the account it runs as.");

  const tls = z
    .discriminatedUnion(
      "mode",
      [
        z.strictObject({
          mode: z.literal("letsencrypt"),
          email: email().optional().describe("Account e-mail for Let's Encrypt expiry notices."),
        }),
        z.strictObject({
          mode: z.literal("files"),
          certificate: absPath().describe("Certificate chain (PEM) on the host that terminates TLS."),
          key: absPath().describe("Private key (PEM) on the host that terminates TLS."),
        }),
      ],
      { error: 'expected tls = { mode = "letsencrypt" } or { mode = "files", certificate = "/path", key = "/path" }' },
    )
    .prefault({ mode: "letsencrypt" })
    .describe('Where the site certificate comes from. Default { mode = "letsencrypt" }.');

  const site = z
    .strictObject({
      domain: hostname().describe("Public name of the site."),
      aliases: z.array(hostname()).default([]).describe("More names served by the same site (e.g. www.)."),
      tls,
      max_body: nginxSize().default("10M").describe("Largest request body nginx accepts."),
      health_check_path: urlPath().default("/health-check/").describe("Path the app answers 200 on; the load balancer checks it."),
      static_url: urlPath().default("/static/").describe("URL prefix of collected static files."),
      media_url: urlPath().default("/media/").describe("URL prefix of uploaded media."),
      websocket_path: urlPath().default("/ws/").describe("URL prefix routed to Daphne (WebSockets)."),
      admin_path: urlPath()
        .default("/admin/")
        .describe("URL prefix of the Django admin (the path admin.site.urls is included at); site.admin_allow limits it."),
      admin_allow: z
        .array(network())
        .default([])
        .describe(
          "Networks (IPv4 or IPv6, an address or CIDR) allowed to reach site.admin_path; nginx answers 403 to every other client address (behind the lb, the address HAProxy saw). Empty = no limit.",
        ),
      ipv6: bool("Listen on IPv6 as well for public ports.", true),
      http_port: port().default(80).describe("Public HTTP port (redirects to HTTPS) on the host that terminates TLS."),
      https_port: port().default(443).describe("Public HTTPS port on the host that terminates TLS."),
      hsts: z
        .strictObject({
          max_age: int(0, 315360000).default(63072000).describe("Strict-Transport-Security max-age in seconds (63072000 is two years)."),
          include_subdomains: bool("Add includeSubDomains: only when every subdomain serves HTTPS.", false),
          preload: bool("Add preload (only deliberately: removal from browser lists is slow).", false),
        })
        .prefault({})
        .describe("Strict-Transport-Security header sent by nginx."),
    })
    .describe("The public web site.");

  const host = z
    .strictObject({
      address: ipv4().describe("Private IPv4 address the other hosts reach this one on."),
      roles: z
        .array(enumOf(ROLES))
        .min(1, { error: "a host needs at least one role" })
        .superRefine((roles, ctx) => {
          const seen = new Set<string>();
          for (const [i, role] of roles.entries()) {
            if (seen.has(role)) ctx.addIssue({ code: "custom", path: [i], message: `role "${role}" is listed twice` });
            seen.add(role);
          }
        })
        // The refinement above, as the exported JSON Schema says it (editors flag a repeated role).
        .meta({ uniqueItems: true })
        .describe(`What the host runs: ${ROLES.join(", ")}.`),
    })
    .describe("One machine.");

  const hosts = z
    .record(
      z.string().regex(hostKey, { error: (iss) => `${shown(iss.input)} ${hostKeyMessage}` }),
      host,
    )
    .default({})
    .describe("Every machine and the roles it plays; each gets its own tree under out/<name>/.");

  const gunicorn = z
    .strictObject({
      port: port().default(8000).describe("Port gunicorn binds on 127.0.0.1."),
      workers: z
        .union([z.literal("auto"), int(1, 256)], { error: (iss) => `${shown(iss.input)} is not "auto" or a worker count from 1 to 256` })
        .default("auto")
        .describe('Worker processes; "auto" = cpu_count*2+1 on the host, capped by max_workers.'),
      max_workers: int(1, 256).default(12).describe('Cap for workers = "auto" (cpu_count ignores container CPU quotas).'),
      worker_class: enumOf(["sync", "gthread"] as const).default("sync").describe("gunicorn worker class."),
      threads: int(1, 64).default(1).describe("Threads per worker (gthread only)."),
      timeout: int(1, 3600).default(30).describe("Seconds before a silent worker is killed and restarted."),
      graceful_timeout: int(1, 3600).default(30).describe("Seconds workers get to finish on reload or stop."),
      keepalive: int(0, 300).default(5).describe("Keep-alive seconds (ignored by the sync worker)."),
      max_requests: int(0, 1000000).default(1000).describe("Restart a worker after this many requests (0 = never)."),
      max_requests_jitter: int(0, 1000000).default(50).describe("Random spread for max_requests."),
    })
    .prefault({})
    .describe("Gunicorn (WSGI).");

  const daphne = z
    .strictObject({
      port: port().default(8001).describe("Port daphne binds on 127.0.0.1."),
      websocket_timeout: int(0, 604800).default(86400).describe("Seconds a WebSocket may stay open."),
    })
    .prefault({})
    .describe("Daphne (ASGI, WebSockets).");

  const celery = z
    .strictObject({
      concurrency: z
        .union([z.literal("auto"), int(1, 512)], { error: (iss) => `${shown(iss.input)} is not "auto" or a number from 1 to 512` })
        .default("auto")
        .describe('Worker processes; "auto" lets celery use the CPU count.'),
      loglevel: enumOf(["DEBUG", "INFO", "WARNING", "ERROR"] as const).default("INFO").describe(""),
      stop_timeout: int(10, 86400).default(600).describe("Seconds a stopping worker gets to finish running tasks (warm shutdown)."),
    })
    .prefault({})
    .describe("Celery worker and beat.");

  const replication = z
    .strictObject({
      user: pgIdentifier().default("replicator").describe("Replication role."),
      password: secret().optional().describe("Replication role password; required when a db-standby exists."),
      rewind_user: pgIdentifier()
        .default("rewinder")
        .describe("Role pg_rewind connects as to bring a failed primary back as a standby; it may only call the functions pg_rewind needs."),
      rewind_password: secret().optional().describe("Password of the rewind role; required when a db-standby exists."),
      slots: bool("Give each standby a physical replication slot.", true),
      wal_keep_size: pgSize().default("1GB").describe("WAL kept for standbys without a slot (wal_keep_segments on 12)."),
      max_slot_wal_keep_size: pgSize().default("20GB").describe("Cap of WAL a slot may pin (13+)."),
      hot_standby_feedback: bool(
        "Standbys tell the primary which rows their queries still need, so long reads on a replica are not cancelled; the primary then keeps those dead rows (bloat), with a slot also while the standby is away.",
        false,
      ),
    })
    .prefault({});

  const postgres = z
    .strictObject({
      version: int(12, 17).optional().describe("PostgreSQL major version (12-17). Default: the distribution's."),
      database: pgIdentifier().optional().describe("Database name. Default <name>_db."),
      user: pgIdentifier().optional().describe("Role the app connects as (owner of the database). Default <name>."),
      port: port().default(5432).describe(""),
      password: secret().describe("Password of the app's role."),
      ssl: bool("Require TLS (hostssl) for connections from other hosts.", true),
      ssl_certificate: absPath().default(SNAKEOIL_CERTIFICATE).describe("Server certificate; the default is Debian's self-signed snakeoil certificate."),
      ssl_key: absPath().default("/etc/ssl/private/ssl-cert-snakeoil.key").describe("Server key; the default is the snakeoil certificate's."),
      ssl_ca: absPath()
        .optional()
        .describe(
          "CA certificate (PEM) that signed every member's ssl_certificate, at this path on each host that connects (app hosts, the other members). Clients then verify the server: sslmode=verify-full (signed by this CA, naming the address connected to). Default none: sslmode=require (encrypted, not verified).",
        ),
      replication,
    })
    .describe("PostgreSQL: the db host, its standbys and the app's connection.");

  const redis = z
    .strictObject({
      port: port().default(6379).describe(""),
      password: secret().optional().describe("requirepass; required as soon as Redis is reachable from another host."),
      database: int(0, 15).default(0).describe("Database number in REDIS_URL."),
      sentinel_port: port().default(26379).describe("Port of redis-sentinel."),
      master_name: z
        .string()
        .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, {
          error: (iss) => `${shown(iss.input)} is not a Sentinel master name (letters, digits, '_', '.', '-', not starting with '-' or '.')`,
        })
        .optional()
        .describe("Name Sentinel monitors the primary under. Default <name>."),
    })
    .prefault({})
    .describe("Redis (cache, Channels layer, Celery broker) and Sentinel.");

  // No leading '-' or '.': the name is an argument of mosquitto_passwd in the runbook.
  const mqttUser = () =>
    z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, {
      error: (iss) => `${shown(iss.input)} is not a user name (letters, digits, '_', '.', '-', not starting with '-' or '.', at most 64)`,
    });

  const mqtt = z
    .strictObject({
      broker: enumOf(["mosquitto"] as const).default("mosquitto").describe("MQTT broker. Only mosquitto is supported (see README)."),
      port: port().default(1883).describe("Plain MQTT port; it listens on 127.0.0.1 (and the private address for app hosts elsewhere)."),
      tls_port: port()
        .optional()
        .describe(
          "Public MQTT-over-TLS port for devices: on the lb when there is one (HAProxy terminates TLS and spreads devices over the brokers), else on the broker itself. Omit for no device listener (a warning says so).",
        ),
      device_port: port()
        .default(1884)
        .describe("Port of each broker's device listener on its private address when the lb terminates MQTT over TLS (plain MQTT from the lb only)."),
      domain: hostname()
        .optional()
        .describe(
          "Name devices connect to, on the TLS certificate. It must resolve to the lb when there is one, else to the broker: a broker on another host than the site needs a name of its own. Default site.domain.",
        ),
      username: mqttUser().optional().describe("User the platform connects as. Default <name>_platform."),
      password: secret().describe("Password of that user."),
      device_prefix: z
        .string()
        .regex(/^[a-z0-9_-]{1,32}$/, { error: (iss) => `${shown(iss.input)} is not a topic prefix (lower-case letters, digits, '_', '-')` })
        .default("devices")
        .describe("Devices may use <prefix>/<their user name>/#."),
      bridge_username: mqttUser().optional().describe("User the brokers bridge as (several mqtt hosts). Default <name>_bridge."),
      bridge_password: secret().optional().describe("Bridge password; required with more than one mqtt host."),
    })
    .describe("MQTT broker.");

  const django = z
    .strictObject({
      debug: bool("DEBUG.", false),
      secret_key: secret().describe("SECRET_KEY."),
      allowed_hosts: z.array(hostname()).default([]).describe("Extra ALLOWED_HOSTS besides site.domain and its aliases."),
    })
    .describe("Django settings that live in the .env file.");

  const emailSection = z
    .strictObject({
      host: hostname().describe("SMTP server."),
      port: port().default(587).describe(""),
      use_tls: bool("STARTTLS.", true),
      user: z
        .string()
        .regex(/^[A-Za-z0-9._%+@-]{1,128}$/, { error: (iss) => `${shown(iss.input)} is not an SMTP user name (letters, digits and . _ % + @ -)` })
        .optional()
        .describe("SMTP user."),
      password: secret().optional().describe("SMTP password."),
      from: email().optional().describe("DEFAULT_FROM_EMAIL."),
    })
    .optional()
    .describe("Outgoing e-mail (optional, as in the guide's .env).");

  const backup = z
    .strictObject({
      dir: absPath().default("/opt/backups").describe("Where backups go on the hosts that make them (database members, the media's home)."),
      schedule: cron()
        .default("0 3 * * *")
        .describe('When the backup runs, in cron syntax (local time); a systemd timer runs it.'),
      keep_days: int(1, 3650).default(30).describe("Backups older than this are pruned after a successful run of their kind."),
      age_recipient: ageRecipient().optional().describe("age public key: also back up the .env, encrypted to it."),
    })
    .prefault({})
    .describe("Backups: the database where it is the primary, and the uploaded media where they live.");

  // Uploads (MEDIA_ROOT) need one home that every host serving or writing them sees.
  const media = z
    .discriminatedUnion(
      "storage",
      [
        z.strictObject({
          storage: z.literal("local").describe('"local": the uploads stay on the one host that serves and writes them.'),
        }),
        z.strictObject({
          storage: z.literal("nfs").describe('"nfs": one host keeps the media directory and exports it (NFSv4) to the others.'),
          server: z
            .string()
            .regex(hostKey, { error: (iss) => `${shown(iss.input)} is not a host name of [hosts.NAME] (lower-case letters, digits and '-')` })
            .describe("The host (a [hosts.NAME]) that keeps the media directory and exports it to every web and worker host."),
          uid: int(100, 60000).describe(
            "User id the project account gets on every host: NFS compares numeric ids, so the account must own the files under the same number everywhere. Pick one that is free on all hosts.",
          ),
        }),
        z.strictObject({
          storage: z.literal("s3").describe('"s3": an S3 bucket through django-storages; nginx serves no local media.'),
          bucket: z
            .string()
            .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, {
              error: (iss) => `${shown(iss.input)} is not an S3 bucket name (3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit)`,
            })
            .describe("Bucket name."),
          endpoint: z
            .string()
            .regex(/^https?:\/\/[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?$/, {
              error: (iss) => `${shown(iss.input)} is not an S3 endpoint URL (https://host or https://host:port, no path)`,
            })
            .optional()
            .describe("S3 API endpoint of a provider other than AWS (e.g. https://s3.example.com). Default: AWS."),
          region: z
            .string()
            .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, { error: (iss) => `${shown(iss.input)} is not a region name (lower-case letters, digits and '-', e.g. eu-central-1)` })
            .optional()
            .describe("Region of the bucket (e.g. eu-central-1)."),
          access_key_id: secret().describe("Access key id (AWS_ACCESS_KEY_ID), a secret reference."),
          secret_access_key: secret().describe("Secret access key (AWS_SECRET_ACCESS_KEY), a secret reference."),
        }),
      ],
      { error: 'expected storage = "local", "nfs" (with server and uid) or "s3" (with bucket and keys)' },
    )
    .prefault({ storage: "local" })
    .describe(
      'Where uploaded media live: storage = "local" (the default; only when one host serves and writes them), "nfs" (a server exports them to the other hosts) or "s3" (a bucket, through django-storages).',
    );

  const logs = z
    .strictObject({
      dir: absPath().optional().describe("App log directory. Default /var/log/<name>."),
      keep_days: int(1, 3650).default(14).describe("Days of rotated logs kept."),
    })
    .prefault({})
    .describe("Log files and rotation.");

  const firewall = z
    .strictObject({
      enabled: bool("Render the ufw script.", true),
      ssh_port: port().default(22).describe(""),
      ssh_from: z.array(cidr()).default([]).describe("Networks allowed to SSH in; empty = anywhere, rate-limited."),
    })
    .prefault({})
    .describe("ufw rules per host.");

  const haproxy = z
    .strictObject({
      backend_port: port().default(8080).describe("Port nginx listens on, on each app host's private address, for the load balancer."),
      stats_port: port().default(8404).describe("Stats page port on 127.0.0.1 of the lb host."),
      acme_port: port().default(8888).describe("Port on 127.0.0.1 where certbot answers ACME challenges that HAProxy forwards."),
      stats_user: mqttUser().default("admin").describe("Stats page user."),
      stats_password: secret().optional().describe("Stats page password; without one the page has no login (it stays on 127.0.0.1)."),
      balance: enumOf(["roundrobin", "leastconn"] as const).default("roundrobin").describe("Balancing for HTTP."),
      timeout_connect: duration().default("5s").describe(""),
      timeout_client: duration().default("50s").describe(""),
      timeout_server: duration().default("50s").describe(""),
      timeout_tunnel: duration().default("1h").describe("Idle timeout of upgraded (WebSocket) connections."),
      timeout_http_request: duration().default("10s").describe("Time to receive request headers (slowloris)."),
      timeout_http_keep_alive: duration().default("5s").describe("Idle time allowed between two requests on a kept-alive connection."),
      timeout_client_fin: duration().default("30s").describe("Idle timeout on the client side once the client has half-closed (WebSockets)."),
    })
    .prefault({})
    .describe("HAProxy on the lb host.");

  const monitoring = z
    .strictObject({
      scrape_interval: duration().default("30s").describe("How often Prometheus scrapes every exporter and evaluates the alert rules."),
      retention: duration().default("15d").describe("How long Prometheus keeps its samples (--storage.tsdb.retention.time)."),
      alert_email: email()
        .optional()
        .describe("Where Alertmanager mails alerts, through the [email] SMTP server (which then needs from). Without it, alerts show in Alertmanager only."),
      backup_max_age: duration()
        .default("26h")
        .describe("A host whose last successful backup is older than this raises BackupTooOld (a daily schedule plus slack)."),
    })
    .prefault({})
    .describe(
      "Prometheus and Alertmanager on the host with the role monitor (only with one): node_exporter on every host, an exporter per role, blackbox probes of the public site and MQTT over TLS, and alert rules.",
    );

  const compose = z
    .strictObject({
      build: z
        .string()
        .regex(/^\.{1,2}(?:\/[A-Za-z0-9._-]+)*$|^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/, {
          error: (iss) => `${shown(iss.input)} is not a relative build context (e.g. . or ../app)`,
        })
        .default("..")
        .describe("Build context of the app image, relative to compose/."),
      app_image: imageRef().optional().describe("Use this image instead of building."),
      postgres_image: imageRef().optional().describe("Default postgres:<postgres.version>."),
      redis_image: imageRef().default("redis:7").describe(""),
      mosquitto_image: imageRef().default("eclipse-mosquitto:2").describe(""),
      nginx_image: imageRef().default("nginx:1.26").describe(""),
      nginx_version: version().optional().describe("nginx version of nginx_image, when its tag does not say."),
      http_port: port().default(80).describe("Host port published for HTTP."),
      https_port: port().default(443).describe("Host port published for HTTPS."),
    })
    .optional()
    .describe("Render a Compose bundle under compose/ (the guide's section 8.4 done right).");

  const ansible = z
    .strictObject({
      user: unixName().default("root").describe("SSH user the playbook logs in as."),
      become: z
        .boolean({ error: (iss) => `${shown(iss.input)} is not a boolean (true or false)` })
        .optional()
        .describe("Become root with sudo on the hosts. Default: true unless user is root."),
    })
    .prefault({})
    .describe("How the Ansible playbook under ansible/ connects to the hosts (the SSH port is firewall.ssh_port).");

  return z
    .strictObject({
      $schema: z.string().optional().describe("Path or URL of the JSON Schema, for editors."),
      format: z.literal(1, { error: (iss) => `${shown(iss.input)} is not a model format this version reads (expected 1)` }).default(1).describe("Model format version."),
      platform,
      project,
      site,
      hosts,
      gunicorn,
      daphne,
      celery,
      postgres,
      redis,
      mqtt,
      django,
      email: emailSection,
      media,
      backup,
      logs,
      firewall,
      haproxy,
      ansible,
      monitoring,
      compose,
    })
    .describe("A NovaCloud deployment: what runs where, and how.");
}

export type ModelSchema = ReturnType<typeof buildModelSchema>;
let built: ModelSchema | undefined;

/** The model's zod schema: the one definition of the model, built on first use. */
export function modelSchema(): ModelSchema {
  return (built ??= buildModelSchema());
}

/**
 * The model as the user writes it (z.input of the schema) and after validation, with every
 * default filled in (z.output), written out as plain types by scripts/write-model-types.mjs so
 * the published declarations need no zod. The assertions below fail to compile when the
 * generated types and the schema disagree.
 */
export type { ModelInput, ParsedModel } from "../generated/model-types.js";
export type InputIsTheSchemas = Assert<Same<ModelInput, z.input<ModelSchema>>>;
export type OutputIsTheSchemas = Assert<Same<ParsedModel, z.output<ModelSchema>>>;

/** Keys whose values are secrets: never echoed in an error. */
export const SECRET_KEYS = new Set(["password", "secret_key", "stats_password", "bridge_password", "rewind_password", "access_key_id", "secret_access_key"]);

export { envName };
