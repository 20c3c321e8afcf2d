/**
 * What every artifact family gets: the normalized model, the host being rendered, the resolved
 * secrets, and what is computed once per render for every family (paths, the flow table). A
 * family is a function from this context to the files of one kind and the steps they imply; it
 * never looks anything up elsewhere.
 */
import { pbkdf2Js, type Pbkdf2 } from "../crypto.js";
import type { ModelIssue } from "../model/errors.js";
import { flowTable, siteTlsHost, type FlowTable } from "../model/flows.js";
import type { Host, Model } from "../model/normalize.js";
import type { Role } from "../model/schema.js";
import type { Secrets } from "../model/secrets.js";
import type { FileSpec } from "../tree.js";
import { pathsOf, type Paths } from "./paths.js";
import type { Step } from "./steps.js";

export interface HostContext {
  readonly model: Model;
  readonly host: Host;
  readonly secrets: Secrets;
  /** PBKDF2 for password hashes (pure JS by default; the CLI passes Node's native one). */
  readonly kdf: Pbkdf2;
  /** Every path and unit name several files mention (computed once per render). */
  readonly paths: Paths;
  /** Who connects to whom (computed once per render). */
  readonly flows: FlowTable;
}

/** An artifact family: the files of one kind for a host, and the steps they imply. */
export interface HostFamily {
  /** The family's name: its module is src/artifacts/<name>.ts. */
  readonly name: string;
  readonly files: (ctx: HostContext) => FileSpec[];
  readonly steps?: (ctx: HostContext) => Step[];
  /**
   * Limits a target format puts on secret values (e.g. a file the program rewrites unquoted),
   * reported as model problems at the secret's path, never quoting the value.
   */
  readonly secretIssues?: (model: Model, secrets: Secrets) => ModelIssue[];
}

export function has(ctx: HostContext, role: Role): boolean {
  return ctx.host.roles.has(role);
}

/** The context of every host of the model, in host order, sharing what is computed per render. */
export function hostContexts(model: Model, secrets: Secrets, kdf: Pbkdf2 = pbkdf2Js): HostContext[] {
  const shared = { model, secrets, kdf, paths: pathsOf(model), flows: flowTable(model) };
  return model.topology.hosts.map((host) => ({ ...shared, host }));
}

/** A secret the rules guarantee is present when this is called. */
export function required(secrets: Secrets, name: keyof Secrets): string {
  const value = secrets[name];
  if (value === undefined) throw new Error(`internal: secret ${name} was not resolved`);
  return value;
}

/** True when the host terminates public TLS for the site (lb, or the single web host). */
export function terminatesSiteTls(ctx: HostContext): boolean {
  return siteTlsHost(ctx.model)?.name === ctx.host.name;
}
