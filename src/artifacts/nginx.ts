import type { FileSpec } from "../tree.js";
import type { HostContext } from "./context.js";
export function nginxFiles(_ctx: HostContext): FileSpec[] { return []; }
