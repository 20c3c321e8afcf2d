import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };

export default defineConfig({
  define: { __VERSION__: JSON.stringify(version) },
  test: {
    include: ["test/**/*.test.ts"],
    // The fleet has its own command (npm run test:fleet, vitest.fleet.config.ts).
    exclude: ["test/fleet/**", "**/node_modules/**"],
    // Most files wait on the real programs they start (PostgreSQL, nginx, ansible-lint ...), so
    // two files at a time keep a 2-core machine busy: vitest's default there is one (cores - 1),
    // and the suite took 444 s against 303 s with two (measured on the CI machine's kind).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
