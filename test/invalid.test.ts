/**
 * The invalid corpus (fixtures/invalid/, see its README): every case is rejected
 *
 * (a) by parseModelText with exactly the expected problems (path and message fragment, nothing
 *     else), every message on one line, no secret value echoed, lines that point at the key;
 * (b) by the real CLI (`node dist/cli.cjs CASE --secrets ... --out DIR`): exit code 2, nothing on
 *     stdout, stderr exactly one `file:line: path: message` line per problem plus the summary,
 *     no stack trace, and nothing written. Two variants, alternating within each section: a
 *     fresh --out is not created, nor anything beside it; an existing --out (a previous render's
 *     manifest and file plus a foreign sentinel) stays byte-identical, modes and mtimes included.
 *     A node process costs ~0.15-0.2 s, so by default the CLI runs a spread of the corpus (the
 *     first cases of every section, in both variants, and every case whose output differs in
 *     kind: syntax errors, JSON, several problems, problems without a line, quoted paths);
 *     INVALID_CLI=all runs every case (about 40 s on two cores).
 *
 * It also checks the corpus itself: enough cases, every section of the schema covered, and an
 * injection case for every free-form string field that can reach a config file.
 */
import { execFile } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parse as parseToml } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatIssue, isSecretPath, parsePath, type ModelIssue, type PathSegment } from "../src/model/errors.js";
import { parseModelText } from "../src/model/parse.js";
import { knownKeysAt } from "../src/model/schema-walk.js";
import { modelSchema, SECRET_KEYS } from "../src/model/schema.js";
import { ROOT } from "./helpers/fixtures.js";
import { INVALID_SECRETS, invalidCases, sectionOf, type InvalidCase } from "./helpers/invalid.js";

const cases = invalidCases();
const SECRET_VALUES = readFileSync(INVALID_SECRETS, "utf8")
  .split("\n")
  .filter((l) => /^[A-Z_]+=/.test(l))
  .map((l) => l.slice(l.indexOf("=") + 1));
const CLI = join(ROOT, "dist", "cli.cjs");

const shownPath = (issue: ModelIssue) => (issue.path === "" ? "(model)" : issue.path);
const ONE_LINE = /^[^\n\r\u2028\u2029\u0000-\u001f\u007f-\u009f]*$/;

function parseCase(c: InvalidCase): readonly ModelIssue[] {
  const result = parseModelText(c.text, c.format);
  if (result.ok) throw new Error(`${c.file} was accepted as a valid model`);
  return result.issues;
}

function rawModel(c: InvalidCase): unknown {
  try {
    return c.format === "toml" ? parseToml(c.text) : JSON.parse(c.text);
  } catch {
    return undefined;
  }
}

function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== "object" || !Object.prototype.hasOwnProperty.call(node, seg)) return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node;
}

const SECRET_KEY_NAMES = new Set(["password", "secret_key", "stats_password", "bridge_password", "access_key_id", "secret_access_key"]);

/**
 * Values in the model that are or may be secrets: anything written under a secret key (an inline
 * secret, a mistyped one, something pasted as `env` that no variable is named like), except the
 * name in `{ env = ... }` and the path in `{ file = ... }`, which errors may quote.
 */
function secretLike(node: unknown, underSecret = false, key = ""): string[] {
  if (node === null || node === undefined) return [];
  if (typeof node === "string" || typeof node === "number") {
    const text = String(node);
    if (!underSecret || text.length < 3 || key === "file") return [];
    return key === "env" && /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(text) ? [] : [text];
  }
  if (Array.isArray(node)) return node.flatMap((v) => secretLike(v, underSecret, key));
  if (typeof node === "object") {
    return Object.entries(node).flatMap(([k, v]) => secretLike(v, underSecret || SECRET_KEY_NAMES.has(k), k));
  }
  return [];
}

/** Whether `key` is written as a key or table name anywhere in the source. */
function writesKey(c: InvalidCase, key: string): boolean {
  const lines = c.text.split("\n");
  const k = key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  if (c.format === "json") return lines.some((l) => new RegExp(`"${k}"\\s*:`).test(l));
  return lines.some((l) => new RegExp(`^\\s*\\[{1,2}\\s*(?:[^\\]]*\\.)?\\s*["']?${k}["']?\\s*[\\].]`).test(l) || new RegExp(`^\\s*(?:[^=]*\\.)?\\s*["']?${k}["']?\\s*[=.]`).test(l));
}

describe("the invalid corpus", () => {
  it("has at least 70 cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(70);
  });

  it("covers every top-level key of the schema", () => {
    const covered = new Set(cases.flatMap((c) => c.expects.map((e) => String(parsePath(e.path)[0] ?? ""))));
    const missing = knownKeysAt([]).filter((key) => !covered.has(key));
    expect(missing, "top-level keys without an invalid case").toEqual([]);
  });

  it("has an invalid-value case for every free-form string field (the fields that can reach a config file)", () => {
    const covered = new Set(
      cases.flatMap((c) => c.expects.filter((e) => /\bis not\b/.test(e.fragment)).map((e) => normalized(parsePath(e.path)))),
    );
    const missing = stringFields().filter((field) => !covered.has(field));
    expect(missing, "string fields without a case that injects into them: add fixtures/invalid/<section>-<what>.toml").toEqual([]);
  });

  it("names every case after its section and describes it", () => {
    const sections = new Set([...knownKeysAt([]), "toplevel", "roles", "secrets"]);
    for (const c of cases) {
      expect(sections.has(sectionOf(c)), `${c.file}: name it <section>-<what>`).toBe(true);
      expect(c.description.length, c.file).toBeGreaterThan(5);
    }
  });
});

// --- (a) the library --------------------------------------------------------------------------

describe("parseModelText rejects each invalid case with exactly the expected problems", () => {
  for (const c of cases) {
    it(c.name, () => {
      const issues = parseCase(c);
      const unmatched = [...issues];
      const missing: string[] = [];
      for (const e of c.expects) {
        const k = unmatched.findIndex((i) => shownPath(i) === e.path && i.message.includes(e.fragment));
        if (k < 0) missing.push(`${e.path} | ${e.fragment}`);
        else unmatched.splice(k, 1);
      }
      const got = issues.map((i) => `  ${shownPath(i)}: ${i.message}`).join("\n");
      expect(missing, `expected problems not reported; got:\n${got}`).toEqual([]);
      expect(unmatched.map((i) => `${shownPath(i)}: ${i.message}`), "problems reported beyond the expected ones").toEqual([]);

      const raw = rawModel(c);
      for (const value of secretLike(raw)) {
        for (const issue of issues) expect(issue.message.includes(value), `${issue.path}: the message echoes a secret-like value`).toBe(false);
      }
      for (const issue of issues) {
        expect(issue.message, "one line per problem").toMatch(ONE_LINE);
        expect(issue.message.length).toBeGreaterThan(5);
        // A secret value (inline or mistyped) is never echoed.
        const path = parsePath(issue.path);
        const value = valueAt(raw, path);
        if (isSecretPath(path) && (typeof value === "string" || typeof value === "number") && String(value).length > 0) {
          expect(issue.message.includes(String(value)), `${issue.path}: message must not echo the secret`).toBe(false);
        }
        checkLine(c, issue);
      }
    });
  }
});

/** The line of a problem points at its key (or the table it belongs in); none only where nothing is written. */
function checkLine(c: InvalidCase, issue: ModelIssue): void {
  const lines = c.text.split("\n");
  if (issue.path === "") {
    const at = /at line (\d+)/.exec(issue.message);
    if (at) expect(issue.line, `${c.file}: the syntax error's line`).toBe(Number(at[1]));
    return;
  }
  const segments = parsePath(issue.path).filter((s): s is string => typeof s === "string");
  if (issue.line === undefined) {
    expect(writesKey(c, segments[0]!), `${c.file}: ${issue.path} has no line, but "${segments[0]}" is written in the file`).toBe(false);
    return;
  }
  const text = lines[issue.line - 1] ?? "";
  expect(
    segments.some((s) => text.includes(s)),
    `${c.file}:${issue.line}: ${JSON.stringify(text)} should be the line of ${issue.path} (or of its table)`,
  ).toBe(true);
}

// --- (b) the CLI --------------------------------------------------------------------------------

type Variant = "fresh" | "existing";

/** The cases the CLI runs: see the top of the file. */
const cliCases = cases.filter((c) => {
  if (process.env.INVALID_CLI === "all") return true;
  const section = cases.filter((x) => sectionOf(x) === sectionOf(c));
  if (section.indexOf(c) < 2) return true;
  const issues = parseModelText(c.text, c.format);
  const list = issues.ok ? [] : issues.issues;
  return c.syntax || c.format === "json" || list.length > 1 || list.some((i) => i.line === undefined || i.path.includes('"'));
});

/** Fresh and existing --out alternate within each section, so every section sees both. */
function variantOf(c: InvalidCase): Variant {
  const section = cases.filter((x) => sectionOf(x) === sectionOf(c));
  return section.indexOf(c) % 2 === 0 ? "fresh" : "existing";
}
interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  before: string;
  after: string;
  error?: string;
}

const runs = new Map<string, CliRun>();
let work = "";

/** Every entry under `dir`: path, type, mode, mtime and content, in a stable order. */
function snapshot(dir: string): string {
  if (!existsSync(dir)) return "(none)";
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d).sort()) {
      const full = join(d, entry);
      const st = lstatSync(full);
      const rel = relative(dir, full);
      if (st.isDirectory()) {
        out.push(`d ${st.mode.toString(8)} ${rel}/`);
        walk(full);
      } else out.push(`f ${st.mode.toString(8)} ${st.mtimeMs} ${rel} ${readFileSync(full).toString("base64")}`);
    }
  };
  walk(dir);
  return out.join("\n");
}

/** An --out that a previous render wrote: its manifest, one generated file, and a file of the user's. */
function previousOutput(out: string): void {
  mkdirSync(join(out, "server", "etc"), { recursive: true });
  writeFileSync(join(out, "server", "etc", "previous.conf"), "# Generated by novacloud-render. Do not edit.\nkept = true\n", { mode: 0o644 });
  writeFileSync(
    join(out, ".novacloud-render.json"),
    `${JSON.stringify({ generator: "novacloud-render", files: [{ path: "server/etc/previous.conf", mode: "0644" }] }, null, 2)}\n`,
  );
  writeFileSync(join(out, "SENTINEL-not-generated.txt"), "a file of the user's: it must survive byte for byte\n", { mode: 0o600 });
}

function runCli(c: InvalidCase, variant: Variant): Promise<CliRun> {
  const dir = join(work, `${c.name}.${variant}`);
  mkdirSync(dir);
  if (variant === "existing") previousOutput(join(dir, "out"));
  const before = snapshot(dir);
  const args = [CLI, relative(ROOT, c.path), "--secrets", relative(ROOT, INVALID_SECRETS), "--out", join(dir, "out")];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work, NO_COLOR: "1" }, timeout: 60_000, encoding: "utf8" },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ code, stdout, stderr, before, after: snapshot(dir), ...(error && typeof error.code !== "number" ? { error: error.message } : {}) });
      },
    );
  });
}

async function pool<T>(items: readonly T[], size: number, job: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: size }, async () => {
      while (next < items.length) await job(items[next++]!);
    }),
  );
}

describe(`the CLI rejects invalid cases (${cliCases.length} of ${cases.length}): exit 2, one line per problem, nothing written`, () => {
  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error("dist/cli.cjs is missing: build first (npm run build; npm test does it)");
    work = mkdtempSync(join(tmpdir(), "novacloud-invalid-"));
    await pool(cliCases, availableParallelism() + 2, async (c) => {
      runs.set(c.name, await runCli(c, variantOf(c)));
    });
  }, 180_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const c of cliCases) {
    it(c.name, () => {
      const issues = parseCase(c);
      const label = relative(ROOT, c.path);
      const expected = [
        ...issues.map((i) => formatIssue(i, label)),
        `${issues.length} problem${issues.length === 1 ? "" : "s"} in the model; nothing was written.`,
      ];
      {
        const variant = variantOf(c);
        const run = runs.get(c.name);
        expect(run, `no CLI run for ${c.name} (${variant})`).toBeDefined();
        const { code, stdout, stderr, before, after, error } = run!;
        expect(error, `${variant}: the CLI could not run`).toBeUndefined();
        expect(stderr, `${variant}: no stack trace`).not.toMatch(/\n\s+at |internal error|node:internal|\bError\b/);
        expect(code, `${variant}: exit code; stderr:\n${stderr}`).toBe(2);
        expect(stdout, `${variant}: stdout`).toBe("");
        for (const value of [...secretLike(rawModel(c)), ...SECRET_VALUES]) expect(stderr.includes(value), "stderr shows no secret").toBe(false);
        const lines = stderr.replace(/\n$/, "").split("\n");
        expect(lines, `${variant}: stderr`).toEqual(expected);
        for (const [i, issue] of issues.entries()) {
          const m = new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?::(\\d+))?: (.+?): (.+)$`).exec(lines[i]!);
          expect(m, `${variant}: "${lines[i]}" has the form file:line: path: message`).not.toBeNull();
          expect(m![1] === undefined ? undefined : Number(m![1]), `${variant}: line of ${issue.path}`).toBe(issue.line);
          expect(m![2]).toBe(shownPath(issue));
        }
        if (variant === "fresh") expect(after, "nothing is written: no --out, no temporary directory beside it").toBe("");
        else expect(after, "the existing --out stays byte-identical").toBe(before);
      }
    });
  }
});

// --- string fields of the schema ---------------------------------------------------------------

type Def = { type: string; [key: string]: unknown };
const defOf = (schema: unknown): Def => (schema as { _zod: { def: Def } })._zod.def;

/** `hosts.NAME.address` -> `hosts.*.address`; array indices dropped. */
function normalized(path: readonly PathSegment[]): string {
  const segs = path.filter((s): s is string => typeof s === "string");
  if (segs[0] === "hosts" && segs.length > 1) segs[1] = "*";
  return segs.join(".");
}

/**
 * Every free-form string of the schema (regex-constrained strings, not enums or literals): the
 * values that could carry an injection into a file. Secret references are left out (their env
 * names and file paths are read by the CLI, never written), and so is `$schema` (for editors).
 */
function stringFields(): string[] {
  const out = new Set<string>();
  const walk = (schema: unknown, path: string[]) => {
    const def = defOf(schema);
    if (["default", "prefault", "optional", "nullable", "readonly", "catch"].includes(def.type)) return walk(def.innerType, path);
    if (def.type === "pipe") return walk(def.in, path);
    if (def.type === "object") {
      for (const [key, child] of Object.entries(def.shape as Record<string, unknown>)) {
        if (key === "$schema" || SECRET_KEYS.has(key)) continue;
        walk(child, [...path, key]);
      }
      return;
    }
    if (def.type === "record") {
      if (defOf(def.keyType).type === "string") out.add([...path, "*"].join("."));
      return walk(def.valueType, [...path, "*"]);
    }
    if (def.type === "array") return walk(def.element, path);
    if (def.type === "union") {
      for (const option of def.options as unknown[]) walk(option, path);
      return;
    }
    if (def.type === "string") out.add(path.join("."));
  };
  walk(modelSchema(), []);
  return [...out].sort();
}
