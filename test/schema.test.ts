/**
 * The exported JSON Schema (`novacloud-render schema`, dist/schema.json) against the zod schema
 * it is generated from, with ajv's draft 2020-12 validator in strict mode:
 *
 * - it compiles (no unknown keywords, no patterns ajv cannot read as Unicode regexes);
 * - every fixture, and every generated valid model (fast-check), validates;
 * - every invalid-corpus case marked `shape: true` fails, and every other case that parses
 *   (cross-host rules, cron semantics) passes: the schema is neither looser nor stricter than
 *   the model's shape;
 * - the CLI prints exactly modelJsonSchema().
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import fc from "fast-check";
import { parse as parseToml, stringify as toToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { parseModel } from "../src/model/parse.js";
import { modelSchema } from "../src/model/schema.js";
import { modelJsonSchema } from "../src/schema-json.js";
import { FIXTURES, fixtureNames, ROOT } from "./helpers/fixtures.js";
import { invalidCases } from "./helpers/invalid.js";
import { validModel } from "./helpers/models.js";

const schema = modelJsonSchema();
const ajv = new Ajv2020({ allErrors: true, strict: true });
const validate = ajv.compile(schema);

function errorsOf(): string {
  return (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""} ${JSON.stringify(e.params)}`).join("\n");
}

/** Every node of the zod schema's own JSON form with a literal default, and its raw description. */
function literalDefaults(): { path: string; def: unknown; description: string }[] {
  const raw = z.toJSONSchema(modelSchema(), { io: "input", target: "draft-2020-12" });
  const out: { path: string; def: unknown; description: string }[] = [];
  const walk = (node: unknown, path: string): void => {
    if (node === null || typeof node !== "object") return;
    const n = node as Record<string, unknown>;
    if (n.default !== undefined && typeof n.default !== "object" && typeof n.description === "string") out.push({ path, def: n.default, description: n.description });
    for (const [k, v] of Object.entries(n.properties ?? {})) walk(v, path ? `${path}.${k}` : k);
    if (typeof n.additionalProperties === "object") walk(n.additionalProperties, `${path}.NAME`);
    for (const key of ["anyOf", "oneOf"]) for (const o of (n[key] as unknown[] | undefined) ?? []) walk(o, path);
  };
  walk(raw, "");
  return out;
}

describe("defaults in the docs", () => {
  it("come from the schema's .default() values: no description states a literal default itself", () => {
    const defaults = literalDefaults();
    expect(defaults.length).toBeGreaterThan(40);
    expect(defaults.filter((d) => /\bDefault\b/.test(d.description)).map((d) => `${d.path}: ${d.description}`)).toEqual([]);
  });

  it("end every exported description of an option that has one with that default", () => {
    const props = (node: Record<string, any>, key: string) => node.properties[key];
    expect(props(props(schema, "site"), "http_port").description).toMatch(/ Default 80\.$/);
    expect(props(props(schema, "backup"), "schedule").description).toMatch(/ Default "0 3 \* \* \*"\.$/);
    expect(props(props(schema, "gunicorn"), "workers").description).toMatch(/ Default auto\.$/);
  });
});

describe("the JSON Schema", () => {
  it("is a draft 2020-12 schema with an $id, a title and descriptions", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(typeof schema.$id).toBe("string");
    expect(typeof schema.title).toBe("string");
    expect(JSON.stringify(schema)).toContain('"description"');
  });

  it("is what `novacloud-render schema` prints", () => {
    const cli = join(ROOT, "dist", "cli.cjs");
    if (!existsSync(cli)) throw new Error("dist/cli.cjs is missing: build first (npm run build; npm test does it)");
    const printed = execFileSync(process.execPath, [cli, "schema"], { encoding: "utf8" });
    expect(JSON.parse(printed)).toEqual(JSON.parse(JSON.stringify(schema)));
  });

  for (const name of fixtureNames()) {
    it(`validates fixtures/${name}/novacloud.toml`, () => {
      const model = parseToml(readFileSync(join(FIXTURES, name, "novacloud.toml"), "utf8"));
      expect(validate(model), errorsOf()).toBe(true);
    });
  }

  it("requires at least one host or a [compose] section, as the validator does", () => {
    const model = parseToml(readFileSync(join(FIXTURES, "minimal", "novacloud.toml"), "utf8")) as Record<string, unknown>;
    const compose = parseToml(readFileSync(join(FIXTURES, "compose", "novacloud.toml"), "utf8")) as Record<string, unknown>;
    expect(validate(model), errorsOf()).toBe(true);
    const { hosts, ...neither } = model;
    expect(Object.keys(hosts as object).length).toBeGreaterThan(0);
    expect(validate(neither), "no [hosts] and no [compose]").toBe(false);
    expect(validate({ ...neither, hosts: {} }), "an empty [hosts] table and no [compose]").toBe(false);
    expect(validate({ ...neither, compose: compose.compose }), errorsOf()).toBe(true);
    // The validator agrees on each.
    expect(parseModel(neither).ok).toBe(false);
    expect(parseModel({ ...neither, hosts: {} }).ok).toBe(false);
    expect(parseModel({ ...neither, compose: compose.compose }).ok).toBe(true);
  });

  it("is what dist/schema.json holds", () => {
    const file = join(ROOT, "dist", "schema.json");
    if (!existsSync(file)) throw new Error("dist/schema.json is missing: build first (npm run build; npm test does it)");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual(JSON.parse(JSON.stringify(schema)));
  });

  it("validates every generated valid model", () => {
    fc.assert(
      fc.property(validModel, (model) => {
        // Through TOML and back, as an editor sees the file.
        if (!validate(parseToml(toToml(model)))) throw new Error(errorsOf());
      }),
      { numRuns: 200, seed: 20240605 },
    );
  });
});

describe("the JSON Schema and the invalid corpus", () => {
  for (const c of invalidCases().filter((x) => !x.syntax)) {
    const expected = c.shape ? "rejects" : "accepts";
    it(`${expected} ${c.name}`, () => {
      const model = c.format === "toml" ? parseToml(c.text) : JSON.parse(c.text);
      const valid = validate(model);
      if (c.shape) expect(valid, `${c.file} is marked shape: true, so the JSON Schema must reject it`).toBe(false);
      else expect(valid, `${c.file} is not a shape error (no "shape: true"), so the JSON Schema must accept it:\n${errorsOf()}`).toBe(true);
    });
  }
});
