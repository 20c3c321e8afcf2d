/**
 * Golden files: golden/<fixture>/ holds exactly the tree render() gives, file for file, and
 * golden/<fixture>.modes its modes and owners. Any extra, missing or changed file fails with a
 * unified diff (secrets redacted). Re-bless with `npm run golden:update`, then read every
 * changed file in `git diff golden/` before committing.
 */
import { describe, expect, it } from "vitest";
import { fixtureNames, loadFixture, renderFixture } from "./helpers/fixtures.js";
import { goldenDifferences, writeGolden } from "./helpers/golden.js";

const UPDATE = process.env.UPDATE_GOLDEN === "1";

describe("golden trees", () => {
  const names = fixtureNames();
  it("has fixtures to compare", () => {
    expect(names.length).toBeGreaterThanOrEqual(3);
  });
  for (const name of names) {
    it(`${name} renders exactly golden/${name}/`, () => {
      const tree = renderFixture(name);
      if (UPDATE) {
        writeGolden(name, tree);
        return;
      }
      const problems = goldenDifferences(name, tree, loadFixture(name).secretValues);
      if (problems.length > 0) {
        throw new Error(`golden/${name} differs from the rendered tree (re-bless with npm run golden:update, then review git diff golden/):\n\n${problems.join("\n")}`);
      }
    });
  }
});
