/**
 * Cross-field and cross-host rules: what the schema alone cannot say. Each problem names the
 * field to change. These run on the parsed model, before normalization.
 */
import type { ModelIssue } from "./errors.js";
import { mediaHosts } from "./media.js";
import { EXPORTERS, exportersOf, LOCAL_PORTS } from "./monitoring.js";
import { accountNames, hostsOf, topologyOf, type Host, type Topology } from "./normalize.js";
import { SNAKEOIL_CERTIFICATE, type ParsedModel, type Role } from "./schema.js";
import { imageTagVersion, type SecretRef } from "./values.js";

export interface ServicePort {
  readonly port: number;
  /** The model field that sets it, e.g. `gunicorn.port`. */
  readonly field: string;
  readonly service: string;
}

/** Every port a host listens on, by the roles it plays (also used by the firewall). */
export function servicePorts(parsed: ParsedModel, host: Host, behindLb: boolean, monitored = false): ServicePort[] {
  const ports: ServicePort[] = [];
  const has = (r: Role) => host.roles.has(r);
  if (has("web")) {
    if (behindLb) ports.push({ port: parsed.haproxy.backend_port, field: "haproxy.backend_port", service: "nginx (for the load balancer)" });
    else {
      ports.push({ port: parsed.site.http_port, field: "site.http_port", service: "nginx (HTTP)" });
      ports.push({ port: parsed.site.https_port, field: "site.https_port", service: "nginx (HTTPS)" });
    }
  }
  if (has("lb")) {
    ports.push({ port: parsed.site.http_port, field: "site.http_port", service: "HAProxy (HTTP)" });
    ports.push({ port: parsed.site.https_port, field: "site.https_port", service: "HAProxy (HTTPS)" });
    ports.push({ port: parsed.haproxy.stats_port, field: "haproxy.stats_port", service: "HAProxy stats" });
    ports.push({ port: parsed.haproxy.acme_port, field: "haproxy.acme_port", service: "certbot (ACME challenges)" });
    // HAProxy terminates the devices' MQTT over TLS (flows.mqttTlsEnd).
    if (parsed.mqtt.tls_port !== undefined) ports.push({ port: parsed.mqtt.tls_port, field: "mqtt.tls_port", service: "HAProxy (MQTT over TLS)" });
  }
  if (has("app")) ports.push({ port: parsed.gunicorn.port, field: "gunicorn.port", service: "gunicorn" });
  if (has("asgi")) ports.push({ port: parsed.daphne.port, field: "daphne.port", service: "daphne" });
  if (has("db") || has("db-standby")) ports.push({ port: parsed.postgres.port, field: "postgres.port", service: "PostgreSQL" });
  if (has("redis")) ports.push({ port: parsed.redis.port, field: "redis.port", service: "Redis" });
  if (has("redis-sentinel")) ports.push({ port: parsed.redis.sentinel_port, field: "redis.sentinel_port", service: "Redis Sentinel" });
  if (has("mqtt")) {
    ports.push({ port: parsed.mqtt.port, field: "mqtt.port", service: "Mosquitto" });
    // The device listener: plain behind the lb (which terminated TLS), else TLS itself.
    if (parsed.mqtt.tls_port !== undefined) {
      ports.push(
        behindLb
          ? { port: parsed.mqtt.device_port, field: "mqtt.device_port", service: "Mosquitto (devices)" }
          : { port: parsed.mqtt.tls_port, field: "mqtt.tls_port", service: "Mosquitto (TLS)" },
      );
    }
  }
  // With a monitor host: the exporters (their packages' default ports, src/model/monitoring.ts)
  // and the monitor's own daemons. No model field sets them (field "monitoring"), so a clash
  // names the other field, which was written.
  if (monitored) {
    for (const e of exportersOf(host)) ports.push({ port: EXPORTERS[e].port, field: "monitoring", service: EXPORTERS[e].description });
    if (has("web")) ports.push({ port: LOCAL_PORTS.nginxStatus, field: "monitoring", service: "nginx stub_status" });
    if (has("monitor")) {
      ports.push({ port: LOCAL_PORTS.prometheus, field: "monitoring", service: "Prometheus" });
      ports.push({ port: LOCAL_PORTS.alertmanager, field: "monitoring", service: "Alertmanager" });
      // Alertmanager's cluster port 9094 is switched off (--cluster.listen-address=): one instance.
      ports.push({ port: LOCAL_PORTS.blackbox, field: "monitoring", service: "blackbox exporter" });
    }
  }
  return ports;
}


/**
 * site.admin_path gets a `location ^~` of its own once admin_allow limits it: it must not be the
 * whole site, nor share a prefix with another location (nginx refuses a duplicate, and with one
 * prefix inside the other the longer one takes the other's requests: /static/admin/ holds the
 * admin's static files), and the load balancer's health check must not land in it (HAProxy's
 * checks come from its own address, so the check would get 403 and take every node out).
 */
function adminPathIssues(site: ParsedModel["site"]): ModelIssue[] {
  if (site.admin_allow.length === 0) return [];
  const path = site.admin_path;
  if (path === "/") return [{ path: "site.admin_path", message: `"/" would limit the whole site to site.admin_allow; name the admin's own prefix (default /admin/)` }];
  const issues: ModelIssue[] = [];
  const nested = (a: string, b: string) => a.startsWith(b) || b.startsWith(a);
  for (const field of ["static_url", "media_url", "websocket_path"] as const) {
    if (nested(path, site[field])) {
      issues.push({ path: "site.admin_path", message: `"${path}" and site.${field} "${site[field]}" overlap (one is a prefix of the other): nginx would send one's requests to the other's location` });
    }
  }
  if (site.health_check_path.startsWith(path)) {
    issues.push({ path: "site.admin_path", message: `"${path}" contains site.health_check_path "${site.health_check_path}": the load balancer's checks would get 403` });
  }
  return issues;
}

function isSet(ref: SecretRef | undefined): boolean {
  return ref !== undefined;
}

/** Whether the raw model writes a value at the dotted `path` (defaults do not count). */
function writes(input: unknown, path: string): boolean {
  let node = input;
  for (const seg of path.split(".")) {
    if (node === null || typeof node !== "object" || !Object.prototype.hasOwnProperty.call(node, seg)) return false;
    node = (node as Record<string, unknown>)[seg];
  }
  return true;
}

/**
 * Problems across fields and hosts. `input`, the model as written, lets a problem between two
 * fields name the one the user wrote (a port clash with a default names the port that was set).
 */
export function crossFieldIssues(parsed: ParsedModel, input?: unknown): ModelIssue[] {
  const issues: ModelIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });

  // --- site and settings that are independent of hosts ---
  const names = [parsed.site.domain, ...parsed.site.aliases];
  names.forEach((name, i) => {
    if (i > 0 && names.indexOf(name) < i) add(`site.aliases[${i - 1}]`, `"${name}" is already the domain or an earlier alias`);
  });
  if (parsed.gunicorn.worker_class === "sync" && parsed.gunicorn.threads > 1) {
    add("gunicorn.threads", `threads = ${parsed.gunicorn.threads} needs worker_class = "gthread" (the sync worker has one thread)`);
  }
  if (parsed.gunicorn.max_requests > 0 && parsed.gunicorn.max_requests_jitter >= parsed.gunicorn.max_requests) {
    add("gunicorn.max_requests_jitter", `must be smaller than max_requests (${parsed.gunicorn.max_requests})`);
  }
  const { user, pgUser, pgDatabase, mqttUser, bridgeUser } = accountNames(parsed);
  if (user === "root") add("project.user", "services must not run as root (Celery refuses to, and a compromise would own the host)");
  if (parsed.ansible.user !== "root" && parsed.ansible.become === false) {
    add("ansible.become", `user "${parsed.ansible.user}" is not root, so the playbook must become root to install files and packages: remove become = false or log in as root`);
  }
  if (parsed.email?.password !== undefined && parsed.email.user === undefined) {
    add("email.user", "is required when email.password is set");
  }
  issues.push(...adminPathIssues(parsed.site));
  const hsts = parsed.site.hsts;
  if (hsts.preload && (!hsts.include_subdomains || hsts.max_age < 31536000)) {
    add("site.hsts.preload", "the browsers' preload list requires include_subdomains = true and max_age of at least 31536000 (one year)");
  }
  if (parsed.compose !== undefined && parsed.compose.http_port === parsed.compose.https_port) {
    add("compose.https_port", `port ${parsed.compose.https_port} is already compose.http_port; HTTP and HTTPS need two host ports`);
  }
  if (parsed.compose !== undefined && parsed.compose.nginx_version === undefined && imageTagVersion(parsed.compose.nginx_image) === undefined) {
    add(
      "compose.nginx_version",
      `is required: compose.nginx_image "${parsed.compose.nginx_image}" names no version (e.g. nginx:1.26 or nginx:1.26.3-alpine), and the nginx config depends on it`,
    );
  }

  // --- PostgreSQL roles and database: the app's own, not the server's ---
  if (pgUser === "postgres") add("postgres.user", `"postgres" is PostgreSQL's superuser; the app needs a role of its own`);
  if (parsed.postgres.replication.user === "postgres") {
    add("postgres.replication.user", `"postgres" is PostgreSQL's superuser; replication needs a role of its own (default replicator)`);
  }
  const rewindUser = parsed.postgres.replication.rewind_user;
  if (rewindUser === "postgres") {
    add("postgres.replication.rewind_user", `"postgres" is PostgreSQL's superuser; pg_rewind needs a role of its own that may only call its functions (default rewinder)`);
  } else if (rewindUser === pgUser || rewindUser === parsed.postgres.replication.user) {
    const other = rewindUser === pgUser ? "the app's role (postgres.user)" : "the replication role (postgres.replication.user)";
    add("postgres.replication.rewind_user", `"${rewindUser}" is also ${other}; pg_rewind needs a role of its own`);
  }
  if (parsed.postgres.ssl_ca !== undefined && !parsed.postgres.ssl) {
    add("postgres.ssl_ca", "needs postgres.ssl = true: without TLS there is no server certificate to verify");
  } else if (parsed.postgres.ssl_ca !== undefined && parsed.postgres.ssl_certificate === SNAKEOIL_CERTIFICATE) {
    add(
      "postgres.ssl_certificate",
      `is Debian's self-signed snakeoil certificate, which no CA signed and which names the machine's host name: with postgres.ssl_ca, name the certificate that CA issued to each member for its private address`,
    );
  }
  if (["postgres", "template0", "template1"].includes(pgDatabase)) {
    add("postgres.database", `"${pgDatabase}" is one of PostgreSQL's own databases (postgres, template0, template1); the app needs a database of its own`);
  }

  const hosts = hostsOf(parsed);

  // --- media: one home that every host serving or writing uploads sees ---
  const media = parsed.media;
  const handling = mediaHosts(hosts);
  if (media.storage === "local" && handling.length > 1) {
    add(
      "media",
      `storage = "local" (the default) would give each of ${handling.map((h) => h.name).join(", ")} its own uploads (they serve or write them): ` +
        'set storage = "nfs" with a server that exports them to the others, or storage = "s3"',
    );
  }
  if (media.storage === "nfs" && !hosts.some((h) => h.name === media.server)) {
    add("media.server", hosts.length === 0 ? `"${media.server}" is not a host: the model has no [hosts]` : `"${media.server}" is not a host of this model (${hosts.map((h) => h.name).join(", ")})`);
  }

  if (hosts.length === 0) {
    if (parsed.compose === undefined) add("hosts", "at least one [hosts.NAME] with roles is required (or a [compose] section)");
    return issues;
  }
  const t = topologyOf(hosts);
  const rolesPath = (h: Host) => `hosts.${h.name}.roles`;
  const named = (hs: readonly Host[]) => hs.map((h) => h.name).join(", ");
  if (parsed.compose !== undefined && parsed.hosts.compose !== undefined) {
    add("hosts.compose", 'the name "compose" is the Compose bundle\'s directory (out/compose/); name this host differently');
  }
  if (parsed.hosts.ansible !== undefined) {
    add("hosts.ansible", 'the name "ansible" is the Ansible bundle\'s directory (out/ansible/); name this host differently');
  }

  // --- exactly one of some roles ---
  const dbs = hosts.filter((h) => h.roles.has("db"));
  const standbys = hosts.filter((h) => h.roles.has("db-standby"));
  if (dbs.length === 0 && standbys.length > 0) {
    for (const s of standbys) add(rolesPath(s), 'a "db-standby" needs a host with the role "db" to replicate from (none has)');
  } else if (dbs.length === 0) add("hosts", 'exactly one host must have the role "db" (none has)');
  for (const extra of dbs.slice(1)) {
    add(rolesPath(extra), `only one host may have the role "db" (${dbs[0]!.name} has it already); make this one "db-standby"`);
  }
  for (const h of hosts) {
    if (h.roles.has("db") && h.roles.has("db-standby")) add(rolesPath(h), 'a host cannot be both "db" and "db-standby"');
  }
  const schedulers = hosts.filter((h) => h.roles.has("scheduler"));
  for (const extra of schedulers.slice(1)) {
    add(rolesPath(extra), `only one host may have the role "scheduler" (${schedulers[0]!.name} has it already): two celery beats fire every periodic task twice`);
  }
  const lbs = hosts.filter((h) => h.roles.has("lb"));
  for (const extra of lbs.slice(1)) add(rolesPath(extra), `only one host may have the role "lb" (${lbs[0]!.name} has it already)`);
  const monitors = hosts.filter((h) => h.roles.has("monitor"));
  for (const extra of monitors.slice(1)) {
    add(rolesPath(extra), `only one host may have the role "monitor" (${monitors[0]!.name} has it already): two Prometheus servers would each send every alert`);
  }
  issues.push(...monitoringIssues(parsed, input, monitors.length > 0));
  const byAddress = new Map<string, string>();
  for (const h of hosts) {
    const first = byAddress.get(h.address);
    if (first !== undefined) add(`hosts.${h.name}.address`, `"${h.address}" is already the address of host ${first}; every host needs its own address`);
    else byAddress.set(h.address, h.name);
  }

  // --- what needs what ---
  if (t.lb && t.app.length === 0) add(rolesPath(t.lb), 'an "lb" needs at least one host with the role "app" behind it');
  if (t.django.length > 0) {
    if (t.redis.length === 0) add("hosts", `the app hosts (${named(t.django)}) need a host with the role "redis"`);
    if (t.mqtt.length === 0) add("hosts", `the app hosts (${named(t.django)}) need a host with the role "mqtt"`);
  }
  for (const h of hosts) {
    if ((h.roles.has("app") || h.roles.has("asgi")) && !h.roles.has("web")) {
      add(rolesPath(h), 'a host with "app" or "asgi" also needs "web": nginx on the same host serves static files and proxies to gunicorn and daphne');
    }
    if (h.roles.has("web") && !h.roles.has("app") && !h.roles.has("asgi")) {
      add(rolesPath(h), 'a "web" host proxies to gunicorn/daphne on the same host: add "app" (and "asgi")');
    }
  }
  if (!t.lb && t.web.length > 1) add("hosts", `several "web" hosts (${named(t.web)}) need a host with the role "lb" in front of them`);
  if (t.sentinels.length > 0 && t.redis.length === 0) add("hosts", '"redis-sentinel" hosts need a host with the role "redis" to monitor');
  if (t.redis.length > 1 && t.sentinels.length < 3) {
    add("hosts", `${t.redis.length} "redis" hosts replicate, and failover needs at least 3 hosts with the role "redis-sentinel" (found ${t.sentinels.length})`);
  }

  // --- secrets that become required with the topology ---
  if (t.standbys.length > 0 && !isSet(parsed.postgres.replication.password)) {
    add("postgres.replication.password", `is required: ${named(t.standbys)} replicate${t.standbys.length === 1 ? "s" : ""} from the db host (e.g. { env = "NOVACLOUD_REPLICATION_PASSWORD" })`);
  }
  if (t.standbys.length > 0 && !isSet(parsed.postgres.replication.rewind_password)) {
    add(
      "postgres.replication.rewind_password",
      `is required: ${named(t.standbys)} can be promoted, and pg_rewind then brings the old primary back as a standby, connecting as the rewind role (e.g. { env = "NOVACLOUD_REWIND_PASSWORD" })`,
    );
  }
  const redisReachedRemotely =
    t.redis.length > 1 ||
    t.redis.some((r) => t.django.some((d) => d.name !== r.name) || t.sentinels.some((s) => s.name !== r.name));
  if (t.redis.length > 0 && redisReachedRemotely && !isSet(parsed.redis.password)) {
    add("redis.password", 'is required: Redis is reachable from other hosts, and must not answer without a password (e.g. { env = "NOVACLOUD_REDIS_PASSWORD" })');
  }
  if (t.standbys.length > 0 && parsed.postgres.replication.user === pgUser) {
    add("postgres.replication.user", `"${pgUser}" is also the app's role (postgres.user); replication needs a role of its own`);
  }
  if (t.mqtt.length > 1 && mqttUser === bridgeUser) {
    add("mqtt.bridge_username", `"${bridgeUser}" is also the platform's MQTT user (mqtt.username); the bridge needs a user of its own`);
  }
  if (t.mqtt.length > 1 && !isSet(parsed.mqtt.bridge_password)) {
    add("mqtt.bridge_password", `is required: ${t.mqtt.length} mqtt hosts bridge to ${t.mqttHub!.name} (e.g. { env = "NOVACLOUD_MQTT_BRIDGE_PASSWORD" })`);
  }
  issues.push(...mqttTlsIssues(parsed, t));

  // --- ports: two services on one host may not share one ---
  for (const h of hosts) {
    // sshd listens on every host; the firewall keeps its port open.
    const ssh: ServicePort = { port: parsed.firewall.ssh_port, field: "firewall.ssh_port", service: "SSH" };
    const seen = new Map<number, ServicePort>([[ssh.port, ssh]]);
    for (const p of servicePorts(parsed, h, t.lb !== undefined, t.monitor !== undefined)) {
      const owner = seen.get(p.port);
      if (owner === undefined) seen.set(p.port, p);
      else if (owner.service !== p.service) {
        // Name the field that was written: the other one may be a default the user never saw.
        const [here, other] = input !== undefined && !writes(input, p.field) && writes(input, owner.field) ? [owner, p] : [p, owner];
        add(here.field, `port ${p.port} on host ${h.name} is also used by ${other.service} (${other.field}); ${here.service} needs another`);
      }
    }
  }
  return issues;
}

/**
 * [monitoring] configures Prometheus on the monitor host: written without one it would do
 * nothing, which is an error rather than a silent no-op. Alerts go out through [email], which
 * then needs a sender (Alertmanager refuses a mail receiver without smtp_from).
 */
function monitoringIssues(parsed: ParsedModel, input: unknown, hasMonitor: boolean): ModelIssue[] {
  const issues: ModelIssue[] = [];
  if (!hasMonitor && input !== undefined && writes(input, "monitoring")) {
    issues.push({ path: "monitoring", message: 'has no effect: no host has the role "monitor" (add it to the host that should run Prometheus, or remove [monitoring])' });
  }
  if (parsed.monitoring.alert_email !== undefined) {
    if (parsed.email === undefined) {
      issues.push({ path: "monitoring.alert_email", message: "needs an [email] section: Alertmanager sends alerts through its SMTP server (host, port, user, password)" });
    } else if (parsed.email.from === undefined) {
      issues.push({ path: "email.from", message: "is required with monitoring.alert_email: Alertmanager needs a sender address for the alerts it mails" });
    }
  }
  return issues;
}

/**
 * Where devices can reach MQTT over TLS (flows.mqttTlsEnd): behind an lb, HAProxy terminates it
 * for every broker under mqtt.domain (default site.domain, which resolves to the lb). Without an
 * lb the broker terminates it itself, so devices need a name that resolves to the broker: one
 * broker only (one name, one certificate), and not one of the site's names when the site is
 * served from another host (its ACME challenge and its devices would reach that host).
 */
function mqttTlsIssues(parsed: ParsedModel, t: Topology): ModelIssue[] {
  const issues: ModelIssue[] = [];
  if (parsed.mqtt.tls_port === undefined || t.lb !== undefined || t.mqtt.length === 0) return issues;
  const brokers = t.mqtt.map((h) => h.name).join(", ");
  if (t.mqtt.length > 1) {
    issues.push({
      path: "mqtt.tls_port",
      message:
        `${t.mqtt.length} mqtt hosts (${brokers}) and no "lb" host: devices would need a name and a certificate for each broker. ` +
        'Add a host with the role "lb" (HAProxy terminates MQTT over TLS and spreads devices over the brokers) or keep one mqtt host',
    });
    return issues;
  }
  const broker = t.mqtt[0]!;
  const site = t.web.length === 1 ? t.web[0]! : undefined;
  const siteNames = [parsed.site.domain, ...parsed.site.aliases];
  const domain = parsed.mqtt.domain ?? parsed.site.domain;
  if (site && site.name !== broker.name && siteNames.includes(domain)) {
    issues.push({
      path: "mqtt.domain",
      message:
        `${parsed.mqtt.domain === undefined ? "is required" : `"${domain}" is one of the site's names`}: devices connect to the broker ${broker.name} directly (there is no "lb"), ` +
        `and the site's names resolve to ${site.name}, where the certificate challenge and the devices would arrive. Give the broker a name of its own that resolves to ${broker.name}`,
    });
  }
  return issues;
}

/**
 * What a valid model may still get wrong, warned about: a model whose broker has no device
 * listener renders a broker no device can reach.
 */
export function mqttWarnings(parsed: ParsedModel): ModelIssue[] {
  const brokers = hostsOf(parsed).filter((h) => h.roles.has("mqtt"));
  if (parsed.mqtt.tls_port !== undefined || (brokers.length === 0 && parsed.compose === undefined)) return [];
  return [
    {
      path: "mqtt.tls_port",
      message: "is not set: the broker listens on loopback (and the private network for the platform) only, so no device can reach it; set it (e.g. 8883) to give devices MQTT over TLS",
    },
  ];
}

/**
 * Two Redis hosts: every member refuses writes without an acknowledging replica
 * (min-replicas-to-write, src/artifacts/redis.ts), so while either host is down, also after
 * the sentinels promoted the other, the app cannot queue a task or write a session. Valid (no
 * write is lost), but a failover then keeps only reads going; a third host keeps writes going
 * through the loss of one (the Sentinel documentation's three-box example). Found by the fleet
 * test bed: Celery requests answered 500 for as long as the old primary was down.
 */
export function redisWarnings(parsed: ParsedModel): ModelIssue[] {
  const members = hostsOf(parsed).filter((h) => h.roles.has("redis"));
  if (members.length !== 2) return [];
  const names = members.map((h) => h.name).join(" and ");
  return [
    {
      path: "hosts",
      message:
        `two hosts have the role "redis" (${names}): each refuses writes while the other is down (min-replicas-to-write 1), ` +
        `so a Sentinel failover keeps reads only; give a third host the role "redis" to keep writes going through the loss of one`,
    },
  ];
}

/** Paths of secrets written inline in the model: allowed, but warned about. */
export function inlineSecretPaths(parsed: ParsedModel): string[] {
  const candidates: [string, SecretRef | undefined][] = [
    ["postgres.password", parsed.postgres.password],
    ["postgres.replication.password", parsed.postgres.replication.password],
    ["postgres.replication.rewind_password", parsed.postgres.replication.rewind_password],
    ["redis.password", parsed.redis.password],
    ["mqtt.password", parsed.mqtt.password],
    ["mqtt.bridge_password", parsed.mqtt.bridge_password],
    ["django.secret_key", parsed.django.secret_key],
    ["email.password", parsed.email?.password],
    ["haproxy.stats_password", parsed.haproxy.stats_password],
    ["media.access_key_id", parsed.media.storage === "s3" ? parsed.media.access_key_id : undefined],
    ["media.secret_access_key", parsed.media.storage === "s3" ? parsed.media.secret_access_key : undefined],
  ];
  return candidates.filter(([, ref]) => typeof ref === "string").map(([path]) => path);
}

