/** The model's JSON Schema, generated from the zod schema (never written by hand). */
// A namespace import, so bundlers keep only the parts of zod the model uses.
import * as z from "zod";
import { modelSchema } from "./model/schema.js";

export const SCHEMA_ID = "https://novacloud-render.dev/schema/v1/novacloud.schema.json";

export function modelJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(modelSchema, { io: "input", target: "draft-2020-12" }) as Record<string, unknown>;
  return { ...schema, $id: SCHEMA_ID, title: "NovaCloud deployment model (novacloud-render)" };
}
