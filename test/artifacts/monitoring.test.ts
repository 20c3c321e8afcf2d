/**
 * The monitoring family without the real programs (those are test/lint/monitoring.test.ts and
 * test/e2e/monitoring.test.ts): which hosts get which files, modes of the files holding
 * secrets, Alertmanager without a mail address, the yaml filter's refusals, and the steps.
 */
import { describe, expect, it } from "vitest";
import { monitoringFamily } from "../../src/artifacts/monitoring.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { stepLines } from "../../src/artifacts/steps.js";
import { UnsafeValueError, yaml } from "../../src/quote.js";
import { MODE } from "../../src/tree.js";
import { contextOf, fixtureContexts } from "../helpers/fixtures.js";

describe("monitoring family", () => {
  it("renders nothing without a monitor host", () => {
    for (const ctx of fixtureContexts("ha-cluster")) {
      expect(monitoringFamily.files(ctx), ctx.host.name).toEqual([]);
      expect(monitoringFamily.steps!(ctx), ctx.host.name).toEqual([]);
    }
  });

  it("gives each host node_exporter and the exporter of each of its roles; the monitor host the rest", () => {
    const files = (host: string) => monitoringFamily.files(contextOf(fixtureContexts("ha-monitored"), host)).map((f) => f.path);
    const p = pathsOf(contextOf(fixtureContexts("ha-monitored"), "mon1").model);
    expect(files("worker1")).toEqual(["/etc/default/prometheus-node-exporter"]);
    expect(files("db2")).toEqual(["/etc/default/prometheus-node-exporter", "/etc/default/prometheus-postgres-exporter", p.postgresExporterQueries]);
    expect(files("cache1")).toEqual(["/etc/default/prometheus-node-exporter", "/etc/default/prometheus-redis-exporter"]);
    expect(files("app1")).toEqual(["/etc/default/prometheus-node-exporter", "/etc/default/prometheus-nginx-exporter", p.nginxStubStatus]);
    // HAProxy serves its own metrics (haproxy.cfg): no exporter package on the lb.
    expect(files("lb1")).toEqual(["/etc/default/prometheus-node-exporter"]);
    expect(files("mon1")).toEqual([
      "/etc/default/prometheus-node-exporter",
      p.prometheusConfig,
      p.prometheusRules,
      p.alertmanagerConfig,
      p.blackboxConfig,
      "/etc/default/prometheus",
      "/etc/default/prometheus-alertmanager",
      "/etc/default/prometheus-blackbox-exporter",
    ]);
  });

  it("keeps the SMTP and Redis passwords in 0640 root:prometheus files marked secret", () => {
    const contexts = fixtureContexts("ha-monitored");
    const p = pathsOf(contexts[0]!.model);
    const am = monitoringFamily.files(contextOf(contexts, "mon1")).find((f) => f.path === p.alertmanagerConfig)!;
    const redis = monitoringFamily.files(contextOf(contexts, "cache1")).find((f) => f.path === "/etc/default/prometheus-redis-exporter")!;
    for (const f of [am, redis]) expect([f.mode, f.owner, f.group, f.secret], f.path).toEqual([MODE.groupSecret, "root", "prometheus", true]);
  });

  it("without alert_email, Alertmanager keeps alerts in its UI: no SMTP settings, a receiver without mail", () => {
    const ctx = contextOf(fixtureContexts("single-node"), "node1");
    const am = monitoringFamily.files(ctx).find((f) => f.path === pathsOf(ctx.model).alertmanagerConfig)!;
    expect(am.content).not.toMatch(/smtp_|email_configs/);
    expect(am.content).toContain("  - name: operators\n");
    expect(am.mode).toBe(MODE.config);
  });

  it("creates the exporter's PostgreSQL role on the primary only, and tunnels to the monitor host only", () => {
    const contexts = fixtureContexts("ha-monitored");
    const ids = (host: string) => monitoringFamily.steps!(contextOf(contexts, host)).map((s) => s.id);
    expect(ids("db1")).toContain("monitoring.postgres-role");
    expect(ids("db2")).not.toContain("monitoring.postgres-role");
    expect(ids("mon1")).toContain("monitoring.tunnel");
    expect(ids("app1")).not.toContain("monitoring.tunnel");
    const tunnel = monitoringFamily.steps!(contextOf(contexts, "mon1")).find((s) => s.id === "monitoring.tunnel")!;
    expect(stepLines(tunnel).join("\n")).toContain("ssh -N -L 9090:127.0.0.1:9090 -L 9093:127.0.0.1:9093 root@10.0.0.61");
  });
});

describe("the yaml filter", () => {
  it("writes a double-quoted scalar that reads back as the value", () => {
    for (const v of ["plain", "yes", "null", "1e3", `a "b" 'c' \\d: #e - [f] {g} & *h`, "ünïcödé"]) expect(JSON.parse(yaml(v))).toBe(v);
  });

  it("refuses control characters, Unicode line separators and the byte order mark", () => {
    for (const v of ["a\nb", "a\u0000b", "a\u2028b", "a\u2029b", "\ufeffa"]) expect(() => yaml(v), JSON.stringify(v)).toThrow(UnsafeValueError);
  });
});
