/**
 * Validation entry points: raw object (or TOML/JSON text) in, normalized model or every problem
 * out. Pure: no I/O.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { fromZodIssues, type ModelIssue } from "./errors.js";
import { normalize, type Model } from "./normalize.js";
import { crossFieldIssues, inlineSecretPaths, mqttWarnings, redisWarnings } from "./rules.js";
import { modelSchema, type ModelInput } from "./schema.js";
import { deepFreeze, firstDifference, looksLikeModel } from "./seal.js";
import { descriptionAt, knownKeysAt } from "./schema-walk.js";
import { jsonSyntaxError, lineAndColumn, locateIssues, scanJson, type SourceFormat } from "./source-lines.js";

export type { SourceFormat } from "./source-lines.js";

export type ParseResult =
  | { readonly ok: true; readonly model: Model; readonly warnings: readonly ModelIssue[] }
  | { readonly ok: false; readonly issues: readonly ModelIssue[] };

// Models that came out of this copy's parseModel: deep-frozen, so render() can trust them as
// they are. Any other object, a copy of a model included, is validated (src/model/seal.ts).
const validated = new WeakSet<object>();

export function isValidatedModel(value: unknown): value is Model {
  return typeof value === "object" && value !== null && validated.has(value);
}

/**
 * Validates a model object (as parsed from TOML or JSON) and fills in every default. The model
 * it returns is deep-frozen and keeps a frozen copy of `input` (its `input`), from which a copy
 * of the model is validated again. Given a model (or a copy of one), it validates the model's
 * `input`, never the normalized values: defaults filled in are not what the author wrote.
 */
export function parseModel(input: unknown): ParseResult {
  if (isValidatedModel(input)) return { ok: true, model: input, warnings: warningsOf(input.input) };
  if (looksLikeModel(input)) return revalidated(input);
  return validate(input);
}

/** A copy of a model: valid when its input is, and when it was not edited after validation. */
function revalidated(copy: { readonly input: unknown }): ParseResult {
  const result = validate(copy.input);
  if (!result.ok) return result;
  const at = firstDifference(copy, result.model);
  if (at === undefined) return result;
  return {
    ok: false,
    issues: [{ path: at === "(model)" ? "" : at, message: "differs from what the model's input validates to: a validated model is read-only; change its input and validate that" }],
  };
}

function warningsOf(input: unknown): ModelIssue[] {
  const result = modelSchema().safeParse(input);
  return result.success ? warningsFor(result.data) : [];
}

function warningsFor(data: ParsedModelData): ModelIssue[] {
  return [
    ...inlineSecretPaths(data).map((path) => ({
      path,
      message: 'secret written inline in the model; reference it instead ({ env = "NAME" } or { file = "/path" })',
    })),
    ...mqttWarnings(data),
    ...redisWarnings(data),
  ];
}

type ParsedModelData = Parameters<typeof mqttWarnings>[0] & Parameters<typeof inlineSecretPaths>[0];

function validate(input: unknown): ParseResult {
  const result = modelSchema().safeParse(input);
  if (!result.success) return { ok: false, issues: fromZodIssues(result.error.issues, input, { knownKeys: knownKeysAt, describe: descriptionAt }) };
  const issues = crossFieldIssues(result.data, input);
  if (issues.length > 0) return { ok: false, issues };
  // The caller's object stays theirs (and mutable): the model keeps a frozen copy of it.
  const model: Model = deepFreeze({ ...normalize(result.data), input: structuredClone(input) as ModelInput });
  validated.add(model);
  return { ok: true, model, warnings: warningsFor(result.data) };
}

/**
 * Parses model text. Syntax errors come back as one issue with line and column; model issues
 * get the line of their key where it can be found (TOML and JSON). Duplicate keys in JSON, which
 * JSON.parse would silently resolve to the last one, are problems too (TOML refuses them itself).
 */
export function parseModelText(text: string, format: SourceFormat): ParseResult {
  // Callers without types (JavaScript, a format read from a file name) can pass anything here.
  if (format !== "toml" && format !== "json") {
    return { ok: false, issues: [{ path: "", message: `unknown model format ${JSON.stringify(String(format))} (expected "toml" or "json")` }] };
  }
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
  // JSON: our own scan names the place (V8 gives no position for some errors).
  const found = format === "json" ? jsonSyntaxError(text) : undefined;
  if (found !== undefined) {
    const { line, column } = lineAndColumn(text, found.offset);
    return { path: "", line, message: `JSON syntax error at line ${line}, column ${column}: ${found.message}` };
  }
  const message = (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
  return { path: "", message: `${format.toUpperCase()} syntax error: ${message}` };
}
