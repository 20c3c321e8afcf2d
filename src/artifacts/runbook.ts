import type { FileSpec } from "../tree.js";
import type { HostContext } from "./context.js";
export function runbookFile(ctx: HostContext, _files: readonly FileSpec[]): FileSpec {
  return { path: `/usr/local/share/doc/${ctx.model.project.name}/runbook.md`, content: "TODO\n", mode: 0o644 };
}
