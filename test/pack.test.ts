/**
 * The package as users get it: `npm pack`, install the tarball into an empty project offline,
 * then ESM import, CommonJS require, the types (the README's embedding example compiles with
 * tsc --noEmit against the installed declarations), the schema export, and the CLI through npx;
 * and what an embedding tool relies on (issue #14): a sealed model that copies of it (spread,
 * cloned, from the other module format) can still render, model literals checked by tsc,
 * novacloud-render/node sharing one directory with the CLI, one-host renders, the Tree's JSON
 * form, and library messages that name no CLI flag.
 *
 * The install is offline and starts from an empty npm cache, as on a fresh machine (where
 * `npm ci` fetches tarballs by the lockfile and caches no registry metadata): the package's
 * runtime dependencies are packed from this checkout's node_modules (the lockfile's versions)
 * and installed beside it, so npm resolves every dependency of the tarball without the
 * registry. A dependency the package uses but does not declare is still missing there.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/fixtures.js";

let work: string;
let project: string;
let tarball: string;

function sh(command: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(command, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false", ...env } });
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", output: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/** The fenced ```ts block after <!-- embed-example --> in the README. */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const m = /<!-- embed-example -->\s*```ts\n([\s\S]*?)```/.exec(readme);
  if (!m) throw new Error("README.md has no <!-- embed-example --> ts block");
  return m[1]!;
}

/** Runs an ES module in the consumer project; its stdout is one JSON value. */
function esm(code: string): unknown {
  const file = join(project, `check-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, code);
  const r = sh(process.execPath, [file], project);
  if (r.code !== 0) throw new Error(`${file} failed:\n${r.output}`);
  return JSON.parse(r.stdout) as unknown;
}

const SINGLE = join(ROOT, "fixtures", "single-node");

/** The consumer's preamble: both module formats of the package, the single-node model and its secrets. */
const PRELUDE = `
import { createRequire } from "node:module";
import * as lib from "novacloud-render";
import { checkTree, loadModel, readSecretsFile, writeTree } from "novacloud-render/node";
const cjs = createRequire(import.meta.url)("novacloud-render");
const loaded = loadModel(${JSON.stringify(join(SINGLE, "novacloud.toml"))});
if (!loaded.ok) throw new Error(loaded.issues.map((i) => i.message).join("\\n"));
const env = readSecretsFile(${JSON.stringify(join(SINGLE, "secrets.env"))});
const model = loaded.model;
const json = (tree) => JSON.stringify(lib.treeToJson(tree));
const attempt = (f) => { try { f(); return "accepted"; } catch (e) { return e instanceof TypeError ? "refused" : String(e); } };
const failure = (f) => { try { f(); return undefined; } catch (e) { return e; } };
`;

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist", "index.js"))) throw new Error("dist/ is missing: run `npm run build` (npm test does)");
  work = mkdtempSync(join(tmpdir(), "ncr-pack-"));
  // dist/ is fresh (npm test builds first), so skip the prepack rebuild.
  const packed = sh("npm", ["pack", "--ignore-scripts", "--pack-destination", work], ROOT);
  if (packed.code !== 0) throw new Error(`npm pack failed:\n${packed.output}`);
  tarball = join(work, readdirSync(work).find((f) => f.endsWith(".tgz"))!);
  // The runtime dependency tree as installed here (`npm ls` reads the declared dependencies).
  const tree = sh("npm", ["ls", "--omit=dev", "--all", "--parseable"], ROOT);
  if (tree.code !== 0) throw new Error(`npm ls failed:\n${tree.output}`);
  const dependencies = tree.stdout.split("\n").filter((dir) => dir !== "" && dir !== ROOT);
  const deps = join(work, "deps");
  mkdirSync(deps);
  if (dependencies.length > 0) {
    const packedDeps = sh("npm", ["pack", "--ignore-scripts", "--pack-destination", deps, ...dependencies], ROOT);
    if (packedDeps.code !== 0) throw new Error(`npm pack of the dependencies failed:\n${packedDeps.output}`);
  }
  const depTarballs = readdirSync(deps).map((f) => join(deps, f));
  if (depTarballs.length !== dependencies.length) throw new Error(`packed ${depTarballs.length} of ${dependencies.length} dependencies`);
  project = join(work, "consumer");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true }));
  // An empty cache, whatever the machine's holds: what a fresh machine has.
  const cache = mkdtempSync(join(work, "npm-cache-"));
  const installed = sh("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball, ...depTarballs], project, { npm_config_cache: cache });
  if (installed.code !== 0) throw new Error(`offline install of the tarball failed:\n${installed.output}`);
}, 180_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the packed package", () => {
  it("ships only what users need", () => {
    const list = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter(Boolean);
    expect(list).toEqual(expect.arrayContaining(["package/dist/index.js", "package/dist/index.cjs", "package/dist/index.d.ts", "package/dist/cli.cjs", "package/dist/schema.json", "package/README.md", "package/LICENSE"]));
    expect(list.filter((f) => /^package\/(src|test|fixtures|golden|templates|scripts|bench)\//.test(f))).toEqual([]);
    expect(list).toEqual(expect.arrayContaining(["package/dist/node.js", "package/dist/node.cjs", "package/dist/node.d.ts"]));
  });

  it("declares exactly the packages dist imports at runtime, and no install script", () => {
    const pkg = JSON.parse(execFileSync("tar", ["-xzOf", tarball, "package/package.json"], { encoding: "utf8" })) as { dependencies?: Record<string, string>; scripts?: Record<string, string> };
    for (const hook of ["preinstall", "install", "postinstall", "prepare"]) expect(pkg.scripts?.[hook], hook).toBeUndefined();
    const dist = join(project, "node_modules", "novacloud-render", "dist");
    const imported = new Set<string>();
    for (const file of readdirSync(dist).filter((f) => /\.(c?js)$/.test(f))) {
      const text = readFileSync(join(dist, file), "utf8");
      for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\(\s*|^import\s+)["']([^"'.][^"']*)["']/gm)) {
        const spec = m[1]!;
        // A package name (compiled templates hold strings like `from "` too).
        if (!/^(?:@[a-z0-9._-]+\/)?[a-z0-9._-]+(?:\/[\w./-]+)?$/.test(spec)) continue;
        if (spec.startsWith("node:") || ["fs", "path", "os", "crypto", "url", "util", "child_process", "module"].includes(spec.split("/")[0]!)) continue;
        imported.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
      }
    }
    imported.delete("novacloud-render");
    expect([...imported].sort()).toEqual(Object.keys(pkg.dependencies ?? {}).sort());
  });

  it("imports as ESM and renders a fixture", () => {
    const fixture = join(ROOT, "fixtures", "minimal", "novacloud.toml");
    const code = `
      import { readFileSync } from "node:fs";
      import { parseModelText, render } from "novacloud-render";
      const parsed = parseModelText(readFileSync(${JSON.stringify(fixture)}, "utf8"), "toml");
      if (!parsed.ok) throw new Error("invalid");
      const tree = render(parsed.model, { env: { DB_PASSWORD: "a-b-c", MQTT_PASSWORD: "d-e-f", SECRET_KEY: "g-h-i-j" } });
      console.log(tree.size, tree.has("server/etc/novacloud/novacloud.env"));`;
    const r = sh(process.execPath, ["--input-type=module", "-e", code], project);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+ true$/);
  });

  it("requires as CommonJS", () => {
    const r = sh(process.execPath, ["-e", `const m = require("novacloud-render"); console.log(typeof m.render, typeof m.parseModel, typeof m.modelJsonSchema)`], project);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout.trim()).toBe("function function function");
  });

  it("exports the JSON Schema file", () => {
    const r = sh(process.execPath, ["-e", `const s = require("novacloud-render/schema.json"); console.log(s.$schema, Object.keys(s.properties).includes("hosts"))`], project);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout).toContain("2020-12");
    expect(r.stdout.trim().endsWith("true")).toBe(true);
  });

  it("type-checks the README's embedding example against the installed declarations, and runs it", () => {
    writeFileSync(join(project, "embed.ts"), readmeExample());
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ["node"],
          typeRoots: [join(ROOT, "node_modules", "@types")],
        },
        files: ["embed.ts"],
      }),
    );
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true, type: "module", dependencies: { "novacloud-render": `file:${tarball}` } }));
    const r = sh(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "."], project);
    expect(r.code, r.output).toBe(0);
    // Runnable as written: compiled, then run beside the single-node fixture's model and secrets.
    const emitted = sh(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", ".", "--noEmit", "false", "--outDir", "build"], project);
    expect(emitted.code, emitted.output).toBe(0);
    const cwd = join(work, "embed-run");
    mkdirSync(cwd);
    for (const f of ["novacloud.toml", "secrets.env"]) writeFileSync(join(cwd, f), readFileSync(join(ROOT, "fixtures", "single-node", f)));
    const run = sh(process.execPath, [join(project, "build", "embed.js")], cwd);
    expect(run.code, run.output).toBe(0);
    expect(run.stdout).toContain("out matches the model 0");
    expect(run.stdout).toMatch(/^0640 \S+ node1\/etc\/novacloud\/novacloud\.env$/m);
    expect(existsSync(join(cwd, "out", ".novacloud-render.json"))).toBe(true);
  });

  it("seals the model and the tree: mutation throws, at any depth", () => {
    const r = esm(`${PRELUDE}
      const tree = lib.render(model, { env });
      console.log(JSON.stringify({
        port: attempt(() => { model.gunicorn.port = -5; }),
        domain: attempt(() => { model.site.domain = "evil.example.org"; }),
        host: attempt(() => { model.topology.hosts[0].address = "10.9.9.9"; }),
        roles: attempt(() => model.topology.hosts[0].roles.add("db")),
        input: attempt(() => { model.input.site.domain = "x"; }),
        treeSet: attempt(() => tree.set("x/y", tree.get([...tree.keys()][0]))),
        treeDelete: attempt(() => tree.delete([...tree.keys()][0])),
        file: attempt(() => { tree.get([...tree.keys()][0]).mode = 0o777; }),
        still: model.gunicorn.port,
      }));`) as Record<string, unknown>;
    expect(r).toEqual({ port: "refused", domain: "refused", host: "refused", roles: "refused", input: "refused", treeSet: "refused", treeDelete: "refused", file: "refused", still: expect.any(Number) });
  });

  it("renders spread, cloned and other-module-format copies of a model like the model, and refuses an edited copy", () => {
    const r = esm(`${PRELUDE}
      const reference = json(lib.render(model, { env }));
      const fromCjs = cjs.parseModelText(${JSON.stringify(readFileSync(join(SINGLE, "novacloud.toml"), "utf8"))}, "toml").model;
      const edited = failure(() => lib.render({ ...model, site: { ...model.site, domain: "other.example.org" } }, { env }));
      const missing = failure(() => cjs.render(model, {}));
      console.log(JSON.stringify({
        spread: json(lib.render({ ...model }, { env })) === reference,
        cloned: json(lib.render(structuredClone(model), { env })) === reference,
        cjsModelInEsm: json(lib.render(fromCjs, { env })) === reference,
        esmModelInCjs: JSON.stringify(cjs.treeToJson(cjs.render(model, { env }))) === reference,
        edited: lib.ModelError.is(edited) ? edited.issues.map((i) => i.path) : String(edited),
        crossInstanceof: missing instanceof lib.ModelError,
        crossIs: lib.ModelError.is(missing),
      }));`);
    expect(r).toEqual({ spread: true, cloned: true, cjsModelInEsm: true, esmModelInCjs: true, edited: ["site.domain"], crossInstanceof: false, crossIs: true });
  });

  it("renders one host: exactly the files the whole render has for it; renderSteps gives steps as data", () => {
    const r = esm(`${PRELUDE}
      const all = lib.render(model, { env });
      const one = lib.render(model, { env, hosts: ["node1"] });
      const steps = lib.renderSteps(model, { env });
      console.log(JSON.stringify({
        paths: [...one.keys()].every((p) => p.startsWith("node1/")),
        same: [...one].every(([p, f]) => JSON.stringify(all.get(p)) === JSON.stringify(f)),
        count: one.size === [...all.keys()].filter((p) => p.startsWith("node1/")).length,
        unknown: failure(() => lib.render(model, { env, hosts: ["nope"] }))?.message,
        steps: steps.map((h) => [h.host, h.steps.length > 10, h.steps.every((s) => typeof s.id === "string" && typeof s.phase === "string")]),
      }));`) as Record<string, unknown>;
    expect(r).toMatchObject({ paths: true, same: true, count: true, steps: [["node1", true, true]] });
    expect(r.unknown).toMatch(/hosts option names "nope"/);
  });

  it("round-trips the Tree's JSON form (mode as octal), which is what --format json prints", () => {
    const r = esm(`${PRELUDE}
      const tree = lib.render(model, { env });
      const form = lib.treeToJson(tree);
      const back = lib.treeFromJson(JSON.parse(JSON.stringify(form)));
      const asyncTree = await lib.renderAsync(model, { env });
      console.log(JSON.stringify({
        format: form.format,
        modes: [...new Set(form.files.map((f) => f.mode))].sort(),
        equal: back.size === tree.size && [...back].every(([p, f]) => JSON.stringify(f) === JSON.stringify(tree.get(p))),
        frozen: attempt(() => back.clear()),
        async: json(asyncTree) === json(tree),
        form,
      }));`) as { format: string; modes: string[]; equal: boolean; frozen: string; async: boolean; form: unknown };
    expect(r.format).toBe("novacloud-render.tree/1");
    expect(r.modes).toEqual(expect.arrayContaining(["0644", "0640"]));
    expect(r.modes.every((m) => /^0[0-7]{3}$/.test(m))).toBe(true);
    expect(r.equal).toBe(true);
    expect(r.frozen).toBe("refused");
    expect(r.async).toBe(true);
    const cli = sh("npx", ["--offline", "--no-install", "novacloud-render", join(SINGLE, "novacloud.toml"), "--secrets", join(SINGLE, "secrets.env"), "--format", "json"], project);
    expect(cli.code, cli.output).toBe(0);
    expect((JSON.parse(cli.stdout) as { tree: unknown }).tree).toEqual(r.form);
  });

  it("shares one output directory between writeTree and the CLI: --check and checkTree agree", () => {
    const dir = join(work, "shared-out");
    const check = () => sh("npx", ["--offline", "--no-install", "novacloud-render", join(SINGLE, "novacloud.toml"), "--secrets", join(SINGLE, "secrets.env"), "--check", "--out", dir, "--format", "json"], project);
    const written = esm(`${PRELUDE}
      const tree = lib.render(model, { env });
      writeTree(tree, ${JSON.stringify(dir)});
      console.log(JSON.stringify(checkTree(tree, ${JSON.stringify(dir)}, { model, render: { env } })));`) as { clean: boolean };
    expect(written.clean).toBe(true);
    const clean = check();
    expect(clean.code, clean.output).toBe(0);
    // Drift made behind both their backs: both see the same change, and the same plan.
    const conf = join(dir, "node1", "etc", "novacloud", "gunicorn_config.py");
    writeFileSync(conf, `${readFileSync(conf, "utf8")}# edited by hand\n`);
    const lib = esm(`${PRELUDE}
      console.log(JSON.stringify(checkTree(lib.render(model, { env }), ${JSON.stringify(dir)}, { model, render: { env } })));`) as { clean: boolean; changed: { path: string }[]; plan: unknown };
    const drift = check();
    expect(drift.code, drift.output).toBe(1);
    const fromCli = JSON.parse(drift.stdout) as { changed: { path: string }[]; plan: unknown };
    expect(lib.clean).toBe(false);
    expect(lib.changed.map((c) => c.path)).toEqual(["node1/etc/novacloud/gunicorn_config.py"]);
    expect(fromCli.changed).toEqual(lib.changed);
    expect(fromCli.plan).toEqual(lib.plan);
    // The CLI writes over the library's directory (its manifest is the CLI's own).
    const rewrite = sh("npx", ["--offline", "--no-install", "novacloud-render", join(SINGLE, "novacloud.toml"), "--secrets", join(SINGLE, "secrets.env"), "--out", dir, "--quiet"], project);
    expect(rewrite.code, rewrite.output).toBe(0);
    expect(check().code).toBe(0);
  });

  it("words library messages in library terms: no CLI flag, the format by name, syntax errors with line and column", () => {
    const dir = join(work, "foreign-out");
    mkdirSync(join(dir, "node1", "etc", "novacloud"), { recursive: true });
    writeFileSync(join(dir, "node1", "etc", "novacloud", "gunicorn_config.py"), "not ours\n");
    const r = esm(`${PRELUDE}
      const messages = [
        ...failure(() => lib.render(model, {})).issues.map((i) => i.message),
        failure(() => lib.render(model, { env, hosts: ["nope"] })).message,
        failure(() => writeTree(lib.render(model, { env }), ${JSON.stringify(dir)})).message,
        ...lib.parseModelText("{}", "yaml").issues.map((i) => i.message),
        ...lib.parseModelText('{"project": }', "json").issues.map((i) => \`\${i.line}: \${i.message}\`),
        ...lib.parseModelText('{\\n  "project": {"name": "x"', "json").issues.map((i) => \`\${i.line}: \${i.message}\`),
      ];
      console.log(JSON.stringify(messages));`) as string[];
    expect(r.length).toBeGreaterThanOrEqual(6);
    for (const message of r) expect(message).not.toMatch(/(^|\s)--[a-z]/);
    expect(r.join("\n")).toContain("env option");
    expect(r).toContain('unknown model format "yaml" (expected "toml" or "json")');
    expect(r.at(-2)).toMatch(/^1: JSON syntax error at line 1, column 13: /);
    expect(r.at(-1)).toMatch(/^2: JSON syntax error at line 2, column \d+: unexpected end of input/);
  });

  it("fails tsc on a typo in a model literal, under node16 and bundler resolution", () => {
    const literal = (key: string) => `import { render } from "novacloud-render";
render({
  project: { ${key}: "App" },
  site: { domain: "example.org" },
  hosts: { node1: { address: "10.0.0.1", roles: ["web", "app", "db", "redis", "mqtt"] } },
  postgres: { password: { env: "DB_PASSWORD" } },
  redis: { password: { env: "REDIS_PASSWORD" } },
  mqtt: { password: { env: "MQTT_PASSWORD" } },
  django: { secret_key: { env: "SECRET_KEY" } },
});
`;
    for (const resolution of [{ module: "node16", moduleResolution: "node16" }, { module: "esnext", moduleResolution: "bundler" }]) {
      const dir = join(project, `types-${resolution.moduleResolution}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { ...resolution, target: "es2022", strict: true, noEmit: true, skipLibCheck: false, types: [] }, files: ["good.ts", "typo.ts"] }));
      writeFileSync(join(dir, "good.ts"), literal("django_module"));
      writeFileSync(join(dir, "typo.ts"), literal("django_modul"));
      const r = sh(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "."], dir);
      expect(r.code, resolution.moduleResolution).not.toBe(0);
      // Only the typo fails: the good literal and the package's own declarations type-check.
      expect(r.stdout.trim().split("\n").filter((l) => /error TS/.test(l)).map((l) => l.replace(/\(.*/, "")), r.output).toEqual(["typo.ts"]);
      expect(r.stdout).toContain("django_modul");
    }
  });

  it("runs the CLI through npx: --version and a render", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    const version = sh("npx", ["--offline", "--no-install", "novacloud-render", "--version"], project);
    expect(version.code, version.output).toBe(0);
    expect(version.stdout.trim()).toBe(pkg.version);
    const dir = join(ROOT, "fixtures", "single-node");
    const r = sh("npx", ["--offline", "--no-install", "novacloud-render", join(dir, "novacloud.toml"), "--secrets", join(dir, "secrets.env"), "--out", "out"], project);
    expect(r.code, r.output).toBe(0);
    expect(existsSync(join(project, "out", "node1", "etc", "novacloud", "novacloud.env"))).toBe(true);
  });
});
