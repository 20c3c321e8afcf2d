import { readFileSync } from "node:fs";
import { defineConfig } from "tsup";

const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
const define = { __VERSION__: JSON.stringify(version) };

export default defineConfig([
  {
    // The library: ESM and CommonJS with type declarations; dependencies stay external.
    entry: { index: "src/index.ts" },
    format: ["esm", "cjs"],
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
