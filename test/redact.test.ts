/**
 * Masking by structure (src/redact.ts): a line of a secret-bearing file keeps its leading key,
 * if the rendered file writes that key, and nothing else. The end-to-end proof that no old, new
 * or hand-typed value reaches --check or a golden diff is in test/leaks.test.ts.
 */
import { structuredPatch } from "diff";
import { describe, expect, it } from "vitest";
import { lineKey, lineKeys, maskLine, maskPatch, REDACTED } from "../src/redact.js";

describe("lineKey", () => {
  it.each([
    ["DB_PASSWORD=s3cret", "DB_PASSWORD="],
    ["requirepass \"s3cret\"", "requirepass "],
    ["    stats auth admin:s3cret", "    stats "],
    ["10.0.0.11:5432:*:replicator:s3cret", "10.0.0.11:"],
    ["novacloud_platform:$7$1000$salt$hash", "novacloud_platform:"],
    ["# a comment with s3cret", "# "],
    ["-- SQL comment", "-- "],
    ["s3cret", ""],
    ["'s3cret' after a quote", ""],
  ])("%j -> %j", (line, key) => {
    expect(lineKey(line)).toBe(key);
  });
});

describe("maskLine", () => {
  const keys = lineKeys("DB_PASSWORD=x\nrequirepass y\n  stats auth a:b\n# c\n");

  it("keeps a key the rendered file writes, and masks the rest", () => {
    expect(maskLine("DB_PASSWORD=old-value", keys)).toBe(`DB_PASSWORD=${REDACTED}`);
    expect(maskLine("requirepass \"old value\"", keys)).toBe(`requirepass ${REDACTED}`);
    expect(maskLine("  stats auth admin:old", keys)).toBe(`  stats ${REDACTED}`);
    expect(maskLine("# old-value", keys)).toBe(`# ${REDACTED}`);
  });

  it("masks a whole line whose key the rendered file does not write: it may be a secret itself", () => {
    expect(maskLine("hand-typed-secret more words", keys)).toBe(REDACTED);
    expect(maskLine("HAND_PASSWORD=typed", keys)).toBe(REDACTED);
    expect(maskLine("    hand-typed-secret", keys)).toBe(`    ${REDACTED}`);
  });

  it("leaves blank lines blank", () => {
    expect(maskLine("", keys)).toBe("");
    expect(maskLine("   ", keys)).toBe("   ");
  });
});

describe("maskPatch", () => {
  it("masks both sides and the context, keeping each line's side and diff's own notes", () => {
    const before = "# header\nDB_PASSWORD=old\nDEBUG=0\nHAND=typed";
    const after = "# header\nDB_PASSWORD=new\nDEBUG=0\n";
    const patch = maskPatch(structuredPatch("a", "b", before, after), after);
    expect(patch.hunks.flatMap((h) => h.lines)).toEqual([
      ` # ${REDACTED}`,
      `-DB_PASSWORD=${REDACTED}`,
      `+DB_PASSWORD=${REDACTED}`,
      ` DEBUG=${REDACTED}`,
      `-${REDACTED}`,
      "\\ No newline at end of file",
    ]);
  });
});
