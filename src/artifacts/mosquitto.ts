import type { FileSpec } from "../tree.js";
import type { HostContext } from "./context.js";
export function mosquittoFiles(_ctx: HostContext): FileSpec[] { return []; }
