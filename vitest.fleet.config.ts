import { readFileSync } from "node:fs";
import { defineConfig } from "vitest/config";

const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };

// The fleet (test/fleet): one file, long hooks; `npm run test:fleet`.
export default defineConfig({
  define: { __VERSION__: JSON.stringify(version) },
  test: {
    include: ["test/fleet/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 1_200_000,
  },
});
