/**
 * Who connects to whom: every network flow of a deployment, decided here and nowhere else.
 *
 * A flow is a client host opening a TCP connection to a port of a server host over the private
 * network (connections inside one host go over loopback and are not flows). The firewall opens
 * exactly these ports to exactly these sources; pg_hba.conf admits exactly these clients; Redis,
 * Sentinel, Mosquitto and PostgreSQL listen on the private address exactly when a flow reaches
 * them; HAProxy's servers are the lb's flows; and the addresses in the app's .env are the servers
 * `serverFor` names, the same function the flows are built with. Public entry points (the site,
 * MQTT over TLS, SSH) are listed beside the flows.
 */
import { mediaHosts, nfsServer } from "./media.js";
import { EXPORTERS, exportersOf, type Exporter } from "./monitoring.js";
import type { Host, Model, Topology } from "./normalize.js";

/** What listens on the server side of a flow. */
export type Service = "postgres" | "redis" | "sentinel" | "mqtt" | "mqtt-devices" | "nginx-backend" | "nfs" | Exporter;

/** Who the client is, as far as the server is concerned (pg_hba.conf tells Django from replication and pg_rewind). */
export type Client = "django" | "replication" | "rewind" | "sentinel" | "bridge" | "lb" | "media" | "monitor";

/** NFSv4 needs this one port (no rpcbind, no mountd): the export and the mount say vers 4 only. */
export const NFS_PORT = 2049;

/**
 * What listens for each service: its description (firewall comments), the daemon, and whether
 * that daemon binds the host's private address (the kernel's NFS server listens on every
 * address; the others are given the private one, so they need it at start: see sysctl.ts).
 */
export interface Listener {
  readonly description: string;
  readonly daemon: string;
  readonly bindsPrivateAddress: boolean;
}

function exporterListeners(): Record<Exporter, Listener> {
  const entries = (Object.keys(EXPORTERS) as Exporter[]).map((e) => [e, { description: EXPORTERS[e].description, daemon: EXPORTERS[e].daemon, bindsPrivateAddress: true }]);
  return Object.fromEntries(entries) as Record<Exporter, Listener>;
}

export const LISTENERS: Readonly<Record<Service, Listener>> = {
  "nginx-backend": { description: "nginx for the load balancer", daemon: "nginx", bindsPrivateAddress: true },
  postgres: { description: "PostgreSQL", daemon: "PostgreSQL", bindsPrivateAddress: true },
  redis: { description: "Redis", daemon: "Redis", bindsPrivateAddress: true },
  sentinel: { description: "Redis Sentinel", daemon: "Redis Sentinel", bindsPrivateAddress: true },
  mqtt: { description: "MQTT (plain, private)", daemon: "Mosquitto", bindsPrivateAddress: true },
  "mqtt-devices": { description: "MQTT for devices (plain)", daemon: "Mosquitto", bindsPrivateAddress: true },
  nfs: { description: "NFS (media)", daemon: "nfsd", bindsPrivateAddress: false },
  // Every exporter listens on the private address, for the monitor host (src/model/monitoring.ts).
  ...exporterListeners(),
};

export interface Flow {
  readonly from: Host;
  readonly to: Host;
  readonly port: number;
  readonly protocol: "tcp";
  readonly service: Service;
  readonly client: Client;
  /** Why the client connects, in a few words ("Django", "streaming replication"). */
  readonly purpose: string;
}

/** A port the outside world (devices, browsers, operators) reaches. */
export interface Entry {
  readonly to: Host;
  readonly port: number;
  readonly protocol: "tcp";
  readonly service: "http" | "https" | "mqtt-tls" | "ssh";
  readonly purpose: string;
  /** Networks allowed in; empty: anywhere. */
  readonly from: readonly string[];
}

export interface FlowTable {
  readonly flows: readonly Flow[];
  readonly entries: readonly Entry[];
}

/** The address `from` uses to reach a service on `target`: loopback on the same host. */
export function addressFrom(target: Host, from: Host): string {
  return target.name === from.name ? "127.0.0.1" : target.address;
}

/** The one of `hosts` that `from` talks to: itself if it is one of them, else the first. */
export function nearest(from: Host, hosts: readonly Host[]): Host | undefined {
  return hosts.find((h) => h.name === from.name) ?? hosts[0];
}

/** True when the lb terminates TLS and the web hosts listen privately behind it. */
export function behindLb(model: Pick<Model, "topology">): boolean {
  return model.topology.lb !== undefined;
}

/**
 * Where devices' MQTT over TLS ends (undefined without mqtt.tls_port): on the lb when there is
 * one, else on the broker itself. Behind an lb the brokers are on the private network like every
 * other server; HAProxy terminates TLS with the lb's certificate (which names mqtt.domain) and
 * passes plain MQTT to each broker's device listener, so one name, one certificate and one
 * public address serve every broker, and certbot runs where ACME challenges arrive. Without an lb
 * the one broker has the name and certificate itself (the rules refuse several).
 */
export function mqttTlsEnd(model: Pick<Model, "topology"> & { readonly mqtt: { readonly tls_port?: number | undefined } }): "lb" | "broker" | undefined {
  if (model.mqtt.tls_port === undefined) return undefined;
  return model.topology.lb !== undefined ? "lb" : "broker";
}

/**
 * The host a Django host talks to for a service, and so the address its .env names: the
 * PostgreSQL primary, the Redis primary (without Sentinel; with it the app asks the sentinels),
 * the nearest MQTT broker.
 */
export function serverFor(t: Topology, from: Host, service: "postgres" | "redis" | "mqtt"): Host | undefined {
  switch (service) {
    case "postgres":
      return t.db;
    case "redis":
      return t.redisPrimary;
    case "mqtt":
      return nearest(from, t.mqtt);
  }
}

/**
 * The read replicas a Django host's .env names (DB_REPLICA_HOSTS): every standby, each a hot
 * standby that answers read-only queries while it streams from the primary. The flows to the
 * standbys are built with this function, so the .env, the standbys' pg_hba.conf and their
 * firewalls name the same hosts.
 */
export function readReplicasFor(t: Topology, _from: Host): readonly Host[] {
  return t.standbys;
}

/** The hosts where devices' MQTT over TLS ends (mqttTlsEnd): the lb, or each broker; none without tls_port. */
export function mqttTlsHosts(model: Pick<Model, "topology" | "mqtt">): readonly Host[] {
  const end = mqttTlsEnd(model);
  if (end === "lb") return [model.topology.lb!];
  return end === "broker" ? model.topology.mqtt : [];
}

/** Every flow of the model, in a stable order: by service, server, then client (hosts sorted by name). */
export function flowTable(model: Model): FlowTable {
  const t = model.topology;
  const flows: Flow[] = [];
  const add = (from: readonly Host[], to: readonly Host[], port: number, service: Service, client: Client, purpose: string) => {
    for (const server of to) {
      for (const h of from) if (h.name !== server.name) flows.push({ from: h, to: server, port, protocol: "tcp", service, client, purpose });
    }
  };
  const cluster = [...(t.db ? [t.db] : []), ...t.standbys];
  const pg = model.postgres.port;

  // The lb forwards to the nginx of every web host (gunicorn and daphne stay on loopback).
  if (t.lb) add([t.lb], t.web, model.haproxy.backend_port, "nginx-backend", "lb", "HAProxy");

  // PostgreSQL: the app writes to the primary and reads from the standbys (its read replicas);
  // the members reach each other, since any standby may become the primary after a failover.
  for (const member of cluster) {
    const is = (h: Host | undefined) => h?.name === member.name;
    add(t.django.filter((d) => is(serverFor(t, d, "postgres"))), [member], pg, "postgres", "django", "Django");
    add(t.django.filter((d) => readReplicasFor(t, d).some(is)), [member], pg, "postgres", "django", "Django reads");
    add(cluster, [member], pg, "postgres", "replication", is(t.db) ? "streaming replication" : "replication, once this standby is promoted");
    // After a failover the old primary rewinds itself from the new one before it streams from it.
    add(cluster, [member], pg, "postgres", "rewind", "pg_rewind after a failover");
  }

  // Redis: one instance, or replicas that Sentinel may promote, so every member is reachable.
  const replicated = t.redis.length > 1;
  for (const server of t.redis) {
    add(t.django, [server], model.redis.port, "redis", "django", "Django and Celery");
    add(t.redis, [server], model.redis.port, "redis", "replication", "replication");
    add(t.sentinels, [server], model.redis.port, "redis", "sentinel", "Sentinel monitoring");
  }
  for (const server of t.sentinels) {
    // The app asks the sentinels for the primary only when Redis replicates.
    if (replicated) add(t.django, [server], model.redis.sentinel_port, "sentinel", "django", "Django and Celery");
    add(t.sentinels, [server], model.redis.sentinel_port, "sentinel", "sentinel", "the other sentinels");
  }

  // MQTT in plain text stays on the private network: Django hosts without a broker of their
  // own use the nearest one, and with several brokers every other one bridges to the hub.
  for (const broker of t.mqtt) {
    const clients = t.django.filter((d) => !d.roles.has("mqtt") && serverFor(t, d, "mqtt")?.name === broker.name);
    add(clients, [broker], model.mqtt.port, "mqtt", "django", "Django");
    if (t.mqtt.length > 1 && broker.name === t.mqttHub?.name) add(t.mqtt, [broker], model.mqtt.port, "mqtt", "bridge", "bridge to this hub");
    // Devices, once HAProxy on the lb has terminated their TLS.
    if (t.lb && mqttTlsEnd(model) === "lb") add([t.lb], [broker], model.mqtt.device_port, "mqtt-devices", "lb", "HAProxy, for devices (it terminates their TLS)");
  }

  // Media on NFS: every other host that serves or writes uploads mounts the server's export.
  const media = nfsServer(model.media, t);
  if (media) add(mediaHosts(t.hosts), [media], NFS_PORT, "nfs", "media", "uploaded media (NFSv4)");

  // Monitoring: Prometheus on the monitor host scrapes every exporter of every other host (its
  // own over loopback), so each exporter listens privately and admits the monitor host only.
  if (t.monitor) {
    for (const h of t.hosts) for (const e of exportersOf(h)) add([t.monitor], [h], EXPORTERS[e].port, e, "monitor", "Prometheus");
  }
  return { flows, entries: entries(model) };
}

/** The host that terminates TLS for the site: the lb, or else the single web host. */
export function siteTlsHost(model: Model): Host | undefined {
  return model.topology.lb ?? (model.topology.web.length === 1 ? model.topology.web[0] : undefined);
}

function entries(model: Model): Entry[] {
  const out: Entry[] = [];
  const tlsHost = siteTlsHost(model);
  const server = behindLb(model) ? "HAProxy" : "nginx";
  if (tlsHost) {
    const acme = model.site.tls.mode === "letsencrypt" ? " and ACME challenges" : "";
    out.push({ to: tlsHost, port: model.site.http_port, protocol: "tcp", service: "http", purpose: `${server}: HTTP redirect${acme}`, from: [] });
    out.push({ to: tlsHost, port: model.site.https_port, protocol: "tcp", service: "https", purpose: `${server}: HTTPS`, from: [] });
  }
  // Devices reach MQTT over TLS where it ends (mqttTlsEnd): HAProxy on the lb, or the broker.
  for (const host of mqttTlsHosts(model)) {
    const lb = mqttTlsEnd(model) === "lb";
    out.push({ to: host, port: model.mqtt.tls_port!, protocol: "tcp", service: "mqtt-tls", purpose: `${lb ? "HAProxy: " : ""}MQTT over TLS for devices`, from: [] });
    // A broker away from the site's host gets its own certificate: certbot --standalone answers
    // the HTTP-01 challenge itself (mqtt.domain resolves here: the rules refuse the site's names).
    if (!lb && model.site.tls.mode === "letsencrypt" && host.name !== tlsHost?.name) {
      out.push({ to: host, port: 80, protocol: "tcp", service: "http", purpose: "certbot: HTTP-01 challenges for the MQTT certificate", from: [] });
    }
  }
  for (const h of model.topology.hosts) {
    out.push({ to: h, port: model.firewall.ssh_port, protocol: "tcp", service: "ssh", purpose: "SSH", from: model.firewall.ssh_from });
  }
  return out;
}

/** A table's flows grouped by server and by client, and its entries by server; each in table order. */
interface Index {
  readonly to: ReadonlyMap<string, readonly Flow[]>;
  readonly from: ReadonlyMap<string, readonly Flow[]>;
  readonly entries: ReadonlyMap<string, readonly Entry[]>;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const group = groups.get(key(item));
    if (group === undefined) groups.set(key(item), [item]);
    else group.push(item);
  }
  return groups;
}

// Every host asks for the flows that reach it, several times per render: scanning the whole
// table each time made a render quadratic in the number of hosts (flowsTo and its callers were
// ~10% of a 3,000-host render's --cpu-prof samples, growing with the host count). The index
// lives exactly as long as its table, which render() builds anew each time.
const indexes = new WeakMap<FlowTable, Index>();

function indexOf(table: FlowTable): Index {
  let index = indexes.get(table);
  if (index === undefined) {
    index = { to: groupBy(table.flows, (f) => f.to.name), from: groupBy(table.flows, (f) => f.from.name), entries: groupBy(table.entries, (e) => e.to.name) };
    indexes.set(table, index);
  }
  return index;
}

/** The flows that reach `host`, optionally only those of one service. */
export function flowsTo(table: FlowTable, host: Host, service?: Service): Flow[] {
  const flows = indexOf(table).to.get(host.name) ?? [];
  return service === undefined ? [...flows] : flows.filter((f) => f.service === service);
}

/** The flows `host` opens as a client. */
export function flowsFrom(table: FlowTable, host: Host): Flow[] {
  return [...(indexOf(table).from.get(host.name) ?? [])];
}

/** The entry points of `host`. */
export function entriesTo(table: FlowTable, host: Host): Entry[] {
  return [...(indexOf(table).entries.get(host.name) ?? [])];
}

/** One line per flow: `web-a -> pg-main:5432/tcp postgres (Django)`. */
export function formatFlow(f: Flow): string {
  return `${f.from.name} -> ${f.to.name}:${f.port}/${f.protocol} ${f.service} (${f.purpose})`;
}

export function formatEntry(e: Entry): string {
  const from = e.from.length === 0 ? "anywhere" : e.from.join(", ");
  return `${from} -> ${e.to.name}:${e.port}/${e.protocol} ${e.service} (${e.purpose})`;
}
