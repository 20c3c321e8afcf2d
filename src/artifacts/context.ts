/**
 * What every artifact family gets: the normalized model, the host being rendered and the
 * resolved secrets, plus the few derived facts several families need. A family is a function
 * from this context to the files of one kind; it never looks anything up elsewhere.
 */
import { pbkdf2Js, type Pbkdf2 } from "../crypto.js";
import type { ModelIssue } from "../model/errors.js";
import { addressFrom, type Host, type Model } from "../model/normalize.js";
import type { Role } from "../model/schema.js";
import type { Secrets } from "../model/secrets.js";
import type { FileSpec } from "../tree.js";

export interface HostContext {
  readonly model: Model;
  readonly host: Host;
  readonly secrets: Secrets;
  /** PBKDF2 for password hashes (pure JS by default; the CLI passes Node's native one). */
  readonly kdf: Pbkdf2;
}

/** When a runbook step happens, in this order. */
export const RUNBOOK_PHASES = [
  "packages", // apt-get install (all families' packages merged into one line)
  "accounts", // system users and groups
  "code", // application checkout and virtualenv
  "files", // copying this host's tree, then owners and modes
  "certificates", // TLS certificates and their renewal hooks
  "database", // roles, databases, replication
  "app", // migrate, collectstatic, superuser
  "services", // enable and (re)start units, reload daemons
  "verify", // checks a person runs to see it works
] as const;
export type RunbookPhase = (typeof RUNBOOK_PHASES)[number];

/** One thing a person does by hand on the host that is not a file. */
export interface RunbookStep {
  readonly phase: RunbookPhase;
  readonly title: string;
  /** Shell commands, run as root, values quoted with quote.shell(). */
  readonly commands?: readonly string[];
  /** Debian packages this step needs (merged into the packages phase). */
  readonly packages?: readonly string[];
  /** Why, in one or two sentences, when it is not obvious. */
  readonly why?: string;
}

/** An artifact family: the files of one kind for a host, and the hand steps they imply. */
export interface HostFamily {
  readonly files: (ctx: HostContext) => FileSpec[];
  readonly steps?: (ctx: HostContext) => RunbookStep[];
  /**
   * Limits a target format puts on secret values (e.g. a file the program rewrites unquoted),
   * reported as model problems at the secret's path, never quoting the value.
   */
  readonly secretIssues?: (model: Model, secrets: Secrets) => ModelIssue[];
}

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

/** The one `from` talks to, among several hosts of a role: itself if it plays the role, else the first. */
export function nearest(from: Host, hosts: readonly Host[]): Host | undefined {
  return hosts.find((h) => h.name === from.name) ?? hosts[0];
}

/** The context of every host of the model, in host order. */
export function hostContexts(model: Model, secrets: Secrets, kdf: Pbkdf2 = pbkdf2Js): HostContext[] {
  return model.topology.hosts.map((host) => ({ model, host, secrets, kdf }));
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
