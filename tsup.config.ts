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
    // The CLI: two CommonJS bundles, dependencies included and minified. CommonJS because an ES
    // module anywhere on the way starts node's ESM loader, which alone made `--version` about
    // 1.2x `node -e 0` (an empty .js module against an empty .cjs file, measured side by side)
    // and made a cold render wait on its asynchronous file reads. dist/cli.cjs (the bin) holds
    // argument parsing, --help and --version; every other command requires dist/cli-run.cjs,
    // the commands that render (what they import on demand, e.g. --check's diff, is in it too,
    // evaluated only when asked for: esbuild's lazy module wrappers).
    entry: { cli: "src/cli/bin.ts", "cli-run": "src/cli/run.ts" },
    format: ["cjs"],
    outExtension: () => ({ js: ".cjs" }),
    splitting: false,
    noExternal: [/.*/],
    minify: process.env.NOVACLOUD_NO_MINIFY === undefined, // set it to read --cpu-prof profiles
    platform: "node",
    sourcemap: false,
    target: "node20",
    define,
    banner: { js: "#!/usr/bin/env node" },
    esbuildPlugins: [
      {
        // The bin's require("./cli-run.cjs") is the other bundle, not a module to include.
        name: "cli-run-external",
        setup(build) {
          build.onResolve({ filter: /^\.\/cli-run\.cjs$/ }, () => ({ path: "./cli-run.cjs", external: true }));
        },
      },
    ],
  },
]);
