/**
 * The core (everything under src/ but src/cli/ and src/node/) uses no Node.js API, so it runs
 * in a browser bundle and other runtimes; and render() is deterministic. The CLI and the
 * `novacloud-render/node` entry (src/node/) are the only I/O layer.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { render } from "../src/render.js";
import { fixtureNames, loadFixture, ROOT } from "./helpers/fixtures.js";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const full = join(dir, e);
    if (statSync(full).isDirectory()) return e === "cli" || e === "node" ? [] : sources(full);
    return /\.(ts|js)$/.test(e) ? [full] : [];
  });
}

describe("the core", () => {
  const files = sources(join(ROOT, "src"));

  it("imports no Node.js module and reads no process state", () => {
    expect(files.length).toBeGreaterThan(10);
    const offending = files.flatMap((file) => {
      // Comments may mention process.env (how a caller passes secrets); code may not.
      const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
      const hits = [
        ...text.matchAll(/from\s+["'](node:[^"']+|fs|path|os|child_process|crypto|process)["']/g),
        ...text.matchAll(/\b(?:process\.(?:env|cwd|argv|stdout|stderr|exit)|require\(|Date\.now\(|new Date\(|Math\.random\()/g),
      ];
      return hits.map((m) => `${relative(ROOT, file)}: ${m[0]}`);
    });
    expect(offending).toEqual([]);
  });

  it.each(fixtureNames())("renders %s to the same bytes every time, with no clock or environment in them", (name) => {
    const f = loadFixture(name);
    // Two options objects: the second render shares no cached hash with the first (a render in
    // a fresh process is in test/determinism.test.ts).
    const a = render(f.model, { ...f.sources });
    const b = render(f.model, { ...f.sources });
    expect([...b]).toEqual([...a]);
    const all = [...a.values()].map((x) => x.content).join("\n");
    expect(all).not.toMatch(/\b20\d\d-\d\d-\d\d[T ]\d\d:\d\d/);
    expect(all).not.toContain(ROOT);
  });
});
