import type { FileSpec } from "../tree.js";
import type { HostContext } from "./context.js";
export function redisFiles(_ctx: HostContext): FileSpec[] { return []; }
