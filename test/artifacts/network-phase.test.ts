/**
 * The "network" phase of every host (issue #9, items 9 and 12), over every fixture's runbook
 * steps in the order the runbook lists them: the kernel setting that lets daemons bind their
 * private address before it exists is rendered exactly where a daemon listens on one, and
 * applied, like the firewall, before any service of the host starts or opens a connection.
 */
import { describe, expect, it } from "vitest";
import { pathsOf } from "../../src/artifacts/paths.js";
import { stepLines, type Step } from "../../src/artifacts/steps.js";
import { flowsTo, LISTENERS } from "../../src/model/flows.js";
import { renderHosts } from "../../src/render.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";

const HOSTS = fixtureNames().flatMap((fixture) => {
  const f = loadFixture(fixture);
  return renderHosts(f.model, f.sources).map((h) => ({ name: `${fixture}/${h.ctx.host.name}`, model: f.model, ctx: h.ctx, files: h.files, steps: h.steps }));
});

/** Starts, restarts or reloads a service on this host: a service action, or systemctl doing it. */
function startsService(step: Step): boolean {
  if (step.action.kind === "service") return true;
  return stepLines(step).some((line) => /\bsystemctl\s+(start|restart|reload|reload-or-restart|try-restart|enable\s+--now)\b/.test(line));
}

describe("the firewall comes up before the services", () => {
  it("covers hosts that start services in every fixture with hosts", () => {
    expect(HOSTS.filter((h) => h.steps.some(startsService)).length).toBeGreaterThanOrEqual(20);
  });

  for (const h of HOSTS) {
    it(`${h.name}: the firewall step comes before every step that starts a service`, () => {
      const ids = h.steps.map((s) => s.id);
      const firewall = ids.indexOf("firewall.enable");
      if (!h.model.firewall.enabled) return expect(firewall).toBe(-1);
      expect(firewall, `${h.name} has no firewall step`).toBeGreaterThanOrEqual(0);
      expect(h.steps[firewall]!.phase).toBe("network");
      const early = h.steps.slice(0, firewall).filter(startsService).map((s) => s.id);
      expect(early, `${h.name}: started before the firewall`).toEqual([]);
    });
  }
});

describe("daemons may bind their private address before the network configures it", () => {
  it("covers hosts with and without private listeners", () => {
    const withFile = HOSTS.filter((h) => h.files.some((f) => f.path === pathsOf(h.model).sysctlConf));
    expect(withFile.length).toBeGreaterThanOrEqual(10);
    expect(withFile.length).toBeLessThan(HOSTS.length);
  });

  for (const h of HOSTS) {
    it(`${h.name}: net.ipv4.ip_nonlocal_bind = 1 exactly when a flow reaches a daemon that binds the private address, applied before its services`, () => {
      const file = h.files.find((f) => f.path === pathsOf(h.model).sysctlConf);
      // NFS's kernel server listens on every address; the other listeners take the private one.
      const listens = flowsTo(h.ctx.flows, h.ctx.host).some((f) => LISTENERS[f.service].bindsPrivateAddress);
      expect(file !== undefined, h.name).toBe(listens);
      const ids = h.steps.map((s) => s.id);
      const apply = ids.indexOf("sysctl.apply");
      if (!listens) return expect(apply).toBe(-1);
      const settings = file!.content.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#"));
      expect(settings).toEqual(["net.ipv4.ip_nonlocal_bind = 1"]);
      expect(file!.mode).toBe(0o644);
      expect(h.steps[apply]!.phase).toBe("network");
      expect(stepLines(h.steps[apply]!)).toEqual([`sysctl -p ${pathsOf(h.model).sysctlConf}`]);
      expect(h.steps.slice(0, apply).filter(startsService).map((s) => s.id)).toEqual([]);
    });
  }
});
