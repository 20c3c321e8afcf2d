/** Docs that must match the code: the README's model reference and its CLI section. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs build script without types
import { END, modelReference, START } from "../scripts/model-reference.mjs";
import { alertRules } from "../src/artifacts/alerts.js";
import { HELP } from "../src/cli/args.js";
import { modelJsonSchema } from "../src/schema-json.js";
import { ROOT } from "./helpers/fixtures.js";

const readme = readFileSync(join(ROOT, "README.md"), "utf8");

describe("README", () => {
  it("has the model reference generated from the current schema", () => {
    const section = readme.slice(readme.indexOf(START), readme.indexOf(END) + END.length);
    expect(section, "run `npm run build && node scripts/model-reference.mjs --write`").toBe(modelReference(modelJsonSchema()));
  });

  it("documents every CLI option that --help lists", () => {
    const flags = [...HELP.matchAll(/(?:^|\s)(--[a-z-]+)/g)].map((m) => m[1]!);
    expect(flags.length).toBeGreaterThan(8);
    for (const flag of new Set(flags)) expect(readme, `README lacks ${flag}`).toContain(flag);
  });

  it("lists every alert rule with its severity and delay (Monitoring)", () => {
    const rows = [...readme.matchAll(/^\| `([A-Za-z]+)` \| (critical|warning) \| ([0-9a-z ]+) \| /gm)].map((m) => `${m[1]} ${m[2]} ${m[3]}`);
    expect(rows).toEqual(alertRules({ backupMaxAge: "26h" }).map((r) => `${r.alert} ${r.severity} ${r.for ?? "at once"}`));
  });

  it("documents the exit codes --help gives", () => {
    for (const code of ["**0**", "**1**", "**2**", "**3**"]) expect(readme).toContain(code);
  });
});
