/**
 * render(model, options) -> Tree: the one pure function. It validates (unless given a model from
 * parseModel), resolves secrets from the values passed in, asks each artifact family for a
 * host's files and steps, adds the host's runbook, and places everything under `<host>/`.
 */
import { ansibleFiles, type BundleHost } from "./artifacts/ansible.js";
import { appFamily } from "./artifacts/app.js";
import { backupFamily } from "./artifacts/backup.js";
import { certbotFamily } from "./artifacts/certbot.js";
import { withHandling } from "./artifacts/effects.js";
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
}

/** Validates `input` (unless it came from parseModel) or throws a ModelError listing every problem. */
export function toModel(input: unknown): Model {
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
}

function familyFiles(family: HostFamily, ctx: HostContext): FileSpec[] {
  return family.files(ctx).map((f) => ({ ...f, family: family.name }));
}

function hostOf(ctx: HostContext): { files: FileSpec[]; steps: Step[] } {
  const files = withHandling(ctx, HOST_FAMILIES.flatMap((family) => familyFiles(family, ctx)));
  return { files, steps: hostSteps(ctx, HOST_FAMILIES.flatMap((family) => family.steps?.(ctx) ?? []), files) };
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

function hostsOf(model: Model, secrets: Secrets, kdf: Pbkdf2): RenderedHost[] {
  return hostContexts(model, secrets, kdf).map((ctx) => ({
    ctx,
    ...hostOf(ctx),
  }));
}

/** Every host's files and steps, the runbook not yet among the files. */
export function renderHosts(model: Model, options: RenderOptions = {}): RenderedHost[] {
  const { secrets, kdf } = secretsAndKdf(model, options);
  return hostsOf(model, secrets, kdf);
}

/**
 * Renders the whole deployment. Same model and secrets, same bytes: no clock, no randomness,
 * no environment reads; paths sorted; LF and a final newline everywhere. Host files carry what
 * a change to them requires (their effects); the Ansible bundle goes under ansible/.
 */
export function render(input: unknown, options: RenderOptions = {}): Tree {
  const model = toModel(input);
  const { secrets, kdf } = secretsAndKdf(model, options);
  const files: [string, TreeFile][] = [];
  const bundle: BundleHost[] = [];
  for (const { ctx, files: specs, steps } of hostsOf(model, secrets, kdf)) {
    const all = [...specs, ...withHandling(ctx, [{ ...runbookFile(ctx, specs, steps), family: "runbook" }])];
    files.push(...placeFiles(ctx.host.name, all));
    bundle.push({ ctx, files: all, steps });
  }
  files.push(...placeFiles("ansible", ansibleFiles(model, bundle).map((f) => ({ ...f, family: "ansible" }))));
  if (model.compose !== undefined) {
    files.push(...placeFiles("compose", composeFiles(model, secrets, kdf).map((f) => ({ ...f, family: "compose" }))));
  }
  return buildTree(files);
}
