// Placeholder: this family is being written.
import type { HostFamily } from "./context.js";
export const postgresFamily: HostFamily = { files: () => [] };
