/**
 * What is monitored where, decided once: which exporters a host runs (node_exporter on every
 * host, one per role), their ports, and the ports of the monitor host's own daemons. The flow
 * table (flows.ts) turns the exporters into flows from the monitor host, so the firewall, each
 * exporter's listen address and Prometheus' scrape targets come from the same list; the rules
 * (rules.ts) check the ports against the host's other services; the monitoring family renders
 * the settings and the scrape configuration.
 */
import type { Host } from "./normalize.js";

/**
 * An exporter Prometheus scrapes on a host. HAProxy's is no separate program: HAProxy 2.6 serves
 * its own metrics (`http-request use-service prometheus-exporter`, built with USE_PROMEX as
 * Debian's package is) on a frontend of its own.
 */
export type Exporter = "node-exporter" | "postgres-exporter" | "redis-exporter" | "nginx-exporter" | "haproxy-metrics";

export interface ExporterSpec {
  /** Default port of the Debian package (or, for HAProxy, the port its documentation uses). */
  readonly port: number;
  /** Debian package and systemd unit; none for HAProxy's built-in endpoint. */
  readonly unit: string | undefined;
  /** The Prometheus job its targets are in (alert rules select on it). */
  readonly job: string;
  /** Firewall comments, README. */
  readonly description: string;
  /** The program that listens (the flow table's listener). */
  readonly daemon: string;
}

/** Ports are each package's defaults (the Prometheus default port allocations wiki page). */
export const EXPORTERS: Readonly<Record<Exporter, ExporterSpec>> = {
  "node-exporter": { port: 9100, unit: "prometheus-node-exporter", job: "node", description: "node_exporter", daemon: "node_exporter" },
  "postgres-exporter": { port: 9187, unit: "prometheus-postgres-exporter", job: "postgres", description: "PostgreSQL exporter", daemon: "postgres_exporter" },
  "redis-exporter": { port: 9121, unit: "prometheus-redis-exporter", job: "redis", description: "Redis exporter", daemon: "redis_exporter" },
  "nginx-exporter": { port: 9113, unit: "prometheus-nginx-exporter", job: "nginx", description: "nginx exporter", daemon: "nginx-prometheus-exporter" },
  // 8405: the port of HAProxy's own Prometheus example (doc/management.txt, "prometheus-exporter").
  "haproxy-metrics": { port: 8405, unit: undefined, job: "haproxy", description: "HAProxy metrics", daemon: "HAProxy" },
};

/**
 * Ports on the monitor host's loopback (Prometheus, Alertmanager, the blackbox exporter) and on
 * each web host's loopback (nginx's stub_status, read by the nginx exporter on the same host).
 * Operators reach the first two through an SSH tunnel (runbook); nothing else needs them.
 */
export const LOCAL_PORTS = { prometheus: 9090, alertmanager: 9093, blackbox: 9115, nginxStatus: 8091 } as const;

/** The Prometheus jobs of the blackbox exporter's probes (alert rules select on them). */
export const BLACKBOX_JOBS = { https: "blackbox-https", mqtt: "blackbox-mqtt" } as const;

/** The exporters `host` runs when the model has a monitor host, in a stable order. */
export function exportersOf(host: Host): Exporter[] {
  const has = (r: Parameters<Host["roles"]["has"]>[0]) => host.roles.has(r);
  return [
    "node-exporter" as const,
    ...(has("db") || has("db-standby") ? ["postgres-exporter" as const] : []),
    ...(has("redis") ? ["redis-exporter" as const] : []),
    ...(has("web") ? ["nginx-exporter" as const] : []),
    ...(has("lb") ? ["haproxy-metrics" as const] : []),
  ];
}
