/**
 * Property-based tests (fast-check, seeded: a failure prints the seed and the shrunk case; rerun
 * it with FC_SEED=<seed>; FC_RUNS=<factor> runs more cases):
 *
 * - every generated VALID model parses (from TOML and from JSON) and renders deterministically:
 *   twice the same bytes in the same order, every file ending in one newline, no CR, and the
 *   generated marker first (after a shebang where there is one). Only properties, not content:
 *   the artifact families are still being written.
 * - every MUTATION of a valid model (a required key deleted, a type changed, a bad character
 *   injected into a string, an unknown key added, a role duplicated, a host renamed badly) is
 *   rejected with at least one problem whose path names a place in the model (or its parent),
 *   one line per problem, the same problems from an object, TOML and JSON, and never an exception.
 */
import fc from "fast-check";
import { stringify as toToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { formatIssue, parsePath, type ModelIssue, type PathSegment } from "../src/model/errors.js";
import { parseModel, parseModelText } from "../src/model/parse.js";
import { render } from "../src/render.js";
import { GENERATED_MARKER } from "../src/tree.js";
import { PROPERTY_ENV, validModel, type Json, type ModelObject } from "./helpers/models.js";

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 20240605;
// FC_RUNS=10 for a longer hunt; the normal suite stays bounded.
const SCALE = Number(process.env.FC_RUNS ?? 1);
const RUNS = { valid: Math.round(120 * SCALE), mutations: Math.round(200 * SCALE) };

function problems(issues: readonly ModelIssue[]): string {
  return issues.map((i) => formatIssue(i)).join("\n");
}

function treeEntries(model: ModelObject): [string, unknown][] {
  const parsed = parseModelText(toToml(model), "toml");
  if (!parsed.ok) throw new Error(`a generated valid model was rejected:\n${problems(parsed.issues)}\n\n${toToml(model)}`);
  return [...render(parsed.model, { env: PROPERTY_ENV })];
}

describe("valid models", () => {
  it("parse from TOML and JSON and render deterministically, every file well-formed", () => {
    fc.assert(
      fc.property(validModel, (model) => {
        const fromJson = parseModelText(JSON.stringify(model, null, 2), "json");
        if (!fromJson.ok) throw new Error(`JSON form rejected:\n${problems(fromJson.issues)}`);
        const first = treeEntries(model);
        const second = treeEntries(model);
        expect(second.map(([p]) => p)).toEqual(first.map(([p]) => p));
        expect(second).toEqual(first);
        const paths = first.map(([p]) => p);
        expect(paths).toEqual([...paths].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
        for (const [path, file] of first) {
          const content = (file as { content: string }).content;
          expect.soft(content.endsWith("\n"), `${path} ends with a newline`).toBe(true);
          expect.soft(content.endsWith("\n\n"), `${path} has no trailing blank lines`).toBe(false);
          expect.soft(content.includes("\r"), `${path} has no CR`).toBe(false);
          const lines = content.split("\n");
          const markerLine = lines[0]!.startsWith("#!") ? lines[1] : lines[0];
          // Mosquitto's password file has no comments: mosquitto_passwd takes one for corruption.
          const hasComments = (file as { template: string }).template !== "mosquitto/passwd.njk";
          expect.soft(markerLine?.includes(GENERATED_MARKER), `${path} starts with the generated marker`).toBe(hasComments);
        }
      }),
      { numRuns: RUNS.valid, seed: SEED },
    );
  });
});

// --- mutations ---------------------------------------------------------------------------------

type Container = { [key: string]: Json } | Json[];

function isTable(v: unknown): v is { [key: string]: Json } {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Every path to a value in the model (tables, arrays and leaves), root excluded. */
function allPaths(node: Json, prefix: PathSegment[] = []): PathSegment[][] {
  if (Array.isArray(node)) return node.flatMap((v, i) => [[...prefix, i], ...allPaths(v, [...prefix, i])]);
  if (isTable(node)) return Object.entries(node).flatMap(([k, v]) => [[...prefix, k], ...allPaths(v, [...prefix, k])]);
  return [];
}

function getAt(root: Json, path: readonly PathSegment[]): Json | undefined {
  let node: Json | undefined = root;
  for (const seg of path) {
    if (node === null || typeof node !== "object") return undefined;
    if (!Object.prototype.hasOwnProperty.call(node, seg)) return undefined;
    node = (node as Record<string | number, Json>)[seg];
  }
  return node;
}

function setAt(root: Json, path: readonly PathSegment[], value: Json): void {
  const parent = getAt(root, path.slice(0, -1)) as Container;
  (parent as Record<string | number, Json>)[path[path.length - 1]!] = value;
}

function deleteAt(root: Json, path: readonly PathSegment[]): void {
  const parent = getAt(root, path.slice(0, -1)) as Record<string | number, Json>;
  delete parent[path[path.length - 1]!];
}

/** Keys a valid model must have (where it has their table). */
function requiredPaths(model: ModelObject): PathSegment[][] {
  const out: PathSegment[][] = [
    ["project"], ["project", "django_module"], ["site"], ["site", "domain"], ["postgres"], ["postgres", "password"],
    ["mqtt"], ["mqtt", "password"], ["django"], ["django", "secret_key"],
  ];
  for (const name of Object.keys((model.hosts as Record<string, Json> | undefined) ?? {})) {
    out.push(["hosts", name, "address"], ["hosts", name, "roles"]);
  }
  if (isTable(model.email)) out.push(["email", "host"]);
  const tls = isTable(model.site) ? (model.site as Record<string, Json>).tls : undefined;
  if (isTable(tls)) {
    out.push(["site", "tls", "mode"]);
    if (tls.mode === "files") out.push(["site", "tls", "certificate"], ["site", "tls", "key"]);
  }
  return out;
}

// Characters no string field that reaches a config file accepts.
const BAD_CHARACTERS = ["\n", "\r", "\t", ";", "{", "}", '"', "'", "$", "`", " ", "\u0000", "\u007f", "\u202e", "é", "\\", "#", "|", "&", "<", ">", "(", "!"];

type Mutation = {
  kind: "delete-required" | "change-type" | "inject" | "unknown-key" | "duplicate-role" | "bad-host-name";
  i: number;
  at: number;
  bad: string;
  key: string;
};

const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom("delete-required", "change-type", "inject", "unknown-key", "duplicate-role", "bad-host-name"),
  i: fc.nat(),
  at: fc.nat(),
  bad: fc.constantFrom(...BAD_CHARACTERS),
  key: fc.stringMatching(/^[a-z][a-z_]{0,11}$/),
});

/** Applies `m` to a copy of `model`; undefined when the model has nothing it applies to. */
function mutate(model: ModelObject, m: Mutation): { model: ModelObject; what: string } | undefined {
  const copy = structuredClone(model) as ModelObject;
  const pick = <T>(list: readonly T[]): T | undefined => (list.length === 0 ? undefined : list[m.i % list.length]);
  const paths = allPaths(copy);
  const show = (p: readonly PathSegment[]) => p.join(".");
  switch (m.kind) {
    case "delete-required": {
      const path = pick(requiredPaths(copy).filter((p) => getAt(copy, p) !== undefined));
      if (!path) return undefined;
      deleteAt(copy, path);
      return { model: copy, what: `deleted ${show(path)}` };
    }
    case "change-type": {
      const path = pick(paths);
      if (!path) return undefined;
      const old = getAt(copy, path);
      setAt(copy, path, typeof old === "boolean" ? String(old) : true);
      return { model: copy, what: `changed the type of ${show(path)}` };
    }
    case "inject": {
      const path = pick(paths.filter((p) => typeof getAt(copy, p) === "string"));
      if (!path) return undefined;
      const old = getAt(copy, path) as string;
      const at = m.at % (old.length + 1);
      setAt(copy, path, `${old.slice(0, at)}${m.bad}${old.slice(at)}`);
      return { model: copy, what: `injected ${JSON.stringify(m.bad)} into ${show(path)}` };
    }
    case "unknown-key": {
      const tables: PathSegment[][] = [[], ...paths.filter((p) => isTable(getAt(copy, p)))];
      const path = pick(tables)!;
      const table = (path.length === 0 ? copy : getAt(copy, path)) as Record<string, Json>;
      // A key no table of the schema has (every real key has a digit-free name, so add one).
      const key = `${m.key}9`;
      if (key in table) return undefined;
      table[key] = 1;
      return { model: copy, what: `added unknown key ${show([...path, key])}` };
    }
    case "duplicate-role": {
      const hosts = Object.entries((copy.hosts as Record<string, { roles: string[] }> | undefined) ?? {});
      const host = pick(hosts);
      if (!host) return undefined;
      const roles = host[1].roles;
      roles.push(roles[m.at % roles.length]!);
      return { model: copy, what: `duplicated a role of host ${host[0]}` };
    }
    case "bad-host-name": {
      const hosts = (copy.hosts as Record<string, Json> | undefined) ?? {};
      const name = pick(Object.keys(hosts));
      if (name === undefined) return undefined;
      const bad = `${name.slice(0, m.at % (name.length + 1))}${m.bad}${name.slice(m.at % (name.length + 1))}`;
      const renamed: Record<string, Json> = {};
      for (const [k, v] of Object.entries(hosts)) renamed[k === name ? bad : k] = v;
      copy.hosts = renamed;
      return { model: copy, what: `renamed host ${name} to ${JSON.stringify(bad)}` };
    }
  }
}

const ONE_LINE = /^[^\n\r\u2028\u2029\u0000-\u001f\u007f-\u009f]+$/;

describe("mutated models", () => {
  it("are rejected with problems that name a path, one line each, never an exception", () => {
    fc.assert(
      fc.property(validModel, mutation, (model, m) => {
        const mutated = mutate(model, m);
        fc.pre(mutated !== undefined);
        const { model: bad, what } = mutated!;
        const result = parseModel(bad);
        if (result.ok) throw new Error(`accepted a model after it ${what}`);
        expect(result.issues.length, what).toBeGreaterThan(0);
        for (const issue of result.issues) {
          expect(issue.message, what).toMatch(ONE_LINE);
          expect(formatIssue(issue, "novacloud.toml"), what).toMatch(ONE_LINE);
        }
        const named = result.issues.filter((issue) => {
          if (issue.path === "") return false;
          const path = parsePath(issue.path);
          return getAt(bad, path) !== undefined || path.length === 1 || getAt(bad, path.slice(0, -1)) !== undefined;
        });
        expect(named.length, `${what}: some problem names a path in the model:\n${problems(result.issues)}`).toBeGreaterThan(0);

        // The same problems whichever way the model is written.
        const plain = (issues: readonly ModelIssue[]) => issues.map((i) => `${i.path}: ${i.message}`);
        const fromToml = parseModelText(toToml(bad), "toml");
        const fromJson = parseModelText(JSON.stringify(bad, null, 2), "json");
        expect(fromToml.ok || plain(fromToml.issues), what).toEqual(plain(result.issues));
        expect(fromJson.ok || plain(fromJson.issues), what).toEqual(plain(result.issues));
      }),
      { numRuns: RUNS.mutations, seed: SEED },
    );
  });
});
