/**
 * The per-host runbook: the host's steps (every family's, plus the host-wide ones: packages
 * merged into one step, the service account, installing the tree with owners and modes), in
 * phase order, as one Markdown file for a person. The Ansible playbook (src/artifacts/ansible.ts)
 * is rendered from the same steps: every step is in both, in the same order, under its id.
 */
import { nfsServer } from "../model/media.js";
import { runsDjango } from "../model/normalize.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { formatMode, type FileSpec } from "../tree.js";
import type { HostContext } from "./context.js";
import { byPhase, PHASES, stepLines, stepPackages, type Phase, type Step } from "./steps.js";

const PHASE_TITLES: Record<Phase, string> = {
  packages: "Packages",
  accounts: "Accounts",
  code: "Application code",
  files: "Files",
  network: "Network",
  certificates: "Certificates",
  database: "Database",
  app: "Application",
  services: "Services",
  verify: "Verify",
};

/**
 * True when the host needs the project's system account: it runs Django code, the backup (every
 * PostgreSQL cluster member), or owns the media directory it exports over NFS.
 */
function needsAccount(ctx: HostContext): boolean {
  const { host, model } = ctx;
  return runsDjango(host) || host.roles.has("db") || host.roles.has("db-standby") || nfsServer(model.media, model.topology)?.name === host.name;
}

function accountStep(ctx: HostContext): Step {
  const { user, group, root } = ctx.model.project;
  const media = ctx.model.media;
  // NFS compares numeric ids: the account owns the shared media under one uid on every host.
  const uid = media.storage === "nfs" ? media.uid : undefined;
  return {
    id: "host.account",
    phase: "accounts",
    title: `Create the system account ${user}`,
    action: { kind: "account", user, group, home: root, ...(uid === undefined ? {} : { uid }) },
    why:
      "Services run as a dedicated account without a login shell, never as root." +
      (uid === undefined ? "" : ` Its uid is ${uid} on every host (media.uid): the media shared over NFS belong to it by number.`),
  };
}

function filesStep(ctx: HostContext, files: readonly FileSpec[]): Step {
  const kept = files.filter((f) => f.handling?.rewritten).map((f) => f.path);
  return {
    id: "host.files",
    phase: "files",
    title: "Install this host's files",
    action: { kind: "files" },
    why:
      "out/<host>/ mirrors the paths on the host. Each file is installed with its owner and mode; files holding secrets are readable only by the account that needs them, and the staging copy is removed." +
      (kept.length === 0
        ? ""
        : ` ${kept.join(", ")} is rewritten by the program that reads it: the rendered copy is kept in ${ctx.paths.appliedDir} and installed only when it differs from the copy kept last time, so installing again does not undo what the program wrote (the playbook does the same).`),
  };
}

function packagesStep(steps: readonly Step[]): Step | undefined {
  const packages = [...new Set(steps.flatMap(stepPackages))].sort();
  if (packages.length === 0) return undefined;
  return { id: "host.packages", phase: "packages", title: "Install the packages", action: { kind: "packages", packages } };
}

/**
 * Every step of a host, in the order it runs: the host-wide steps, then the families' steps,
 * by phase. A family's packages-only steps (nginx, Redis...) are folded into the one packages
 * step; they stay only when they explain something.
 */
export function hostSteps(ctx: HostContext, familySteps: readonly Step[], files: readonly FileSpec[] = []): Step[] {
  const own: Step[] = [filesStep(ctx, files)];
  if (needsAccount(ctx)) own.push(accountStep(ctx));
  const packages = packagesStep(familySteps);
  if (packages) own.push(packages);
  const kept = familySteps.filter((s) => s.action.kind !== "packages" || s.why !== undefined);
  return byPhase([...own, ...kept]);
}

/**
 * Copies go through a staging directory and `install`, one file at a time: `install -D` creates
 * missing parent directories but never changes the owner or mode of existing ones (an rsync of
 * the tree onto / would, e.g. /etc/redis, which Sentinel must be able to write to).
 */
function installLines(ctx: HostContext, files: readonly FileSpec[]): string[] {
  const staging = `/root/${ctx.model.project.name}-render`;
  const runbook: FileSpec = { path: ctx.paths.runbook, content: "", mode: 0o644, template: "runbook/runbook.md.njk" };
  const install = (f: FileSpec, from: string, to: string) => `install -D -m ${formatMode(f.mode)} -o ${shell(f.owner ?? "root")} -g ${shell(f.group ?? "root")} ${shell(from)} ${shell(to)}`;
  const line = (f: FileSpec) => {
    if (!f.handling?.rewritten) return install(f, `${staging}${f.path}`, f.path);
    // Installed only when the rendered copy changed since the copy kept last time.
    const kept = `${ctx.paths.appliedDir}${f.path}`;
    return `cmp -s ${shell(`${staging}${f.path}`)} ${shell(kept)} || { install -D -m 0600 ${shell(`${staging}${f.path}`)} ${shell(kept)} && ${install(f, kept, f.path)}; }`;
  };
  return [
    `# on the machine that rendered the model (out/ is the --out directory):`,
    `#   rsync -a out/${ctx.host.name}/ root@${ctx.host.address}:${staging}/`,
    ...[...files, runbook].map(line),
    `rm -rf ${shell(staging)}`,
  ];
}

/** A package step that only names a package (its package is in the packages step) shows no commands. */
function runbookLines(ctx: HostContext, step: Step, files: readonly FileSpec[]): string[] {
  if (step.action.kind === "files") return installLines(ctx, files);
  if (step.action.kind === "packages" && step.id !== "host.packages") return [];
  return stepLines(step);
}

/** "after db1's `postgres.init-sql`": what a step waits for, on this host or another. */
function waitsFor(ctx: HostContext, step: Step): string[] {
  return (step.after ?? []).map((r) => (r.host === ctx.host.name ? `\`${r.id}\`` : `${r.host}'s \`${r.id}\``));
}

export function runbookFile(ctx: HostContext, files: readonly FileSpec[], steps: readonly Step[]): FileSpec {
  const shown = steps.map((step) => ({ step, lines: runbookLines(ctx, step, files) }));
  const phases = PHASES.map((phase) => ({
    title: PHASE_TITLES[phase],
    steps: shown
      .filter(({ step }) => step.phase === phase)
      .map(({ step, lines }) => ({ id: step.id, title: step.title, why: step.why, after: waitsFor(ctx, step), interactive: step.interactive === true, lines })),
  })).filter((p) => p.steps.length > 0);
  const view = {
    host: ctx.host.name,
    address: ctx.host.address,
    roles: [...ctx.host.roles].join(", "),
    project: ctx.model.project.name,
    phases,
    files: files.map((f) => ({ path: f.path, mode: formatMode(f.mode), owner: `${f.owner ?? "root"}:${f.group ?? "root"}` })),
  };
  return templateFile(ctx.paths.runbook, "runbook/runbook.md.njk", view, { comment: "<!--" });
}
