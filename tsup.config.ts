import { readFileSync } from "node:fs";
import { defineConfig } from "tsup";

const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
const define = { __VERSION__: JSON.stringify(version) };

export default defineConfig([
  {
    // The library: the core and novacloud-render/node, ESM and CommonJS with type declarations.
    // One build with shared chunks, so the node entry uses the core's own classes (a model the
    // core validated is trusted, ModelError is one class). What the core uses (zod, the
    // nunjucks runtime, smol-toml, @noble/hashes) and `diff` (checkTree) are bundled: node
    // loads a few files instead of hundreds (zod alone was ~200 module files and most of the
    // import time), unused parts of zod are left out, and the package has no dependencies
    // (the declarations name no zod type: scripts/write-model-types.mjs). bench/run.mjs
    // measures the import.
    entry: { index: "src/index.ts", node: "src/node/index.ts" },
    format: ["esm", "cjs"],
    splitting: true,
    noExternal: [/.*/],
    // Not minified: tsup's CommonJS splitting rewrites optional chains after esbuild, and on
    // whitespace-minified code it joined `return` to its helper (`return_optionalChain`, a
    // ReferenceError at render time; test/pack.test.ts renders through the CommonJS copy).
    dts: true,
    sourcemap: false,
    clean: true,
    target: "node20",
    define,
  },
  {
    // Benchmark support only (not exported by package.json, not shipped: see "files").
    entry: { "bench-internals": "src/bench-internals.ts" },
    format: ["esm"],
    target: "node20",
    define,
  },
  {
    // The CLI's work (src/cli/run.ts): ESM, dependencies included and minified, so node loads a
    // few files instead of hundreds, plus chunks loaded only by the commands that need them.
    // The bin (below) imports it for every command but --help and --version.
    entry: { "cli-run": "src/cli/run.ts" },
    format: ["esm"],
    splitting: true,
    noExternal: [/.*/],
    minify: true,
    platform: "node",
    sourcemap: false,
    target: "node20",
    define,
  },
  {
    // The bin, dist/cli.cjs: argument parsing, --help and --version only. CommonJS because an ES
    // module entry starts node's ESM loader, which alone made `--version` about 1.2x `node -e 0`
    // (an empty .js module against an empty .cjs file, measured side by side); the render
    // path's `import("./run.js")` becomes an import of the ESM bundle above.
    entry: { cli: "src/cli/main.ts" },
    format: ["cjs"],
    outExtension: () => ({ js: ".cjs" }),
    noExternal: [/.*/],
    minify: true,
    platform: "node",
    sourcemap: false,
    target: "node20",
    define,
    banner: { js: "#!/usr/bin/env node" },
    esbuildPlugins: [
      {
        name: "cli-run-external",
        setup(build) {
          build.onResolve({ filter: /^\.\/run\.js$/ }, () => ({ path: "./cli-run.js", external: true }));
        },
      },
    ],
  },
]);
