/**
 * Model problems as users read them: one line each, `path: what is wrong and what was expected`,
 * all of them at once (the cdk8s pattern). Inputs under secret keys are never echoed.
 */
import type { z } from "zod";
import { SECRET_KEYS } from "./schema.js";

export type PathSegment = string | number;

export interface ModelIssue {
  /** Dotted path with [n] for array items, e.g. `hosts.node1.roles[2]`; "" for the whole model. */
  readonly path: string;
  readonly message: string;
  /** 1-based line of the key in the TOML source, where it could be found. */
  readonly line?: number;
}

export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out === "" ? seg : `.${seg}`;
  }
  return out;
}

/** `site.domain: "x" is not ...` (with `file:line: ` in front when known). */
export function formatIssue(issue: ModelIssue, file?: string): string {
  const where = file ? `${file}${issue.line ? `:${issue.line}` : ""}: ` : "";
  return `${where}${issue.path === "" ? "(model)" : issue.path}: ${issue.message}`;
}

export class ModelError extends Error {
  constructor(readonly issues: readonly ModelIssue[]) {
    super(issues.map((i) => formatIssue(i)).join("\n"));
    this.name = "ModelError";
  }
}

function typeName(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "a table";
  if (typeof value === "number") return Number.isInteger(value) ? "an integer" : "a number";
  return `a ${typeof value}`;
}

const EXPECTED_NAMES: Record<string, string> = {
  object: "a table",
  array: "an array",
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "a boolean (true or false)",
};

/** Edit distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node;
}

type KnownKeys = (path: readonly PathSegment[]) => readonly string[];

/** Turns zod issues into model issues; `input` is the raw model, to name what was found. */
export function fromZodIssues(issues: readonly z.core.$ZodIssue[], input: unknown, knownKeys: KnownKeys): ModelIssue[] {
  const out: ModelIssue[] = [];
  for (const issue of issues) {
    const path = issue.path as PathSegment[];
    const isSecret = path.some((seg) => typeof seg === "string" && SECRET_KEYS.has(seg));
    if (issue.code === "unrecognized_keys") {
      const known = knownKeys(path);
      for (const key of issue.keys) {
        const guess = closest(key, known);
        const hint = guess ? ` (did you mean "${guess}"?)` : known.length ? ` (expected one of: ${known.join(", ")})` : "";
        out.push({ path: formatPath([...path, key]), message: `unknown key "${key}"${hint}` });
      }
      continue;
    }
    if (issue.code === "invalid_type") {
      const found = valueAt(input, path);
      const expected = EXPECTED_NAMES[issue.expected] ?? issue.expected;
      out.push({
        path: formatPath(path),
        message: found === undefined ? `is required (expected ${expected})` : `expected ${expected}, got ${typeName(found)}`,
      });
      continue;
    }
    if (issue.code === "invalid_key") {
      const inner = issue.issues[0]?.message ?? "is not a valid key";
      out.push({ path: formatPath(path), message: inner.replace(/^Invalid string: /, "") });
      continue;
    }
    if (issue.code === "invalid_union") {
      // Report the branch the input was closest to (e.g. { env = "bad name" } -> the env
      // branch's message), unless every branch rejected the input's very type.
      const found = valueAt(input, path);
      const branch = (found !== null && typeof found === "object" ? issue.errors : [])
        .filter((errs) => !errs.every((e) => e.code === "invalid_type" && e.path.length === 0))
        .sort((a, b) => a.length - b.length)[0];
      if (branch && branch.length > 0) {
        const nested = branch.map((e) => ({ ...e, path: [...path, ...e.path] }) as z.core.$ZodIssue);
        out.push(...fromZodIssues(nested, input, knownKeys));
      } else {
        out.push({ path: formatPath(path), message: issue.message });
      }
      continue;
    }
    // Custom and format messages are written to be read as they are; they name the value
    // themselves, except under secret keys where no message quotes the input.
    out.push({ path: formatPath(path), message: isSecret ? "is not a valid secret" : issue.message });
  }
  return out;
}
