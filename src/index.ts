/**
 * novacloud-render: one pure function from a typed deployment model to every file its hosts
 * need. No I/O here: `novacloud-render/node` (src/node/) reads and writes files, and the CLI
 * (src/cli/) is built on both.
 *
 *   import { render } from "novacloud-render";
 *   const tree = render(model, { env: process.env });
 *   for (const [path, file] of tree) console.log(file.mode.toString(8), path);
 */
export {
  render,
  renderAsync,
  renderSteps,
  toModel,
  pbkdf2WebCrypto,
  type HostSteps,
  type Pbkdf2Async,
  type RenderAsyncOptions,
  type RenderOptions,
} from "./render.js";
export { parseModel, parseModelText, type ParseResult, type SourceFormat } from "./model/parse.js";
export { ModelError, formatIssue, type ModelIssue } from "./model/errors.js";
export { secretUses, type SecretName, type SecretSources, type SecretUse } from "./model/secrets.js";
export type { SecretRef } from "./model/values.js";
export { modelJsonSchema } from "./schema-json.js";
export { redact } from "./redact.js";
export { GENERATED_MARKER, type Tree, type TreeFile } from "./tree.js";
export { TREE_FORMAT, treeFromJson, treeToJson, type TreeJson, type TreeJsonFile } from "./tree-json.js";
export type { Pbkdf2 } from "./crypto.js";
export type { Effect } from "./artifacts/effects.js";
export type { Action, ChangeRule, Command, Phase, State, Step, StepRef } from "./artifacts/steps.js";
export type { ModelInput, Role } from "./model/schema.js";
export type { Distribution, SoftwareVersions, Capabilities } from "./model/capabilities.js";
export type { Model, Host, Project, Topology } from "./model/normalize.js";
