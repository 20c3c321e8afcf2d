/**
 * The one YAML serializer: a typed object in, YAML text out, with comments where a reader needs
 * them. It writes the subset Compose and Ansible files use (block mappings, sequences, strings,
 * numbers, booleans) and quotes every string that YAML could read as anything else, as a JSON
 * string (a valid YAML double-quoted scalar). With a `width` (Ansible files: yamllint, which
 * ansible-lint runs, allows 160 characters), a string too long for its line becomes a folded
 * block scalar broken at single spaces, which YAML reads back as the same string. A full YAML
 * library was measured and rejected: `yaml` adds about 50 ms to `import("novacloud-render")`
 * for what these lines do.
 */

/** A scalar with a comment at the end of its line (e.g. a linter's `noqa` for that node). */
export class Commented {
  constructor(
    readonly value: string | number | boolean,
    readonly comment: string,
  ) {}
}

export type YamlValue = string | number | boolean | Commented | readonly YamlValue[] | { readonly [key: string]: YamlValue | undefined };

/** Comment lines before a node, by path: "services.mqtt.volumes" or "services.mqtt.volumes[2]". */
export type YamlComments = Readonly<Record<string, readonly string[]>>;

export interface YamlOptions {
  /** Comment lines before a node, by path. */
  readonly comments?: YamlComments;
  /** The longest line: longer strings are folded (and short mappings no longer fit on one line). */
  readonly width?: number;
}

interface Writer {
  readonly comments: YamlComments;
  /** Whether any node has a comment before it: without, no path is built (most of the time it takes). */
  readonly annotated: boolean;
  readonly width: number;
  readonly out: string[];
}

// Plain (unquoted) only when YAML 1.1 and 1.2 both read it back as this same string: a word
// starting with a letter, or digits followed by letters only (5s, 30s: no number has that form),
// and no reserved word. The test was two regular expressions per string and key, the largest
// self time of a warm render (--cpu-prof); isPlain below is the same test in one pass:
//   /^(?:[A-Za-z_][A-Za-z0-9_./-]*|[0-9]+[a-z]+)$/ and not /^(?:y|n|yes|no|on|off|true|false|null|~)$/i
const RESERVED = new Set(["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"]);

const isLetter = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const isDigit = (c: number) => c >= 48 && c <= 57;

function isPlain(text: string): boolean {
  const n = text.length;
  if (n === 0) return false;
  const first = text.charCodeAt(0);
  if (isLetter(first) || first === 95) {
    for (let i = 1; i < n; i++) {
      const c = text.charCodeAt(i);
      // letters, digits, _ . / -
      if (!(isLetter(c) || isDigit(c) || c === 95 || c === 46 || c === 47 || c === 45)) return false;
    }
    return n > 5 || !RESERVED.has(text.toLowerCase());
  }
  if (!isDigit(first)) return false;
  let i = 1;
  while (i < n && isDigit(text.charCodeAt(i))) i++;
  if (i === n) return false;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 97 || c > 122) return false;
  }
  return true;
}

// What JSON.stringify escapes in a string: without any, it only adds the quotes, and adding
// them here costs a native scan instead of a copy (JSON.stringify was most of scalar()'s samples).
// Any surrogate goes the long way (JSON.stringify escapes lone ones only).
const ESCAPED_IN_JSON = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify(text), a valid YAML double-quoted scalar. */
function quoted(text: string): string {
  return ESCAPED_IN_JSON.test(text) ? JSON.stringify(text) : `"${text}"`;
}

function scalar(value: string | number | boolean, quoteStrings = false): string {
  if (typeof value !== "string") return String(value);
  if (quoteStrings) return quoted(value);
  return isPlain(value) ? value : quoted(value);
}

type Scalar = string | number | boolean | Commented;

function isScalar(value: YamlValue): value is Scalar {
  return typeof value !== "object" || value instanceof Commented;
}

/** A short sequence of scalars fits on one line, strings quoted alike: `["a", "b c"]`. */
function flowSequence(items: readonly YamlValue[], w: Writer, path: string, width: number): string | undefined {
  for (const item of items) if (typeof item === "object") return undefined;
  if (w.annotated && items.some((_, i) => w.comments[`${path}[${i}]`])) return undefined;
  let text = "[";
  for (let i = 0; i < items.length; i++) {
    text += `${i > 0 ? ", " : ""}${scalar(items[i] as string | number | boolean, true)}`;
    if (width + text.length + 1 > 110) return undefined; // too long already
  }
  return width + text.length + 1 <= 110 ? `${text}]` : undefined;
}

type Mapping = { readonly [key: string]: YamlValue | undefined };

/**
 * The keys of a mapping whose value is not undefined (undefined means "no such key"). Keys only:
 * [key, value] pairs were an array per entry, and the writer's allocations are most of a warm
 * render's garbage (HeapProfiler sampling).
 */
function definedKeys(value: Mapping): string[] {
  const keys = Object.keys(value);
  for (const key of keys) if (value[key] === undefined) return keys.filter((k) => value[k] !== undefined);
  return keys;
}

// Indentation strings, made once per depth rather than once per line.
const SPACES: string[] = [];
const spaces = (n: number): string => (SPACES[n] ??= " ".repeat(n));

/** True when `value` has an own enumerable key (Object.keys(value).length > 0, without the array). */
function hasKeys(value: object): boolean {
  for (const key in value) if (Object.prototype.hasOwnProperty.call(value, key)) return true;
  return false;
}

/** A one-entry mapping of a scalar fits on one line: `{condition: service_healthy}`. */
function flowMapping(value: Mapping, keys: readonly string[], prefix: string, w: Writer): string | undefined {
  if (keys.length === 0) return "{}";
  const only = keys.length === 1 ? value[keys[0]!] : undefined;
  if (only === undefined || typeof only === "object") return undefined;
  const text = `{${scalar(keys[0]!)}: ${scalar(only)}}`;
  return prefix.length + 1 + text.length <= w.width ? text : undefined;
}

/**
 * The lines of a folded block scalar (`>-`) holding `text`, broken at single spaces so that
 * YAML's folding (a line break between two lines becomes one space) gives back exactly `text`;
 * undefined when it cannot (line breaks, leading or trailing blanks).
 */
function folded(text: string, indent: string, width: number): string[] | undefined {
  if (/[\n\r\t]/.test(text) || text !== text.trim()) return undefined;
  const room = width - indent.length;
  const lines: string[] = [];
  let line = "";
  let i = 0;
  while (i < text.length) {
    // A word runs to the next single space (a run of blanks stays inside a line).
    let end = i;
    while (end < text.length && !(text[end] === " " && text[end - 1] !== " " && text[end + 1] !== " " && end + 1 < text.length)) end++;
    const word = text.slice(i, end);
    if (line === "") line = word;
    else if (line.length + 1 + word.length <= room) line = `${line} ${word}`;
    else {
      lines.push(line);
      line = word;
    }
    i = end + 1;
  }
  lines.push(line);
  return lines.map((l) => `${indent}${l}`);
}

/**
 * A script of several lines as a literal block scalar (`|-`), when YAML reads it back the same:
 * no blank at the end of a line or the start of the first, no tab, no carriage return.
 */
function literal(text: string, indent: string): string[] | undefined {
  const lines = text.split("\n");
  if (/[\r\t]/.test(text) || /^\s/.test(text) || lines.some((l) => l === "" || /\s$/.test(l))) return undefined;
  return lines.map((l) => `${indent}${l}`);
}

/**
 * Writes `prefix value`; with a width, a script of several lines as a literal block, and a line
 * too long as a folded block (`>-`).
 */
function writeScalar(prefix: string, scalarValue: Scalar, indent: string, w: Writer, quote = false): void {
  const value = scalarValue instanceof Commented ? scalarValue.value : scalarValue;
  const tail = scalarValue instanceof Commented ? `  # ${scalarValue.comment}` : "";
  const block = typeof value === "string" && w.width !== Infinity && value.includes("\n") ? literal(value, indent) : undefined;
  if (block !== undefined) {
    w.out.push(`${prefix} |-${tail}`, ...block);
    return;
  }
  const line = `${prefix} ${scalar(value, quote)}${tail}`;
  const fold = typeof value === "string" && line.length > w.width ? folded(value, indent, w.width) : undefined;
  if (fold === undefined) w.out.push(line);
  else w.out.push(`${prefix} >-${tail}`, ...fold);
}

/** The path of a mapping's entry, when comments may name it (else no string is made). */
function keyPath(w: Writer, path: string, key: string): string {
  return w.annotated ? `${path}.${key}` : "";
}

/** The path of a sequence's item, when comments may name it. */
function itemPath(w: Writer, path: string, i: number): string {
  return w.annotated ? `${path}[${i}]` : "";
}

/** The comment lines before the node at `path`. */
function note(w: Writer, path: string, pad: string): void {
  if (!w.annotated) return;
  const lines = w.comments[path];
  if (lines !== undefined) for (const line of lines) w.out.push(`${pad}# ${line}`.trimEnd());
}

function emit(value: YamlValue, indent: string, path: string, prefix: string, w: Writer): void {
  if (isScalar(value)) {
    writeScalar(prefix, value, indent, w);
    return;
  }
  if (Array.isArray(value)) {
    const flow = flowSequence(value, w, path, prefix.length);
    if (flow !== undefined) {
      w.out.push(`${prefix} ${flow}`);
      return;
    }
    w.out.push(prefix);
    const inner = spaces(indent.length + 2);
    for (let i = 0; i < value.length; i++) {
      const item = value[i] as YamlValue;
      const at = itemPath(w, path, i);
      note(w, at, indent);
      if (isScalar(item)) writeScalar(`${indent}-`, item, inner, w, true);
      else sequenceItem(item, indent, at, w);
    }
    return;
  }
  const mapping = value as Mapping;
  const keys = definedKeys(mapping);
  const flow = flowMapping(mapping, keys, prefix, w);
  if (flow !== undefined) {
    w.out.push(`${prefix} ${flow}`);
    return;
  }
  w.out.push(prefix);
  // The entries of a top-level mapping (each service) are separated by a blank line.
  const spaced =
    !path.includes(".") &&
    !path.includes("[") &&
    keys.every((k) => {
      const v = mapping[k]!;
      return typeof v === "object" && !Array.isArray(v) && hasKeys(v);
    });
  const inner = spaces(indent.length + 2);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (spaced && i > 0) w.out.push("");
    const at = keyPath(w, path, key);
    note(w, at, indent);
    emit(mapping[key]!, inner, at, `${indent}${scalar(key)}:`, w);
  }
}

/**
 * A mapping as an item of a block sequence, in the compact form: its first entry follows the
 * dash (`- name: x`), the others are indented under it. The first entry's first line starts
 * with its prefix (a scalar, `key:` of a block, or a flow collection), so giving that prefix
 * the dash writes the same line as indenting it and replacing the indentation afterwards.
 */
function sequenceItem(item: YamlValue, indent: string, path: string, w: Writer): void {
  const mapping = item as Mapping;
  const keys = Array.isArray(item) ? [] : definedKeys(mapping);
  if (keys.length === 0) {
    emit(item, spaces(indent.length + 2), path, `${indent}-`, w);
    return;
  }
  // A comment on the first key goes above the dash, the others above their key.
  const inner = spaces(indent.length + 2);
  const nested = spaces(indent.length + 4);
  for (let j = 0; j < keys.length; j++) {
    const key = keys[j]!;
    const at = keyPath(w, path, key);
    note(w, at, j === 0 ? indent : inner);
    emit(mapping[key]!, nested, at, `${j === 0 ? `${indent}- ` : inner}${scalar(key)}:`, w);
  }
}

function writer(options: YamlOptions, header: readonly string[]): Writer {
  const out = header.length > 0 ? [...header.map((l) => `# ${l}`.trimEnd()), ""] : [];
  const comments = options.comments ?? {};
  return { comments, annotated: Object.keys(comments).length > 0, width: options.width ?? Infinity, out };
}

/**
 * YAML text of a mapping: `header` comment lines first, then each top-level key, with `comments`
 * before the nodes they name and blank lines between top-level keys and between their entries.
 */
export function toYaml(document: { readonly [key: string]: YamlValue | undefined }, comments: YamlComments = {}, header: readonly string[] = [], options: YamlOptions = {}): string {
  const w = writer({ ...options, comments }, header);
  const keys = definedKeys(document);
  keys.forEach((key, i) => {
    if (i > 0) w.out.push("");
    note(w, key, "");
    emit(document[key]!, "  ", key, `${scalar(key)}:`, w);
  });
  return `${w.out.join("\n")}\n`;
}

/**
 * YAML text of a sequence (an Ansible playbook or task list): `header` comment lines first, then
 * each item in the compact form (`- name: ...`), a blank line between items; comments are named
 * by paths starting at the item (`[2]`, `[2].tasks[0]`), a comment at the end of a line is a
 * Commented scalar.
 */
export function toYamlSequence(items: readonly YamlValue[], header: readonly string[] = [], options: YamlOptions = {}): string {
  const w = writer(options, header);
  items.forEach((item, i) => {
    if (i > 0) w.out.push("");
    note(w, `[${i}]`, "");
    if (isScalar(item)) writeScalar("-", item, "  ", w, true);
    else sequenceItem(item, "", `[${i}]`, w);
  });
  return `${w.out.join("\n")}\n`;
}
