/**
 * src/yaml.ts decides plain-or-quoted with a hand-written scan and quotes without
 * JSON.stringify when nothing needs escaping (both for speed: they were the largest self time
 * of a warm render). These properties hold them to the definitions they replace.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toYaml, toYamlSequence } from "../src/yaml.js";

const PLAIN = /^(?:[A-Za-z_][A-Za-z0-9_./-]*|[0-9]+[a-z]+)$/;
const RESERVED = /^(?:y|n|yes|no|on|off|true|false|null|~)$/i;
const expectedScalar = (s: string) => (PLAIN.test(s) && !RESERVED.test(s) ? s : JSON.stringify(s));

// Strings near the boundaries: YAML words, digits with units, reserved words, escapes, surrogates.
const tricky = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }),
  fc.stringMatching(/^[A-Za-z0-9_./ -]{0,8}$/),
  fc.stringMatching(/^[0-9]{1,3}[a-zA-Z]{0,3}$/),
  fc.constantFrom("y", "N", "Yes", "no", "ON", "off", "True", "false", "NULL", "~", "nulls", "yes2", "_", "a-b/c.d", "5s", "5S", "05", "\ud800", "\ud83d\ude00", 'a"b', "a\\b", "\u007f", "\u2028"),
);

describe("yaml scalars", () => {
  it("writes a value plain exactly when the regular expressions say so, else as JSON", () => {
    fc.assert(
      fc.property(tricky, (s) => {
        expect(toYaml({ key: s })).toBe(`key: ${expectedScalar(s)}\n`);
      }),
      { numRuns: 2000 },
    );
  });

  it("quotes sequence items as JSON.stringify does", () => {
    fc.assert(
      fc.property(tricky, (s) => {
        expect(toYamlSequence([s])).toBe(`- ${JSON.stringify(s)}\n`);
      }),
      { numRuns: 2000 },
    );
  });
});
