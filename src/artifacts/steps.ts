/**
 * The hand work of a deployment as data: what each host needs that is not a file, in order,
 * and what it must wait for on other hosts. Families produce steps; the runbook (Markdown for a
 * person) and the Ansible playbook (for a fleet) are both rendered from them, so the two cannot
 * disagree.
 */
import { shell } from "../quote.js";
import { formatMode } from "../tree.js";
import type { Effect } from "./effects.js";

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
 * The same operation as a state a tool reaches with a module of its own (Ansible's file, copy,
 * systemd_service, git, apt): idempotent, and it reports a change only when it made one. The
 * runbook shows the shell form, which the constructors below build from the same values.
 */
export type State =
  /** A directory with this mode (and owner and group, when given). */
  | { readonly kind: "directory"; readonly path: string; readonly mode: number; readonly owner?: string; readonly group?: string }
  /** A symbolic link at `path` to `target`. */
  | { readonly kind: "link"; readonly path: string; readonly target: string }
  /** No file at `path`. */
  | { readonly kind: "absent"; readonly path: string }
  /** An existing file's owner, group and mode. */
  | { readonly kind: "attributes"; readonly path: string; readonly owner: string; readonly group: string; readonly mode: number }
  /** A copy of a file already on the host. */
  | { readonly kind: "copy"; readonly src: string; readonly dest: string; readonly owner: string; readonly group: string; readonly mode: number }
  /** A unit running or stopped now (enabling is a service step's business). */
  | { readonly kind: "unit"; readonly unit: string; readonly state: "started" | "stopped" }
  /** A git checkout of `version` at `dest`, made once (later deploys are update.sh's). */
  | { readonly kind: "git"; readonly repository: string; readonly version: string; readonly dest: string }
  /** Debian packages installed. */
  | { readonly kind: "apt"; readonly packages: readonly string[] };

/**
 * How a tool tells that a command it runs every time (no guard, no state) changed something:
 * `never` for a command that only reads; otherwise a regular expression (multi-line, matched
 * against stdout and stderr together; no quote or backslash in it) that the output matches
 * exactly when the command changed something (`ifOutput`) or exactly when it did not
 * (`unlessOutput`).
 */
export type ChangeRule = { readonly never: true } | { readonly ifOutput: string } | { readonly unlessOutput: string };

/**
 * One shell command, run as root, values already quoted with quote.shell(). How to tell whether
 * it must run: `creates` (skip when that path exists), `unless` (skip when that command
 * succeeds), or neither (idempotent: running it again changes nothing it should not). A command
 * made by a constructor below also carries its `state`; a command a tool runs every time says
 * in `changes` how its output tells a change.
 */
export interface Command {
  readonly run: string;
  readonly creates?: string;
  readonly unless?: string;
  readonly state?: State;
  readonly changes?: ChangeRule;
  /**
   * What a tool runs instead when the deployment-wide switch is on (the playbook: a variable
   * that is false unless set): `run` with the same guard, or nothing when `run` is absent.
   */
  readonly switched?: { readonly by: Switch; readonly run?: string };
}

/**
 * Deployment-wide switches a tool offers, off by default. `systemSitePackages`: the hosts have
 * the app's Python packages from the distribution (no package index to install from); each
 * release's virtualenv sees them (--system-site-packages) and pip installs nothing.
 */
export type Switch = "systemSitePackages";

const mode = (m: number) => formatMode(m);

/** `install -d`: a directory with its mode (and owner and group). */
export function directory(path: string, dirMode: number, owner?: string, group?: string): Command {
  const who = `${owner === undefined ? "" : ` -o ${shell(owner)}`}${group === undefined ? "" : ` -g ${shell(group)}`}`;
  return {
    run: `install -d${who} -m ${mode(dirMode)} ${shell(path)}`,
    state: { kind: "directory", path, mode: dirMode, ...(owner === undefined ? {} : { owner }), ...(group === undefined ? {} : { group }) },
  };
}

/** `ln -sfn`: a symbolic link at `path` to `target`. */
export function link(target: string, path: string): Command {
  return { run: `ln -sfn ${shell(target)} ${shell(path)}`, state: { kind: "link", path, target } };
}

/** `rm -f`: no file at `path`. */
export function absent(path: string): Command {
  return { run: `rm -f ${shell(path)}`, state: { kind: "absent", path } };
}

/** `chown` and `chmod` of an existing file. */
export function attributes(path: string, owner: string, group: string, fileMode: number): Command {
  return { run: `chown ${shell(`${owner}:${group}`)} ${shell(path)} && chmod ${mode(fileMode)} ${shell(path)}`, state: { kind: "attributes", path, owner, group, mode: fileMode } };
}

/** `install -D`: a copy of a file already on the host, with owner and mode. */
export function copyOnHost(src: string, dest: string, owner: string, group: string, fileMode: number): Command {
  return {
    run: `install -D -o ${shell(owner)} -g ${shell(group)} -m ${mode(fileMode)} ${shell(src)} ${shell(dest)}`,
    state: { kind: "copy", src, dest, owner, group, mode: fileMode },
  };
}

/** `systemctl start|stop`: a unit running or stopped now. */
export function unitState(unit: string, state: "started" | "stopped"): Command {
  return { run: `systemctl ${state === "started" ? "start" : "stop"} ${shell(unit)}`, state: { kind: "unit", unit, state } };
}

/** `git clone`, once: skipped when `dest` is a checkout already. */
export function gitCheckout(repository: string, version: string, dest: string): Command {
  return {
    run: `git clone --branch ${shell(version)} ${shell(repository)} ${shell(dest)}`,
    creates: `${dest}/.git`,
    state: { kind: "git", repository, version, dest },
  };
}

/** `apt-get install -y`: packages installed (inside a step that must install them at that point). */
export function aptInstall(packages: readonly string[]): Command {
  return { run: `apt-get install -y ${packages.map(shell).join(" ")}`, state: { kind: "apt", packages } };
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
  /**
   * What a change this step makes requires (enabling the nginx site: a reload of nginx). What a
   * change to a rendered file requires is src/artifacts/effects.ts's to say.
   */
  readonly effects?: readonly Effect[];
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

/** One host's steps, in the order they run on it. */
export interface HostSteps {
  readonly host: string;
  readonly steps: readonly Step[];
}

/**
 * The wave of every step of every host (same order as `steps`): no earlier than the step before
 * it on its host, and later than every step on another host it comes `after`. A tool runs the
 * waves one after another, the hosts of a wave in parallel; steps of one host keep their order.
 * A reference to a step that does not exist, or to a later step of the same host, is a bug in
 * a family and throws.
 */
export function stepWaves(hosts: readonly HostSteps[]): Map<string, number[]> {
  const index = new Map(hosts.map((h) => [h.host, new Map(h.steps.map((s, i) => [s.id, i]))]));
  const steps = new Map(hosts.map((h) => [h.host, h.steps]));
  const waves = new Map(hosts.map((h) => [h.host, new Array<number | undefined>(h.steps.length).fill(undefined)]));
  const visiting = new Set<string>();
  const waveOf = (host: string, i: number): number => {
    const known = waves.get(host)![i];
    if (known !== undefined) return known;
    const step = steps.get(host)![i]!;
    const key = `${host}/${step.id}`;
    if (visiting.has(key)) throw new Error(`internal: steps wait for each other in a circle at ${key}`);
    visiting.add(key);
    let wave = i > 0 ? waveOf(host, i - 1) : 0;
    for (const ref of step.after ?? []) {
      const j = index.get(ref.host)?.get(ref.id);
      if (j === undefined) throw new Error(`internal: ${key} comes after ${ref.host}/${ref.id}, which is not rendered`);
      if (ref.host === host) {
        if (j >= i) throw new Error(`internal: ${key} comes after ${ref.id}, a later step of the same host`);
        continue;
      }
      wave = Math.max(wave, waveOf(ref.host, j) + 1);
    }
    visiting.delete(key);
    waves.get(host)![i] = wave;
    return wave;
  };
  return new Map(hosts.map((h) => [h.host, h.steps.map((_, i) => waveOf(h.host, i))]));
}
