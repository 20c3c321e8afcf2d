/**
 * The CLI as operators and CI use it: the built dist/cli.cjs in a child process (npm test builds
 * first). Exit codes, nothing written on error, safe writes that keep foreign files and drop
 * stale generated ones, --check drift with redacted diffs, --list/--print/--host/--format json,
 * init, schema, --help and --version.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadFixture, ROOT } from "./helpers/fixtures.js";

const CLI = join(ROOT, "dist", "cli.cjs");
const SINGLE = join(ROOT, "fixtures", "single-node", "novacloud.toml");
const SINGLE_SECRETS = join(ROOT, "fixtures", "single-node", "secrets.env");

function cli(args: string[], options: { cwd?: string; input?: string; env?: Record<string, string> } = {}) {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "", ...options.env };
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: options.cwd ?? ROOT, input: options.input, encoding: "utf8", env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const full = join(d, e);
      if (statSync(full).isDirectory()) walk(full);
      else out[full.slice(dir.length + 1)] = `${(statSync(full).mode & 0o7777).toString(8)} ${readFileSync(full, "utf8")}`;
    }
  };
  walk(dir);
  return out;
}

let work: string;
beforeAll(() => {
  if (!existsSync(CLI)) throw new Error("dist/cli.cjs is missing: run `npm run build` (npm test does)");
  work = mkdtempSync(join(tmpdir(), "ncr-cli-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("help and version", () => {
  it("--version prints the package version", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    const r = cli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });
  it("--help names every option and the exit codes", () => {
    const r = cli(["--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["--out", "--secrets", "--check", "--list", "--print", "--host", "--format", "--quiet", "--color", "schema", "init", "Exit codes"]) {
      expect(r.stdout).toContain(flag);
    }
  });
  it("a usage error exits 2 and points at --help", () => {
    const r = cli([SINGLE, "--bogus"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--bogus/);
    expect(r.stderr).toContain("--help");
  });
  it("refuses to do nothing", () => {
    const r = cli([SINGLE, "-s", SINGLE_SECRETS]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--out");
  });
});

describe("writing a tree", () => {
  it("writes every file with its mode, a manifest, and a summary on stderr only", () => {
    const out = join(work, "out1");
    const r = cli([SINGLE, "-s", SINGLE_SECRETS, "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^wrote \d+ files for 1 host and the Ansible bundle to /);
    const env = statSync(join(out, "node1/etc/novacloud/novacloud.env"));
    expect(env.mode & 0o777).toBe(0o640);
    const manifest = JSON.parse(readFileSync(join(out, ".novacloud-render.json"), "utf8")) as { files: { path: string }[] };
    expect(manifest.files.map((f) => f.path)).toContain("node1/etc/novacloud/novacloud.env");
  });

  it("keeps files it did not generate and removes generated files the model no longer produces", () => {
    const out = join(work, "out2");
    expect(cli([SINGLE, "-s", SINGLE_SECRETS, "--out", out]).code).toBe(0);
    writeFileSync(join(out, "NOTES.txt"), "operator notes\n");
    mkdirSync(join(out, "node1", "extra"), { recursive: true });
    writeFileSync(join(out, "node1", "extra", "keep.conf"), "keep\n");
    // The same model without the scheduler role no longer renders the beat unit.
    const text = readFileSync(SINGLE, "utf8").replace('"worker", "scheduler",', '"worker",');
    const model = join(work, "no-beat.toml");
    writeFileSync(model, text);
    const before = new Set(Object.keys(snapshot(out)));
    const r = cli([model, "-s", SINGLE_SECRETS, "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    const after = new Set(Object.keys(snapshot(out)));
    expect(readFileSync(join(out, "NOTES.txt"), "utf8")).toBe("operator notes\n");
    expect(readFileSync(join(out, "node1/extra/keep.conf"), "utf8")).toBe("keep\n");
    const removed = [...before].filter((p) => !after.has(p));
    expect(removed).toEqual(["node1/etc/systemd/system/novacloud-celerybeat.service"]);
  });

  it("refuses to overwrite a file it did not write", () => {
    const out = join(work, "out3");
    mkdirSync(join(out, "node1/etc/novacloud"), { recursive: true });
    writeFileSync(join(out, "node1/etc/novacloud/novacloud.env"), "hand-made\n");
    const r = cli([SINGLE, "-s", SINGLE_SECRETS, "--out", out]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("did not write");
    expect(readFileSync(join(out, "node1/etc/novacloud/novacloud.env"), "utf8")).toBe("hand-made\n");
  });

  it("writes nothing and exits 2 when a secret is missing, naming every missing variable", () => {
    const out = join(work, "out4");
    const r = cli([SINGLE, "--out", out]);
    expect(r.code).toBe(2);
    for (const name of ["NOVACLOUD_DB_PASSWORD", "NOVACLOUD_MQTT_PASSWORD", "NOVACLOUD_SECRET_KEY"]) expect(r.stderr).toContain(name);
    expect(existsSync(out)).toBe(false);
  });

  it("leaves an existing output untouched when the model is invalid", () => {
    const out = join(work, "out5");
    expect(cli([SINGLE, "-s", SINGLE_SECRETS, "--out", out]).code).toBe(0);
    const before = snapshot(out);
    const bad = join(work, "bad.toml");
    writeFileSync(bad, readFileSync(SINGLE, "utf8").replace("port = 8000", "port = 80000"));
    const r = cli([bad, "-s", SINGLE_SECRETS, "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.toml:\d+: gunicorn\.port: 80000 is not a port number/);
    expect(snapshot(out)).toEqual(before);
    expect(readdirSync(work).filter((e) => e.includes(".tmp-"))).toEqual([]);
  });

  it("reads the model from stdin with -", () => {
    const r = cli(["-", "-s", SINGLE_SECRETS, "--list"], { input: readFileSync(SINGLE, "utf8") });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("node1/etc/novacloud/novacloud.env");
  });
});

describe("--check", () => {
  it("exits 0 on an identical tree, 1 after a hand edit with a diff of that edit only, values of a secret file masked", () => {
    const out = join(work, "check");
    expect(cli([SINGLE, "-s", SINGLE_SECRETS, "--out", out]).code).toBe(0);
    const same = cli([SINGLE, "-s", SINGLE_SECRETS, "--check", "--out", out]);
    expect(same.code, same.stdout).toBe(0);

    const envPath = join(out, "node1/etc/novacloud/novacloud.env");
    writeFileSync(envPath, readFileSync(envPath, "utf8").replace("DEBUG=False", "DEBUG=True"));
    const drift = cli([SINGLE, "-s", SINGLE_SECRETS, "--check", "--out", out]);
    expect(drift.code).toBe(1);
    // The .env holds secrets: the diff shows which key changed on which side, no value.
    expect(drift.stdout).toContain("\n-DEBUG=********\n+DEBUG=********\n");
    expect(drift.stdout).not.toMatch(/DEBUG=(True|False)/);
    expect(drift.stdout).toContain("1 changed, 0 added, 0 removed");
    expect(drift.stdout).not.toContain("\u001b["); // not a TTY: no colour
    const changedFiles = drift.stdout.split("\n").filter((l) => l.startsWith("+++ "));
    expect(changedFiles).toEqual(["+++ b/node1/etc/novacloud/novacloud.env\trendered"]);
    for (const secret of loadFixture("single-node").secretValues) expect(drift.stdout + drift.stderr).not.toContain(secret);
  });

  it("redacts a secret that changed in a hand edit, and colours only when asked", () => {
    const out = join(work, "check2");
    expect(cli([SINGLE, "-s", SINGLE_SECRETS, "--out", out]).code).toBe(0);
    const envPath = join(out, "node1/etc/novacloud/novacloud.env");
    const secret = loadFixture("single-node").secretValues[0]!;
    writeFileSync(envPath, readFileSync(envPath, "utf8").split(secret).join(`${secret}-edited`));
    const drift = cli([SINGLE, "-s", SINGLE_SECRETS, "--check", "--out", out, "--color", "always"]);
    expect(drift.code).toBe(1);
    expect(drift.stdout).toContain("********");
    expect(drift.stdout).not.toContain(secret);
    expect(drift.stdout).toContain("\u001b[");
  });

  it("reports added and removed files and JSON on request", () => {
    const out = join(work, "check3");
    expect(cli([SINGLE, "-s", SINGLE_SECRETS, "--out", out]).code).toBe(0);
    rmSync(join(out, "node1/etc/novacloud/gunicorn_config.py"));
    const r = cli([SINGLE, "-s", SINGLE_SECRETS, "--check", "--out", out, "--format", "json"]);
    expect(r.code).toBe(1);
    const result = JSON.parse(r.stdout) as { ok: boolean; added: string[]; removed: string[] };
    expect(result.ok).toBe(false);
    expect(result.added).toEqual(["node1/etc/novacloud/gunicorn_config.py"]);
  });
});

describe("--list, --print, --host, --format json", () => {
  it("lists modes, owners, sizes and paths", () => {
    const r = cli([SINGLE, "-s", SINGLE_SECRETS, "--list"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^0640 root:novacloud +\d+ {2}node1\/etc\/novacloud\/novacloud\.env$/m);
  });
  it("prints one file to stdout, nothing else", () => {
    const r = cli([SINGLE, "-s", SINGLE_SECRETS, "--print", "node1/etc/novacloud/gunicorn_config.py"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('wsgi_app = "DjangoNovaCloud.wsgi:application"');
    expect(r.stderr).toBe("");
  });
  it("names the paths when --print misses", () => {
    const r = cli([SINGLE, "-s", SINGLE_SECRETS, "--print", "node1/nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--list");
  });
  it("limits to one host and rejects an unknown one", () => {
    const ha = join(ROOT, "fixtures", "ha-cluster");
    const r = cli([join(ha, "novacloud.toml"), "-s", join(ha, "secrets.env"), "--list", "--host", "db1"]);
    expect(r.code, r.stderr).toBe(0);
    const paths = r.stdout.trim().split("\n").map((l) => l.split(/\s+/).pop()!);
    expect(paths.length).toBeGreaterThan(0);
    expect(paths.every((p) => p.startsWith("db1/"))).toBe(true);
    const bad = cli([join(ha, "novacloud.toml"), "-s", join(ha, "secrets.env"), "--list", "--host", "db9"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("db1");
  });
  it("gives machine-readable errors with paths", () => {
    const bad = join(work, "bad-json.toml");
    writeFileSync(bad, readFileSync(SINGLE, "utf8").replace('domain = "iot.example.com"', 'domain = "exa mple.com"'));
    const r = cli([bad, "-s", SINGLE_SECRETS, "--list", "--format", "json"]);
    expect(r.code).toBe(2);
    const result = JSON.parse(r.stdout) as { ok: boolean; errors: { path: string; message: string; line?: number }[] };
    expect(result.ok).toBe(false);
    expect(result.errors).toContainEqual(expect.objectContaining({ path: "site.domain", message: expect.stringContaining("is not a valid hostname") }));
  });
});

describe("init and schema", () => {
  it("init writes a starter model that renders as is, and never overwrites", () => {
    const dir = join(work, "init");
    mkdirSync(dir);
    const r = cli(["init"], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(join(dir, "secrets", "postgres_password")).mode & 0o777).toBe(0o600);
    const rendered = cli(["--out", "out"], { cwd: dir });
    expect(rendered.code, rendered.stderr).toBe(0);
    expect(existsSync(join(dir, "out", "node1", "etc", "novacloud", "novacloud.env"))).toBe(true);
    const again = cli(["init"], { cwd: dir });
    expect(again.code).toBe(3);
    expect(again.stderr).toContain("never overwrites");
  });
  it("schema prints a JSON Schema", () => {
    const r = cli(["schema"]);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout) as { $schema: string; properties: Record<string, unknown> };
    expect(schema.$schema).toContain("2020-12");
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(["project", "site", "hosts", "postgres"]));
  });
});

// The secret files init writes must not be readable by others even under a lax umask.
it("init's secret directory is private", () => {
  const dir = join(work, "init2");
  mkdirSync(dir);
  expect(cli(["init"], { cwd: dir }).code).toBe(0);
  chmodSync(dir, 0o755);
  expect(statSync(join(dir, "secrets")).mode & 0o077).toBe(0);
});
