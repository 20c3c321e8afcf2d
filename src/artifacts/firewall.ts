/**
 * ufw rules per host (errata 15): the public entry points and, on the private network, exactly
 * the flows of the flow table that reach this host, each from its client's address only.
 */
import { entriesTo, flowsTo, LISTENERS } from "../model/flows.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import type { Step } from "./steps.js";

interface FirewallSource {
  readonly address: string;
  readonly host: string;
  readonly why: string;
}

interface FirewallRule {
  readonly port: number;
  readonly service: string;
  readonly sources: readonly FirewallSource[];
}

/** The flows that reach this host, one rule per port, one source per client host (UFW-04). */
export function privateFirewallRules(ctx: HostContext): FirewallRule[] {
  const byPort = new Map<number, { service: string; sources: Map<string, { address: string; why: string[] }> }>();
  for (const f of flowsTo(ctx.flows, ctx.host)) {
    const rule = byPort.get(f.port) ?? { service: LISTENERS[f.service].description, sources: new Map() };
    const source = rule.sources.get(f.from.name) ?? { address: f.from.address, why: [] };
    if (!source.why.includes(f.purpose)) source.why.push(f.purpose);
    rule.sources.set(f.from.name, source);
    byPort.set(f.port, rule);
  }
  return [...byPort.entries()].map(([port, rule]) => ({
    port,
    service: rule.service,
    // In host order (hosts are sorted by name).
    sources: [...rule.sources.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([host, s]) => ({ host, address: s.address, why: s.why.join(", ") })),
  }));
}

interface PublicPort {
  readonly port: number;
  readonly why: string;
}

/** The ports anyone may reach on this host (SSH has its own rule: it may be limited to networks). */
export function publicFirewallPorts(ctx: HostContext): PublicPort[] {
  const ports = new Map<number, string[]>();
  for (const e of entriesTo(ctx.flows, ctx.host)) {
    if (e.service === "ssh") continue;
    ports.set(e.port, [...(ports.get(e.port) ?? []), e.purpose]);
  }
  return [...ports.entries()].sort(([a], [b]) => a - b).map(([port, why]) => ({ port, why: why.join("; ") }));
}

function firewallView(ctx: HostContext) {
  const { model, host } = ctx;
  return {
    project: model.project.name,
    host: host.name,
    address: host.address,
    sshPort: model.firewall.ssh_port,
    sshFrom: model.firewall.ssh_from,
    public: publicFirewallPorts(ctx),
    private: privateFirewallRules(ctx),
    mqtt: has(ctx, "mqtt") ? { port: model.mqtt.port, tls: model.mqtt.tls_port !== undefined } : undefined,
  };
}

function firewallFiles(ctx: HostContext): FileSpec[] {
  if (!ctx.model.firewall.enabled) return [];
  return [templateFile(ctx.paths.firewallScript, "firewall/firewall.sh.njk", firewallView(ctx), { comment: "#", mode: MODE.script })];
}

function firewallSteps(ctx: HostContext): Step[] {
  const { model } = ctx;
  if (!model.firewall.enabled) return [];
  return [
    {
      id: "firewall.enable",
      // Before any service of this host starts: the kernel tracks connections only once a rule
      // needs it, so ufw's RELATED,ESTABLISHED rule does not know connections opened before.
      phase: "network",
      title: "Enable the firewall",
      packages: ["ufw"],
      action: { kind: "commands", commands: [{ run: shell(ctx.paths.firewallScript) }] },
      why:
        "Before any service on this host starts: a connection opened before the firewall comes up has its replies dropped once it does (connection tracking sees it only from then on, and takes the next reply for an unsolicited packet), so services would hang on their open connections until restarted. Running the script again later is safe: rules added to an active firewall keep the connections it already tracks. " +
        `Keep the SSH session you run this from open, and check that a second login on port ${model.firewall.ssh_port} works before closing it: a wrong rule locks you out. The script allows SSH before it enables ufw.`,
    },
    {
      id: "firewall.check",
      phase: "verify",
      title: "Check the firewall",
      action: { kind: "check", commands: ["ufw status verbose"] },
    },
  ];
}

export const firewallFamily: HostFamily = { name: "firewall", files: firewallFiles, steps: firewallSteps };
