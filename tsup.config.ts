import { readFileSync } from "node:fs";
import { defineConfig } from "tsup";

const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
const define = { __VERSION__: JSON.stringify(version) };

export default defineConfig([
  {
    // The library: the core and novacloud-render/node, ESM and CommonJS with type declarations.
    // One build with shared chunks, so the node entry uses the core's own classes (a model the
    // core validated is trusted, ModelError is one class). Runtime dependencies stay external;
    // `diff`, used only by checkTree, is bundled so it need not be a dependency of the package.
    entry: { index: "src/index.ts", node: "src/node/index.ts" },
    format: ["esm", "cjs"],
    splitting: true,
    noExternal: ["diff"],
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
    // The CLI: one self-contained ESM bundle (dependencies included and minified, so node
    // loads a few files instead of hundreds) plus chunks loaded only by the commands that need
    // them, so --version loads almost nothing. Measured in bench/run.mjs.
    entry: { cli: "src/cli/main.ts" },
    format: ["esm"],
    splitting: true,
    noExternal: [/.*/],
    minify: true,
    platform: "node",
    sourcemap: false,
    target: "node20",
    define,
    banner: { js: "#!/usr/bin/env node" },
  },
]);
