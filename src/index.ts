/**
 * novacloud-render: one pure function from a typed deployment model to every file its hosts
 * need. No I/O here: the CLI (src/cli/) is the only layer that touches the file system.
 *
 *   import { render } from "novacloud-render";
 *   const tree = render(model, { env: process.env });
 *   for (const [path, file] of tree) console.log(file.mode.toString(8), path);
 */
export { render, toModel, type RenderOptions } from "./render.js";
export { parseModel, parseModelText, type ParseResult, type SourceFormat } from "./model/parse.js";
export { ModelError, formatIssue, type ModelIssue } from "./model/errors.js";
export { secretUses, type SecretSources, type SecretUse } from "./model/secrets.js";
export { modelJsonSchema } from "./schema-json.js";
export { redact } from "./redact.js";
export { GENERATED_MARKER, type Tree, type TreeFile } from "./tree.js";
export type { ModelInput, Role } from "./model/schema.js";
export type { Model, Host } from "./model/normalize.js";
