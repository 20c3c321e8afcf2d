import type { FileSpec } from "../tree.js";
import type { HostContext } from "./context.js";
export function postgresFiles(_ctx: HostContext): FileSpec[] { return []; }
