/**
 * The package as users get it: `npm pack`, install the tarball into an empty project offline,
 * then ESM import, CommonJS require, the types (the README's embedding example compiles with
 * tsc --noEmit against the installed declarations), the schema export, and the CLI through npx.
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
  const packedDeps = sh("npm", ["pack", "--ignore-scripts", "--pack-destination", deps, ...dependencies], ROOT);
  if (packedDeps.code !== 0) throw new Error(`npm pack of the dependencies failed:\n${packedDeps.output}`);
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
    expect(list).toEqual(expect.arrayContaining(["package/dist/index.js", "package/dist/index.cjs", "package/dist/index.d.ts", "package/dist/cli.js", "package/dist/schema.json", "package/README.md", "package/LICENSE"]));
    expect(list.filter((f) => /^package\/(src|test|fixtures|golden|templates|scripts|bench)\//.test(f))).toEqual([]);
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

  it("type-checks the README's embedding example against the installed declarations", () => {
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
