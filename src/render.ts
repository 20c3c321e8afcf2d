/**
 * render(model, options) -> Tree: the one pure function. It validates (unless given a model from
 * parseModel), resolves secrets from the values passed in, asks each artifact family for a
 * host's files, adds the host's runbook, and places everything under `<host>/`.
 */
import { appFamily } from "./artifacts/app.js";
import { hostContexts, type HostFamily } from "./artifacts/context.js";
import { composeFiles } from "./artifacts/compose.js";
import { haproxyFamily } from "./artifacts/haproxy.js";
import { mosquittoFamily } from "./artifacts/mosquitto.js";
import { nginxFamily } from "./artifacts/nginx.js";
import { postgresFamily } from "./artifacts/postgres.js";
import { redisFamily } from "./artifacts/redis.js";
import { runbookFile } from "./artifacts/runbook.js";
import { scriptsFamily } from "./artifacts/scripts.js";
import { systemdFamily } from "./artifacts/systemd.js";
import { kdfOwnedBy, pbkdf2Js, type Pbkdf2 } from "./crypto.js";
import { ModelError } from "./model/errors.js";
import type { Model } from "./model/normalize.js";
import { isValidatedModel, parseModel } from "./model/parse.js";
import { resolveSecrets, type SecretSources } from "./model/secrets.js";
import { buildTree, placeFiles, type Tree, type TreeFile } from "./tree.js";

/** The families that make a host's files, in the order their files are listed in the runbook. */
const HOST_FAMILIES: readonly HostFamily[] = [
  appFamily,
  systemdFamily,
  nginxFamily,
  haproxyFamily,
  postgresFamily,
  redisFamily,
  mosquittoFamily,
  scriptsFamily,
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

/**
 * Renders the whole deployment. Same model and secrets, same bytes: no clock, no randomness,
 * no environment reads; paths sorted; LF and a final newline everywhere.
 */
export function render(input: unknown, options: RenderOptions = {}): Tree {
  const model = toModel(input);
  const { secrets, issues } = resolveSecrets(model, options);
  if (issues.length > 0) throw new ModelError(issues);
  const formatIssues = HOST_FAMILIES.flatMap((family) => family.secretIssues?.(model, secrets) ?? []);
  if (formatIssues.length > 0) throw new ModelError(formatIssues);
  // Hashes live as long as the options object the caller passed, never longer (src/crypto.ts).
  const kdf = kdfOwnedBy(options, options.pbkdf2 ?? pbkdf2Js);
  const files: [string, TreeFile][] = [];
  for (const ctx of hostContexts(model, secrets, kdf)) {
    const specs = HOST_FAMILIES.flatMap((family) => family.files(ctx));
    const steps = HOST_FAMILIES.flatMap((family) => family.steps?.(ctx) ?? []);
    specs.push(runbookFile(ctx, specs, steps));
    files.push(...placeFiles(ctx.host.name, specs));
  }
  if (model.compose !== undefined) files.push(...placeFiles("compose", composeFiles(model, secrets, kdf)));
  return buildTree(files);
}
