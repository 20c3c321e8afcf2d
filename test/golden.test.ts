/**
 * Golden files: golden/<fixture>/ holds exactly the tree render() gives, file for file, and
 * golden/<fixture>.modes its modes and owners. Any extra, missing or changed file fails with a
 * unified diff (secrets redacted). Re-bless with `npm run golden:update`, then read every
 * changed file in `git diff golden/` before committing.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { createTwoFilesPatch } from "diff";
import { describe, expect, it } from "vitest";
import { redact } from "../src/redact.js";
import { formatMode, type Tree } from "../src/tree.js";
import { fixtureNames, GOLDEN, loadFixture, renderFixture } from "./helpers/fixtures.js";

const UPDATE = process.env.UPDATE_GOLDEN === "1";

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    return statSync(full).isDirectory() ? listFiles(full) : [full];
  });
}

function modesManifest(tree: Tree): string {
  return [...tree].map(([path, f]) => `${formatMode(f.mode)} ${f.owner}:${f.group} ${path}\n`).join("");
}

function writeGolden(name: string, tree: Tree): void {
  const dir = join(GOLDEN, name);
  rmSync(dir, { recursive: true, force: true });
  for (const [path, file] of tree) {
    const full = join(dir, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, file.content);
  }
  writeFileSync(join(GOLDEN, `${name}.modes`), modesManifest(tree));
}

/** Every difference between the golden directory and the tree, as readable text. */
export function goldenDifferences(name: string, tree: Tree, secrets: readonly string[]): string[] {
  const dir = join(GOLDEN, name);
  const problems: string[] = [];
  const onDisk = new Set(listFiles(dir).map((f) => relative(dir, f).split(sep).join("/")));
  for (const [path, file] of tree) {
    if (!onDisk.has(path)) {
      problems.push(`missing golden file golden/${name}/${path} (render produces it)`);
      continue;
    }
    const expected = readFileSync(join(dir, path), "utf8");
    if (expected !== file.content) {
      problems.push(redact(createTwoFilesPatch(`golden/${name}/${path}`, `rendered/${path}`, expected, file.content), secrets));
    }
  }
  for (const path of onDisk) if (!tree.has(path)) problems.push(`stray golden file golden/${name}/${path} (render no longer produces it)`);
  const modesPath = join(GOLDEN, `${name}.modes`);
  const modes = existsSync(modesPath) ? readFileSync(modesPath, "utf8") : "";
  if (modes !== modesManifest(tree)) problems.push(createTwoFilesPatch(`golden/${name}.modes`, "rendered modes", modes, modesManifest(tree)));
  return problems;
}

describe("golden trees", () => {
  const names = fixtureNames();
  it("has fixtures to compare", () => {
    expect(names.length).toBeGreaterThanOrEqual(3);
  });
  for (const name of names) {
    it(`${name} renders exactly golden/${name}/`, () => {
      const tree = renderFixture(name);
      if (UPDATE) {
        writeGolden(name, tree);
        return;
      }
      const problems = goldenDifferences(name, tree, loadFixture(name).secretValues);
      if (problems.length > 0) {
        throw new Error(`golden/${name} differs from the rendered tree (re-bless with npm run golden:update, then review git diff golden/):\n\n${problems.join("\n")}`);
      }
    });
  }
});
