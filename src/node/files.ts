/**
 * File system work shared by the CLI and the library's `novacloud-render/node`: reading the
 * model and secrets, and writing a tree safely.
 *
 * Safe writes (issue #5): the new tree is built in a temporary directory beside the output
 * directory; files there that this tool did not generate (not in its manifest) are carried over; then the two
 * directories are swapped with renames. A failure at any point leaves --out as it was. Stale
 * generated files disappear because they are simply not carried over; nothing else is removed.
 */
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync, copyFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import type { Tree } from "../tree.js";

export const MANIFEST = ".novacloud-render.json";

export interface Manifest {
  readonly generator: "novacloud-render";
  /**
   * `secret`: the file held a secret (or a hash of one) when it was written, so --check never
   * shows its values. Manifests of earlier versions lack it.
   */
  readonly files: readonly { path: string; mode: string; secret?: boolean }[];
}

const IO_ERROR = Symbol.for("novacloud-render.IoError");

/** A file that could not be read or written; IoError.is recognises one from any copy of the package. */
export class IoError extends Error {
  readonly [IO_ERROR] = true;

  constructor(message: string) {
    super(message);
    this.name = "IoError";
  }

  static is(error: unknown): error is IoError {
    return typeof error === "object" && error !== null && (error as Record<symbol, unknown>)[IO_ERROR] === true;
  }
}

export function readText(path: string): string {
  try {
    return path === "-" ? readFileSync(0, "utf8") : readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new IoError(`${path}: no such file`);
    throw new IoError(`${path}: cannot read (${code ?? (error as Error).message})`);
  }
}

/**
 * Parses a secrets file: KEY=VALUE lines, `#` comments, values bare or double-quoted with the
 * escapes \" \\ \$ \` (the env-file syntax this tool writes, so values round-trip).
 */
export function parseSecretsFile(text: string, name: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new IoError(`${name}:${i + 1}: expected KEY=VALUE`);
    let value = m[2]!;
    if (value.startsWith('"')) {
      const body = /^"((?:[^"\\]|\\.)*)"$/.exec(value);
      if (!body) throw new IoError(`${name}:${i + 1}: unterminated double-quoted value for ${m[1]}`);
      value = body[1]!.replace(/\\([\\"$`])/g, "$1");
    } else if (value.startsWith("'")) {
      const body = /^'([^']*)'$/.exec(value);
      if (!body) throw new IoError(`${name}:${i + 1}: unterminated single-quoted value for ${m[1]}`);
      value = body[1]!;
    }
    values[m[1]!] = value;
  }
  return values;
}

/** Reads every referenced secret file; unreadable ones are left out (render then names them). */
export function readSecretFiles(paths: readonly string[], baseDir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const path of paths) {
    try {
      files[path] = readFileSync(resolve(baseDir, path), "utf8");
    } catch {
      // reported by resolveSecrets as "could not be read"
    }
  }
  return files;
}

export function readManifest(outDir: string): Manifest | undefined {
  const path = join(outDir, MANIFEST);
  if (!existsSync(path)) return undefined;
  try {
    const data = JSON.parse(readFileSync(path, "utf8")) as Manifest;
    if (data.generator === "novacloud-render" && Array.isArray(data.files)) return data;
  } catch {
    // fall through
  }
  throw new IoError(`${path} is not a novacloud-render manifest; refusing to touch ${outDir}`);
}

function listFiles(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    const stat = lstatSync(full);
    if (stat.isDirectory()) return listFiles(full, base);
    return [relative(base, full).split(sep).join("/")];
  });
}

/** Files under `outDir` that this tool did not generate (not in the manifest). */
export function foreignFiles(outDir: string, manifest: Manifest | undefined): string[] {
  if (!existsSync(outDir)) return [];
  const ours = new Set(manifest?.files.map((f) => f.path) ?? []);
  ours.add(MANIFEST);
  return listFiles(outDir).filter((path) => !ours.has(path));
}

function carryOver(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

/**
 * Writes `tree` to `outDir` as described at the top of this file, with the manifest the CLI
 * reads: a tool and the CLI can write (and --check) the same directory.
 */
export function writeTree(tree: Tree, outDir: string): void {
  const target = resolve(outDir);
  if (existsSync(target) && !lstatSync(target).isDirectory()) throw new IoError(`${outDir} exists and is not a directory`);
  const manifest = readManifest(target);
  const foreign = foreignFiles(target, manifest);
  const clash = foreign.filter((path) => tree.has(path));
  if (clash.length > 0) {
    throw new IoError(
      `${outDir} holds files this tool did not write at paths it would write (${clash.slice(0, 3).join(", ")}${clash.length > 3 ? ", ..." : ""}); move them away or choose another directory`,
    );
  }
  mkdirSync(dirname(target), { recursive: true });
  const staging = mkdtempSync(join(dirname(target), `.${basename(target)}.tmp-`));
  const retired = `${staging}.old`;
  try {
    // Each directory is made once: mkdir -p for every file was two system calls per file.
    const made = new Set<string>();
    for (const [path, file] of tree) {
      const full = join(staging, path);
      const dir = dirname(full);
      if (!made.has(dir)) {
        mkdirSync(dir, { recursive: true });
        made.add(dir);
      }
      writeFileSync(full, file.content, { mode: file.mode });
      chmodSync(full, file.mode); // the umask may have masked bits off
    }
    for (const path of foreign) carryOver(join(target, path), join(staging, path));
    const next: Manifest = {
      generator: "novacloud-render",
      files: [...tree].map(([path, file]) => ({ path, mode: file.mode.toString(8).padStart(4, "0"), secret: file.secret })),
    };
    writeFileSync(join(staging, MANIFEST), `${JSON.stringify(next, null, 2)}\n`);
    if (existsSync(target)) renameSync(target, retired);
    renameSync(staging, target);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    if (existsSync(retired) && !existsSync(target)) renameSync(retired, target);
    throw new IoError(`could not write ${outDir}: ${(error as Error).message}`);
  }
  rmSync(retired, { recursive: true, force: true });
}
