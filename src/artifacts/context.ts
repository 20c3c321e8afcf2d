/**
 * What every artifact family gets: the normalized model, the host being rendered and the
 * resolved secrets, plus the few derived facts several families need. A family is a function
 * from this context to the files of one kind; it never looks anything up elsewhere.
 */
import type { Host, Model } from "../model/normalize.js";
import { addressFrom } from "../model/normalize.js";
import type { Role } from "../model/schema.js";
import type { Secrets } from "../model/secrets.js";
import type { FileSpec } from "../tree.js";

export interface HostContext {
  readonly model: Model;
  readonly host: Host;
  readonly secrets: Secrets;
}

export type HostFamily = (ctx: HostContext) => FileSpec[];

export function has(ctx: HostContext, role: Role): boolean {
  return ctx.host.roles.has(role);
}

/** True when app hosts sit behind HAProxy: nginx then listens privately for the load balancer. */
export function behindLb(model: Model): boolean {
  return model.topology.lb !== undefined;
}

/** Where this host reaches a service, by the host that plays its role (loopback if it is this one). */
export function reach(ctx: HostContext, target: Host): string {
  return addressFrom(target, ctx.host);
}

/** The one the app on this host talks to, among several hosts of a role: its own if it has one. */
export function nearest(ctx: HostContext, hosts: readonly Host[]): Host | undefined {
  return hosts.find((h) => h.name === ctx.host.name) ?? hosts[0];
}

/** A secret the rules guarantee is present when this is called. */
export function required(secrets: Secrets, name: keyof Secrets): string {
  const value = secrets[name];
  if (value === undefined) throw new Error(`internal: secret ${name} was not resolved`);
  return value;
}

/** True when the host terminates public TLS for the site (lb, or the single web host). */
export function terminatesSiteTls(ctx: HostContext): boolean {
  return behindLb(ctx.model) ? has(ctx, "lb") : has(ctx, "web");
}
