/**
 * The corpus of invalid models in fixtures/invalid/ (see its README): each case is a complete
 * model with its expected problems written in its first comment lines (`# expect: PATH | FRAGMENT`,
 * `# shape: true`), or for JSON in `<case>.expect` beside it.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES } from "./fixtures.js";

export const INVALID = join(FIXTURES, "invalid");
export const INVALID_SECRETS = join(INVALID, "secrets.env");

export interface Expectation {
  /** Dotted path as errors print it; `(model)` for the whole document. */
  readonly path: string;
  readonly fragment: string;
}

export interface InvalidCase {
  readonly name: string;
  /** File name inside fixtures/invalid/. */
  readonly file: string;
  readonly path: string;
  readonly format: "toml" | "json";
  readonly text: string;
  readonly description: string;
  readonly expects: readonly Expectation[];
  /** A pure shape error: the JSON Schema must reject it too. */
  readonly shape: boolean;
  /** The document does not even parse (TOML/JSON syntax error). */
  readonly syntax: boolean;
}

function header(text: string): string[] {
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("#")) break;
    lines.push(line);
  }
  return lines;
}

export function invalidCases(): InvalidCase[] {
  return readdirSync(INVALID)
    .filter((f) => f.endsWith(".toml") || f.endsWith(".json"))
    .sort()
    .map((file) => {
      const path = join(INVALID, file);
      const format = file.endsWith(".json") ? "json" : "toml";
      const text = readFileSync(path, "utf8");
      const expectPath = path.replace(/\.json$/, ".expect");
      if (format === "json" && !existsSync(expectPath)) throw new Error(`${file}: JSON cases keep their expectation in ${file.replace(/\.json$/, ".expect")}`);
      const head = header(format === "json" ? readFileSync(expectPath, "utf8") : text);
      const expects: Expectation[] = [];
      let shape = false;
      for (const line of head) {
        const e = /^# expect: (.+?) \| (.+)$/.exec(line);
        if (e) expects.push({ path: e[1]!, fragment: e[2]! });
        else if (line === "# shape: true") shape = true;
        else if (/^# (expect|shape)\b/.test(line)) throw new Error(`${file}: malformed header line ${JSON.stringify(line)}`);
      }
      if (expects.length === 0) throw new Error(`${file}: no "# expect: PATH | FRAGMENT" line`);
      const description = head[0]?.replace(/^# /, "") ?? file;
      const syntax = expects.some((e) => e.path === "(model)" && /syntax error/.test(e.fragment));
      return { name: file.replace(/\.(toml|json)$/, ""), file, path, format, text, description, expects, shape, syntax };
    });
}

/** The section a case belongs to: the part of its name before the first dash. */
export function sectionOf(c: InvalidCase): string {
  return c.name.split("-")[0]!;
}
