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

export function modelJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(modelSchema, { io: "input", target: "draft-2020-12" }) as Record<string, unknown>;
  return { ...schema, ...SOMETHING_TO_RENDER, $id: SCHEMA_ID, title: "NovaCloud deployment model (novacloud-render)" };
}
