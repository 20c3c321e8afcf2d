/**
 * The "network" phase of every host (issue #9, items 9 and 12): the firewall is enabled before
 * any service of the host starts or opens a connection, over every fixture's runbook steps in
 * the order the runbook lists them.
 */
import { describe, expect, it } from "vitest";
import { stepLines, type Step } from "../../src/artifacts/steps.js";
import { renderHosts } from "../../src/render.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";

const HOSTS = fixtureNames().flatMap((fixture) => {
  const f = loadFixture(fixture);
  return renderHosts(f.model, f.sources).map((h) => ({ name: `${fixture}/${h.ctx.host.name}`, model: f.model, steps: h.steps }));
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
