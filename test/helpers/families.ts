/** The operator-script families (backup, update, logrotate, firewall, certbot hook) taken together. */
import { backupFamily } from "../../src/artifacts/backup.js";
import { certbotFamily } from "../../src/artifacts/certbot.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { firewallFamily } from "../../src/artifacts/firewall.js";
import { logrotateFamily } from "../../src/artifacts/logrotate.js";
import type { Step } from "../../src/artifacts/steps.js";
import { updateFamily } from "../../src/artifacts/update.js";
import type { FileSpec } from "../../src/tree.js";

const SCRIPT_FAMILIES = [backupFamily, updateFamily, logrotateFamily, firewallFamily, certbotFamily];

export const scriptFamilies = {
  files: (ctx: HostContext): FileSpec[] => SCRIPT_FAMILIES.flatMap((f) => f.files(ctx)),
  steps: (ctx: HostContext): Step[] => SCRIPT_FAMILIES.flatMap((f) => f.steps?.(ctx) ?? []),
};
