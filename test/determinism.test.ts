/**
 * Same model, same bytes, across processes: every fixture rendered in two fresh node processes
 * (nothing cached from one render can serve the other) gives identical trees, through the
 * library's default (pure-JS) hashes and through the CLI. The check is shown to catch what it
 * is for: with a random salt injected through render()'s `pbkdf2` option, the same comparison
 * reports the files that hold hashes.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixtureNames, loadFixture, ROOT } from "./helpers/fixtures.js";

const INDEX = join(ROOT, "dist", "index.js");
const CLI = join(ROOT, "dist", "cli.cjs");
const work = mkdtempSync(join(tmpdir(), "ncr-determinism-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Variant = "default" | "random-salt";

/**
 * A fresh node process that renders every fixture with the built library and prints each tree
 * as JSON. "random-salt" passes a PBKDF2 that answers the salt derivations (their salt input
 * starts with "novacloud-render ") with random bytes, as a salt from crypto.getRandomValues would.
 */
const CHILD = `
import { pbkdf2Sync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
const { parseModelText, render } = await import(process.argv[1]);
const { variant, fixtures } = JSON.parse(readFileSync(0, "utf8"));
const prefix = Buffer.from("novacloud-render ");
const randomSalt = (digest, password, salt, iterations, length) =>
  Buffer.from(salt).subarray(0, prefix.length).equals(prefix)
    ? new Uint8Array(randomBytes(length))
    : new Uint8Array(pbkdf2Sync(password, salt, iterations, length, digest));
const trees = {};
for (const f of fixtures) {
  const parsed = parseModelText(f.modelText, "toml");
  if (!parsed.ok) throw new Error(f.name + " is invalid");
  const options = variant === "random-salt" ? { ...f.sources, pbkdf2: randomSalt } : f.sources;
  trees[f.name] = [...render(parsed.model, options)];
}
process.stdout.write(JSON.stringify(trees));
`;

function renderInFreshProcess(variant: Variant): Record<string, [string, unknown][]> {
  const fixtures = fixtureNames().map((name) => {
    const f = loadFixture(name);
    return { name, modelText: readFileSync(f.modelPath, "utf8"), sources: f.sources };
  });
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", CHILD, INDEX], {
    input: JSON.stringify({ variant, fixtures }),
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`the child render failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, [string, unknown][]>;
}

/** Paths whose file (content, mode, owner, group, secret flag) differs between two renders, or that only one has. */
function differences(a: readonly [string, unknown][], b: readonly [string, unknown][]): string[] {
  const left = new Map(a.map(([p, f]) => [p, JSON.stringify(f)]));
  const right = new Map(b.map(([p, f]) => [p, JSON.stringify(f)]));
  const paths = [...new Set([...left.keys(), ...right.keys()])].sort();
  const order = JSON.stringify(a.map(([p]) => p)) === JSON.stringify(b.map(([p]) => p)) ? [] : ["(file order)"];
  return [...order, ...paths.filter((p) => left.get(p) !== right.get(p))];
}

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => (statSync(join(dir, e)).isDirectory() ? listFiles(join(dir, e)) : [join(dir, e)]));
}

/** Every file under `dir`, relative path -> mode and bytes. */
function snapshot(dir: string): Map<string, string> {
  return new Map(listFiles(dir).map((f) => [relative(dir, f), `${statSync(f).mode.toString(8)} ${readFileSync(f).toString("base64")}`]));
}

describe("rendering in two fresh processes", () => {
  const names = fixtureNames();

  it("gives the same bytes for every fixture (library, default hashes)", () => {
    const first = renderInFreshProcess("default");
    const second = renderInFreshProcess("default");
    expect(Object.keys(first).sort()).toEqual([...names].sort());
    for (const name of names) {
      expect(first[name]!.length, name).toBeGreaterThan(0);
      expect(differences(first[name]!, second[name]!), name).toEqual([]);
    }
  });

  it("gives the same bytes for every fixture (CLI, native hashes)", () => {
    for (const name of names) {
      const f = loadFixture(name);
      const outs = [1, 2].map((i) => {
        const out = join(work, `${name}-${i}`);
        const r = spawnSync(process.execPath, [CLI, f.modelPath, "--secrets", f.secretsPath!, "--out", out, "--quiet"], { encoding: "utf8" });
        expect(r.status, r.stderr).toBe(0);
        return snapshot(out);
      });
      expect(outs[0]!.size, name).toBeGreaterThan(1);
      expect([...outs[1]!], name).toEqual([...outs[0]!]);
    }
  });

  it("catches a random salt: the same comparison reports every file that holds a hash", () => {
    const first = renderInFreshProcess("random-salt");
    const second = renderInFreshProcess("random-salt");
    for (const name of names) {
      const hashed = first[name]!.filter(([, f]) => /\$7\$|SCRAM-SHA-256\$/.test((f as { content: string }).content)).map(([p]) => p);
      expect(hashed.length, `${name} renders hashes`).toBeGreaterThan(0);
      expect(differences(first[name]!, second[name]!), name).toEqual(hashed);
    }
  });
});
