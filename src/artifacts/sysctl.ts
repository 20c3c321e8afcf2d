/**
 * Kernel settings (sysctl.d) that a host's services need, read at boot by systemd-sysctl.service
 * and applied by the runbook's network step.
 *
 * Redis, Sentinel, Mosquitto, PostgreSQL and nginx (behind the lb) listen on the host's private
 * address when another host connects to them (the flow table). At boot Debian's units order them
 * only after network.target, which does not wait for addresses: a daemon that starts before the
 * private address is configured fails to bind it, and Redis, Sentinel, Mosquitto and nginx exit
 * while PostgreSQL comes up on loopback only and says so only in its log.
 *
 * net.ipv4.ip_nonlocal_bind = 1 lets them bind the address before it exists; they receive its
 * traffic as soon as it is up. It is one setting that systemd-sysctl.service applies before
 * sysinit.target, so before every service, whatever configures the network. The alternative,
 * drop-ins ordering five units after network-online.target, depends on the network manager's
 * wait-online service: ifupdown's waits for `auto` interfaces only (not `allow-hotplug` or a
 * cloud's secondary NIC), systemd-networkd-wait-online for the links it manages, and none of them
 * runs unless enabled; it also delays boot when the wait times out. The setting's cost: a
 * service configured with a wrong address starts without complaint, so the check step shows
 * that the private address is on an interface.
 */
import { flowsTo, LISTENERS } from "../model/flows.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import type { FileSpec } from "../tree.js";
import type { HostContext, HostFamily } from "./context.js";
import type { Step } from "./steps.js";

/** The daemons that listen on this host's private address: the servers of the flows that reach it. */
export function privateListeners(ctx: HostContext): string[] {
  const listeners = flowsTo(ctx.flows, ctx.host).map((f) => LISTENERS[f.service]);
  return [...new Set(listeners.filter((l) => l.bindsPrivateAddress).map((l) => l.daemon))];
}

function sysctlFiles(ctx: HostContext): FileSpec[] {
  const daemons = privateListeners(ctx);
  if (daemons.length === 0) return [];
  const view = { host: ctx.host.name, address: ctx.host.address, daemons: daemons.join(", ") };
  return [templateFile(ctx.paths.sysctlConf, "sysctl/sysctl.conf.njk", view, { comment: "#" })];
}

function sysctlSteps(ctx: HostContext): Step[] {
  if (privateListeners(ctx).length === 0) return [];
  const file = ctx.paths.sysctlConf;
  return [
    {
      id: "sysctl.apply",
      phase: "network",
      title: "Apply the kernel settings",
      packages: ["procps"],
      action: { kind: "commands", commands: [{ run: `sysctl -p ${shell(file)}` }] },
      why: `Now, before the services are restarted with their private address; at boot systemd-sysctl reads ${file} before any service starts, so they bind ${ctx.host.address} even when the network configures it after them.`,
    },
    {
      id: "sysctl.check",
      phase: "verify",
      title: "Check the private address",
      packages: ["iproute2"],
      action: { kind: "check", commands: [`ip -4 -brief address show to ${shell(`${ctx.host.address}/32`)}`] },
      why: `One line naming the interface that has ${ctx.host.address}. The services would start even without it (the kernel setting above lets them), and then nobody could reach them.`,
    },
  ];
}

export const sysctlFamily: HostFamily = { name: "sysctl", files: sysctlFiles, steps: sysctlSteps };
