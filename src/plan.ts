/**
 * The plan `--check` ends with: what the drift between a rendered directory and the model needs
 * on each host (src/artifacts/effects.ts), in the order the Ansible playbook runs it. The
 * playbook copies the changed files in its files step; their reloads and restarts are handlers,
 * which run before the next service step and at the end of each wave (Ansible flushes handlers
 * there), in the handlers' order; a step a changed file re-runs runs at its own place.
 *
 * Pure like render(): the CLI reads the files as they were (`before`) and prints the result.
 */
import { runbookFile } from "./artifacts/runbook.js";
import {
  changedPostgresSettings,
  compareRanks,
  effectKey,
  effectRank,
  type Effect,
  type FileHandling,
} from "./artifacts/effects.js";
import { unitNames } from "./artifacts/paths.js";
import { stepWaves, type Step } from "./artifacts/steps.js";
import type { Model } from "./model/normalize.js";
import { renderHosts, type RenderedHost, type RenderOptions } from "./render.js";
import type { FileSpec } from "./tree.js";

/** A rendered file that differs from the directory: `<host>/<path>`, and its content there before. */
export interface FileChange {
  readonly path: string;
  /** The content on disk; undefined when the file is new. */
  readonly before: string | undefined;
}

export interface PlannedAction {
  readonly action: "daemon-reload" | "install" | "restart" | "reload" | "run";
  /** The unit restarted or reloaded. */
  readonly unit?: string;
  /** The step run again (its id), for `run`. */
  readonly step?: string;
  /** The file installed from its kept copy, for `install`. */
  readonly path?: string;
  /** The files on the host whose change asks for it. */
  readonly because: readonly string[];
  /** Why, as a person reads it. */
  readonly why: string;
}

export interface HostPlan {
  readonly host: string;
  /** Nothing of this host was rendered before: the playbook runs every step. */
  readonly firstDeployment: boolean;
  readonly actions: readonly PlannedAction[];
  /** Files generated before and no longer rendered: the playbook leaves them on the host. */
  readonly removed: readonly string[];
}

/** A changed file of a host, with what a change to it requires. */
interface Changed {
  readonly spec: FileSpec;
  readonly before: string | undefined;
  readonly handling: FileHandling;
}

/** A handler the changes notified, with the files that notified it. */
interface Pending {
  readonly rank: [number, string, number];
  /** The effect, or the install of a file from its kept copy. */
  readonly what: Effect | { readonly kind: "install"; readonly path: string };
  readonly sources: Changed[];
}

/** "port" / "port, listen_addresses": the settings a change touches, for the plan's why. */
function postgresAction(effect: Extract<Effect, { kind: "postgres-settings" }>, files: readonly Changed[]): PlannedAction {
  const because = files.map((f) => f.spec.path);
  const settings = files.filter((f) => f.spec.path.endsWith(".conf") && !f.spec.path.endsWith("pg_hba.conf")).flatMap((f) => changedPostgresSettings(f.before, f.spec.content));
  const restart = settings.filter((s) => s.context === "postmaster").map((s) => s.name);
  const unknown = settings.filter((s) => s.context === undefined).map((s) => s.name);
  if (restart.length > 0) {
    return { action: "restart", unit: effect.unit, because, why: `${restart.join(", ")} can only change at server start (context postmaster)` };
  }
  const changed = settings.length > 0 ? `${settings.map((s) => s.name).join(", ")} changed` : "pg_hba.conf changed";
  const why = unknown.length > 0 ? `${changed}; it restarts if PostgreSQL reports ${unknown.join(", ")} as pending_restart` : `${changed}: a reload applies it`;
  return { action: "reload", unit: effect.unit, because, why };
}

function actionOf(pending: Pending): PlannedAction {
  const because = [...new Set(pending.sources.map((s) => s.spec.path))];
  const why = [...new Set(pending.sources.map((s) => s.handling.why))].join("; ");
  const what = pending.what;
  switch (what.kind) {
    case "install":
      return { action: "install", path: what.path, because, why: "the program rewrites the installed file, and its rendered copy changed" };
    case "daemon-reload":
      return { action: "daemon-reload", because, why };
    case "postgres-settings":
      return postgresAction(what, pending.sources);
    case "restart":
    case "reload":
      return { action: what.kind, unit: what.unit, because, why: what.test === undefined ? why : `${why}; after ${what.test}` };
    case "rerun":
      throw new Error("internal: a re-run is not a handler");
  }
}

function hostPlan(model: Model, host: RenderedHost, steps: readonly Step[], waves: readonly number[], changes: readonly FileChange[], removed: readonly string[]): HostPlan {
  const name = host.ctx.host.name;
  const files = [...host.files, runbookFile(host.ctx, host.files, steps)];
  const byPath = new Map(files.map((f) => [f.path, f]));
  const changed = changes
    .map((c) => ({ spec: byPath.get(c.path.slice(name.length)), before: c.before }))
    .filter((c): c is { spec: FileSpec; before: string | undefined } => c.spec !== undefined)
    .map((c): Changed => ({ ...c, handling: c.spec.handling ?? { effects: [], why: "no rule says what it requires" } }));
  const firstDeployment = changed.length === files.length && changed.every((c) => c.before === undefined);
  if (firstDeployment) return { host: name, firstDeployment, actions: [], removed };

  const appUnits = Object.values(unitNames(model));
  const actions: PlannedAction[] = [];
  let pending = new Map<string, Pending>();
  const reruns = new Map<string, Changed[]>();
  const flush = () => {
    for (const p of [...pending.values()].sort((a, b) => compareRanks(a.rank, b.rank))) actions.push(actionOf(p));
    pending = new Map();
  };
  const notify = (key: string, rank: Pending["rank"], what: Pending["what"], from: Changed) => {
    const known = pending.get(key);
    if (known) known.sources.push(from);
    else pending.set(key, { rank, what, sources: [from] });
  };

  steps.forEach((step, i) => {
    if (i > 0 && waves[i] !== waves[i - 1]) flush();
    if (step.action.kind === "service" && !step.interactive) flush();
    if (step.action.kind === "files") {
      for (const c of changed) {
        // A file the program rewrites is installed from its kept copy by a handler first.
        if (c.handling.rewritten) notify(`install ${c.spec.path}`, [1, c.spec.path, 0], { kind: "install", path: c.spec.path }, c);
        for (const effect of c.handling.effects) {
          if (effect.kind === "rerun") reruns.set(effect.step, [...(reruns.get(effect.step) ?? []), c]);
          else notify(effectKey(effect), effectRank(effect, appUnits), effect, c);
        }
      }
    }
    const rerun = reruns.get(step.id);
    if (rerun !== undefined) {
      actions.push({ action: "run", step: step.id, because: [...new Set(rerun.map((c) => c.spec.path))], why: `${step.title}: ${[...new Set(rerun.map((c) => c.handling.why))].join("; ")}` });
    }
  });
  flush();
  return { host: name, firstDeployment, actions, removed };
}

/**
 * The plan of a drift: for each host with a changed, new or removed file, what the playbook does
 * about it, in its order. `changes` and `removed` are tree paths (`<host>/<path>`); files outside
 * the hosts' trees (ansible/, compose/) need nothing on a host.
 */
export function planChanges(model: Model, options: RenderOptions, changes: readonly FileChange[], removed: readonly string[] = []): HostPlan[] {
  const hosts = renderHosts(model, options);
  const waves = stepWaves(hosts.map((h) => ({ host: h.ctx.host.name, steps: h.steps })));
  const hostOf = (path: string) => path.slice(0, path.indexOf("/"));
  return hosts
    .map((h) => {
      const name = h.ctx.host.name;
      const mine = changes.filter((c) => hostOf(c.path) === name);
      const gone = removed.filter((p) => hostOf(p) === name).map((p) => p.slice(name.length));
      if (mine.length === 0 && gone.length === 0) return undefined;
      return hostPlan(model, h, h.steps, waves.get(name)!, mine, gone);
    })
    .filter((p): p is HostPlan => p !== undefined);
}

/** One line of the plan: "restart postgresql@15-main.service: port can only change at server start". */
export function describeAction(a: PlannedAction): string {
  const what =
    a.action === "daemon-reload"
      ? "systemctl daemon-reload"
      : a.action === "install"
        ? `install ${a.path} from its new rendered copy`
        : a.action === "run"
          ? `run ${a.step} again`
          : `${a.action} ${a.unit}`;
  return `${what} (${a.because.join(", ")}: ${a.why})`;
}
