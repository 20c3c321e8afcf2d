/**
 * render(model, options) -> Tree: the one pure function. It validates (unless given a model from
 * parseModel), resolves secrets from the values passed in, asks each artifact family for a
 * host's files and steps, adds the host's runbook, and places everything under `<host>/`.
 */
import { ansibleFiles, type BundleHost } from "./artifacts/ansible.js";
import { appFamily } from "./artifacts/app.js";
import { backupFamily } from "./artifacts/backup.js";
import { certbotFamily } from "./artifacts/certbot.js";
import { fileRules, withHandling, type FileHandling } from "./artifacts/effects.js";
import { composeFiles } from "./artifacts/compose.js";
import { hostContexts, type HostContext, type HostFamily } from "./artifacts/context.js";
import { firewallFamily } from "./artifacts/firewall.js";
import { haproxyFamily } from "./artifacts/haproxy.js";
import { logrotateFamily } from "./artifacts/logrotate.js";
import { mediaFamily } from "./artifacts/media.js";
import { monitoringFamily } from "./artifacts/monitoring.js";
import { mosquittoFamily } from "./artifacts/mosquitto.js";
import { nginxFamily } from "./artifacts/nginx.js";
import { postgresFamily } from "./artifacts/postgres.js";
import { redisFamily } from "./artifacts/redis.js";
import { sysctlFamily } from "./artifacts/sysctl.js";
import { hostSteps, runbookFile } from "./artifacts/runbook.js";
import type { Step } from "./artifacts/steps.js";
import { systemdFamily } from "./artifacts/systemd.js";
import { updateFamily } from "./artifacts/update.js";
import { kdfOwnedBy, pbkdf2Js, type Pbkdf2 } from "./crypto.js";
import { ModelError } from "./model/errors.js";
import type { Model } from "./model/normalize.js";
import { isValidatedModel, parseModel } from "./model/parse.js";
import type { ModelInput } from "./model/schema.js";
import { deepFreeze } from "./model/seal.js";
import { resolveSecrets, type Secrets, type SecretSources } from "./model/secrets.js";
import { buildTree, placeFiles, type FileSpec, type Tree, type TreeFile } from "./tree.js";

/**
 * The families that make a host's files, in the order their steps run within a phase: the site
 * certificate (nginx, HAProxy) before the MQTT one, which may be the same or obtained through
 * nginx; the services the app uses (the media mount, PostgreSQL, Redis, Mosquitto) before the
 * app's units, so they start against configured services. Files are listed in this order too.
 */
export const HOST_FAMILIES: readonly HostFamily[] = [
  appFamily,
  mediaFamily,
  nginxFamily,
  haproxyFamily,
  postgresFamily,
  redisFamily,
  mosquittoFamily,
  systemdFamily,
  backupFamily,
  updateFamily,
  logrotateFamily,
  sysctlFamily,
  firewallFamily,
  certbotFamily,
  // Last: its exporters restart once the services they read are configured and running.
  monitoringFamily,
];

export interface RenderOptions extends SecretSources {
  /**
   * PBKDF2 for the password hashes in the output; defaults to a pure-JavaScript one. Hashes
   * are remembered for the renders that pass this same options object, and only for them.
   */
  readonly pbkdf2?: Pbkdf2;
  /**
   * Render only these trees: host names, and `"ansible"` or `"compose"` for the bundles. The
   * work done is that of the named hosts (the Ansible bundle needs every host's steps, so
   * naming it renders them all). Default: everything.
   */
  readonly hosts?: readonly string[];
}

/**
 * Validates `input` or throws a ModelError listing every problem. A model from this copy's
 * parseModel is returned as it is (it is deep-frozen); a copy of one (spread, structuredClone,
 * from the other module format's copy of the package) is validated again from its `input`.
 */
export function toModel(input: ModelInput | Model): Model {
  if (isValidatedModel(input)) return input;
  const result = parseModel(input);
  if (!result.ok) throw new ModelError(result.issues);
  return result.model;
}

/** What one host gets: its files (each stamped with the family that made it) and its steps in order. */
export interface RenderedHost {
  readonly ctx: HostContext;
  readonly files: readonly FileSpec[];
  readonly steps: readonly Step[];
  /** What a change to each of the host's files requires (fileRules), made once per host. */
  readonly rules: ReadonlyMap<string, FileHandling>;
}

function familyFiles(family: HostFamily, ctx: HostContext): FileSpec[] {
  return family.files(ctx).map((f) => ({ ...f, family: family.name }));
}

function hostOf(ctx: HostContext): { files: FileSpec[]; steps: Step[]; rules: ReadonlyMap<string, FileHandling> } {
  const rules = fileRules(ctx);
  const files = withHandling(ctx, HOST_FAMILIES.flatMap((family) => familyFiles(family, ctx)), rules);
  return { files, steps: hostSteps(ctx, HOST_FAMILIES.flatMap((family) => family.steps?.(ctx) ?? []), files), rules };
}

/** The secrets the model references, checked, and the PBKDF2 whose hashes live as long as `options`. */
function secretsAndKdf(model: Model, options: RenderOptions): { secrets: Secrets; kdf: Pbkdf2 } {
  const { secrets, issues } = resolveSecrets(model, options);
  if (issues.length > 0) throw new ModelError(issues);
  const formatIssues = HOST_FAMILIES.flatMap((family) => family.secretIssues?.(model, secrets) ?? []);
  if (formatIssues.length > 0) throw new ModelError(formatIssues);
  // Hashes live as long as the options object the caller passed, never longer (src/crypto.ts).
  return { secrets, kdf: kdfOwnedBy(options, options.pbkdf2 ?? pbkdf2Js) };
}

const BUNDLES = ["ansible", "compose"] as const;

/** The trees `options.hosts` asks for (every tree when it is absent), or a ModelError naming the unknown ones. */
function wantedTrees(model: Model, hosts: readonly string[] | undefined): ((name: string) => boolean) {
  if (hosts === undefined) return () => true;
  const known = new Set([...model.topology.hosts.map((h) => h.name), ...BUNDLES]);
  const unknown = hosts.filter((h) => !known.has(h));
  if (unknown.length > 0) {
    const names = model.topology.hosts.map((h) => h.name).join(", ") || "none";
    throw new ModelError(unknown.map((h) => ({ path: "", message: `the hosts option names ${JSON.stringify(h)}, which is no host of the model (hosts: ${names}; bundles: ansible, compose)` })));
  }
  const wanted = new Set(hosts);
  return (name) => wanted.has(name);
}

function hostsOf(model: Model, secrets: Secrets, kdf: Pbkdf2, wanted: (name: string) => boolean = () => true): RenderedHost[] {
  return hostContexts(model, secrets, kdf)
    .filter((ctx) => wanted(ctx.host.name))
    .map((ctx) => ({ ctx, ...hostOf(ctx) }));
}

/** Every host's files and steps, the runbook not yet among the files. */
export function renderHosts(model: Model, options: RenderOptions = {}): RenderedHost[] {
  const { secrets, kdf } = secretsAndKdf(model, options);
  return hostsOf(model, secrets, kdf, wantedTrees(model, options.hosts));
}

/** One host's steps as data: what the runbook and the Ansible bundle are rendered from. */
export interface HostSteps {
  readonly host: string;
  /** In the order they run (phase by phase); ids are unique on the host. */
  readonly steps: readonly Step[];
}

/**
 * The steps of every host (or of `options.hosts`), as data: the runbook's Markdown and the
 * playbook's tasks are two renderings of these. Frozen, like the Tree.
 */
export function renderSteps(input: ModelInput | Model, options: RenderOptions = {}): readonly HostSteps[] {
  const model = toModel(input);
  const only = options.hosts?.filter((h) => !(BUNDLES as readonly string[]).includes(h));
  return deepFreeze(renderHosts(model, { ...options, ...(only ? { hosts: only } : {}) }).map((h) => ({ host: h.ctx.host.name, steps: h.steps })));
}

/**
 * Renders the whole deployment (or the trees `options.hosts` names). Same model and secrets,
 * same bytes: no clock, no randomness, no environment reads; paths sorted; LF and a final
 * newline everywhere. Host files carry what a change to them requires (their effects); the
 * Ansible bundle goes under ansible/. The Tree and its files are frozen.
 */
export function render(input: ModelInput | Model, options: RenderOptions = {}): Tree {
  const model = toModel(input);
  const { secrets, kdf } = secretsAndKdf(model, options);
  const wanted = wantedTrees(model, options.hosts);
  const withBundle = wanted("ansible");
  // The Ansible bundle is made from every host's steps and files.
  const rendered = hostsOf(model, secrets, kdf, withBundle ? () => true : wanted);
  const files: [string, TreeFile][] = [];
  const bundle: BundleHost[] = [];
  for (const { ctx, files: specs, steps, rules } of rendered) {
    const all = [...specs, ...withHandling(ctx, [{ ...runbookFile(ctx, specs, steps), family: "runbook" }], rules)];
    if (wanted(ctx.host.name)) files.push(...placeFiles(ctx.host.name, all));
    bundle.push({ ctx, files: all, steps });
  }
  if (withBundle) files.push(...placeFiles("ansible", ansibleFiles(model, bundle).map((f) => ({ ...f, family: "ansible" }))));
  if (model.compose !== undefined && wanted("compose")) {
    files.push(...placeFiles("compose", composeFiles(model, secrets, kdf).map((f) => ({ ...f, family: "compose" }))));
  }
  return buildTree(files);
}

/** PBKDF2 that may answer later: WebCrypto's crypto.subtle.deriveBits is one. */
export type Pbkdf2Async = (digest: "sha256" | "sha512", password: Uint8Array, salt: Uint8Array, iterations: number, length: number) => Promise<Uint8Array>;

export interface RenderAsyncOptions extends Omit<RenderOptions, "pbkdf2"> {
  /** Default: WebCrypto (`globalThis.crypto.subtle`), in browsers and Node.js alike. */
  readonly pbkdf2?: Pbkdf2Async;
}

/** PBKDF2 through WebCrypto: native code off the main thread in browsers, same bytes as pbkdf2Js. */
export const pbkdf2WebCrypto: Pbkdf2Async = async (digest, password, salt, iterations, length) => {
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) throw new Error("renderAsync: no WebCrypto here (globalThis.crypto.subtle); pass a pbkdf2 option");
  const key = await subtle.importKey("raw", new Uint8Array(password), "PBKDF2", false, ["deriveBits"]);
  const hash = digest === "sha256" ? "SHA-256" : "SHA-512";
  return new Uint8Array(await subtle.deriveBits({ name: "PBKDF2", hash, salt: new Uint8Array(salt), iterations }, key, length * 8));
};

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * render() with an asynchronous PBKDF2 (WebCrypto by default), so a browser does not block on
 * the password hashes. Same bytes as render(). How: a render records the PBKDF2 calls it could
 * not answer yet (a salt is itself a PBKDF2 output, so the hash that uses it is only known one
 * round later), they are computed asynchronously, and the render runs again until every call
 * has its answer; the last render is the result. The answers live only during this call.
 */
export async function renderAsync(input: ModelInput | Model, options: RenderAsyncOptions = {}): Promise<Tree> {
  const model = toModel(input);
  const derive = options.pbkdf2 ?? pbkdf2WebCrypto;
  const known = new Map<string, Uint8Array>();
  for (let round = 0; round < 8; round++) {
    const missing = new Map<string, Parameters<Pbkdf2>>();
    const recording: Pbkdf2 = (...args) => {
      const [digest, password, salt, iterations, length] = args;
      const key = `${digest}:${iterations}:${length}:${hex(password)}:${hex(salt)}`;
      const value = known.get(key);
      if (value !== undefined) return value;
      missing.set(key, args);
      return new Uint8Array(length);
    };
    // A new options object each round: nothing a round computed from a placeholder is remembered.
    const tree = render(model, { ...options, pbkdf2: recording });
    if (missing.size === 0) return tree;
    await Promise.all([...missing].map(async ([key, args]) => known.set(key, await derive(...args))));
  }
  throw new Error("internal: renderAsync did not converge");
}
