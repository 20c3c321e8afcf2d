/** Loading fixtures the way the CLI does: model text, its secrets file, referenced secret files. */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseSecretsFile, readSecretFiles } from "../../src/node/files.js";
import { parse as parseToml } from "smol-toml";
import { hostContexts, type HostContext } from "../../src/artifacts/context.js";
import { kdfOwnedBy, pbkdf2Js } from "../../src/crypto.js";
import { parseModel, parseModelText } from "../../src/model/parse.js";
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

const loaded = new Map<string, Fixture>();

/**
 * A fixture, loaded once per test file: its renders share one options object (`sources`), and
 * so the password hashes, which render() remembers only for as long as that object lives
 * (src/crypto.ts). A test about fresh state passes a copy (`{ ...f.sources }`).
 */
export function loadFixture(name: string): Fixture {
  let fixture = loaded.get(name);
  if (fixture === undefined) loaded.set(name, (fixture = readFixture(name)));
  return fixture;
}

function readFixture(name: string): Fixture {
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

/**
 * Every host of a fixture as the artifact families see it (render() builds the same contexts):
 * `change` edits the raw TOML model first, `env` adds or replaces secret values.
 */
export function fixtureContexts(fixture: string, change?: (raw: Record<string, any>) => void, env?: Record<string, string>): HostContext[] {
  const f = loadFixture(fixture);
  let model = f.model;
  if (change) {
    const raw = parseToml(readFileSync(f.modelPath, "utf8")) as Record<string, any>;
    change(raw);
    const parsed = parseModel(raw);
    if (!parsed.ok) throw new Error(`variant of ${fixture} is invalid: ${parsed.issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`);
    model = parsed.model;
  }
  const { secrets, issues } = resolveSecrets(model, { ...f.sources, env: { ...f.sources.env, ...env } });
  if (issues.length > 0) throw new Error(`${fixture}: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`);
  return hostContexts(model, secrets, kdfOwnedBy(f.sources, pbkdf2Js));
}

export function contextOf(contexts: readonly HostContext[], host: string): HostContext {
  const ctx = contexts.find((c) => c.host.name === host);
  if (!ctx) throw new Error(`no host ${host}`);
  return ctx;
}
