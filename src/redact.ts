/**
 * What of a secret may be shown to people (diffs, errors, test failures): nothing. Two walls:
 *
 * 1. By structure. A file the renderer marks secret (TreeFile.secret) never shows a value in a
 *    diff: every line keeps only its leading key and the rest becomes ********, on both sides
 *    (maskPatch). That covers what the second wall cannot know: a rotated password still in
 *    the file on disk, or one typed into it by hand.
 * 2. By value. Every encoding of every current secret the quoting functions can produce
 *    (quoted for an env file, percent-encoded in a URL, escaped for .pgpass, ...) is replaced
 *    in any text shown (redact): errors, and diffs of files that are not secret.
 */
import { QUOTE_FILTERS } from "./quote.js";

export const REDACTED = "********";

const QUOTES = /^['"]|['"]$/g;

/** The forms a secret value can take inside rendered files, longest first. */
export function secretForms(value: string): string[] {
  const forms = new Set<string>([value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)]);
  for (const quote of Object.values(QUOTE_FILTERS)) {
    try {
      forms.add(quote(value).replace(QUOTES, ""));
    } catch {
      // this target refuses the value; it cannot appear in that form
    }
  }
  return [...forms].filter((f) => f.length >= 3).sort((a, b) => b.length - a.length);
}

/** Replaces every form of every secret in `text` with ********. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const form of secrets.flatMap(secretForms).sort((a, b) => b.length - a.length)) {
    out = out.split(form).join(REDACTED);
  }
  return out;
}

/**
 * The leading key of a line, with its indentation and separator: `DB_PASSWORD=`,
 * `requirepass `, `    stats `, `replicator:` (a .pgpass host or a password-file user), `# `,
 * `-- `. Empty when the line starts with nothing key-shaped.
 */
export function lineKey(line: string): string {
  return /^\s*(?:#+ ?|-- ?|;+ ?|[A-Za-z0-9_.*-]{1,64}(?:\s*[=:]\s*|\s+))/.exec(line)?.[0] ?? "";
}

/**
 * A line of a secret-bearing file as it may be shown: its leading key, when the rendered file
 * has a line with that key (`keys`), then ********. Blank lines stay blank. A key found only in
 * a hand-edited line is masked too: what someone typed first on a line may itself be a secret.
 */
export function maskLine(line: string, keys: ReadonlySet<string>): string {
  if (line.trim() === "") return line;
  const key = lineKey(line);
  const shown = key !== "" && keys.has(key.trim()) ? key : (/^\s*/.exec(line)?.[0] ?? "");
  return `${shown}${REDACTED}`;
}

/** The leading keys of the lines of a file the renderer wrote (see maskLine). */
export function lineKeys(content: string): Set<string> {
  return new Set(content.split("\n").map((line) => lineKey(line).trim()).filter((key) => key !== ""));
}

/** A unified diff as structured data (the `diff` package's structuredPatch). */
export interface PatchLike {
  readonly hunks: readonly { readonly lines: readonly string[] }[];
}

/**
 * A diff of a secret-bearing file with every value masked on both sides (maskLine): removed,
 * added and context lines keep their `-`, `+` or ` ` and their key, so a reviewer still sees
 * which keys changed and on which side, never an old, new or hand-typed value. `rendered` is
 * the file as this tool renders it (or rendered it), whose keys may be shown.
 */
export function maskPatch<P extends PatchLike>(patch: P, rendered: string): P {
  const keys = lineKeys(rendered);
  return {
    ...patch,
    hunks: patch.hunks.map((hunk) => ({
      ...hunk,
      // "\ No newline at end of file" is diff's own note, not a line of the file.
      lines: hunk.lines.map((line) => (line.startsWith("\\") ? line : `${line[0] ?? ""}${maskLine(line.slice(1), keys)}`)),
    })),
  };
}
