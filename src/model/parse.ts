/**
 * Validation entry points: raw object (or TOML/JSON text) in, normalized model or every problem
 * out. Pure: no I/O.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { fromZodIssues, type ModelIssue, type PathSegment } from "./errors.js";
import { normalize, type Model } from "./normalize.js";
import { crossFieldIssues, inlineSecretPaths } from "./rules.js";
import { modelSchema } from "./schema.js";

export type ParseResult =
  | { readonly ok: true; readonly model: Model; readonly warnings: readonly ModelIssue[] }
  | { readonly ok: false; readonly issues: readonly ModelIssue[] };

// Models that came out of parseModel: render() need not validate them again.
const validated = new WeakSet<object>();

export function isValidatedModel(value: unknown): value is Model {
  return typeof value === "object" && value !== null && validated.has(value);
}

/** Validates a model object (as parsed from TOML or JSON) and fills in every default. */
export function parseModel(input: unknown): ParseResult {
  const result = modelSchema.safeParse(input);
  if (!result.success) return { ok: false, issues: fromZodIssues(result.error.issues, input, knownKeysAt) };
  const issues = crossFieldIssues(result.data);
  if (issues.length > 0) return { ok: false, issues };
  const model = Object.freeze(normalize(result.data));
  validated.add(model);
  const warnings = inlineSecretPaths(result.data).map((path) => ({
    path,
    message: 'secret written inline in the model; reference it instead ({ env = "NAME" } or { file = "/path" })',
  }));
  return { ok: true, model, warnings };
}

export type SourceFormat = "toml" | "json";

/**
 * Parses model text. Syntax errors come back as one issue with line and column; model issues
 * get the line of their key where it can be found in TOML.
 */
export function parseModelText(text: string, format: SourceFormat): ParseResult {
  let data: unknown;
  try {
    data = format === "toml" ? parseToml(text) : JSON.parse(text);
  } catch (error) {
    return { ok: false, issues: [syntaxIssue(error, format)] };
  }
  const result = parseModel(data);
  if (result.ok || format !== "toml") return result;
  return { ok: false, issues: result.issues.map((issue) => withLine(issue, text)) };
}

function syntaxIssue(error: unknown, format: SourceFormat): ModelIssue {
  if (error instanceof TomlError) {
    const first = error.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
    return { path: "", line: error.line, message: `TOML syntax error at line ${error.line}, column ${error.column}: ${first}` };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { path: "", message: `${format.toUpperCase()} syntax error: ${message}` };
}

/**
 * Best-effort line of a dotted path in TOML text: the `key =` line inside its `[table]`, or the
 * table header itself. smol-toml gives no positions for valid documents, so this scans.
 */
export function lineOfPath(text: string, path: string): number | undefined {
  const segments = path.replace(/\[\d+\]/g, "").split(".").filter(Boolean);
  if (segments.length === 0) return undefined;
  const lines = text.split("\n");
  let table: string[] = [];
  let best: { line: number; depth: number } | undefined;
  const consider = (line: number, full: string[]) => {
    let depth = 0;
    while (depth < full.length && depth < segments.length && full[depth] === segments[depth]) depth++;
    if (depth === full.length && depth > 0 && (!best || depth > best.depth)) best = { line, depth };
  };
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(line);
    if (header) {
      table = header[1]!.split(".").map((s) => s.trim().replace(/^"|"$/g, ""));
      consider(i + 1, table);
      continue;
    }
    const key = /^("?[A-Za-z0-9_$-]+"?(?:\s*\.\s*"?[A-Za-z0-9_-]+"?)*)\s*=/.exec(line);
    if (key) consider(i + 1, [...table, ...key[1]!.split(".").map((s) => s.trim().replace(/^"|"$/g, ""))]);
  }
  return best?.line;
}

function withLine(issue: ModelIssue, text: string): ModelIssue {
  const line = lineOfPath(text, issue.path);
  return line === undefined ? issue : { ...issue, line };
}

// --- known keys at a path, for "did you mean" -------------------------------------------------

type AnyDef = { type: string; [key: string]: unknown };
const defOf = (schema: unknown): AnyDef => (schema as { _zod: { def: AnyDef } })._zod.def;

function unwrap(schema: unknown): unknown {
  let s = schema;
  for (;;) {
    const def = defOf(s);
    if (["default", "prefault", "optional", "nullable", "readonly", "catch"].includes(def.type)) s = def.innerType;
    else if (def.type === "pipe") s = def.in;
    else return s;
  }
}

function keysOf(schema: unknown): string[] {
  const def = defOf(unwrap(schema));
  if (def.type === "object") return Object.keys(def.shape as Record<string, unknown>);
  if (def.type === "union") return [...new Set((def.options as unknown[]).flatMap(keysOf))];
  return [];
}

function childOf(schema: unknown, seg: PathSegment): unknown {
  const s = unwrap(schema);
  const def = defOf(s);
  if (def.type === "object") return (def.shape as Record<string, unknown>)[String(seg)];
  if (def.type === "record") return def.valueType;
  if (def.type === "array") return def.element;
  if (def.type === "union") {
    for (const option of def.options as unknown[]) {
      const child = childOf(option, seg);
      if (child !== undefined) return child;
    }
  }
  return undefined;
}

/** Keys the schema accepts in the table at `path`. */
export function knownKeysAt(path: readonly PathSegment[]): string[] {
  let schema: unknown = modelSchema;
  for (const seg of path) {
    schema = childOf(schema, seg);
    if (schema === undefined) return [];
  }
  return keysOf(schema);
}

