/**
 * Redaction of secret values from text shown to people (diffs, errors, test failures). A secret
 * reaches files in several encodings (quoted for an env file, percent-encoded in a URL, escaped
 * for .pgpass, ...), so every encoding the quoting functions can produce is redacted.
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
