/**
 * fast-check arbitraries for VALID models (plain objects, as a person would write them in TOML):
 * hosts with consistent roles, valid names, distinct addresses and ports, optional sections.
 * Shared by the property test and the JSON Schema test.
 */
import fc from "fast-check";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type ModelObject = { [key: string]: Json };

/** Environment every generated secret reference resolves from. */
export const PROPERTY_ENV: Readonly<Record<string, string>> = {
  PROP_DB_PASSWORD: "prop-db \"pw\" $x 'y' #z %1",
  PROP_REPL_PASSWORD: "prop-repl-pw-\\back",
  PROP_REWIND_PASSWORD: "prop-rewind:pw \\ 'q'",
  // No blank or quote: Sentinel writes auth-pass back unquoted (src/artifacts/redis.ts refuses them).
  PROP_REDIS_PASSWORD: "prop-redis-pw`id`$x\\#%",
  PROP_MQTT_PASSWORD: "prop-mqtt:pw;{}",
  PROP_BRIDGE_PASSWORD: "prop-bridge-pw",
  PROP_SECRET_KEY: "prop-secret-key-$(id)-&|<>",
  PROP_SMTP_PASSWORD: "prop-smtp pw",
  PROP_STATS_PASSWORD: "prop-stats:pw",
  PROP_S3_ACCESS_KEY_ID: "PROPS3KEY0001",
  PROP_S3_SECRET_ACCESS_KEY: "prop-s3 \"secret\" $k/+= #q",
};

const ref = (name: keyof typeof PROPERTY_ENV) => ({ env: name });

const label = fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/);
const domain = fc.tuple(label, label, fc.constantFrom("com", "org", "net", "io")).map((parts) => parts.join("."));
// "compose" is the Compose bundle's directory, not a host name.
const hostName = fc.stringMatching(/^[a-z][a-z0-9]{0,6}(?:-[a-z0-9]{1,4})?$/).filter((n) => n !== "compose");
const octet = fc.integer({ min: 1, max: 254 });
const address = fc.tuple(fc.constantFrom(10, 172, 192), octet, octet, octet).map(([a, b, c, d]) => `${a}.${a === 172 ? 16 : a === 192 ? 168 : b}.${c}.${d}`);
const pathSeg = fc.stringMatching(/^[a-z][a-z0-9_-]{0,7}$/);
const absPath = fc.array(pathSeg, { minLength: 1, maxLength: 3 }).map((segs) => `/${segs.join("/")}`);
const urlPath = fc.array(pathSeg, { minLength: 0, maxLength: 2 }).map((segs) => `/${segs.map((s) => `${s}/`).join("")}`);
// Far from every default port (22, 80, 443, 1883, 5432, 6379, 8000-8888, 26379), all distinct.
const ports = fc.uniqueArray(fc.integer({ min: 10000, max: 25000 }), { minLength: 12, maxLength: 12 });
const cronSchedule = fc.oneof(
  fc.constantFrom("0 3 * * *", "@daily", "@weekly", "30 2 * * 1-6", "*/15 * * * *", "0 0 1 * *", "5 4 * * 0,7"),
  fc.tuple(fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 23 })).map(([m, h]) => `${m} ${h} * * *`),
);

/** Which hosts play which roles: always a topology the cross-host rules accept. */
const topology = fc
  .record({
    names: fc.uniqueArray(hostName, { minLength: 1, maxLength: 6 }),
    addresses: fc.uniqueArray(address, { minLength: 6, maxLength: 6 }),
    apps: fc.integer({ min: 1, max: 3 }),
    asgi: fc.boolean(),
    standbys: fc.integer({ min: 0, max: 2 }),
    redis: fc.constantFrom(1, 1, 1, 2, 3),
    mqtt: fc.constantFrom(1, 1, 2),
    scheduler: fc.boolean(),
    picks: fc.array(fc.nat({ max: 1000 }), { minLength: 16, maxLength: 16 }),
  })
  .map((t) => {
    const n = t.names.length;
    const roles = t.names.map(() => new Set<string>());
    const pick = (i: number) => t.picks[i]! % n;
    // Distinct hosts, starting at a random one.
    const spread = (count: number, from: number, avoid: number[] = []) => {
      const out: number[] = [];
      for (let k = 0; k < n && out.length < count; k++) {
        const h = (from + k) % n;
        if (!avoid.includes(h)) out.push(h);
      }
      return out;
    };
    const apps = spread(Math.min(t.apps, n), pick(0));
    for (const h of apps) {
      roles[h]!.add("web").add("app");
      if (t.asgi) roles[h]!.add("asgi");
    }
    if (apps.length > 1) roles[pick(1)]!.add("lb");
    const db = pick(2);
    roles[db]!.add("db");
    const standbys = spread(t.standbys, pick(3), [db]);
    for (const h of standbys) roles[h]!.add("db-standby");
    const redisCount = n >= 3 ? t.redis : 1;
    const redis = spread(redisCount, pick(4));
    for (const h of redis) roles[h]!.add("redis");
    if (redisCount > 1) for (const h of spread(3, pick(5))) roles[h]!.add("redis-sentinel");
    const mqtt = spread(Math.min(t.mqtt, n), pick(6));
    for (const h of mqtt) roles[h]!.add("mqtt");
    for (let h = 0; h < n; h++) if (t.picks[7 + h]! % 3 === 0) roles[h]!.add("worker");
    if (t.scheduler) roles[pick(14)]!.add("scheduler");
    for (const r of roles) if (r.size === 0) r.add("worker"); // every host plays some role
    const hosts: ModelObject = {};
    t.names.forEach((name, i) => {
      hosts[name] = { address: t.addresses[i]!, roles: [...roles[i]!] };
    });
    const django = roles.some((r) => ["app", "asgi", "worker", "scheduler"].some((x) => r.has(x)));
    const lb = roles.some((r) => r.has("lb"));
    // Without an lb, devices reach the one broker by a name of its own unless it is the web host.
    const brokerOnWeb = mqtt.length === 1 && roles[mqtt[0]!]!.has("web");
    // Uploads on several hosts need one home: an NFS server (any host) or S3.
    const mediaHosts = roles.filter((r) => ["web", "app", "asgi", "worker"].some((x) => r.has(x))).length;
    const nfsServer = t.names[t.picks[15]! % n]!;
    return { hosts, standbys: standbys.length, redisCount, mqttCount: mqtt.length, django, single: n === 1, lb, brokerOnWeb, mediaHosts, nfsServer };
  });

const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

/** Drops undefined values, so optional sections and keys are simply absent. */
function compact(obj: Record<string, unknown>): ModelObject {
  const out: ModelObject = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v as Json;
  return out;
}

/** An arbitrary valid model, as a plain object (TOML-serializable). */
export const validModel: fc.Arbitrary<ModelObject> = fc
  .record({
    topo: topology,
    composeOnly: fc.boolean(),
    compose: fc.boolean(),
    ports,
    // Not "root" or "postgres": the services or the app's database role would be the superuser.
    name: optional(fc.stringMatching(/^[a-z][a-z0-9]{1,10}(?:-[a-z0-9]{1,5})?$/).filter((n) => n !== "root" && n !== "postgres")),
    module: fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,15}$/),
    root: optional(absPath),
    distribution: optional(fc.constantFrom("debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04")),
    pgVersion: optional(fc.integer({ min: 12, max: 17 })),
    domain,
    aliases: fc.uniqueArray(domain, { maxLength: 2 }),
    tlsFiles: fc.boolean(),
    tlsEmail: fc.boolean(),
    certPaths: fc.tuple(absPath, absPath),
    health: optional(urlPath),
    maxBody: optional(fc.constantFrom("10M", "512k", "1g", "1048576")),
    hsts: optional(fc.record({ max_age: fc.integer({ min: 31536000, max: 63072000 }), include_subdomains: fc.boolean() })),
    gunicorn: optional(
      fc.record({
        workers: fc.oneof(fc.constant("auto"), fc.integer({ min: 1, max: 16 })),
        gthread: fc.boolean(),
        threads: fc.integer({ min: 1, max: 8 }),
        maxRequests: fc.integer({ min: 0, max: 5000 }),
        timeout: fc.integer({ min: 1, max: 600 }),
      }),
    ),
    setPorts: fc.boolean(),
    celery: optional(fc.record({ concurrency: fc.oneof(fc.constant("auto"), fc.integer({ min: 1, max: 32 })), loglevel: fc.constantFrom("DEBUG", "INFO", "WARNING", "ERROR") })),
    redisDb: optional(fc.integer({ min: 0, max: 15 })),
    redisPassword: fc.boolean(),
    mqttTls: fc.boolean(),
    mqttDomain: optional(domain),
    mqttUser: optional(fc.stringMatching(/^[a-z][a-z0-9_]{0,12}$/).filter((u) => !u.endsWith("_bridge"))),
    debug: fc.boolean(),
    allowedHosts: fc.uniqueArray(domain, { maxLength: 2 }),
    email: optional(fc.record({ host: domain, user: fc.boolean(), from: fc.boolean() })),
    schedule: optional(cronSchedule),
    keepDays: optional(fc.integer({ min: 1, max: 365 })),
    logDir: optional(absPath),
    sshFrom: fc.array(fc.constantFrom("203.0.113.0/24", "198.51.100.7", "10.0.0.0/8"), { maxLength: 2 }),
    firewall: fc.boolean(),
    balance: optional(fc.constantFrom("roundrobin", "leastconn")),
    timeout: optional(fc.constantFrom("5s", "250ms", "2m", "1h", "1d")),
    statsPassword: fc.boolean(),
    mediaS3: fc.boolean(),
  })
  .map((r) => {
    const [gPort, dPort, pgPort, rPort, sPort, mPort, mtPort, bPort, stPort, acPort, sshPort, httpPort] = r.ports as [
      number, number, number, number, number, number, number, number, number, number, number, number,
    ];
    const hostsOff = r.composeOnly;
    const t = r.topo;
    const mqttTls = r.mqttTls && (hostsOff || t.lb || t.mqttCount === 1);
    const g = r.gunicorn;
    const model: Record<string, unknown> = {
      platform: r.distribution ? { distribution: r.distribution } : undefined,
      project: compact({ name: r.name, django_module: r.module, root: r.root }),
      site: compact({
        domain: r.domain,
        aliases: r.aliases.filter((a) => a !== r.domain),
        tls: r.tlsFiles
          ? { mode: "files", certificate: `${r.certPaths[0]}.pem`, key: `${r.certPaths[1]}.key` }
          : compact({ mode: "letsencrypt", email: r.tlsEmail ? `ops@${r.domain}` : undefined }),
        max_body: r.maxBody,
        health_check_path: r.health,
        hsts: r.hsts,
      }),
      hosts: hostsOff ? undefined : t.hosts,
      gunicorn: g
        ? compact({
            port: r.setPorts ? gPort : undefined,
            workers: g.workers,
            worker_class: g.gthread ? "gthread" : "sync",
            threads: g.gthread ? g.threads : 1,
            timeout: g.timeout,
            max_requests: g.maxRequests,
            max_requests_jitter: Math.floor(g.maxRequests / 10),
          })
        : undefined,
      daphne: r.setPorts ? { port: dPort } : undefined,
      celery: r.celery,
      postgres: compact({
        version: r.pgVersion,
        port: r.setPorts ? pgPort : undefined,
        password: ref("PROP_DB_PASSWORD"),
        replication: t.standbys > 0 || r.redisPassword ? { password: ref("PROP_REPL_PASSWORD"), rewind_password: ref("PROP_REWIND_PASSWORD") } : undefined,
      }),
      redis: compact({
        port: r.setPorts ? rPort : undefined,
        sentinel_port: r.setPorts ? sPort : undefined,
        database: r.redisDb,
        password: r.redisPassword || !t.single || t.redisCount > 1 ? ref("PROP_REDIS_PASSWORD") : undefined,
      }),
      mqtt: compact({
        port: r.setPorts ? mPort : undefined,
        // MQTT over TLS ends on the lb, or on the one broker (the rules refuse several without an lb).
        tls_port: mqttTls ? mtPort : undefined,
        // A broker away from the site's host needs a name of its own (the site's resolve elsewhere).
        domain: mqttTls && !t.lb && !t.brokerOnWeb ? `mqtt.${r.domain}` : r.mqttDomain,
        username: r.mqttUser,
        password: ref("PROP_MQTT_PASSWORD"),
        bridge_password: t.mqttCount > 1 ? ref("PROP_BRIDGE_PASSWORD") : undefined,
      }),
      django: compact({
        debug: r.debug,
        secret_key: ref("PROP_SECRET_KEY"),
        allowed_hosts: r.allowedHosts,
      }),
      email: r.email
        ? compact({
            host: r.email.host,
            user: r.email.user ? `alerts@${r.email.host}` : undefined,
            password: r.email.user ? ref("PROP_SMTP_PASSWORD") : undefined,
            from: r.email.from ? `noreply@${r.email.host}` : undefined,
          })
        : undefined,
      media:
        hostsOff || t.mediaHosts < 2
          ? undefined
          : r.mediaS3
            ? { storage: "s3", bucket: "prop-media", access_key_id: ref("PROP_S3_ACCESS_KEY_ID"), secret_access_key: ref("PROP_S3_SECRET_ACCESS_KEY") }
            : { storage: "nfs", server: t.nfsServer, uid: 2001 },
      backup: r.schedule || r.keepDays ? compact({ schedule: r.schedule, keep_days: r.keepDays }) : undefined,
      logs: r.logDir ? { dir: r.logDir } : undefined,
      firewall: r.firewall ? compact({ ssh_port: r.setPorts ? sshPort : 22, ssh_from: r.sshFrom }) : undefined,
      haproxy: compact({
        backend_port: r.setPorts ? bPort : undefined,
        stats_port: r.setPorts ? stPort : undefined,
        acme_port: r.setPorts ? acPort : undefined,
        balance: r.balance,
        timeout_connect: r.timeout,
        stats_password: r.statsPassword ? ref("PROP_STATS_PASSWORD") : undefined,
      }),
      compose: r.compose || hostsOff ? compact({ http_port: r.setPorts ? httpPort : undefined }) : undefined,
    };
    return compact(model);
  });
