/**
 * The Ansible bundle under ansible/: an inventory of the model's hosts, a playbook that applies
 * the trees rendered beside it (out/<host>/) step by step, and the handlers that apply what a
 * changed file requires (src/artifacts/effects.ts). It is rendered from the same step data as
 * every host's runbook, generically: a step becomes tasks by its action, a command by its guard
 * (creates, unless) or its module equivalent (Command.state), never by the family it comes
 * from. ansible-core modules only (apt, group, user, copy, file, stat, git, systemd_service,
 * service_facts, command, shell, debug, assert, meta, include_tasks, import_tasks).
 *
 * The plays are the waves of stepWaves(): a step that waits for a step on another host runs in
 * a later play, and each play is a barrier (hosts within a play run independently: strategy
 * free). What a person must type (interactive steps) or decide (manual steps), and the checks,
 * are tasks too, in their place, tagged `never` so that they run only when asked for by tag.
 *
 * Idempotent by construction: every task either uses a module that reports a change only when
 * it made one, or is a command with `creates`, an `unless` check, a `changed_when` from its
 * output (Command.changes), or a step run again only when a file it applies differs from the
 * copy kept when it last ran (Paths.appliedDir). Handlers act on running units only: a unit not
 * running yet is started by its own step, with the new files.
 */
import type { Model } from "../model/normalize.js";
import type { Role } from "../model/schema.js";
import { shell } from "../quote.js";
import { formatMode, withMarker, type FileSpec } from "../tree.js";
import { Commented, toYaml, toYamlSequence, type YamlComments, type YamlValue } from "../yaml.js";
import type { HostContext } from "./context.js";
import { compareRanks, effectKey, effectRank, postgresReloadScript, type Effect } from "./effects.js";
import { unitNames } from "./paths.js";
import { stepLines, stepWaves, type Command, type State, type Step, type Switch } from "./steps.js";

/** One host as the bundle sees it: its context, every file (the runbook too) and its steps. */
export interface BundleHost {
  readonly ctx: HostContext;
  readonly files: readonly FileSpec[];
  readonly steps: readonly Step[];
}

/** The bundle's files, relative to ansible/. */
export const ANSIBLE_FILES = {
  inventory: "inventory.yml",
  playbook: "site.yml",
  handlers: "handlers.yml",
  tasks: (host: string, wave: number) => `tasks/${host}/wave-${wave + 1}.yml`,
} as const;

/** ansible-lint runs yamllint with lines of at most 160 characters: longer strings are folded. */
const YAML = { width: 160 } as const;

/** The hosts that have steps in a play's wave (a play variable). */
const WAVE_HOSTS = "novacloud_wave_hosts";

/** Set to false (-e novacloud_install_packages=false) on hosts that have every package and no mirror. */
export const INSTALL_PACKAGES = "novacloud_install_packages";

/** The playbook variable of each switch a step's command may name (steps.ts Switch). */
export const SWITCH_VARIABLES: Readonly<Record<Switch, string>> = { systemSitePackages: "novacloud_system_site_packages" };

type Task = { readonly [key: string]: YamlValue | undefined };

/** How a task is written down: the task, and a trailing comment for one of its lines. */
interface TaskOut {
  readonly task: Task;
  /** A `noqa` for ansible-lint on the command line, with the reason beside it in the code. */
  readonly noqa?: string;
}

// ---------------------------------------------------------------------------------------------
// Commands and states

/** Shell syntax the command module (which splits words like a shell but runs no shell) cannot run. */
function needsShell(run: string): boolean {
  return /[|&;<>()$`*?[\]{}~#\n]/.test(run) || /^[A-Za-z_][A-Za-z0-9_]*=/.test(run);
}

/** ansible.builtin.command, or ansible.builtin.shell with bash (and pipefail for a pipeline). */
function commandModule(run: string, extra: Record<string, YamlValue> = {}): Task {
  if (!needsShell(run)) return { "ansible.builtin.command": { cmd: run, ...extra } };
  const pipeline = /(?<!\|)\|(?!\|)/.test(run);
  return { "ansible.builtin.shell": { cmd: pipeline ? `set -o pipefail; ${run}` : run, executable: "/bin/bash", ...extra } };
}

/**
 * Programs ansible-lint wants a module for (its command-instead-of-module rule). A check step is
 * read-only output for the operator, so it runs the runbook's command as it is.
 */
const LINT_MODULE_PROGRAMS = new Set(["apt-get", "curl", "git", "sed", "service", "systemctl", "tar", "wget"]);

function firstWord(run: string): string {
  return run.trimStart().split(/\s+/)[0] ?? "";
}

/** The module task that reaches a state (Command.state). */
function stateModule(state: State): Task {
  switch (state.kind) {
    case "directory":
      return { "ansible.builtin.file": { path: state.path, state: "directory", owner: state.owner, group: state.group, mode: formatMode(state.mode) } };
    case "link":
      return { "ansible.builtin.file": { src: state.target, dest: state.path, state: "link" } };
    case "absent":
      return { "ansible.builtin.file": { path: state.path, state: "absent" } };
    case "attributes":
      return { "ansible.builtin.file": { path: state.path, owner: state.owner, group: state.group, mode: formatMode(state.mode) } };
    case "copy":
      return { "ansible.builtin.copy": { src: state.src, dest: state.dest, remote_src: true, owner: state.owner, group: state.group, mode: formatMode(state.mode) } };
    case "unit":
      return { "ansible.builtin.systemd_service": { name: state.unit, state: state.state } };
    case "git":
      // update: false: the first checkout only; later deploys are update.sh's.
      return { "ansible.builtin.git": { repo: state.repository, dest: state.dest, version: state.version, update: false } };
    case "apt":
      // The cache is refreshed: the step may just have added a repository.
      return { "ansible.builtin.apt": { name: [...state.packages], update_cache: true } };
  }
}

/** Jinja for "the command's output says it changed something". */
function changedWhen(command: Command, register: string): YamlValue | undefined {
  const c = command.changes;
  if (c === undefined) return undefined;
  if ("never" in c) return false;
  const pattern = "ifOutput" in c ? c.ifOutput : c.unlessOutput;
  if (/['\\]/.test(pattern)) throw new Error(`internal: change pattern ${JSON.stringify(pattern)} holds a quote or a backslash`);
  const output = `(${register}.stdout ~ '\\n' ~ ${register}.stderr)`;
  return `${output} is ${"ifOutput" in c ? "" : "not "}search('${pattern}', multiline=True)`;
}

// ---------------------------------------------------------------------------------------------
// Steps

/** Task names start with a capital letter (ansible-lint name[casing]); the rest is the runbook's. */
function taskName(text: string): string {
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

/** Register names unique on a host: novacloud_<step>_<n>. */
class Registers {
  private readonly counts = new Map<string, number>();
  next(step: Step): string {
    const base = `novacloud_${step.id.replace(/[^a-z0-9]+/gi, "_").toLowerCase()}`;
    const n = (this.counts.get(base) ?? 0) + 1;
    this.counts.set(base, n);
    return `${base}_${n}`;
  }
}

interface StepContext {
  readonly host: BundleHost;
  readonly step: Step;
  readonly registers: Registers;
  /** Conditions every task of the step carries (a re-run's gate). */
  readonly when: readonly string[];
  readonly tags: readonly string[];
  /** Handler topics a change by this step notifies. */
  readonly notify: readonly string[];
}

function withWhen(conditions: readonly string[]): YamlValue | undefined {
  if (conditions.length === 0) return undefined;
  return conditions.length === 1 ? conditions[0]! : [...conditions];
}

/**
 * One operation of a commands step: its guard task (if any) and the task itself; for a command
 * with a switch, the task when the switch is off and the one (if any) when it is on.
 */
function operationTasks(sc: StepContext, command: Command, name: string, switchedWhen: readonly string[] = []): TaskOut[] {
  if (command.switched !== undefined) {
    const variable = SWITCH_VARIABLES[command.switched.by];
    const { switched, ...plain } = command;
    return [
      ...operationTasks(sc, plain, name, [`not (${variable} | bool)`]),
      ...(switched.run === undefined ? [] : operationTasks(sc, { ...plain, run: switched.run }, `${name} (${variable})`, [`${variable} | bool`])),
    ];
  }
  const tasks: TaskOut[] = [];
  const when = [...sc.when, ...switchedWhen];
  if (command.unless !== undefined) {
    const check = sc.registers.next(sc.step);
    tasks.push({
      task: {
        name: `${name}: is it needed?`,
        ...commandModule(command.unless),
        register: check,
        changed_when: false,
        failed_when: false,
        check_mode: false,
        when: withWhen(sc.when),
        tags: sc.tags,
      },
      // A read-only test (systemctl is-active, grep): a module would not say the same.
      ...(LINT_MODULE_PROGRAMS.has(firstWord(command.unless)) ? { noqa: "command-instead-of-module" } : {}),
    });
    when.push(`${check}.rc != 0`);
  }
  if (command.state !== undefined) {
    if (command.creates !== undefined) {
      const stat = sc.registers.next(sc.step);
      tasks.push({
        task: { name: `${name}: is it needed?`, "ansible.builtin.stat": { path: command.creates }, register: stat, when: withWhen(sc.when), tags: sc.tags },
      });
      when.push(`not ${stat}.stat.exists`);
    }
    const apt = command.state.kind === "apt";
    if (apt) when.push(`${INSTALL_PACKAGES} | bool`);
    tasks.push({ task: { name, ...stateModule(command.state), when: withWhen(when), notify: notify(sc), tags: sc.tags } });
    return tasks;
  }
  const register = command.changes !== undefined && !("never" in command.changes) ? sc.registers.next(sc.step) : undefined;
  // A command that runs only when its check or its step's gate says it is needed changes
  // something whenever it runs (a switch is no such check).
  const gated = command.changes === undefined && when.length > switchedWhen.length;
  tasks.push({
    task: {
      name,
      ...commandModule(command.run, command.creates === undefined ? {} : { creates: command.creates }),
      register,
      changed_when: gated ? true : changedWhen(command, register ?? ""),
      when: withWhen(when),
      notify: notify(sc),
      tags: sc.tags,
    },
    // A guarded command with no module of the same meaning (git clone --mirror, git archive into
    // a release): the guard, not a module, makes it idempotent.
    ...(LINT_MODULE_PROGRAMS.has(firstWord(command.run)) ? { noqa: "command-instead-of-module" } : {}),
  });
  return tasks;
}

// Tasks share their step's tags and topics (no copies): nothing changes a task once made.
function notify(sc: StepContext): YamlValue | undefined {
  return sc.notify.length === 0 ? undefined : sc.notify;
}

/** "Title", or "Title (2 of 3)" for one of several tasks of a step. */
function numbered(title: string, i: number, n: number): string {
  return n === 1 ? taskName(title) : `${taskName(title)} (${i + 1} of ${n})`;
}

/** A step a tool cannot run (it asks for input, or a person decides): shown on request, never run. */
function byHandTasks(sc: StepContext): TaskOut[] {
  const step = sc.step;
  // One message line per runbook line; their indentation is for the eye only.
  const lines = stepLines(step).map((l) => l.replace(/^# /, "").trim());
  const msg = step.interactive
    ? [`It asks for input: run it yourself on ${sc.host.ctx.host.name}, as root:`, ...lines]
    : lines.length > 0
      ? lines
      : [step.why ?? step.title];
  const kind = step.interactive ? "interactive" : "manual";
  const name = step.interactive ? `${taskName(step.title)} (it asks for input: by hand)` : /by hand/i.test(step.title) ? taskName(step.title) : `${taskName(step.title)} (by hand)`;
  return [{ task: { name, "ansible.builtin.debug": { msg }, tags: [step.id, "never", kind] } }];
}

function checkTasks(sc: StepContext, commands: readonly string[]): TaskOut[] {
  return commands.map((run, i) => ({
    task: { name: numbered(sc.step.title, i, commands.length), ...commandModule(run), changed_when: false, tags: [sc.step.id, "never", "verify"] },
    ...(LINT_MODULE_PROGRAMS.has(firstWord(run)) ? { noqa: "command-instead-of-module" } : {}),
  }));
}

function serviceTasks(sc: StepContext, action: Extract<Step["action"], { kind: "service" }>): TaskOut[] {
  const title = taskName(sc.step.title);
  const tags = sc.tags;
  const tasks: TaskOut[] = [
    // What changed files and earlier steps require happens before the step, on running units.
    { task: { name: `${title}: first the restarts and reloads the changes so far require`, "ansible.builtin.meta": "flush_handlers", tags } },
  ];
  if (action.daemonReload) tasks.push({ task: { name: `${title}: systemctl daemon-reload`, "ansible.builtin.systemd_service": { daemon_reload: true }, when: withWhen(sc.when), tags } });
  if (action.test !== undefined) tasks.push({ task: { name: `${title}: ${action.test}`, ...commandModule(action.test), changed_when: false, when: withWhen(sc.when), tags } });
  // Started and enabled; a restart or reload is a handler's, when a file or a step changed.
  const one = action.units.length === 1;
  tasks.push({
    task: {
      name: title,
      "ansible.builtin.systemd_service": { name: one ? action.units[0]! : "{{ item }}", enabled: action.enable ? true : undefined, state: "started" },
      loop: one ? undefined : [...action.units],
      when: withWhen(sc.when),
      tags,
    },
  });
  return tasks;
}

function accountTasks(sc: StepContext, action: Extract<Step["action"], { kind: "account" }>): TaskOut[] {
  const title = taskName(sc.step.title);
  return [
    { task: { name: `${title}: its group ${action.group}`, "ansible.builtin.group": { name: action.group, system: true }, tags: sc.tags } },
    {
      task: {
        name: title,
        "ansible.builtin.user": { name: action.user, group: action.group, system: true, home: action.home, create_home: false, shell: "/usr/sbin/nologin" },
        tags: sc.tags,
      },
    },
  ];
}

function packagesTasks(sc: StepContext, packages: readonly string[]): TaskOut[] {
  return [
    {
      task: {
        name: taskName(sc.step.title),
        "ansible.builtin.apt": { name: [...packages], update_cache: true, cache_valid_time: 3600 },
        when: withWhen([...sc.when, `${INSTALL_PACKAGES} | bool`]),
        tags: sc.tags,
      },
    },
  ];
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/** Secrets are in files only their account may read: Ansible shows none of their content. */
function holdsSecret(file: FileSpec): boolean {
  return file.secret === true;
}

/** Where a tool keeps the rendered copy of `path` as last applied. */
function appliedCopy(ctx: HostContext, path: string): string {
  return `${ctx.paths.appliedDir}${path}`;
}

/** The files a step is run again for (its re-run sources), by step id. */
function rerunSources(host: BundleHost): Map<string, FileSpec[]> {
  const sources = new Map<string, FileSpec[]>();
  for (const file of host.files) {
    for (const effect of file.handling?.effects ?? []) {
      if (effect.kind !== "rerun") continue;
      if (!host.steps.some((s) => s.id === effect.step)) {
        throw new Error(`internal: ${file.path} on ${host.ctx.host.name} re-runs step ${effect.step}, which the host does not have`);
      }
      sources.set(effect.step, [...(sources.get(effect.step) ?? []), file]);
    }
  }
  return sources;
}

/** The handler topics a file's change notifies (re-runs are not handlers: they run at their step). */
function fileTopics(ctx: HostContext, file: FileSpec): string[] {
  const handling = file.handling;
  if (handling?.rewritten) return [`install ${file.path}`];
  return (handling?.effects ?? []).filter((e) => e.kind !== "rerun").map(effectKey);
}

function filesTasks(sc: StepContext): TaskOut[] {
  const { ctx, files } = sc.host;
  const title = taskName(sc.step.title);
  const tags = sc.tags;
  const kept = files.filter((f) => f.handling?.rewritten);
  const applied = [...kept, ...[...rerunSources(sc.host).values()].flat()];
  const dirs = [...new Set(files.filter((f) => !kept.includes(f)).map((f) => dirname(f.path)))].sort();
  const appliedDirs = applied.length === 0 ? [] : [...new Set([ctx.paths.appliedDir, ...applied.map((f) => dirname(appliedCopy(ctx, f.path)))])].sort();
  const mkdirs = (name: string, list: string[], mode: string): TaskOut => ({
    task: {
      name,
      // install -d as the runbook's install -D does; `creates`: an existing directory keeps its
      // owner and mode (Debian's /etc/redis belongs to redis, and Sentinel writes there).
      "ansible.builtin.command": { cmd: `install -d -m ${mode} {{ item | quote }}`, creates: "{{ item }}" },
      loop: list,
      tags,
    },
  });
  const tasks: TaskOut[] = [mkdirs(`${title}: the directories they go into, if missing`, dirs, "0755")];
  if (appliedDirs.length > 0) tasks.push(mkdirs(`${title}: the directory of the copies kept for later runs, if missing`, appliedDirs, "0700"));
  for (const file of files) {
    const keep = kept.includes(file);
    tasks.push({
      task: {
        name: `${title}: ${keep ? appliedCopy(ctx, file.path) : file.path}`,
        "ansible.builtin.copy": {
          src: `{{ playbook_dir }}/../{{ inventory_hostname }}${file.path}`,
          dest: keep ? appliedCopy(ctx, file.path) : file.path,
          owner: keep ? "root" : (file.owner ?? "root"),
          group: keep ? "root" : (file.group ?? "root"),
          mode: formatMode(keep ? 0o600 : file.mode),
        },
        notify: fileTopics(ctx, file).length === 0 ? undefined : fileTopics(ctx, file),
        no_log: holdsSecret(file) || keep ? true : undefined,
        tags,
      },
    });
  }
  return tasks;
}

/** The tasks of one step, in order, gated when the step is run again for a changed file. */
function stepTasks(host: BundleHost, step: Step, registers: Registers, reruns: Map<string, FileSpec[]>): TaskOut[] {
  const base: StepContext = { host, step, registers, when: [], tags: [step.id], notify: (step.effects ?? []).map(effectKey) };
  if (step.interactive || step.action.kind === "manual") return byHandTasks(base);
  const sources = reruns.get(step.id) ?? [];
  if (sources.length === 0) return actionTasks(base);
  // Run again only when a file it applies differs from the copy kept when it last succeeded.
  const gate = registers.next(step);
  const compare = sources.map((f) => `cmp -s ${shell(f.path)} ${shell(appliedCopy(host.ctx, f.path))}`).join(" && ");
  const title = taskName(step.title);
  const gated: StepContext = { ...base, when: [`${gate}.rc != 0`] };
  return [
    {
      task: {
        name: `${title}: has it run with these files?`,
        ...commandModule(compare),
        register: gate,
        changed_when: false,
        failed_when: false,
        check_mode: false,
        tags: [step.id],
      },
    },
    ...actionTasks(gated),
    ...sources.map((f) => ({
      task: {
        name: `${title}: keep the ${f.path} it ran with`,
        "ansible.builtin.copy": { src: f.path, dest: appliedCopy(host.ctx, f.path), remote_src: true, owner: "root", group: "root", mode: "0600" },
        when: `${gate}.rc != 0`,
        no_log: holdsSecret(f) ? true : undefined,
        tags: [step.id],
      },
    })),
  ];
}

function actionTasks(sc: StepContext): TaskOut[] {
  const a = sc.step.action;
  switch (a.kind) {
    case "packages":
      return packagesTasks(sc, a.packages);
    case "account":
      return accountTasks(sc, a);
    case "files":
      return filesTasks(sc);
    case "commands":
      return a.commands.flatMap((c, i) => operationTasks(sc, c, numbered(sc.step.title, i, a.commands.length)));
    case "service":
      return serviceTasks(sc, a);
    case "check":
      return checkTasks(sc, a.commands);
    case "manual":
      return byHandTasks(sc);
  }
}

// ---------------------------------------------------------------------------------------------
// Handlers

interface Handler {
  readonly rank: [number, string, number];
  readonly topic: string;
  readonly tasks: readonly Task[];
  /** Units this handler acts on, for the service facts it reads first. */
  readonly units: readonly string[];
}

const running = (unit: string) => `ansible_facts.services['${unit}'] is defined and ansible_facts.services['${unit}'].state == 'running'`;

function effectHandler(effect: Effect, appUnits: readonly string[]): Handler | undefined {
  const rank = effectRank(effect, appUnits);
  const topic = effectKey(effect);
  switch (effect.kind) {
    case "rerun":
      return undefined;
    case "daemon-reload":
      return { rank, topic, units: [], tasks: [{ name: "Reload systemd's unit files", "ansible.builtin.systemd_service": { daemon_reload: true }, listen: topic }] };
    case "restart":
    case "reload": {
      const verb = effect.kind === "restart" ? "Restart" : "Reload";
      const test: Task[] =
        effect.test === undefined
          ? []
          : [{ name: `Check the configuration of ${effect.unit} before the ${effect.kind} (${effect.test})`, ...commandModule(effect.test), changed_when: false, when: running(effect.unit), listen: topic }];
      const act: Task = {
        name: `${verb} ${effect.unit}`,
        "ansible.builtin.systemd_service": { name: effect.unit, state: effect.kind === "restart" ? "restarted" : "reloaded" },
        when: running(effect.unit),
        listen: topic,
      };
      return { rank, topic, units: [effect.unit], tasks: [...test, act] };
    }
    case "postgres-settings": {
      const pending = "novacloud_postgres_pending_restart";
      return {
        rank,
        topic,
        units: [effect.unit],
        tasks: [
          {
            name: `Reload ${effect.unit} and ask which changed settings wait for a restart`,
            ...commandModule(postgresReloadScript(effect.dataDir)),
            register: pending,
            changed_when: true,
            when: running(effect.unit),
            listen: topic,
          },
          {
            name: `Restart ${effect.unit} for the settings that need it (pg_settings.pending_restart)`,
            "ansible.builtin.systemd_service": { name: effect.unit, state: "restarted" },
            when: [running(effect.unit), `${pending}.stdout | length > 0`],
            listen: topic,
          },
        ],
      };
    }
  }
}

/** The install of a file the program rewrites, from the rendered copy kept on the host. */
function installHandler(ctx: HostContext, file: FileSpec): Handler {
  const topics = (file.handling?.effects ?? []).filter((e) => e.kind !== "rerun").map(effectKey);
  return {
    rank: [1, file.path, 0],
    topic: `install ${file.path}`,
    units: [],
    tasks: [
      {
        name: `Install ${file.path} from its rendered copy`,
        "ansible.builtin.copy": { src: appliedCopy(ctx, file.path), dest: file.path, remote_src: true, owner: file.owner ?? "root", group: file.group ?? "root", mode: formatMode(file.mode) },
        no_log: holdsSecret(file) ? true : undefined,
        notify: topics.length === 0 ? undefined : topics,
        listen: `install ${file.path}`,
      },
    ],
  };
}

/** Every handler any host notifies, once, in the order effectRank gives. */
function fleetHandlers(model: Model, hosts: readonly BundleHost[]): Task[] {
  const appUnits = Object.values(unitNames(model));
  // One handler per topic, for every host: what it does must not depend on the host. The same
  // effect (or the same file to install) makes the same handler, so each is built once.
  const byTopic = new Map<string, { readonly source: string; readonly handler: Handler | undefined }>();
  const add = (topic: string, source: string, make: () => Handler | undefined) => {
    const known = byTopic.get(topic);
    if (known === undefined) byTopic.set(topic, { source, handler: make() });
    else if (known.source !== source) throw new Error(`internal: two hosts need different handlers for ${topic}`);
  };
  const addEffect = (effect: Effect) => add(effectKey(effect), JSON.stringify(effect), () => effectHandler(effect, appUnits));
  for (const host of hosts) {
    for (const file of host.files) {
      const handling = file.handling;
      if (handling?.rewritten) {
        add(`install ${file.path}`, JSON.stringify([appliedCopy(host.ctx, file.path), file.owner, file.group, file.mode, handling.effects]), () => installHandler(host.ctx, file));
      }
      for (const effect of handling?.effects ?? []) addEffect(effect);
    }
    for (const step of host.steps) for (const effect of step.effects ?? []) addEffect(effect);
  }
  const handlers = [...byTopic.values()].flatMap((k) => (k.handler === undefined ? [] : [k.handler])).sort((a, b) => compareRanks(a.rank, b.rank));
  const unitTopics = handlers.filter((h) => h.units.length > 0).map((h) => h.topic);
  // Handlers change running units only; the states are read once before the first of them.
  const facts: Task = { name: "Read the state of the services", "ansible.builtin.service_facts": {}, listen: unitTopics };
  const first = handlers.findIndex((h) => h.units.length > 0);
  const tasks = handlers.map((h) => h.tasks);
  if (first >= 0) tasks.splice(first, 0, [facts]);
  return tasks.flat();
}

// ---------------------------------------------------------------------------------------------
// The bundle

function roleGroup(role: Role): string {
  // Group names with '_' (never '-', which Ansible warns about) cannot clash with a host name.
  return `role_${role.replace(/-/g, "_")}`;
}

function inventory(model: Model): string {
  const hosts = model.topology.hosts;
  const roles = [...new Set(hosts.flatMap((h) => [...h.roles]))].sort();
  const document = {
    all: {
      vars: {
        ansible_user: model.ansible.user,
        ansible_port: model.firewall.ssh_port,
        ansible_become: model.ansible.become,
        [INSTALL_PACKAGES]: true,
        [SWITCH_VARIABLES.systemSitePackages]: false,
      },
      hosts: Object.fromEntries(hosts.map((h) => [h.name, { ansible_host: h.address }])),
      children: Object.fromEntries(roles.map((role) => [roleGroup(role), { hosts: Object.fromEntries(hosts.filter((h) => h.roles.has(role)).map((h) => [h.name, {}])) }])),
    },
  };
  const comments: YamlComments = {
    "all.vars": ["Connection settings from the model's [ansible] section; the SSH port is firewall.ssh_port."],
    [`all.vars.${INSTALL_PACKAGES}`]: ["false: the hosts have every package already and no mirror to install from (-e novacloud_install_packages=false)."],
    [`all.vars.${SWITCH_VARIABLES.systemSitePackages}`]: [
      "true: the app's Python packages come from the distribution (no package index): the release's virtualenv",
      "is made with --system-site-packages and pip installs nothing (-e novacloud_system_site_packages=true).",
    ],
    "all.hosts": ["Every host of the model at its address."],
    "all.children": ["One group per role, for --limit (e.g. --limit role_app)."],
  };
  return withMarker(toYaml(document, comments, [], YAML), "#");
}

/** Why a wave starts: the steps of other hosts its first steps wait for. */
function waveReasons(hosts: readonly BundleHost[], waves: Map<string, number[]>, wave: number): string[] {
  const byName = new Map(hosts.map((h) => [h.ctx.host.name, h]));
  const reasons: string[] = [];
  for (const host of hosts) {
    const w = waves.get(host.ctx.host.name)!;
    host.steps.forEach((step, i) => {
      if (w[i] !== wave) return;
      for (const ref of step.after ?? []) {
        const j = byName.get(ref.host)?.steps.findIndex((s) => s.id === ref.id) ?? -1;
        if (ref.host !== host.ctx.host.name && j >= 0 && waves.get(ref.host)![j] === wave - 1) reasons.push(`${host.ctx.host.name} ${step.id} after ${ref.host} ${ref.id}`);
      }
    });
  }
  return reasons;
}

function playbook(hosts: readonly BundleHost[], waves: Map<string, number[]>, count: number): string {
  const plays: YamlValue[] = [];
  const comments: Record<string, string[]> = {};
  for (let wave = 0; wave < count; wave++) {
    const members = hosts.filter((h) => waves.get(h.ctx.host.name)!.includes(wave)).map((h) => h.ctx.host.name);
    const reasons = waveReasons(hosts, waves, wave);
    const shown = reasons.length > 12 ? [...reasons.slice(0, 11), `... and ${reasons.length - 11} more`] : reasons;
    comments[`[${wave}]`] =
      wave === 0
        ? ["Every host, up to its first step that waits for a step on another host."]
        : ["The steps that waited for the wave before, on another host:", ...shown.map((r) => `  ${r}`)];
    // Every play targets every host, so that a host that failed in an earlier wave is missing
    // from ansible_play_hosts: the steps of this wave may wait for that host's, so the run stops.
    const stop = {
      name: "Stop if a host failed in an earlier wave (this wave's steps may wait for its steps)",
      "ansible.builtin.assert": {
        that: "ansible_play_hosts_all | difference(ansible_play_hosts) | length == 0",
        fail_msg: "A host failed in an earlier wave: fix it and run the playbook again.",
        quiet: true,
      },
      tags: ["always"],
    };
    plays.push({
      name: `Wave ${wave + 1} of ${count}`,
      hosts: "all",
      gather_facts: false,
      // Hosts in one wave do not wait for each other (no task uses run_once); the play boundary
      // is the barrier between waves.
      strategy: new Commented("free", "noqa: run-once[play]"),
      force_handlers: true,
      vars: { [WAVE_HOSTS]: members },
      handlers: [{ name: "What changed files and steps require", "ansible.builtin.import_tasks": ANSIBLE_FILES.handlers }],
      tasks: [
        ...(wave > 0 ? [stop] : []),
        {
          name: `This host's steps of wave ${wave + 1}`,
          "ansible.builtin.include_tasks": `tasks/{{ inventory_hostname }}/wave-${wave + 1}.yml`,
          when: `inventory_hostname in ${WAVE_HOSTS}`,
          // Included tasks carry their step's tags; the include itself runs for any --tags.
          tags: ["always"],
        },
      ],
    });
  }
  const header = [
    "Applies the trees rendered beside this directory (../<host>/) to the hosts of inventory.yml,",
    "every host's steps in its runbook's order:",
    "  ansible-playbook -i inventory.yml site.yml",
    "A step that waits for a step on another host (a standby's clone for the primary's roles,",
    "the app for the migrations) runs in a later wave, which starts only if no host failed.",
    "Steps a tool cannot run (they ask for input, or a person decides) and the checks are tagged",
    "never: --tags verify runs the checks, --tags interactive,manual shows what to do by hand,",
    "--tags <step id> runs one step (--limit <host or role_...> some hosts).",
  ];
  return withMarker(toYamlSequence(plays, header, { ...YAML, comments }), "#");
}

/**
 * A task as written: its `noqa`, if any, at the end of its name's line. ansible-lint reads a
 * task's noqa from any of its lines, but not from a folded scalar's header (`cmd: >-  # noqa`),
 * which long commands get.
 */
function written(t: TaskOut): Task {
  if (t.noqa === undefined) return t.task;
  return { ...t.task, name: new Commented(t.task.name as string, `noqa: ${t.noqa}`) };
}

function taskFile(host: BundleHost, wave: number, tasks: readonly TaskOut[]): string {
  const header = [`${host.ctx.host.name}, wave ${wave + 1}: its runbook's steps (${host.ctx.paths.runbook}) in order, each tagged with its id.`];
  return withMarker(toYamlSequence(tasks.map(written), header, YAML), "#");
}

/** The bundle's files, paths relative to ansible/ (render places them there). */
export function ansibleFiles(model: Model, hosts: readonly BundleHost[]): FileSpec[] {
  if (hosts.length === 0) return [];
  const waves = stepWaves(hosts.map((h) => ({ host: h.ctx.host.name, steps: h.steps })));
  // A loop, not Math.max(...): ten thousand hosts have more steps than a call takes arguments.
  let count = 0;
  for (const w of waves.values()) for (const wave of w) count = Math.max(count, wave + 1);
  const files: FileSpec[] = [
    { path: ANSIBLE_FILES.inventory, content: inventory(model), mode: 0o644 },
    { path: ANSIBLE_FILES.playbook, content: playbook(hosts, waves, count), mode: 0o644 },
    { path: ANSIBLE_FILES.handlers, content: withMarker(toYamlSequence(fleetHandlers(model, hosts), [], YAML), "#"), mode: 0o644 },
  ];
  for (const host of hosts) {
    const registers = new Registers();
    const reruns = rerunSources(host);
    const w = waves.get(host.ctx.host.name)!;
    const byWave = new Map<number, TaskOut[]>();
    host.steps.forEach((step, i) => {
      const list = byWave.get(w[i]!) ?? [];
      list.push(...stepTasks(host, step, registers, reruns));
      byWave.set(w[i]!, list);
    });
    for (const [wave, tasks] of [...byWave].sort(([a], [b]) => a - b)) {
      files.push({ path: ANSIBLE_FILES.tasks(host.ctx.host.name, wave), content: taskFile(host, wave, tasks), mode: 0o644 });
    }
  }
  return files;
}
