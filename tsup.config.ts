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
    // The CLI: one ESM bundle plus lazily loaded chunks, so --version loads almost nothing.
    entry: { cli: "src/cli/main.ts" },
    format: ["esm"],
    splitting: true,
    sourcemap: false,
    target: "node20",
    define,
    banner: { js: "#!/usr/bin/env node" },
  },
]);
