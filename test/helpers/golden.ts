/** Golden trees: writing them, and every difference between one and a rendered tree. */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { createTwoFilesPatch, formatPatch, structuredPatch } from "diff";
import { maskPatch, redact } from "../../src/redact.js";
import { formatMode, type Tree } from "../../src/tree.js";
import { GOLDEN } from "./fixtures.js";

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    return statSync(full).isDirectory() ? listFiles(full) : [full];
  });
}

/** `MODE owner:group path`, and ` (secret)` after the path of a file that holds a secret. */
export function modesManifest(tree: Tree): string {
  return [...tree].map(([path, f]) => `${formatMode(f.mode)} ${f.owner}:${f.group} ${path}${f.secret ? " (secret)" : ""}\n`).join("");
}

/** Paths the golden .modes file marks ` (secret)`: golden files whose values are never shown. */
function goldenSecrets(modes: string): Set<string> {
  return new Set(modes.split("\n").flatMap((line) => /^\S+ \S+ (.+) \(secret\)$/.exec(line)?.slice(1) ?? []));
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

/**
 * Every difference between the golden directory and the tree, as readable text: a file that
 * holds secrets (rendered, or marked in the golden .modes) shows keys only (maskPatch), and
 * every diff is redacted of the `secrets`' values.
 */
export function goldenDifferences(name: string, tree: Tree, secrets: readonly string[]): string[] {
  const dir = join(GOLDEN, name);
  const problems: string[] = [];
  const onDisk = new Set(listFiles(dir).map((f) => relative(dir, f).split(sep).join("/")));
  const modesPath = join(GOLDEN, `${name}.modes`);
  const modes = existsSync(modesPath) ? readFileSync(modesPath, "utf8") : "";
  const secretGolden = goldenSecrets(modes);
  for (const [path, file] of tree) {
    if (!onDisk.has(path)) {
      problems.push(`missing golden file golden/${name}/${path} (render produces it)`);
      continue;
    }
    const expected = readFileSync(join(dir, path), "utf8");
    if (expected !== file.content) {
      const patch = structuredPatch(`golden/${name}/${path}`, `rendered/${path}`, expected, file.content);
      problems.push(redact(formatPatch(file.secret || secretGolden.has(path) ? maskPatch(patch, file.content) : patch), secrets));
    }
  }
  for (const path of onDisk) if (!tree.has(path)) problems.push(`stray golden file golden/${name}/${path} (render no longer produces it)`);
  if (modes !== modesManifest(tree)) problems.push(createTwoFilesPatch(`golden/${name}.modes`, "rendered modes", modes, modesManifest(tree)));
  return problems;
}
