/**
 * The hand work of a deployment as data: what each host needs that is not a file, in order,
 * and what it must wait for on other hosts. Families produce steps; the runbook (Markdown for a
 * person) and the Ansible playbook (for a fleet) are both rendered from them, so the two cannot
 * disagree.
 */
import { shell } from "../quote.js";

/** When a step happens on its host, in this order. */
export const PHASES = [
  "packages", // apt-get install (all families' packages merged into one step)
  "accounts", // system users and groups
  "code", // application checkout and virtualenv
  "files", // installing this host's tree with owners and modes
  "network", // kernel settings and the firewall, before any service opens a connection
  "certificates", // TLS certificates and their renewal hooks
  "database", // roles, databases, replication
  "app", // migrate, collectstatic
  "services", // enable and (re)start units, reload daemons
  "verify", // checks that change nothing
] as const;
export type Phase = (typeof PHASES)[number];

/**
 * One shell command, run as root, values already quoted with quote.shell(). How to tell whether
 * it must run: `creates` (skip when that path exists), `unless` (skip when that command
 * succeeds), or neither (idempotent: running it again changes nothing it should not).
 */
export interface Command {
  readonly run: string;
  readonly creates?: string;
  readonly unless?: string;
}

export type Action =
  /** apt-get install of these packages. */
  | { readonly kind: "packages"; readonly packages: readonly string[] }
  /**
   * A system account without a login shell; with `uid`, that user id (the same on every host,
   * when hosts share files over NFS).
   */
  | { readonly kind: "account"; readonly user: string; readonly group: string; readonly home: string; readonly uid?: number }
  /** Install every file of this host's tree with its owner and mode. */
  | { readonly kind: "files" }
  /** Shell commands that change the host, in order. */
  | { readonly kind: "commands"; readonly commands: readonly Command[] }
  /**
   * Units enabled at boot and brought to a state now. `test` must succeed first (nginx -t);
   * `daemonReload` makes systemd read changed unit files before.
   */
  | {
      readonly kind: "service";
      readonly units: readonly string[];
      readonly enable: boolean;
      readonly state: "started" | "restarted" | "reloaded";
      readonly test?: string;
      readonly daemonReload?: boolean;
    }
  /** Read-only checks: their output is for the operator. */
  | { readonly kind: "check"; readonly commands: readonly string[] }
  /** Something a person decides or types (a password, a failover): shown, never run by a tool. */
  | { readonly kind: "manual"; readonly lines: readonly string[] };

/** A step on another host (or this one) that must be done first. */
export interface StepRef {
  readonly host: string;
  readonly id: string;
}

export interface Step {
  /** Unique on its host, stable across renders: "<family>.<what>", e.g. "postgres.init-sql". */
  readonly id: string;
  readonly phase: Phase;
  readonly title: string;
  /** Why, in a sentence or two, when it is not obvious. */
  readonly why?: string;
  readonly action: Action;
  /** Debian packages this step needs (merged into the host's packages step). */
  readonly packages?: readonly string[];
  /** True when the step runs for the whole deployment, on this host only (migrations). */
  readonly once?: boolean;
  /** True when it asks the person for input (a password): a tool shows it rather than runs it. */
  readonly interactive?: boolean;
  /** Steps, on this host or others, that must be done before this one. */
  readonly after?: readonly StepRef[];
}

/** A command list (`a && b`, `a | b`) grouped so that a guard in front applies to all of it. */
function grouped(run: string): string {
  if (/^\(.*\)$/.test(run) || !/[;&|]/.test(run)) return run;
  return `{ ${run}; }`;
}

/** `test -e PATH || CMD` / `CHECK || CMD`: a command with its guard, as a person types it. */
export function guarded(command: Command): string {
  if (command.creates !== undefined) return `test -e ${shell(command.creates)} || ${grouped(command.run)}`;
  if (command.unless !== undefined) return `${command.unless} || ${grouped(command.run)}`;
  return command.run;
}

/** The Debian packages a step installs or needs. */
export function stepPackages(step: Step): readonly string[] {
  return [...(step.action.kind === "packages" ? step.action.packages : []), ...(step.packages ?? [])];
}

/** The commands a step runs, without their guards (what a test or a tool executes). */
export function commandsOf(step: Step): string[] {
  return step.action.kind === "commands" ? step.action.commands.map((c) => c.run) : [];
}

/** What a step runs, each command without its guard: what a test executes. */
export function unguardedLines(step: Step): string[] {
  return step.action.kind === "commands" ? commandsOf(step) : stepLines(step);
}

/** The shell lines a person runs for a step (the runbook's code block). */
export function stepLines(step: Step): string[] {
  const a = step.action;
  switch (a.kind) {
    case "packages":
      return ["apt-get update", `apt-get install -y ${a.packages.map(shell).join(" ")}`];
    case "account": {
      const uid = a.uid === undefined ? "" : `--uid ${a.uid} `;
      const create =
        a.group === a.user
          ? [`id -u ${shell(a.user)} >/dev/null 2>&1 || useradd --system --user-group ${uid}--home-dir ${shell(a.home)} --no-create-home --shell /usr/sbin/nologin ${shell(a.user)}`]
          : [
              `getent group ${shell(a.group)} >/dev/null || groupadd --system ${shell(a.group)}`,
              `id -u ${shell(a.user)} >/dev/null 2>&1 || useradd --system --gid ${shell(a.group)} ${uid}--home-dir ${shell(a.home)} --no-create-home --shell /usr/sbin/nologin ${shell(a.user)}`,
            ];
      // An account that existed before keeps its id: say so rather than share files under two ids.
      const check =
        a.uid === undefined
          ? []
          : [`test "$(id -u ${shell(a.user)})" = ${a.uid} || { echo "${a.user} has uid $(id -u ${shell(a.user)}), not ${a.uid}: change it (usermod --uid) before sharing files" >&2; false; }`];
      return [...create, ...check];
    }
    case "files":
      return [];
    case "commands":
      return a.commands.map(guarded);
    case "service": {
      const units = a.units.map(shell).join(" ");
      const test = a.test === undefined ? "" : `${a.test} && `;
      const lines = a.daemonReload ? ["systemctl daemon-reload"] : [];
      if (a.state === "started" && a.enable && a.test === undefined) return [...lines, `systemctl enable --now ${units}`];
      const now = { started: "start", restarted: "restart", reloaded: "reload" }[a.state];
      return [...lines, ...(a.enable ? [`systemctl enable ${units}`] : []), `${test}systemctl ${now} ${units}`];
    }
    case "check":
      return [...a.commands];
    case "manual":
      return a.lines.map((l) => `# ${l}`);
  }
}

/** Orders a host's steps by phase, keeping the families' order within a phase. */
export function byPhase(steps: readonly Step[]): Step[] {
  return PHASES.flatMap((phase) => steps.filter((s) => s.phase === phase));
}
