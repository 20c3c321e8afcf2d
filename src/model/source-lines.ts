/**
 * Where a model path is written in TOML or JSON text, so a problem can be reported as
 * `file:line: path: message`. smol-toml and JSON.parse give no positions for valid documents,
 * so these scan the text; the JSON scanner also finds duplicate keys, which JSON.parse would
 * silently resolve to the last one.
 */
import { formatPath, parsePath, type ModelIssue, type PathSegment } from "./errors.js";
import { shown } from "./values.js";

export type SourceFormat = "toml" | "json";

/** The issues with the line of their key in the model text, where it can be found. */
export function locateIssues(text: string, format: SourceFormat, issues: readonly ModelIssue[], scan?: JsonScan): ModelIssue[] {
  const json = format === "json" ? (scan ?? scanJson(text)) : undefined;
  return issues.map((issue) => {
    const line = json ? jsonLineOfPath(json, issue.path) : lineOfPath(text, issue.path);
    return line === undefined ? issue : { ...issue, line };
  });
}

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

export interface JsonScan {
  /** Line of each key (and array item) by formatted path; "" is the top-level value. */
  readonly lines: ReadonlyMap<string, number>;
  readonly duplicates: readonly ModelIssue[];
}

/** Lines of the keys of a JSON text that JSON.parse accepted, and its duplicate keys. */
export function scanJson(text: string): JsonScan {
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

/**
 * Where JSON text first breaks the grammar (RFC 8259) and what was expected there. V8's
 * JSON.parse names a position for some errors only ("Unexpected token '}', ... is not valid
 * JSON" has none, and neither has "Unexpected end of JSON input"), and its wording differs
 * between Node releases; every syntax error must carry a line and column, so this finds it.
 */
export function jsonSyntaxError(text: string): { offset: number; message: string } | undefined {
  let i = 0;
  class Stop {
    constructor(readonly offset: number, readonly message: string) {}
  }
  const fail = (message: string): never => {
    throw new Stop(i, i >= text.length ? `unexpected end of input (${message})` : `unexpected ${JSON.stringify(text[i])} (${message})`);
  };
  const space = () => {
    while (i < text.length && " \t\r\n".includes(text[i]!)) i++;
  };
  const literal = (word: string) => {
    for (const ch of word) {
      if (text[i] !== ch) fail(`expected ${word}`);
      i++;
    }
  };
  const string = () => {
    if (text[i] !== '"') fail("expected a string in double quotes");
    i++;
    for (;;) {
      if (i >= text.length) fail("the string is not closed");
      const c = text.charCodeAt(i);
      if (c === 0x22) return void i++;
      if (c < 0x20) fail("a line break or control character inside a string must be escaped");
      if (c === 0x5c) {
        i++;
        if (text[i] === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) i += 5;
        else if (text[i] !== undefined && '"\\/bfnrt'.includes(text[i]!)) i++;
        else fail("not a valid escape");
      } else i++;
    }
  };
  const number = () => {
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fail("expected a value");
    i += m![0].length;
  };
  const value = (depth: number): void => {
    if (depth > 1000) fail("nested too deeply");
    space();
    const c = text[i];
    if (c === "{") {
      i++;
      space();
      if (text[i] === "}") return void i++;
      for (;;) {
        space();
        string();
        space();
        if (text[i] !== ":") fail("expected ':' after a key");
        i++;
        value(depth + 1);
        space();
        if (text[i] === ",") {
          i++;
          space();
          if (text[i] === "}") fail("expected a key after ',' (JSON allows no trailing comma)");
          continue;
        }
        if (text[i] === "}") return void i++;
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      space();
      if (text[i] === "]") return void i++;
      for (;;) {
        value(depth + 1);
        space();
        if (text[i] === ",") {
          i++;
          space();
          if (text[i] === "]") fail("expected a value after ',' (JSON allows no trailing comma)");
          continue;
        }
        if (text[i] === "]") return void i++;
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true");
    if (c === "f") return literal("false");
    if (c === "n") return literal("null");
    number();
  };
  try {
    if (text.charCodeAt(0) === 0xfeff) i++;
    value(0);
    space();
    if (i < text.length) fail("expected the end of the document");
    return undefined;
  } catch (error) {
    if (error instanceof Stop) return { offset: error.offset, message: error.message };
    throw error;
  }
}

/** 1-based line and column of a character offset. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split("\n");
  return { line: before.length, column: before[before.length - 1]!.length + 1 };
}
