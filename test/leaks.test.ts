/**
 * No secret value of any fixture reaches what a person or a CI log sees: golden-test failure
 * diffs, `--check` diffs (text and JSON), CLI errors and warnings, --list output. Each output
 * is produced so that it would contain the secrets if redaction failed (every secret-bearing
 * file changed, secrets resolved while the model fails), then grepped for every value.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { secretForms } from "../src/redact.js";
import { buildTree, type Tree } from "../src/tree.js";
import { fixtureNames, loadFixture, renderFixture, ROOT } from "./helpers/fixtures.js";
import { goldenDifferences } from "./helpers/golden.js";

const CLI = join(ROOT, "dist", "cli.js");
const work = mkdtempSync(join(tmpdir(), "ncr-leaks-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { PATH: process.env.PATH ?? "" } });
  return `${r.stdout}${r.stderr}`;
}

function expectNoSecret(output: string, secrets: readonly string[], what: string): void {
  for (const secret of secrets) {
    expect(output.includes(secret), `${what} shows a secret (${secret.length} characters)`).toBe(false);
  }
}

/** The tree with every file that holds a secret changed around the secret. */
function changedAroundSecrets(tree: Tree, secrets: readonly string[]): Tree {
  return buildTree(
    [...tree].map(([path, file]) => [path, { ...file, content: secrets.reduce((c, s) => c.split(s).join(`x${s}x`), file.content) }] as const),
  );
}

describe.each(fixtureNames())("%s", (name) => {
  const fixture = loadFixture(name);
  const raw = fixture.secretValues;
  // A secret reaches files quoted or escaped for each format: any of those forms is a leak.
  const secrets = [...new Set(raw.flatMap(secretForms))].filter((f) => f.length >= 6);

  it("uses secrets that actually appear in its rendered files", () => {
    expect(secrets.length).toBeGreaterThan(0);
    const all = [...renderFixture(name).values()].map((f) => f.content).join("\n");
    expect(secrets.some((s) => all.includes(s))).toBe(true);
  });

  it("are only in files that neither other users can read nor anyone but their owner and group", () => {
    for (const [path, file] of renderFixture(name)) {
      if (secrets.some((s) => file.content.includes(s))) {
        expect(file.mode & 0o007, `${path} holds a secret but has mode ${file.mode.toString(8)}`).toBe(0);
        expect(file.mode & 0o137, `${path}: secrets are 0600 or 0640`).toBe(0);
      }
    }
  });

  it("golden failure diffs redact them", () => {
    const output = goldenDifferences(name, changedAroundSecrets(renderFixture(name), secrets), raw).join("\n");
    expect(output).toContain("********");
    expectNoSecret(output, secrets, "the golden diff");
  });

  it("--check (text and JSON) redacts them in diffs of hand-edited files", () => {
    const out = join(work, `${name}-out`);
    const args = [fixture.modelPath, ...(fixture.secretsPath ? ["--secrets", fixture.secretsPath] : [])];
    cli([...args, "--out", out, "--quiet"]);
    for (const [path] of renderFixture(name)) {
      const full = join(out, path);
      const text = readFileSync(full, "utf8");
      if (secrets.some((s) => text.includes(s))) writeFileSync(full, secrets.reduce((c, s) => c.split(s).join(`${s}-edited`), text));
    }
    const text = cli([...args, "--check", "--out", out]);
    expect(text).toContain("changed");
    expectNoSecret(text, secrets, "--check");
    expectNoSecret(cli([...args, "--check", "--out", out, "--format", "json"]), secrets, "--check --format json");
  });

  it("errors, warnings and listings never show them, even written inline in the model", () => {
    const args = fixture.secretsPath ? ["--secrets", fixture.secretsPath] : [];
    const model = readFileSync(fixture.modelPath, "utf8");
    const env = fixture.sources.env ?? {};
    // Every { env = "NAME" } replaced by its value, as a TOML basic string.
    const inline = model.replace(/\{ env = "([A-Z0-9_]+)" \}/g, (_, v: string) => JSON.stringify(env[v] ?? ""));
    expect(inline).not.toBe(model);
    const inlinePath = join(work, `${name}-inline.toml`);
    writeFileSync(inlinePath, inline);
    const brokenPath = join(work, `${name}-broken.toml`);
    writeFileSync(brokenPath, `bogus_key = 1\n${inline}`);
    const outputs = {
      "--list with inline secrets (warnings)": cli([inlinePath, "--list"]),
      "an invalid model's errors": cli([brokenPath, "--list"]),
      "an invalid model's JSON errors": cli([brokenPath, "--list", "--format", "json"]),
      "missing secrets": cli([fixture.modelPath, "--list"]),
      "--list": cli([fixture.modelPath, ...args, "--list"]),
    };
    expect(outputs["--list with inline secrets (warnings)"]).toContain("warning:");
    expect(outputs["an invalid model's errors"]).toContain("bogus_key");
    for (const [what, output] of Object.entries(outputs)) expectNoSecret(output, secrets, what);
  });
});
