/**
 * The password hashes: the pure-JS PBKDF2 (the core's default) and Node's native one (what the
 * CLI passes) give the same bytes, so a tree rendered either way is identical; and the SCRAM
 * verifier has PostgreSQL's shape. The real servers accept them in test/lint (mosquitto, postgres).
 */
import { pbkdf2Sync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { mosquittoPasswordHash, pbkdf2Js, scramSha256Verifier, type Pbkdf2 } from "../src/crypto.js";
import { render } from "../src/render.js";
import { loadFixture } from "./helpers/fixtures.js";

const native: Pbkdf2 = (digest, password, salt, iterations, length) => new Uint8Array(pbkdf2Sync(password, salt, iterations, length, digest));

describe("PBKDF2", () => {
  it("pure JS and native agree", () => {
    const password = new TextEncoder().encode("p@ss \"w\" $x \\ #%");
    const salt = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const digest of ["sha256", "sha512"] as const) {
      expect(Buffer.from(pbkdf2Js(digest, password, salt, 101, 64)).toString("hex")).toBe(Buffer.from(native(digest, password, salt, 101, 64)).toString("hex"));
    }
  });

  it("a fixture renders the same bytes with either implementation", () => {
    const f = loadFixture("ha-sentinel");
    const a = render(f.model, f.sources);
    const b = render(f.model, { ...f.sources, pbkdf2: native });
    expect([...b]).toEqual([...a]);
  });

  it("builds hashes in the formats the servers read", () => {
    expect(mosquittoPasswordHash("u", "pw")).toMatch(/^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
    expect(scramSha256Verifier("u", "pw")).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    // Deterministic, and different per user.
    expect(mosquittoPasswordHash("u", "pw")).toBe(mosquittoPasswordHash("u", "pw"));
    expect(mosquittoPasswordHash("v", "pw")).not.toBe(mosquittoPasswordHash("u", "pw"));
  });
});
