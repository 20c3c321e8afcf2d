/**
 * The password hashes: the pure-JS PBKDF2 (the core's default) and Node's native one (what the
 * CLI passes) give the same bytes, so a tree rendered either way is identical; the formats are
 * the ones the servers read (the real servers accept them in test/lint: mosquitto, postgres);
 * the salts cost as much to recompute from a guess as the hashes they sit next to; and hashes
 * are remembered only for the renders that share one options object.
 */
import { createHmac, pbkdf2Sync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MOSQUITTO, mosquittoPasswordHash, pbkdf2Js, SCRAM, scramSha256Verifier, type Deployment, type Pbkdf2 } from "../src/crypto.js";
import { render } from "../src/render.js";
import { fixtureNames, loadFixture } from "./helpers/fixtures.js";

const native: Pbkdf2 = (digest, password, salt, iterations, length) => new Uint8Array(pbkdf2Sync(password, salt, iterations, length, digest));
const deployment: Deployment = { project: { name: "novacloud" }, site: { domain: "iot.example.com" } };

/** Every salt in a rendered file with the user it belongs to: Mosquitto `user:$7$...` lines and SCRAM verifiers in the init SQL. */
function renderedSalts(content: string): { user: string; kind: "mosquitto" | "scram"; salt: Buffer }[] {
  const salts: { user: string; kind: "mosquitto" | "scram"; salt: Buffer }[] = [];
  for (const m of content.matchAll(/^([^:#\n]+):\$7\$\d+\$([A-Za-z0-9+/=]+)\$/gm)) salts.push({ user: m[1]!, kind: "mosquitto", salt: Buffer.from(m[2]!, "base64") });
  // init.sql: ALTER ROLE <name or "name"> WITH ... PASSWORD 'SCRAM-SHA-256$4096:<salt>$...'
  for (const m of content.matchAll(/ALTER ROLE ("(?:[^"]|"")+"|[^\s"]+) [^\n]*'SCRAM-SHA-256\$\d+:([A-Za-z0-9+/=]+)\$/g)) {
    const user = m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replaceAll('""', '"') : m[1]!;
    salts.push({ user, kind: "scram", salt: Buffer.from(m[2]!, "base64") });
  }
  return salts;
}

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
});

describe("password hashes", () => {
  it("have the formats the servers read", () => {
    expect(mosquittoPasswordHash("u", "pw", deployment)).toMatch(/^\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
    expect(scramSha256Verifier("u", "pw", deployment)).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
  });

  it("are deterministic, and differ per user and per deployment (project name, site domain)", () => {
    for (const hash of [mosquittoPasswordHash, scramSha256Verifier]) {
      const base = hash("u", "pw", deployment);
      expect(hash("u", "pw", { ...deployment })).toBe(base);
      expect(hash("v", "pw", deployment)).not.toBe(base);
      expect(hash("u", "pw", { ...deployment, project: { name: "other" } })).not.toBe(base);
      expect(hash("u", "pw", { ...deployment, site: { domain: "other.example.com" } })).not.toBe(base);
    }
  });

  it("salts are PBKDF2 over the password with the hash's own digest and iteration count", () => {
    const info = (purpose: string, user: string) => `novacloud-render ${purpose} salt\u0000novacloud\u0000iot.example.com\u0000${user}`;
    const mq = mosquittoPasswordHash("u", "pw", deployment).split("$");
    expect(Number(mq[2])).toBe(MOSQUITTO.iterations);
    expect(mq[3]).toBe(pbkdf2Sync("pw", info("mosquitto", "u"), MOSQUITTO.iterations, 12, "sha512").toString("base64"));
    const scram = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(scramSha256Verifier("u", "pw", deployment))!;
    expect(Number(scram[1])).toBe(SCRAM.iterations);
    expect(scram[2]).toBe(pbkdf2Sync("pw", info("scram", "u"), SCRAM.iterations, 16, "sha256").toString("base64"));
    // At least the hash's work: fewer iterations give another salt.
    expect(scram[2]).not.toBe(pbkdf2Sync("pw", info("scram", "u"), SCRAM.iterations - 1, 16, "sha256").toString("base64"));
  });

  it.each(fixtureNames())("%s: no rendered salt is the old one-HMAC salt, HMAC-SHA256(password, purpose || user)", (name) => {
    const f = loadFixture(name);
    const salts = [...render(f.model, f.sources).values()].flatMap((file) => renderedSalts(file.content));
    expect(salts.length, "the fixture renders hashes to check").toBeGreaterThan(0);
    for (const { user, kind, salt } of salts) {
      for (const password of f.secretValues) {
        const old = createHmac("sha256", password).update(`novacloud-render ${kind} salt\u0000${user}`).digest().subarray(0, salt.length);
        expect(old.equals(salt), `${name}: the ${kind} salt of ${user} is one HMAC of a fixture secret`).toBe(false);
      }
    }
  });
});

describe("the hash cache", () => {
  function counting(): { kdf: Pbkdf2; calls: () => number } {
    let calls = 0;
    return { kdf: (...args) => (calls++, native(...args)), calls: () => calls };
  }

  it("serves renders that share an options object, and no other", () => {
    const f = loadFixture("ha-sentinel");
    const { kdf, calls } = counting();
    const options = { ...f.sources, pbkdf2: kdf };
    const first = render(f.model, options);
    const computed = calls();
    expect(computed).toBeGreaterThan(0);
    expect([...render(f.model, options)]).toEqual([...first]);
    expect(calls(), "a second render with the same options object computes nothing").toBe(computed);
    expect([...render(f.model, { ...options })]).toEqual([...first]);
    expect(calls(), "a new options object starts with an empty cache").toBe(2 * computed);
  });

  it("computes a new hash when the password in the same options object changes", () => {
    const f = loadFixture("minimal");
    const env = { ...f.sources.env };
    const options = { ...f.sources, env, pbkdf2: native };
    const before = render(f.model, options).get("server/etc/mosquitto/passwd")!.content;
    env.MQTT_PASSWORD = `${env.MQTT_PASSWORD}-rotated`;
    const after = render(f.model, options).get("server/etc/mosquitto/passwd")!.content;
    expect(after).not.toBe(before);
    expect(after).toBe(render(f.model, { ...f.sources, env: { ...env } }).get("server/etc/mosquitto/passwd")!.content);
  });
});
