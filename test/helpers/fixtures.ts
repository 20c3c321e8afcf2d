/** Loading fixtures the way the CLI does: model text, its secrets file, referenced secret files. */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseSecretsFile, readSecretFiles } from "../../src/cli/files.js";
import { parseModelText } from "../../src/model/parse.js";
import { secretUses, secretValues, resolveSecrets, type SecretSources } from "../../src/model/secrets.js";
import type { Model } from "../../src/model/normalize.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";

export const ROOT = join(import.meta.dirname, "..", "..");
export const FIXTURES = join(ROOT, "fixtures");
export const GOLDEN = join(ROOT, "golden");

/** Every valid fixture: a directory under fixtures/ with a novacloud.toml. */
export function fixtureNames(): string[] {
  return readdirSync(FIXTURES)
    .filter((name) => existsSync(join(FIXTURES, name, "novacloud.toml")))
    .sort();
}

export interface Fixture {
  readonly name: string;
  readonly dir: string;
  readonly modelPath: string;
  readonly secretsPath: string | undefined;
  readonly model: Model;
  readonly sources: SecretSources;
  /** Every secret value the fixture uses, to prove none leaks. */
  readonly secretValues: string[];
}

export function loadFixture(name: string): Fixture {
  const dir = join(FIXTURES, name);
  const modelPath = join(dir, "novacloud.toml");
  const parsed = parseModelText(readFileSync(modelPath, "utf8"), "toml");
  if (!parsed.ok) throw new Error(`fixture ${name} is invalid:\n${parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n")}`);
  const secretsPath = existsSync(join(dir, "secrets.env")) ? join(dir, "secrets.env") : undefined;
  const env = secretsPath ? parseSecretsFile(readFileSync(secretsPath, "utf8"), secretsPath) : {};
  const fileRefs = secretUses(parsed.model).flatMap((u) => (typeof u.ref === "object" && "file" in u.ref ? [u.ref.file] : []));
  const sources = { env, files: readSecretFiles(fileRefs, dir) };
  const values = secretValues(resolveSecrets(parsed.model, sources).secrets);
  return { name, dir, modelPath, secretsPath, model: parsed.model, sources, secretValues: values };
}

export function renderFixture(name: string): Tree {
  const f = loadFixture(name);
  return render(f.model, f.sources);
}

/**
 * Every rendered file of every fixture matching `keep`, as `<fixture>/<tree path>`: what a
 * lint test must cover, computed from render() itself rather than counted by hand.
 */
export function renderedAcrossFixtures(keep: (path: string, file: { mode: number; content: string }) => boolean): string[] {
  return fixtureNames()
    .flatMap((name) => [...renderFixture(name)].filter(([path, file]) => keep(path, file)).map(([path]) => `${name}/${path}`))
    .sort();
}
