/**
 * Validation entry points: raw object (or TOML/JSON text) in, normalized model or every problem
 * out. Pure: no I/O.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { formatPath, fromZodIssues, parsePath, type ModelIssue, type PathSegment } from "./errors.js";
import { normalize, type Model } from "./normalize.js";
import { crossFieldIssues, inlineSecretPaths, mqttWarnings } from "./rules.js";
import { modelSchema } from "./schema.js";
import { shown } from "./values.js";

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
  if (!result.success) return { ok: false, issues: fromZodIssues(result.error.issues, input, { knownKeys: knownKeysAt, describe: descriptionAt }) };
  const issues = crossFieldIssues(result.data, input);
  if (issues.length > 0) return { ok: false, issues };
  const model = Object.freeze(normalize(result.data));
  validated.add(model);
  const warnings = [
    ...inlineSecretPaths(result.data).map((path) => ({
      path,
      message: 'secret written inline in the model; reference it instead ({ env = "NAME" } or { file = "/path" })',
    })),
    ...mqttWarnings(result.data),
  ];
  return { ok: true, model, warnings };
}

export type SourceFormat = "toml" | "json";

/**
 * Parses model text. Syntax errors come back as one issue with line and column; model issues
 * get the line of their key where it can be found (TOML and JSON). Duplicate keys in JSON, which
 * JSON.parse would silently resolve to the last one, are problems too (TOML refuses them itself).
 */
export function parseModelText(text: string, format: SourceFormat): ParseResult {
  let data: unknown;
  try {
    data = format === "toml" ? parseToml(text) : JSON.parse(text);
  } catch (error) {
    return { ok: false, issues: [syntaxIssue(error, format, text)] };
  }
  const json = format === "json" ? scanJson(text) : undefined;
  const duplicates = json?.duplicates ?? [];
  const result = parseModel(data);
  if (result.ok && duplicates.length === 0) return result;
  const issues = [...duplicates, ...(result.ok ? [] : locateIssues(text, format, result.issues, json))];
  return { ok: false, issues };
}

/** The issues with the line of their key in the model text, where it can be found. */
export function locateIssues(text: string, format: SourceFormat, issues: readonly ModelIssue[], scan?: JsonScan): ModelIssue[] {
  const json = format === "json" ? (scan ?? scanJson(text)) : undefined;
  return issues.map((issue) => {
    const line = json ? jsonLineOfPath(json, issue.path) : lineOfPath(text, issue.path);
    return line === undefined ? issue : { ...issue, line };
  });
}

function syntaxIssue(error: unknown, format: SourceFormat, text: string): ModelIssue {
  if (error instanceof TomlError) {
    const first = error.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
    // A string that runs into the end of its line is almost always a missing closing quote.
    const atEnd = error.column > (text.split("\n")[error.line - 1] ?? "").replace(/\r$/, "").length;
    const hint = atEnd && /control character|string/i.test(first) ? " (is a closing quote missing?)" : "";
    return { path: "", line: error.line, message: `TOML syntax error at line ${error.line}, column ${error.column}: ${first}${hint}` };
  }
  const message = (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
  // V8 names the offset ("... in JSON at position 42"); people want line and column.
  const at = /\bposition (\d+)/.exec(message);
  if (format === "json" && at) {
    const offset = Number(at[1]);
    const before = text.slice(0, offset).split("\n");
    const line = before.length;
    const column = before[before.length - 1]!.length + 1;
    const what = message.replace(/\s*(?:in JSON )?at position \d+.*$/, "").replace(/\s*\(line \d+ column \d+\)$/, "");
    return { path: "", line, message: `JSON syntax error at line ${line}, column ${column}: ${what}` };
  }
  return { path: "", message: `${format.toUpperCase()} syntax error: ${message}` };
}

// --- where a path is in the source, for file:line: in front of a problem -----------------------

/**
 * A dotted TOML key at the start of `s`: bare keys, "basic" and 'literal' quoted keys. Returns
 * the segments and the rest of the line, or undefined when `s` does not start with a key.
 */
function tomlKey(s: string): { segments: string[]; rest: string } | undefined {
  const segments: string[] = [];
  let rest = s;
  for (;;) {
    rest = rest.replace(/^[ \t]+/, "");
    let m: RegExpExecArray | null;
    if ((m = /^[A-Za-z0-9_-]+/.exec(rest))) segments.push(m[0]);
    else if ((m = /^"((?:[^"\\]|\\.)*)"/.exec(rest))) {
      try {
        segments.push(JSON.parse(m[0]) as string);
      } catch {
        segments.push(m[1]!);
      }
    } else if ((m = /^'([^']*)'/.exec(rest))) segments.push(m[1]!);
    else return undefined;
    rest = rest.slice(m[0].length).replace(/^[ \t]+/, "");
    if (!rest.startsWith(".")) return { segments, rest };
    rest = rest.slice(1);
  }
}

/**
 * Best-effort line of a dotted path in TOML text: the `key =` line inside its `[table]`, or the
 * table header itself; for a path that is only a prefix of what is written (`hosts`), the first
 * table or key under it. smol-toml gives no positions for valid documents, so this scans.
 */
export function lineOfPath(text: string, path: string): number | undefined {
  const segments = parsePath(path).filter((s): s is string => typeof s === "string");
  if (segments.length === 0) return undefined;
  let table: string[] = [];
  let best: { line: number; depth: number } | undefined;
  const consider = (line: number, full: string[]) => {
    let depth = 0;
    while (depth < full.length && depth < segments.length && full[depth] === segments[depth]) depth++;
    // The line is the path or one of its parents, or (depth = the whole path) a table inside it.
    if ((depth === full.length || depth === segments.length) && depth > 0 && (!best || depth > best.depth)) best = { line, depth };
  };
  let multiline: string | undefined;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (multiline !== undefined) {
      if ((line.split(multiline).length - 1) % 2 === 1) multiline = undefined;
      continue;
    }
    const header = /^\[\[?/.exec(line);
    if (header) {
      const key = tomlKey(line.slice(header[0].length));
      if (key && /^\]/.test(key.rest)) {
        table = key.segments;
        consider(i + 1, table);
      }
      continue;
    }
    const key = tomlKey(line);
    if (key && key.rest.startsWith("=")) {
      consider(i + 1, [...table, ...key.segments]);
      for (const quotes of ['"""', "'''"]) if ((key.rest.split(quotes).length - 1) % 2 === 1) multiline = quotes;
    }
  }
  return best?.line;
}

interface JsonScan {
  /** Line of each key (and array item) by formatted path; "" is the top-level value. */
  readonly lines: ReadonlyMap<string, number>;
  readonly duplicates: readonly ModelIssue[];
}

/** Lines of the keys of a JSON text that JSON.parse accepted, and its duplicate keys. */
function scanJson(text: string): JsonScan {
  const lines = new Map<string, number>();
  const duplicates: ModelIssue[] = [];
  let i = 0;
  let line = 1;
  const space = () => {
    while (i < text.length && " \t\r\n".includes(text[i]!)) {
      if (text[i] === "\n") line++;
      i++;
    }
  };
  const string = (): string => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const note = (path: PathSegment[], at: number) => {
    const key = formatPath(path);
    if (!lines.has(key)) lines.set(key, at);
  };
  const value = (path: PathSegment[], depth: number): void => {
    if (depth > 200) throw new Error("too deep");
    space();
    const c = text[i];
    if (c === "{") {
      i++;
      const keys = new Set<string>();
      space();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        space();
        const at = line;
        const key = string();
        if (keys.has(key)) {
          duplicates.push({ path: formatPath([...path, key]), line: at, message: `duplicate key ${shown(key)} (JSON would keep only the last value; remove one)` });
        }
        keys.add(key);
        note([...path, key], at);
        space();
        i++; // ':'
        value([...path, key], depth + 1);
        space();
        if (text[i++] !== ",") return;
      }
    }
    if (c === "[") {
      i++;
      space();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        space();
        note([...path, n], line);
        value([...path, n], depth + 1);
        space();
        if (text[i++] !== ",") return;
      }
    }
    if (c === '"') {
      string();
      return;
    }
    while (i < text.length && !",]} \t\r\n".includes(text[i]!)) i++;
  };
  try {
    space();
    note([], line);
    value([], 0);
  } catch {
    // Deeper than any model: no lines beyond what was found.
  }
  return { lines, duplicates };
}

/** Line of the path in JSON, or of its nearest parent that is written. */
function jsonLineOfPath(scan: JsonScan, path: string): number | undefined {
  const segments = parsePath(path);
  for (let n = segments.length; n >= 0; n--) {
    const line = scan.lines.get(formatPath(segments.slice(0, n)));
    if (line !== undefined) return line;
  }
  return undefined;
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

function keysOf(schema: unknown, value?: unknown): string[] {
  const def = defOf(unwrap(schema));
  if (def.type === "object") return Object.keys(def.shape as Record<string, unknown>);
  if (def.type === "union") {
    let options = def.options as unknown[];
    // A discriminated union with a known discriminator value: only that variant's keys.
    const discriminator = def.discriminator as string | undefined;
    if (discriminator !== undefined && value !== null && typeof value === "object") {
      const tag = (value as Record<string, unknown>)[discriminator];
      const matching = options.filter((o) => {
        const field = (defOf(unwrap(o)).shape as Record<string, unknown> | undefined)?.[discriminator];
        const values = field === undefined ? [] : ((defOf(field).values as unknown[] | undefined) ?? []);
        return values.includes(tag);
      });
      if (matching.length > 0) options = matching;
    }
    return [...new Set(options.flatMap((o) => keysOf(o)))];
  }
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

function schemaAt(path: readonly PathSegment[]): unknown {
  let schema: unknown = modelSchema;
  for (const seg of path) {
    schema = childOf(schema, seg);
    if (schema === undefined) return undefined;
  }
  return schema;
}

/** Keys the schema accepts in the table at `path` (for a discriminated union, the variant `value` names). */
export function knownKeysAt(path: readonly PathSegment[], value?: unknown): string[] {
  const schema = schemaAt(path);
  return schema === undefined ? [] : keysOf(schema, value);
}

/** The description of the option at `path` (what the README and the JSON Schema say of it). */
export function descriptionAt(path: readonly PathSegment[]): string | undefined {
  const schema = schemaAt(path) as { description?: string } | undefined;
  return schema?.description;
}

