/** buildTree: sorted, frozen in place (no copies), and two files at one path refused. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildTree, DuplicatePathError, type TreeFile } from "../src/tree.js";

const file = (content: string): TreeFile => ({ content, mode: 0o644, owner: "root", group: "root", family: "test", secret: false, effects: [{ kind: "restart", unit: "x.service" }] });

describe("buildTree", () => {
  it("sorts by path and freezes each file and its effects", () => {
    const tree = buildTree([["b/x", file("2\n")], ["a-b/y", file("1\n")], ["a/z", file("3\n")]]);
    expect([...tree.keys()]).toEqual(["a-b/y", "a/z", "b/x"]);
    const f = tree.get("a/z")!;
    expect(Object.isFrozen(f)).toBe(true);
    expect(Object.isFrozen(f.effects)).toBe(true);
    expect(Object.isFrozen(f.effects![0])).toBe(true);
    expect(() => (tree as Map<string, TreeFile>).set("c", f)).toThrow(TypeError);
  });

  it("refuses two files at one path, wherever they come in the input", () => {
    expect(() => buildTree([["b", file("1\n")], ["a", file("2\n")], ["b", file("3\n")]])).toThrow(DuplicatePathError);
    expect(() => buildTree([["b", file("1\n")], ["a", file("2\n")], ["b", file("3\n")]])).toThrow("two artifacts produce the same file b");
  });
});

describe("buildTree's order", () => {
  it("is the order of one sort of every path, also for first segments that prefix each other", () => {
    const segments = ["a", "a-b", "a.b", "ab", "a_b", "A", "ansible", "compose", "node1", "node1-b", "node10", "n"];
    const rests = ["x", "x/y", "x-y", "etc/z.conf", "usr/local/bin/a", "a", "b/c", "0"];
    const paths = segments.flatMap((s) => rests.map((r) => `${s}/${r}`));
    // Shuffled deterministically: every 7th, then every 7th from 1, ...
    const shuffled = [0, 1, 2, 3, 4, 5, 6].flatMap((k) => paths.filter((_, i) => i % 7 === k));
    const tree = buildTree(shuffled.map((p) => [p, file(`${p}\n`)] as const));
    expect([...tree.keys()]).toEqual([...paths].sort());
  });

  it("sorts paths without a first segment with the rest", () => {
    const tree = buildTree([["b/x", file("1\n")], ["abc", file("2\n")], ["abc-x/y", file("3\n")], ["ab/z", file("4\n")]]);
    expect([...tree.keys()]).toEqual(["ab/z", "abc", "abc-x/y", "b/x"]);
  });

  it("equals one sort of every path for any paths (property)", () => {
    const path = fc.stringMatching(/^[ab/.-]{1,6}$/);
    fc.assert(
      fc.property(fc.uniqueArray(path, { maxLength: 30 }), (paths) => {
        const tree = buildTree(paths.map((p) => [p, file(`${p}\n`)] as const));
        expect([...tree.keys()]).toEqual([...paths].sort());
      }),
      { numRuns: 2000 },
    );
  });
});
