/**
 * The per-host runbook: every step the guide makes a person do by hand that is not a file, in
 * order. Families contribute steps (HostFamily.steps); this module adds the host-wide ones
 * (packages merged into one line, the service account, copying the tree and fixing owners),
 * sorts everything by phase and renders one Markdown file.
 */
import { runsDjango } from "../model/normalize.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { formatMode, type FileSpec } from "../tree.js";
import { RUNBOOK_PHASES, type HostContext, type RunbookPhase, type RunbookStep } from "./context.js";
import { paths } from "./paths.js";

const PHASE_TITLES: Record<RunbookPhase, string> = {
  packages: "Packages",
  accounts: "Accounts",
  code: "Application code",
  files: "Files",
  certificates: "Certificates",
  database: "Database",
  app: "Application",
  services: "Services",
  verify: "Verify",
};

/** True when the host needs the project's system account (it runs Django code or the backup). */
function needsAccount(ctx: HostContext): boolean {
  return runsDjango(ctx.host) || ctx.host.roles.has("db");
}

function accountStep(ctx: HostContext): RunbookStep {
  const { user, group, root } = ctx.model.project;
  const commands =
    group === user
      ? [`id -u ${shell(user)} >/dev/null 2>&1 || useradd --system --user-group --home-dir ${shell(root)} --no-create-home --shell /usr/sbin/nologin ${shell(user)}`]
      : [
          `getent group ${shell(group)} >/dev/null || groupadd --system ${shell(group)}`,
          `id -u ${shell(user)} >/dev/null 2>&1 || useradd --system --gid ${shell(group)} --home-dir ${shell(root)} --no-create-home --shell /usr/sbin/nologin ${shell(user)}`,
        ];
  return {
    phase: "accounts",
    title: `Create the system account ${user}`,
    commands,
    why: "Services run as a dedicated account without a login shell, never as root.",
  };
}

/**
 * Copies go through a staging directory and `install`, one file at a time: `install -D` creates
 * missing parent directories but never changes the owner or mode of existing ones (an rsync of
 * the tree onto / would, e.g. /etc/redis, which Sentinel must be able to write to).
 */
function filesStep(ctx: HostContext, files: readonly FileSpec[]): RunbookStep {
  const staging = `/root/${ctx.model.project.name}-render`;
  const runbook: FileSpec = { path: paths(ctx.model).runbook, content: "", mode: 0o644 };
  const installs = [...files, runbook].map(
    (f) => `install -D -m ${formatMode(f.mode)} -o ${shell(f.owner ?? "root")} -g ${shell(f.group ?? "root")} ${shell(`${staging}${f.path}`)} ${shell(f.path)}`,
  );
  return {
    phase: "files",
    title: "Install this host's files",
    commands: [
      `# on the machine that rendered the model (out/ is the --out directory):`,
      `#   rsync -a out/${ctx.host.name}/ root@${ctx.host.address}:${staging}/`,
      ...installs,
      `rm -rf ${shell(staging)}`,
    ],
    why: "out/<host>/ mirrors the paths on the host. Each file is installed with its owner and mode; files holding secrets are readable only by the account that needs them, and the staging copy is removed.",
  };
}

function packagesStep(steps: readonly RunbookStep[]): RunbookStep | undefined {
  const packages = [...new Set(steps.flatMap((s) => s.packages ?? []))].sort();
  if (packages.length === 0) return undefined;
  return {
    phase: "packages",
    title: "Install the packages",
    commands: ["apt-get update", `apt-get install -y ${packages.map(shell).join(" ")}`],
  };
}

export function runbookFile(ctx: HostContext, files: readonly FileSpec[], familySteps: readonly RunbookStep[]): FileSpec {
  const own: RunbookStep[] = [filesStep(ctx, files)];
  if (needsAccount(ctx)) own.push(accountStep(ctx));
  const packages = packagesStep(familySteps);
  if (packages) own.push(packages);
  const all = [...own, ...familySteps.filter((s) => (s.commands?.length ?? 0) > 0 || s.why !== undefined)];
  const phases = RUNBOOK_PHASES.map((phase) => ({
    title: PHASE_TITLES[phase],
    steps: all.filter((s) => s.phase === phase),
  })).filter((p) => p.steps.length > 0);
  const view = {
    host: ctx.host.name,
    address: ctx.host.address,
    roles: [...ctx.host.roles].join(", "),
    project: ctx.model.project.name,
    phases,
    files: files.map((f) => ({ path: f.path, mode: formatMode(f.mode), owner: `${f.owner ?? "root"}:${f.group ?? "root"}` })),
  };
  return templateFile(paths(ctx.model).runbook, "runbook/runbook.md.njk", view, { comment: "<!--" });
}
