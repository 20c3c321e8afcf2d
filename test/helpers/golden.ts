/** Golden trees: writing them, and every difference between one and a rendered tree. */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { createTwoFilesPatch } from "diff";
import { redact } from "../../src/redact.js";
import { formatMode, type Tree } from "../../src/tree.js";
import { GOLDEN } from "./fixtures.js";

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    return statSync(full).isDirectory() ? listFiles(full) : [full];
  });
}

export function modesManifest(tree: Tree): string {
  return [...tree].map(([path, f]) => `${formatMode(f.mode)} ${f.owner}:${f.group} ${path}\n`).join("");
}

export function writeGolden(name: string, tree: Tree): void {
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
