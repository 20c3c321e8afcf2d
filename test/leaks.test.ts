/**
 * No secret value of any fixture reaches what a person or a CI log sees: golden-test failure
 * diffs, `--check` diffs (text and JSON), CLI errors and warnings, --list output. Each output
 * is produced so that it would contain the secrets if redaction failed (every secret-bearing
 * file changed, secrets resolved while the model fails), then grepped for every value.
 */
import { pathsOf } from "../src/artifacts/paths.js";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { secretForms } from "../src/redact.js";
import { render } from "../src/render.js";
import { buildTree, type Tree } from "../src/tree.js";
import { fixtureNames, loadFixture, renderFixture, ROOT } from "./helpers/fixtures.js";
import { goldenDifferences } from "./helpers/golden.js";

const CLI = join(ROOT, "dist", "cli.cjs");
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

  it("are only in files marked secret, and every file marked secret is 0600 or 0640", () => {
    const tree = renderFixture(name);
    expect([...tree.values()].some((f) => f.secret)).toBe(true);
    for (const [path, file] of tree) {
      // A secret in any encoding, or a hash or verifier of one.
      if (secrets.some((s) => file.content.includes(s)) || /\$7\$|SCRAM-SHA-256\$/.test(file.content)) {
        expect(file.secret, `${path} holds a secret but is not marked secret`).toBe(true);
      }
      if (file.secret) expect([0o600, 0o640], `${path} is secret but has mode ${file.mode.toString(8)}`).toContain(file.mode);
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

/** A secrets file in the syntax --secrets reads: every value double-quoted and escaped. */
function secretsFile(env: Readonly<Record<string, string>>): string {
  return Object.entries(env).map(([k, v]) => `${k}="${v.replace(/[\\"$`]/g, "\\$&")}"\n`).join("");
}

/** Lines typed into a file by hand: values alone, after unknown keys, after a comment sign. */
function handLines(values: readonly string[]): string {
  const [a, b, c, d, e] = values;
  return `HAND_PASSWORD=${a}\n${b}\n${c} and more words\n  requirepass ${d}\n# ${e}\n`;
}

describe.each(fixtureNames())("%s: every secret rotated and every secret file edited by hand", (name) => {
  const fixture = loadFixture(name);
  const oldEnv = fixture.sources.env as Record<string, string>;
  // New values of the same characters (the fixture shows each format takes them), reversed.
  const newEnv = Object.fromEntries(Object.entries(oldEnv).map(([k, v]) => [k, `${[...v].reverse().join("")}-new`]));
  const hand = [0, 1, 2, 3, 4, 5].map((i) => `typed-${i}-${name}-b7e2`);
  hand[5] = `typed "by" 'hand' $x #5 %s \\ ${name}`;
  const every = [...Object.values(oldEnv), ...Object.values(newEnv), ...hand];
  const forms = [...new Set(every.flatMap(secretForms))].filter((f) => f.length >= 6);

  it("--check (text and JSON) shows no old, new or hand-typed value in any encoding, and which keys changed on which side", () => {
    const out = join(work, `${name}-rotated`);
    cli([fixture.modelPath, "--secrets", fixture.secretsPath!, "--out", out, "--quiet"]);
    const secretFiles = [...renderFixture(name)].filter(([, f]) => f.secret).map(([path]) => path);
    expect(secretFiles.length).toBeGreaterThan(0);
    for (const path of secretFiles) {
      const full = join(out, path);
      const text = readFileSync(full, "utf8");
      // A hand edit inside a line that holds an old value, and lines added at the end.
      const old = Object.values(oldEnv).flatMap(secretForms).find((form) => text.includes(form));
      const edited = old === undefined ? text : text.replace(old, `${old}${hand[5]}`);
      writeFileSync(full, `${edited}${handLines(hand)}`);
    }
    const rotated = join(work, `${name}-rotated.env`);
    writeFileSync(rotated, secretsFile(newEnv));
    const args = [fixture.modelPath, "--secrets", rotated, "--check", "--out", out];
    const text = cli(args);
    const json = cli([...args, "--format", "json"]);
    expectNoSecret(text, forms, "--check after a rotation");
    expectNoSecret(json, forms, "--check --format json after a rotation");
    const drift = JSON.parse(json) as { changed: { path: string; diff: string }[] };
    // Every edited file is reported, its diff masked.
    expect(drift.changed.map((c) => c.path)).toEqual(expect.arrayContaining(secretFiles));
    for (const change of drift.changed.filter((c) => secretFiles.includes(c.path))) {
      expect(change.diff, change.path).toContain("\n-********\n"); // a hand-typed line, on the disk side
    }
    // A rotated key of the .env shows on both sides, with its values masked.
    expect(text).toContain("\n-SECRET_KEY=********\n");
    expect(text).toContain("\n+SECRET_KEY=********\n");
  });

  it("golden diffs show no golden (old) or rendered (new) value", () => {
    const tree = render(fixture.model, { ...fixture.sources, env: newEnv });
    const output = goldenDifferences(name, tree, Object.values(newEnv)).join("\n");
    expect(output).toContain("\n-SECRET_KEY=********\n");
    expect(output).toContain("\n+SECRET_KEY=********\n");
    expectNoSecret(output, forms, "the golden diff after a rotation");
  });
});

describe("a file that held a secret when it was written", () => {
  const fixture = loadFixture("ha-cluster");
  const stats = fixture.sources.env!.NOVACLOUD_HAPROXY_STATS_PASSWORD!;
  const withoutStats = join(work, "ha-cluster-without-stats.toml");
  writeFileSync(withoutStats, readFileSync(fixture.modelPath, "utf8").replace(/^stats_password = .*$/m, ""));
  const cfg = "lb1/etc/haproxy/haproxy.cfg";

  function checkWithoutStats(out: string): string {
    const text = cli([withoutStats, "--secrets", fixture.secretsPath!, "--check", "--out", out]);
    expect(text).toContain(`+++ b/${cfg}`);
    return text;
  }

  it("keeps its values masked once the model no longer puts a secret in it (the manifest remembers)", () => {
    expect(readFileSync(withoutStats, "utf8")).not.toContain("stats_password");
    const out = join(work, "ha-cluster-stats");
    cli([fixture.modelPath, "--secrets", fixture.secretsPath!, "--out", out, "--quiet"]);
    expect(render(fixture.model, fixture.sources).get(cfg)!.secret).toBe(true);
    expectNoSecret(checkWithoutStats(out), secretForms(stats), "--check of a file that no longer holds the stats password");
  });

  it("is taken for one by its mode when the manifest predates the secret flag", () => {
    const out = join(work, "ha-cluster-stats-old-manifest");
    cli([fixture.modelPath, "--secrets", fixture.secretsPath!, "--out", out, "--quiet"]);
    const manifestPath = join(out, ".novacloud-render.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { files: { secret?: boolean }[] };
    for (const f of manifest.files) delete f.secret;
    writeFileSync(manifestPath, JSON.stringify(manifest));
    expectNoSecret(checkWithoutStats(out), secretForms(stats), "--check with a manifest without secret flags");
  });
});

describe("a file without secrets", () => {
  it("still shows its values in a --check diff", () => {
    const fixture = loadFixture("single-node");
    const out = join(work, "plain-values");
    cli([fixture.modelPath, "--secrets", fixture.secretsPath!, "--out", out, "--quiet"]);
    const path = join(out, "node1", pathsOf(fixture.model).gunicornConfig);
    const text = readFileSync(path, "utf8");
    const line = text.split("\n").find((l) => l.startsWith("timeout = "))!;
    writeFileSync(path, text.replace(line, "timeout = 999"));
    const drift = cli([fixture.modelPath, "--secrets", fixture.secretsPath!, "--check", "--out", out]);
    expect(drift).toContain("\n-timeout = 999\n");
    expect(drift).toContain(`\n+${line}\n`);
  });
});
