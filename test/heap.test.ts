/**
 * No plaintext secret outlives a render. A fresh node process renders a fixture 1,000 times
 * (after a warm-up), each time with new values for every secret, each value carrying a random marker the process
 * keeps only as bytes; then a heap snapshot (node:v8 writeHeapSnapshot) must not contain the
 * marker anywhere, and the heap (after full GCs) must not have grown beyond a small bound.
 * The module-level hash memo of 0.1.0 (keyed by the plaintext) failed both.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadFixture, ROOT } from "./helpers/fixtures.js";

const INDEX = join(ROOT, "dist", "index.js");
const work = mkdtempSync(join(tmpdir(), "ncr-heap-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const RENDERS = 1000;
/**
 * Renders before the first measurement: V8's compiled code and type feedback keep growing the
 * heap for about the first 2,000 renders of this loop, then level off (measured).
 */
const WARM_UP = 2000;
/**
 * Heap growth allowed over the 1,000 renders, measured after full GCs. Measured here once warm:
 * between -0.6 and +0.6 MiB from run to run; the module-level memo of 0.1.0 grew it by 6.6 MiB.
 */
const GROWTH_LIMIT = 2 * 1024 * 1024;

/**
 * The child: every secret gets `<name>-<marker hex>-<i>` for render i. The marker is created as
 * bytes and turned into text only inside each render's values; the last render uses values
 * without it, so that V8's own record of the last regular expression match (a property of the
 * engine, not a cache of ours) holds no marked string either.
 */
const CHILD = `
import { pbkdf2Sync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeHeapSnapshot } from "node:v8";
const { parseModelText, render } = await import(process.argv[1]);
const { modelText, names, warmUp, renders, snapshot } = JSON.parse(readFileSync(0, "utf8"));
const parsed = parseModelText(modelText, "toml");
if (!parsed.ok) throw new Error("invalid fixture");
// Native PBKDF2 at one iteration: every hash is still computed and cached as in a real render,
// at a fraction of the time (how long a hash takes is not what this test is about).
const pbkdf2 = (digest, password, salt, iterations, length) => new Uint8Array(pbkdf2Sync(password, salt, 1, length, digest));
const marker = randomBytes(12);
function renderWith(i, mark) {
  const env = {};
  for (const name of names) env[name] = name.toLowerCase() + "-" + (mark ? marker.toString("hex") : "plain") + "-" + i;
  return render(parsed.model, { env, pbkdf2 }).size;
}
for (let i = 0; i < warmUp; i++) renderWith(i, true);
for (let i = 0; i < 3; i++) globalThis.gc();
const before = process.memoryUsage().heapUsed;
let files = 0;
for (let i = warmUp; i < warmUp + renders; i++) files += renderWith(i, true);
renderWith(0, false);
for (let i = 0; i < 3; i++) globalThis.gc();
const after = process.memoryUsage().heapUsed;
writeHeapSnapshot(snapshot);
process.stdout.write(JSON.stringify({ before, after, files, marker: marker.toString("hex") }));
`;

describe("1,000 renders with distinct passwords", () => {
  it("leave no password in a heap snapshot and no heap growth beyond a small bound", { timeout: 180_000 }, () => {
    const f = loadFixture("ha-sentinel");
    const names = Object.keys(f.sources.env ?? {});
    expect(names.length).toBeGreaterThanOrEqual(5);
    const snapshot = join(work, "after.heapsnapshot");
    const r = spawnSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", CHILD, INDEX], {
      input: JSON.stringify({ modelText: readFileSync(f.modelPath, "utf8"), names, warmUp: WARM_UP, renders: RENDERS, snapshot }),
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { before: number; after: number; files: number; marker: string };
    expect(result.files).toBeGreaterThan(RENDERS);
    const heap = readFileSync(snapshot, "utf8");
    // The snapshot holds the strings of the heap (so a password would show): the fixture's MQTT user.
    expect(heap).toContain("novacloud_platform");
    const found = heap.split(result.marker).length - 1;
    expect(found, `the heap snapshot holds ${found} strings of the rendered passwords`).toBe(0);
    const growth = result.after - result.before;
    expect(growth, `the heap grew by ${(growth / 1024).toFixed(0)} KiB`).toBeLessThan(GROWTH_LIMIT);
  });
});
