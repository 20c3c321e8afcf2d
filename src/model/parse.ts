/**
 * Validation entry points: raw object (or TOML/JSON text) in, normalized model or every problem
 * out. Pure: no I/O.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { fromZodIssues, type ModelIssue } from "./errors.js";
import { normalize, type Model } from "./normalize.js";
import { crossFieldIssues, inlineSecretPaths, mqttWarnings } from "./rules.js";
import { modelSchema } from "./schema.js";
import { descriptionAt, knownKeysAt } from "./schema-walk.js";
import { locateIssues, scanJson, type SourceFormat } from "./source-lines.js";

export type { SourceFormat } from "./source-lines.js";

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
