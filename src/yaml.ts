/**
 * The one YAML serializer: a typed object in, YAML text out, with comments where a reader needs
 * them. It writes the subset Compose files use (block mappings, sequences, strings, numbers,
 * booleans) and quotes every string that YAML could read as anything else, as a JSON string
 * (a valid YAML double-quoted scalar). A full YAML library was measured and rejected: `yaml`
 * adds about 50 ms to `import("novacloud-render")` for what these forty lines do.
 */

export type YamlValue = string | number | boolean | readonly YamlValue[] | { readonly [key: string]: YamlValue | undefined };

/** Comment lines before a node, by path: "services.mqtt.volumes" or "services.mqtt.volumes[2]". */
export type YamlComments = Readonly<Record<string, readonly string[]>>;

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
function flowMapping(entries: [string, YamlValue][]): string | undefined {
  if (entries.length === 0) return "{}";
  if (entries.length === 1 && isScalar(entries[0]![1])) return `{${scalar(entries[0]![0])}: ${scalar(entries[0]![1] as string)}}`;
  return undefined;
}

function emit(value: YamlValue, indent: string, comments: YamlComments, path: string, out: string[], prefix: string): void {
  const note = (p: string, pad: string) => {
    for (const line of comments[p] ?? []) out.push(`${pad}# ${line}`.trimEnd());
  };
  if (isScalar(value)) {
    out.push(`${prefix} ${scalar(value)}`);
    return;
  }
  if (Array.isArray(value)) {
    const flow = flowSequence(value, comments, path, prefix.length);
    if (flow !== undefined) {
      out.push(`${prefix} ${flow}`);
      return;
    }
    out.push(prefix);
    value.forEach((item, i) => {
      note(`${path}[${i}]`, indent);
      if (isScalar(item)) out.push(`${indent}- ${scalar(item, true)}`);
      else emit(item, `${indent}  `, comments, `${path}[${i}]`, out, `${indent}-`);
    });
    return;
  }
  const entries = Object.entries(value).filter((e): e is [string, YamlValue] => e[1] !== undefined);
  const flow = flowMapping(entries);
  if (flow !== undefined) {
    out.push(`${prefix} ${flow}`);
    return;
  }
  out.push(prefix);
  // The entries of a top-level mapping (each service) are separated by a blank line.
  const spaced = !path.includes(".") && entries.every(([, v]) => typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0);
  entries.forEach(([key, child], i) => {
    if (spaced && i > 0) out.push("");
    const childPath = `${path}.${key}`;
    note(childPath, indent);
    emit(child, `${indent}  `, comments, childPath, out, `${indent}${scalar(key)}:`);
  });
}

/**
 * YAML text of a mapping: `header` comment lines first, then each top-level key, with `comments`
 * before the nodes they name and blank lines between top-level keys and between their entries.
 */
export function toYaml(document: { readonly [key: string]: YamlValue | undefined }, comments: YamlComments = {}, header: readonly string[] = []): string {
  const out: string[] = header.length > 0 ? [...header.map((l) => `# ${l}`.trimEnd()), ""] : [];
  const entries = Object.entries(document).filter((e): e is [string, YamlValue] => e[1] !== undefined);
  entries.forEach(([key, value], i) => {
    if (i > 0) out.push("");
    for (const line of comments[key] ?? []) out.push(`# ${line}`.trimEnd());
    emit(value, "  ", comments, key, out, `${scalar(key)}:`);
  });
  return `${out.join("\n")}\n`;
}
