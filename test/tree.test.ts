/** buildTree: sorted, frozen in place (no copies), and two files at one path refused. */
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
