/**
 * --check: what differs between a rendered tree and a directory, as unified diffs with secrets
 * redacted, and the plan of what that drift requires on the hosts (src/plan.ts). Files this tool
 * did not generate are ignored; files it generated before and would not generate now are
 * reported as removed.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { formatPatch, structuredPatch } from "diff";
import { describeAction, type FileChange, type HostPlan } from "../plan.js";
import { maskPatch, redact } from "../redact.js";
import type { Tree } from "../tree.js";
import { readManifest, type Manifest } from "./files.js";

export interface Drift {
  /** Files the model renders that the directory lacks. */
  readonly added: readonly string[];
  /** Files generated before that the model no longer renders. */
  readonly removed: readonly string[];
  /** Files whose content or mode differs, with a redacted unified diff. */
  readonly changed: readonly { path: string; diff: string; mode?: { expected: string; actual: string } }[];
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0");

/**
 * True when the file on disk may hold a secret because it did when it was written: a password
 * taken out of the model (HAProxy's stats password, Redis's) is still in the old file. For a
 * manifest from before the flag, a file others could not read counts as one.
 */
function heldSecret(entry: Manifest["files"][number] | undefined): boolean {
  if (entry === undefined) return false;
  return entry.secret ?? (Number.parseInt(entry.mode, 8) & 0o004) === 0;
}

/**
 * Differences between `tree` and `outDir`. Diffs of files that hold secrets, now or on disk,
 * show keys only (maskPatch); every diff is then redacted of the current `secrets`' values.
 */
export function compareWithDirectory(tree: Tree, outDir: string, secrets: readonly string[]): Drift {
  const manifest = existsSync(outDir) ? readManifest(outDir) : undefined;
  const written = new Map((manifest?.files ?? []).map((f) => [f.path, f] as const));
  const added: string[] = [];
  const changed: { path: string; diff: string; mode?: { expected: string; actual: string } }[] = [];
  for (const [path, file] of tree) {
    const full = join(outDir, path);
    if (!existsSync(full)) {
      added.push(path);
      continue;
    }
    const actual = readFileSync(full, "utf8");
    const actualMode = octal(statSync(full).mode);
    const modeDiffers = actualMode !== octal(file.mode);
    if (actual === file.content && !modeDiffers) continue;
    let diff = "";
    if (actual !== file.content) {
      const patch = structuredPatch(`a/${path}`, `b/${path}`, actual, file.content, "on disk", "rendered", { context: 3 });
      diff = redact(formatPatch(file.secret || heldSecret(written.get(path)) ? maskPatch(patch, file.content) : patch), secrets);
    }
    changed.push({ path, diff, ...(modeDiffers ? { mode: { expected: octal(file.mode), actual: actualMode } } : {}) });
  }
  const removed = (manifest?.files ?? []).map((f) => f.path).filter((path) => !tree.has(path) && existsSync(join(outDir, path)));
  return { added, removed, changed };
}

/**
 * The changed and added files with their content on disk, for the plan (which reads settings
 * from it and prints only names and paths, never the content).
 */
export function driftChanges(drift: Drift, outDir: string): FileChange[] {
  return [...drift.changed.map((c) => ({ path: c.path, before: readFileSync(join(outDir, c.path), "utf8") })), ...drift.added.map((path) => ({ path, before: undefined }))];
}

/**
 * The plan for a person: hosts with the same actions together ("app1, app2: reload ..."), each
 * host's actions in the order the playbook runs them.
 */
export function formatPlan(plans: readonly HostPlan[]): string {
  if (plans.length === 0) return "plan: nothing to do on the hosts\n";
  const groups = new Map<string, { hosts: string[]; lines: string[] }>();
  for (const plan of plans) {
    const lines = plan.firstDeployment
      ? ["first deployment: the playbook runs every step"]
      : [
          ...plan.actions.map(describeAction),
          ...plan.removed.map((path) => `no longer rendered: ${path} (the playbook leaves it on the host: remove it by hand)`),
        ];
    if (lines.length === 0) lines.push("nothing (only files that need no action changed)");
    const key = JSON.stringify(lines);
    const group = groups.get(key) ?? { hosts: [], lines };
    group.hosts.push(plan.host);
    groups.set(key, group);
  }
  const out = ["plan: what the changes need on each host, in the order the playbook (out/ansible/) runs it"];
  for (const { hosts, lines } of groups.values()) out.push(`  ${hosts.join(", ")}:`, ...lines.map((l) => `    ${l}`));
  return `${out.join("\n")}\n`;
}

export function hasDrift(drift: Drift): boolean {
  return drift.added.length + drift.removed.length + drift.changed.length > 0;
}

const COLORS = { red: "\u001b[31m", green: "\u001b[32m", cyan: "\u001b[36m", bold: "\u001b[1m", reset: "\u001b[0m" };

function colorize(diff: string): string {
  return diff
    .split("\n")
    .map((line) => {
      if (line.startsWith("+++") || line.startsWith("---")) return `${COLORS.bold}${line}${COLORS.reset}`;
      if (line.startsWith("+")) return `${COLORS.green}${line}${COLORS.reset}`;
      if (line.startsWith("-")) return `${COLORS.red}${line}${COLORS.reset}`;
      if (line.startsWith("@@")) return `${COLORS.cyan}${line}${COLORS.reset}`;
      return line;
    })
    .join("\n");
}

/** The human report: diffs first, then added/removed lists and a one-line summary. */
export function formatDrift(drift: Drift, outDir: string, color: boolean): string {
  const parts: string[] = [];
  for (const change of drift.changed) {
    if (change.diff) parts.push(color ? colorize(change.diff) : change.diff);
    if (change.mode) parts.push(`mode of ${change.path}: ${change.mode.actual} on disk, ${change.mode.expected} rendered\n`);
  }
  for (const path of drift.added) parts.push(`added: ${path} (rendered, missing from ${outDir})\n`);
  for (const path of drift.removed) parts.push(`removed: ${path} (generated before, no longer rendered)\n`);
  const total = drift.changed.length + drift.added.length + drift.removed.length;
  parts.push(
    total === 0
      ? `${outDir} matches the model\n`
      : `${outDir} drifted from the model: ${drift.changed.length} changed, ${drift.added.length} added, ${drift.removed.length} removed\n`,
  );
  return parts.join("");
}
