/**
 * Test support for the nginx and HAProxy families (not a test file itself): an nginx config
 * parser with include expansion, the add_header / proxy_set_header inheritance rules of nginx
 * (a level inherits these array directives only when it defines none itself), and the host
 * contexts of a fixture, so a family can be called on its own.
 */
import { fixtureContexts } from "../helpers/fixtures.js";
import type { HostContext } from "../../src/artifacts/context.js";

// ---------------------------------------------------------------------------------------------
// Fixtures

/** One context per host of a fixture, as render() builds them. */
export function hostContexts(fixture: string): HostContext[] {
  return fixtureContexts(fixture);
}

// ---------------------------------------------------------------------------------------------
// nginx config syntax

export interface Directive {
  readonly name: string;
  readonly args: string[];
  /** The directives inside `{ }`, for block directives. */
  readonly block?: Directive[];
  /** Where it was read from, for assertion messages. */
  readonly file: string;
  readonly line: number;
}

interface Token {
  readonly text: string;
  readonly quoted: boolean;
  readonly line: number;
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\n") {
      line++;
      i++;
    } else if (/\s/.test(c)) i++;
    else if (c === "#") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === ";" || c === "{" || c === "}") {
      tokens.push({ text: c, quoted: false, line });
      i++;
    } else if (c === '"' || c === "'") {
      const start = line;
      let value = "";
      i++;
      while (i < text.length && text[i] !== c) {
        if (text[i] === "\\" && i + 1 < text.length) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        if (text[i] === "\n") line++;
        value += text[i];
        i++;
      }
      if (i >= text.length) throw new Error(`unterminated ${c} string from line ${start}`);
      i++;
      tokens.push({ text: value, quoted: true, line: start });
    } else {
      let value = "";
      while (i < text.length && !/[\s;{}]/.test(text[i]!)) {
        // `${name}` variables may contain braces; nginx keeps them in the word.
        if (text[i] === "$" && text[i + 1] === "{") {
          const end = text.indexOf("}", i);
          value += text.slice(i, end + 1);
          i = end + 1;
          continue;
        }
        value += text[i];
        i++;
      }
      tokens.push({ text: value, quoted: false, line });
    }
  }
  return tokens;
}

/** Parses nginx config text into directives (throws on unbalanced braces or a missing `;`). */
export function parseNginx(text: string, file = "<text>"): Directive[] {
  const tokens = tokenize(text);
  let pos = 0;
  function parseBlock(closing: boolean): Directive[] {
    const out: Directive[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos]!;
      if (t.text === "}" && !t.quoted) {
        if (!closing) throw new Error(`${file}:${t.line}: unexpected "}"`);
        pos++;
        return out;
      }
      const name = t.text;
      const line = t.line;
      pos++;
      const args: string[] = [];
      for (;;) {
        const a = tokens[pos];
        if (a === undefined) throw new Error(`${file}:${line}: directive "${name}" is not terminated by ";" or "{"`);
        pos++;
        if (!a.quoted && a.text === ";") {
          out.push({ name, args, file, line });
          break;
        }
        if (!a.quoted && a.text === "{") {
          out.push({ name, args, block: parseBlock(true), file, line });
          break;
        }
        if (!a.quoted && a.text === "}") throw new Error(`${file}:${a.line}: unexpected "}" in "${name}"`);
        args.push(a.text);
      }
    }
    if (closing) throw new Error(`${file}: unexpected end of file, expecting "}"`);
    return out;
  }
  return parseBlock(false);
}

/** Replaces every `include FILE;` by the directives of FILE (read through `read`). */
export function expandIncludes(directives: Directive[], read: (path: string) => string | undefined): Directive[] {
  return directives.flatMap((d) => {
    if (d.name === "include") {
      const path = d.args[0]!;
      const text = read(path);
      if (text === undefined) throw new Error(`${d.file}:${d.line}: included file ${path} is not available`);
      return expandIncludes(parseNginx(text, path), read);
    }
    return d.block ? [{ ...d, block: expandIncludes(d.block, read) }] : [d];
  });
}

/**
 * The files of an `nginx -T` dump: "# configuration file PATH:" followed by that file's text,
 * exactly as nginx read it.
 */
export function splitNginxDump(dump: string): Map<string, string> {
  const files = new Map<string, string>();
  const marker = /^# configuration file (.+):$/gm;
  const matches = [...dump.matchAll(marker)];
  matches.forEach((m, i) => {
    const start = m.index! + m[0].length + 1;
    const end = i + 1 < matches.length ? matches[i + 1]!.index! : dump.length;
    files.set(m[1]!, dump.slice(start, end));
  });
  return files;
}

// ---------------------------------------------------------------------------------------------
// Inheritance of array directives (add_header, proxy_set_header, proxy_hide_header)

/** `add_header NAME VALUE [always]` as one comparable string. */
export const directiveKey = (d: Directive) => [d.name, ...d.args].join(" ");

export interface LocationReport {
  readonly server: string;
  readonly location: string;
  readonly file: string;
  readonly line: number;
  /** Directives of this kind written in the location itself (after includes). */
  readonly own: string[];
  /** What applies to responses of this location: its own, or inherited when it has none. */
  readonly effective: string[];
  /** Other directives of the location (proxy_pass, alias, return ...), by name. */
  readonly names: Set<string>;
}

/**
 * For every location of every server in an http{} context (or in a site file, which is the
 * inside of http{}), the `kind` directives that apply, following nginx's rule: a level inherits
 * them from the enclosing one if and only if it defines none itself.
 */
export function locationReport(httpLevel: Directive[], kind: string): LocationReport[] {
  const own = (ds: Directive[]) => ds.filter((d) => d.name === kind).map(directiveKey);
  const httpOwn = own(httpLevel);
  const reports: LocationReport[] = [];
  const walk = (ds: Directive[], inherited: string[], server: string) => {
    for (const d of ds) {
      if (d.name !== "location" || !d.block) continue;
      const mine = own(d.block);
      const effective = mine.length > 0 ? mine : inherited;
      reports.push({
        server,
        location: d.args.join(" "),
        file: d.file,
        line: d.line,
        own: mine,
        effective,
        names: new Set(d.block.map((x) => x.name)),
      });
      walk(d.block, effective, server);
    }
  };
  for (const s of httpLevel.filter((d) => d.name === "server" && d.block)) {
    const serverOwn = own(s.block!);
    const name = s.block!.find((d) => d.name === "server_name")?.args.join(" ") ?? "";
    const listen = s.block!.filter((d) => d.name === "listen").map((d) => d.args.join(" ")).join(", ");
    walk(s.block!, serverOwn.length > 0 ? serverOwn : httpOwn, `${name} (${listen})`);
  }
  return reports;
}

/** Locations that serve content (files or the application), as opposed to redirects. */
export function servesContent(r: LocationReport): boolean {
  return r.names.has("proxy_pass") || r.names.has("alias") || r.names.has("root");
}

/** Every problem with the security headers of the content locations, as readable lines. */
export function headerProblems(httpLevel: Directive[], required: readonly string[]): string[] {
  const problems: string[] = [];
  for (const r of locationReport(httpLevel, "add_header")) {
    if (r.location === "/.well-known/acme-challenge/") continue;
    const where = `${r.file}:${r.line} location ${r.location} in server ${r.server}`;
    const missing = required.filter((h) => !r.effective.includes(h));
    if (r.own.length > 0 && missing.length > 0) {
      problems.push(`${where} has its own add_header but lacks: ${missing.join("; ")}`);
    } else if (servesContent(r) && missing.length > 0) {
      problems.push(`${where} serves content without: ${missing.join("; ")}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Model variants: a fixture with some keys changed, for version gates and options.

/** The host contexts of `fixture` after `change` edited its raw model (as read from TOML). */
export function variantContexts(fixture: string, change: (raw: Record<string, any>) => void): HostContext[] {
  return fixtureContexts(fixture, change);
}

/** Sets raw[a][b]... = value, creating tables on the way. */
export function setKey(raw: Record<string, any>, path: string, value: unknown): void {
  const keys = path.split(".");
  let node = raw;
  for (const k of keys.slice(0, -1)) node = node[k] ??= {};
  node[keys.at(-1)!] = value;
}
