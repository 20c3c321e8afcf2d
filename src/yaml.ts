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

export type YamlValue = string | number | boolean | readonly YamlValue[] | { readonly [key: string]: YamlValue | undefined };

/** Comment lines before a node, by path: "services.mqtt.volumes" or "services.mqtt.volumes[2]". */
export type YamlComments = Readonly<Record<string, readonly string[]>>;

export interface YamlOptions {
  /** Comment lines before a node, by path. */
  readonly comments?: YamlComments;
  /** A comment at the end of a scalar's line, by path (e.g. a linter's `noqa` for that node). */
  readonly trailing?: Readonly<Record<string, string>>;
  /** The longest line: longer strings are folded (and short mappings no longer fit on one line). */
  readonly width?: number;
}

interface Writer {
  readonly comments: YamlComments;
  readonly trailing: Readonly<Record<string, string>>;
  readonly width: number;
  readonly out: string[];
}

// Plain (unquoted) only when YAML 1.1 and 1.2 both read it back as this same string: a word
// starting with a letter, or digits followed by letters only (5s, 30s: no number has that form).
const PLAIN = /^(?:[A-Za-z_][A-Za-z0-9_./-]*|[0-9]+[a-z]+)$/;
const RESERVED = /^(?:y|n|yes|no|on|off|true|false|null|~)$/i;

function scalar(value: string | number | boolean, quoteStrings = false): string {
  if (typeof value !== "string") return String(value);
  return !quoteStrings && PLAIN.test(value) && !RESERVED.test(value) ? value : JSON.stringify(value);
}

function isScalar(value: YamlValue): value is string | number | boolean {
  return typeof value !== "object";
}

/** A short sequence of scalars fits on one line, strings quoted alike: `["a", "b c"]`. */
function flowSequence(items: readonly YamlValue[], comments: YamlComments, path: string, width: number): string | undefined {
  if (!items.every(isScalar) || items.some((_, i) => comments[`${path}[${i}]`])) return undefined;
  const text = `[${(items as (string | number | boolean)[]).map((item) => scalar(item, true)).join(", ")}]`;
  return width + text.length <= 110 ? text : undefined;
}

/** A one-entry mapping of a scalar fits on one line: `{condition: service_healthy}`. */
function flowMapping(entries: [string, YamlValue][], prefix: string, w: Writer): string | undefined {
  if (entries.length === 0) return "{}";
  if (entries.length !== 1 || !isScalar(entries[0]![1])) return undefined;
  const text = `{${scalar(entries[0]![0])}: ${scalar(entries[0]![1] as string)}}`;
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
 * `prefix value`; with a width, a script of several lines as a literal block, and a line too
 * long as a folded block (`>-`).
 */
function scalarLines(prefix: string, value: string | number | boolean, indent: string, w: Writer, tail = "", quote = false): string[] {
  const block = typeof value === "string" && w.width !== Infinity && value.includes("\n") ? literal(value, indent) : undefined;
  if (block !== undefined) return [`${prefix} |-${tail}`, ...block];
  const line = `${prefix} ${scalar(value, quote)}${tail}`;
  const fold = typeof value === "string" && line.length > w.width ? folded(value, indent, w.width) : undefined;
  return fold === undefined ? [line] : [`${prefix} >-${tail}`, ...fold];
}

function emit(value: YamlValue, indent: string, path: string, prefix: string, w: Writer): void {
  const note = (p: string, pad: string) => {
    for (const line of w.comments[p] ?? []) w.out.push(`${pad}# ${line}`.trimEnd());
  };
  if (isScalar(value)) {
    w.out.push(...scalarLines(prefix, value, indent, w, w.trailing[path] === undefined ? "" : `  # ${w.trailing[path]}`));
    return;
  }
  if (Array.isArray(value)) {
    const flow = flowSequence(value, w.comments, path, prefix.length);
    if (flow !== undefined) {
      w.out.push(`${prefix} ${flow}`);
      return;
    }
    w.out.push(prefix);
    value.forEach((item, i) => {
      note(`${path}[${i}]`, indent);
      if (isScalar(item)) w.out.push(...scalarLines(`${indent}-`, item, `${indent}  `, w, "", true));
      else sequenceItem(item, indent, `${path}[${i}]`, w);
    });
    return;
  }
  const entries = Object.entries(value).filter((e): e is [string, YamlValue] => e[1] !== undefined);
  const commented = Object.keys(w.trailing).some((p) => p.startsWith(`${path}.`));
  const flow = commented ? undefined : flowMapping(entries, prefix, w);
  if (flow !== undefined) {
    w.out.push(`${prefix} ${flow}`);
    return;
  }
  w.out.push(prefix);
  // The entries of a top-level mapping (each service) are separated by a blank line.
  const spaced = !path.includes(".") && !path.includes("[") && entries.every(([, v]) => typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0);
  entries.forEach(([key, child], i) => {
    if (spaced && i > 0) w.out.push("");
    const childPath = `${path}.${key}`;
    note(childPath, indent);
    emit(child, `${indent}  `, childPath, `${indent}${scalar(key)}:`, w);
  });
}

/**
 * A mapping as an item of a block sequence, in the compact form: its first entry follows the
 * dash (`- name: x`), the others are indented under it.
 */
function sequenceItem(item: YamlValue, indent: string, path: string, w: Writer): void {
  const entries = Array.isArray(item) ? [] : Object.entries(item as Record<string, YamlValue | undefined>).filter((e): e is [string, YamlValue] => e[1] !== undefined);
  if (entries.length === 0) {
    emit(item, `${indent}  `, path, `${indent}-`, w);
    return;
  }
  const lines: string[] = [];
  const inner: Writer = { ...w, out: lines };
  entries.forEach(([key, child], j) => {
    const childPath = `${path}.${key}`;
    // A comment on the first key goes above the dash, the others above their key.
    for (const line of w.comments[childPath] ?? []) (j === 0 ? w.out : lines).push(`${j === 0 ? indent : `${indent}  `}# ${line}`.trimEnd());
    emit(child, `${indent}    `, childPath, `${indent}  ${scalar(key)}:`, inner);
  });
  lines[0] = `${indent}- ${lines[0]!.slice(indent.length + 2)}`;
  w.out.push(...lines);
}

function writer(options: YamlOptions, header: readonly string[]): Writer {
  const out = header.length > 0 ? [...header.map((l) => `# ${l}`.trimEnd()), ""] : [];
  return { comments: options.comments ?? {}, trailing: options.trailing ?? {}, width: options.width ?? Infinity, out };
}

/**
 * YAML text of a mapping: `header` comment lines first, then each top-level key, with `comments`
 * before the nodes they name and blank lines between top-level keys and between their entries.
 */
export function toYaml(document: { readonly [key: string]: YamlValue | undefined }, comments: YamlComments = {}, header: readonly string[] = [], options: YamlOptions = {}): string {
  const w = writer({ ...options, comments }, header);
  const entries = Object.entries(document).filter((e): e is [string, YamlValue] => e[1] !== undefined);
  entries.forEach(([key, value], i) => {
    if (i > 0) w.out.push("");
    for (const line of comments[key] ?? []) w.out.push(`# ${line}`.trimEnd());
    emit(value, "  ", key, `${scalar(key)}:`, w);
  });
  return `${w.out.join("\n")}\n`;
}

/**
 * YAML text of a sequence (an Ansible playbook or task list): `header` comment lines first, then
 * each item in the compact form (`- name: ...`), a blank line between items; comments are named
 * by paths starting at the item (`[2]`, `[2].tasks[0]`).
 */
export function toYamlSequence(items: readonly YamlValue[], header: readonly string[] = [], options: YamlOptions = {}): string {
  const w = writer(options, header);
  items.forEach((item, i) => {
    if (i > 0) w.out.push("");
    for (const line of w.comments[`[${i}]`] ?? []) w.out.push(`# ${line}`.trimEnd());
    if (isScalar(item)) w.out.push(...scalarLines("-", item, "  ", w, "", true));
    else sequenceItem(item, "", `[${i}]`, w);
  });
  return `${w.out.join("\n")}\n`;
}
