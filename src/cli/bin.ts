/**
 * The bin, built as dist/cli.cjs (tsup.config.ts): CommonJS, and so is the render path it
 * loads, dist/cli-run.cjs (src/cli/run.ts and everything it uses in one file), with require.
 * An ES module anywhere on the way starts node's ESM loader, whose start-up and asynchronous
 * file reads were a measurable part of a cold render and most of what `--version` cost beyond
 * `node -e 0` (bench/run.mjs).
 */
import { start } from "./main.js";

declare const require: (id: string) => Pick<typeof import("./run.js"), "run">;

start(process.argv.slice(2), async () => require("./cli-run.cjs"));
