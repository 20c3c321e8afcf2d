/**
 * Model problems as users read them: one line each, `path: what is wrong and what was expected`,
 * all of them at once (the cdk8s pattern). Secret values are never echoed; every message is
 * one line (control, invisible and bidi characters are escaped), and a path segment that is not
 * a bare TOML key is written quoted, as TOML would (`hosts."web 1"`).
 */
import type * as z from "zod";
import { SECRET_KEYS } from "./schema.js";
import { closest, didYouMean, editDistance, escapeUnsafe, shown } from "./values.js";

export { closest, editDistance };

export type PathSegment = string | number;

export interface ModelIssue {
  /** Dotted path with [n] for array items, e.g. `hosts.node1.roles[2]`; "" for the whole model. */
  readonly path: string;
  readonly message: string;
  /** 1-based line of the key in the source (TOML or JSON), where it could be found. */
  readonly line?: number;
}

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else {
      const key = BARE_KEY.test(seg) ? seg : escapeUnsafe(JSON.stringify(seg));
      out += out === "" ? key : `.${key}`;
    }
  }
  return out;
}

/** The inverse of formatPath: `hosts."a b".roles[1]` -> ["hosts", "a b", "roles", 1]. */
export function parsePath(path: string): PathSegment[] {
  const out: PathSegment[] = [];
  let i = 0;
  while (i < path.length) {
    const ch = path[i]!;
    if (ch === ".") {
      i++;
    } else if (ch === "[") {
      const end = path.indexOf("]", i);
      if (end < 0) break;
      out.push(Number(path.slice(i + 1, end)));
      i = end + 1;
    } else if (ch === '"') {
      let j = i + 1;
      while (j < path.length && path[j] !== '"') j += path[j] === "\\" ? 2 : 1;
      try {
        out.push(JSON.parse(path.slice(i, j + 1)) as string);
      } catch {
        out.push(path.slice(i + 1, j));
      }
      i = j + 1;
    } else {
      let j = i;
      while (j < path.length && path[j] !== "." && path[j] !== "[") j++;
      out.push(path.slice(i, j));
      i = j;
    }
  }
  return out;
}

/** `site.domain: "x" is not ...` (with `file:line: ` in front when known), always one line. */
export function formatIssue(issue: ModelIssue, file?: string): string {
  const where = file ? `${file}${issue.line ? `:${issue.line}` : ""}: ` : "";
  return escapeUnsafe(`${where}${issue.path === "" ? "(model)" : issue.path}: ${issue.message}`);
}

/**
 * The brand every ModelError carries, under a registered symbol: the ESM and the CommonJS copy
 * of this package (or two versions of it) each have their own class, so `instanceof` cannot
 * tell one copy's error from the other's; ModelError.is can.
 */
const MODEL_ERROR = Symbol.for("novacloud-render.ModelError");

export class ModelError extends Error {
  readonly [MODEL_ERROR] = true;

  constructor(readonly issues: readonly ModelIssue[]) {
    super(issues.map((i) => formatIssue(i)).join("\n"));
    this.name = "ModelError";
  }

  /** True for a ModelError from any copy of this package (instanceof only knows its own copy's). */
  static is(error: unknown): error is ModelError {
    return typeof error === "object" && error !== null && (error as Record<symbol, unknown>)[MODEL_ERROR] === true;
  }
}

function typeName(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
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
  record: "a table",
  boolean: "a boolean (true or false)",
};

function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== "object") return undefined;
    if (!Object.prototype.hasOwnProperty.call(node, seg)) return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node;
}

/**
 * Whether the value at `path` is (part of) a secret: the value under a secret key, unless the
 * path goes on into its `{ env = ... }` or `{ file = ... }` reference, which names no secret.
 */
export function isSecretPath(path: readonly PathSegment[]): boolean {
  const at = path.findIndex((seg) => typeof seg === "string" && SECRET_KEYS.has(seg));
  if (at < 0) return false;
  const next = path[at + 1];
  return !(next === "env" || next === "file");
}

/** `, got a string ("x")`: scalars and dates are quoted, tables and arrays only named, secrets never shown. */
function got(value: unknown, secret: boolean): string {
  const quotable = value instanceof Date || (value !== null && typeof value !== "object");
  return `, got ${typeName(value)}${secret || !quotable ? "" : ` (${shown(value)})`}`;
}

/** Whether `message` quotes `value` (so it must not be shown for a secret). */
function mentions(message: string, value: unknown): boolean {
  if (typeof value === "string") return value !== "" && (message.includes(value) || message.includes(shown(value).slice(1, -1)));
  if (typeof value === "number" || typeof value === "bigint") return message.includes(String(value));
  return value !== undefined && value !== null && typeof value === "object";
}

/** zod's own messages start like this; ours (given with `error:`) never do. */
const ZOD_DEFAULT = /^(?:Invalid|Too (?:small|big)|Unrecognized)/;

export interface SchemaInfo {
  /** Keys the schema accepts in the table at a path (`value`, the table written there, picks a variant). */
  readonly knownKeys: (path: readonly PathSegment[], value?: unknown) => readonly string[];
  /** The description of the option at a path, if it has one. */
  readonly describe?: (path: readonly PathSegment[]) => string | undefined;
}

interface Draft {
  readonly issue: ModelIssue;
  /** Set for "is required" problems, so a misspelt key that stands for it can replace it. */
  readonly missing?: string;
}

function required(path: readonly PathSegment[], expected: string, info: SchemaInfo): string {
  const what = info.describe?.(path)?.replace(/\.$/, "");
  return `is required (expected ${expected}${what ? `; ${what}` : ""})`;
}

/** Turns zod issues into model issues; `input` is the raw model, to name what was found. */
export function fromZodIssues(
  issues: readonly z.core.$ZodIssue[],
  input: unknown,
  schema: SchemaInfo | SchemaInfo["knownKeys"],
): ModelIssue[] {
  const info: SchemaInfo = typeof schema === "function" ? { knownKeys: schema } : schema;
  const drafts = collect(issues, input, info);
  // A misspelt key is one problem, not two: `domian` is unknown *and* `domain` is missing, but
  // the "did you mean" line says both.
  const standsFor = new Set<string>();
  for (const d of drafts) if (d.missing === undefined && d.issue.message.startsWith("unknown key")) {
    const m = / \(did you mean "([^"]+)"\?\)$/.exec(d.issue.message);
    if (m) standsFor.add(`${parentOf(d.issue.path)}\u0000${m[1]}`);
  }
  const seen = new Set<string>();
  const out: ModelIssue[] = [];
  for (const d of drafts) {
    if (d.missing !== undefined && standsFor.has(d.missing)) continue;
    const issue = { ...d.issue, message: escapeUnsafe(d.issue.message) };
    const key = `${issue.path}\u0000${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(issue);
  }
  return out;
}

function parentOf(path: string): string {
  const segs = parsePath(path);
  return formatPath(segs.slice(0, -1));
}

function missingKey(path: readonly PathSegment[]): string {
  return `${formatPath(path.slice(0, -1))}\u0000${String(path[path.length - 1])}`;
}

function collect(issues: readonly z.core.$ZodIssue[], input: unknown, info: SchemaInfo): Draft[] {
  const out: Draft[] = [];
  const push = (path: readonly PathSegment[], message: string, missing = false) =>
    out.push({ issue: { path: formatPath(path), message }, ...(missing ? { missing: missingKey(path) } : {}) });

  for (const issue of issues) {
    const path = issue.path as PathSegment[];
    const secret = isSecretPath(path);
    const found = valueAt(input, path);

    if (issue.code === "unrecognized_keys") {
      const known = info.knownKeys(path, found);
      const written = found !== null && typeof found === "object" ? Object.keys(found) : [];
      for (const key of issue.keys) {
        if (known.includes(key)) {
          // A key of another variant of a union: { env = ..., file = ... }.
          const others = written.filter((k) => k !== key && known.includes(k) && !issue.keys.includes(k));
          push([...path, key], `key ${shown(key)} cannot be combined with ${others.map((k) => JSON.stringify(k)).join(", ") || "the other keys"} here (expected just one of: ${known.join(", ")})`);
          continue;
        }
        const guess = closest(key, known);
        const hint = guess ? ` (did you mean "${guess}"?)` : known.length ? ` (expected one of: ${known.join(", ")})` : "";
        push([...path, key], `unknown key ${shown(key)}${hint}`);
      }
      continue;
    }

    if (issue.code === "invalid_type") {
      const expected = EXPECTED_NAMES[issue.expected] ?? issue.expected;
      if (found === undefined) push(path, required(path, expected, info), true);
      else if (!ZOD_DEFAULT.test(issue.message) && !(secret && mentions(issue.message, found))) {
        // Our messages name the value ("x" is not ...); one that only says what was expected
        // gets what was found added.
        push(path, `${issue.message}${/^expected /.test(issue.message) ? got(found, secret) : ""}`);
      }
      else if (path.length === 2 && path[0] === "hosts" && (issue.expected === "object" || issue.expected === "record")) {
        // `[hosts]` written instead of `[hosts.NAME]`: its keys look like hosts.
        push(path, `a host must be a table ([${formatPath(path)}] with address and roles)${got(found, false)}`);
      } else push(path, `expected ${expected}${got(found, secret)}`);
      continue;
    }

    if (issue.code === "invalid_key") {
      const inner = issue.issues[0]?.message ?? "is not a valid key";
      push(path, inner.replace(/^Invalid string: /, ""));
      continue;
    }

    if (issue.code === "invalid_union") {
      const note = (issue as { note?: string }).note;
      if (note === "No matching discriminator") {
        // A table with a `mode = ...` (or other discriminator) that names no known variant.
        const options = ((issue as { options?: unknown[] }).options ?? []).map(String);
        const list = options.map((o) => JSON.stringify(o)).join(" or ");
        if (found === undefined) push(path, `is required (expected ${list})`, true);
        else push(path, `${shown(found)} is not one of ${list}${didYouMean(found, options)}`);
        continue;
      }
      // Report the branch the input was closest to (e.g. { env = "bad name" } -> the env
      // branch's message), unless every branch rejected the input's very type.
      const branch = (found !== null && typeof found === "object" ? issue.errors : [])
        .filter((errs) => !errs.every((e) => e.code === "invalid_type" && e.path.length === 0))
        .sort((a, b) => a.length - b.length)[0];
      if (found !== null && typeof found === "object" && !Array.isArray(found) && Object.keys(found).length === 0) {
        push(path, `${issue.message}, got an empty table`);
      } else if (branch && branch.length > 0) {
        const nested = branch.map((e) => ({ ...e, path: [...path, ...e.path] }) as z.core.$ZodIssue);
        out.push(...collect(nested, input, info));
      } else if (found === undefined) {
        push(path, `is required (${issue.message})`, true);
      } else if (!ZOD_DEFAULT.test(issue.message) && /^expected /.test(issue.message)) {
        push(path, `${issue.message}${got(found, secret)}`);
      } else {
        push(path, secret && mentions(issue.message, found) ? "is not a valid secret" : issue.message);
      }
      continue;
    }

    if (issue.code === "invalid_value" && ZOD_DEFAULT.test(issue.message)) {
      const values = issue.values.map((v) => JSON.stringify(v));
      const what = secret ? "this value" : shown(found);
      push(path, `${what} is not ${values.length === 1 ? values[0] : `one of ${values.join(", ")}`}${secret ? "" : didYouMean(found, issue.values.map(String))}`);
      continue;
    }

    // `{ env = "..." }` holding something no variable is named like (blanks, $, punctuation) may
    // be the secret itself pasted in the wrong place: name the problem, not the value.
    const envRef = path.length >= 2 && path[path.length - 1] === "env" && SECRET_KEYS.has(String(path[path.length - 2]));
    if (envRef && typeof found === "string" && !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(found)) {
      push(path, issue.message.replace(shown(found), "this value (not shown: it may be the secret itself)"));
      continue;
    }
    // Custom and format messages are written to be read as they are; they name the value
    // themselves, except under secret keys where no message quotes the input.
    push(path, secret && mentions(issue.message, found) ? "is not a valid secret" : issue.message);
  }
  return out;
}
