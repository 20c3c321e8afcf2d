/**
 * `novacloud-render/node`: what a Node.js tool needs besides render(), the same code the CLI
 * runs (issue #14). The core (`novacloud-render`) stays free of Node APIs; this entry reads and
 * writes files.
 *
 *   import { render } from "novacloud-render";
 *   import { checkTree, loadModel, readSecretsFile, writeTree } from "novacloud-render/node";
 *   const loaded = loadModel("novacloud.toml");
 *   if (!loaded.ok) throw new Error(loaded.issues.map((i) => `${i.line}: ${i.message}`).join("\n"));
 *   const tree = render(loaded.model, { env: readSecretsFile("secrets.env"), files: loaded.files });
 *   writeTree(tree, "out");            // the CLI's atomic write and manifest
 *   checkTree(tree, "out").clean;      // true: what `--check --out out` says
 */
import { dirname, extname, resolve } from "node:path";
import type { ModelIssue } from "../model/errors.js";
import type { Model } from "../model/normalize.js";
import { parseModelText, type ParseResult } from "../model/parse.js";
import type { ModelInput } from "../model/schema.js";
import { resolveSecrets, secretUses, secretValues } from "../model/secrets.js";
import { locateIssues, type SourceFormat } from "../model/source-lines.js";
import { planChanges, type HostPlan } from "../plan.js";
import { toModel, type RenderOptions } from "../render.js";
import type { Tree } from "../tree.js";
import { compareWithDirectory, driftChanges, hasDrift, type Drift } from "./check.js";
import { parseSecretsFile, readSecretFiles, readText, writeTree as writeTreeTo } from "./files.js";

export { IoError, MANIFEST } from "./files.js";
export { formatDrift, formatPlan, type Drift } from "./check.js";
export { describeAction, type HostPlan, type PlannedAction } from "../plan.js";

/** The format of a model file: by its extension, else by its first character. */
export function formatOfModelFile(path: string, text: string): SourceFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".toml") return "toml";
  return text.trimStart().startsWith("{") ? "json" : "toml";
}

export type LoadedModel =
  | (Extract<ParseResult, { ok: true }> & {
      /** The contents of the model's `{ file = ... }` secrets, by the path as written: render()'s `files` option. */
      readonly files: Readonly<Record<string, string>>;
      /** The issues render() reports (a missing secret), with the line of their key in the model file. */
      readonly locate: (issues: readonly ModelIssue[]) => ModelIssue[];
    })
  | Extract<ParseResult, { ok: false }>;

/**
 * Reads and validates a model file (TOML or JSON, by extension or content): issues carry the
 * line of their key; the `{ file = "..." }` secrets it references are read relative to the
 * model's directory (an unreadable one is named by render()). Throws IoError when the model
 * file itself cannot be read.
 */
export function loadModel(path: string, options: { readonly format?: SourceFormat } = {}): LoadedModel {
  const text = readText(path);
  const format = options.format ?? formatOfModelFile(path, text);
  const parsed = parseModelText(text, format);
  if (!parsed.ok) return parsed;
  const references = secretUses(parsed.model).flatMap((u) => (typeof u.ref === "object" && "file" in u.ref ? [u.ref.file] : []));
  const baseDir = path === "-" ? process.cwd() : dirname(resolve(path));
  return { ...parsed, files: readSecretFiles(references, baseDir), locate: (issues) => locateIssues(text, format, issues) };
}

/**
 * Reads a secrets file: KEY=VALUE lines, `#` comments, values bare, 'single' or "double"
 * quoted (\" \\ \$ \` escapes), as `{ env = "KEY" }` secrets read them: pass the result as
 * render()'s `env` option. Throws IoError naming the file and line of a malformed line.
 */
export function readSecretsFile(path: string): Record<string, string> {
  return parseSecretsFile(readText(path), path);
}

/**
 * Writes `tree` into `dir` as the CLI does: a temporary directory beside it renamed into place
 * (a failure leaves `dir` as it was), files this tool did not write kept, generated files the
 * tree no longer has removed, and the manifest `.novacloud-render.json` that --check reads.
 * Throws IoError.
 */
export function writeTree(tree: Tree, dir: string): void {
  writeTreeTo(tree, dir);
}

export interface CheckOptions {
  /**
   * The model the tree was rendered from and the options it was rendered with: with them the
   * result has the plan (what the drift needs on each host), and every secret value the model
   * uses is redacted from the diffs.
   */
  readonly model?: ModelInput | Model;
  readonly render?: RenderOptions;
  /** More values to redact from the diffs. */
  readonly redact?: readonly string[];
}

export interface TreeCheck extends Drift {
  /** True when `dir` holds exactly the tree (what the CLI's --check answers with exit 0). */
  readonly clean: boolean;
  /** Per host, what the drift needs there, in the playbook's order; [] without options.model. */
  readonly plan: readonly HostPlan[];
}

/**
 * What the CLI's --check reports: files changed (a unified diff each, secrets redacted; in a
 * file that holds secrets only its keys show), added and removed, and with `options.model`
 * the plan. Reads `dir` only.
 */
export function checkTree(tree: Tree, dir: string, options: CheckOptions = {}): TreeCheck {
  const model = options.model === undefined ? undefined : toModel(options.model);
  const sources = options.render ?? {};
  const known = model === undefined ? [] : secretValues(resolveSecrets(model, sources).secrets);
  const drift = compareWithDirectory(tree, dir, [...known, ...(options.redact ?? [])]);
  const clean = !hasDrift(drift);
  // The plan is made from every host (a step may wait for another host's), then narrowed to
  // the hosts the tree was rendered for.
  const { hosts, ...everyHost } = sources;
  const plan = model === undefined || clean ? [] : planChanges(model, everyHost, driftChanges(drift, dir), drift.removed);
  return { ...drift, clean, plan: hosts === undefined ? plan : plan.filter((p) => hosts.includes(p.host)) };
}
