/** The model's JSON Schema, generated from the zod schema (never written by hand). */
// A namespace import, so bundlers keep only the parts of zod the model uses.
import * as z from "zod";
import { modelSchema } from "./model/schema.js";

export const SCHEMA_ID = "https://novacloud-render.dev/schema/v1/novacloud.schema.json";

/**
 * What the model must render something for: at least one host or a Compose bundle. The
 * validator says so as a cross-field rule (src/model/rules.ts, "at least one [hosts.NAME]"),
 * which zod's JSON Schema export cannot see; editors should say it too.
 */
const SOMETHING_TO_RENDER = {
  anyOf: [
    { type: "object", required: ["hosts"], properties: { hosts: { type: "object", minProperties: 1 } } },
    { type: "object", required: ["compose"], properties: { compose: { type: "object" } } },
  ],
};

/** A default as the docs write it: a number, a word or a path bare, anything else quoted. */
function shownDefault(value: unknown): string {
  return typeof value === "string" && /^[^\s"]+$/.test(value) ? value : JSON.stringify(value);
}

/**
 * Every option's description ends with its default, read from the schema's `.default()` value
 * (which the JSON Schema carries as `default`), so the docs cannot drift from the code.
 * Descriptions in src/model/schema.ts never state a literal default themselves
 * (test/schema.test.ts); defaults computed from other values (`<name>_db`) stay in their prose.
 */
function withDefaults(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withDefaults);
  if (node === null || typeof node !== "object") return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) out[key] = key === "default" ? value : withDefaults(value);
  const d = out.default;
  const literal = d !== undefined && (typeof d !== "object" || (Array.isArray(d) && d.length > 0));
  if (literal && typeof out.description === "string") out.description = `${out.description} Default ${shownDefault(d)}.`;
  return out;
}

export function modelJsonSchema(): Record<string, unknown> {
  const schema = withDefaults(z.toJSONSchema(modelSchema(), { io: "input", target: "draft-2020-12" })) as Record<string, unknown>;
  return { ...schema, ...SOMETHING_TO_RENDER, $id: SCHEMA_ID, title: "NovaCloud deployment model (novacloud-render)" };
}
