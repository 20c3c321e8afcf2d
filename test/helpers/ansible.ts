/**
 * The Ansible bundle of a rendered tree as Ansible reads it: every YAML file parsed by a real YAML
 * parser (python3-yaml, which ansible-core itself uses), the plays of site.yml, and each host's
 * tasks in the order the playbook runs them (its wave files in play order).
 */
import { fixtureNames, loadFixture } from "./fixtures.js";
import { run } from "./programs.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";

/** Parses many YAML documents in one python3 process: path -> parsed value. */
export function parseYamlFiles(files: Record<string, string>): Record<string, any> {
  const script = "import sys, json, yaml; docs = json.load(sys.stdin); json.dump({p: yaml.safe_load(t) for p, t in docs.items()}, sys.stdout)";
  const r = run("/usr/bin/python3", ["-c", script], { input: JSON.stringify(files), timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`python3 yaml: ${r.output}`);
  return JSON.parse(r.stdout);
}

export interface Bundle {
  readonly tree: Tree;
  /** ansible/<path> -> parsed YAML. */
  readonly yaml: Record<string, any>;
  readonly plays: any[];
  readonly handlers: any[];
  readonly inventory: any;
}

export function bundleOf(tree: Tree): Bundle {
  const files = Object.fromEntries([...tree].filter(([path]) => path.startsWith("ansible/")).map(([path, f]) => [path, f.content]));
  const yaml = parseYamlFiles(files);
  return { tree, yaml, plays: yaml["ansible/site.yml"], handlers: yaml["ansible/handlers.yml"], inventory: yaml["ansible/inventory.yml"] };
}

/** The task files a host runs, in play order: ansible/tasks/<host>/wave-<n>.yml. */
export function hostTaskFiles(bundle: Bundle, host: string): string[] {
  return bundle.plays.flatMap((play: any) => {
    if (!waveHosts(play).includes(host)) return [];
    const include: string = play.tasks.find((t: any) => t["ansible.builtin.include_tasks"])["ansible.builtin.include_tasks"];
    return [`ansible/${include.replace("{{ inventory_hostname }}", host)}`];
  });
}

/** The hosts that run steps in a play (every play targets all hosts; the include is for these). */
export function waveHosts(play: any): string[] {
  const include = play.tasks.find((t: any) => t["ansible.builtin.include_tasks"]);
  if (include.when !== "inventory_hostname in novacloud_wave_hosts" || play.hosts !== "all") throw new Error(`unexpected play ${play.name}`);
  return play.vars.novacloud_wave_hosts;
}

/** A host's tasks in the order the playbook runs them. */
export function hostTasks(bundle: Bundle, host: string): any[] {
  return hostTaskFiles(bundle, host).flatMap((file) => {
    const tasks = bundle.yaml[file];
    if (!Array.isArray(tasks)) throw new Error(`${file}: not a task list (is it missing?)`);
    return tasks;
  });
}

/** Every fixture that has hosts, rendered, with its bundle parsed. */
export function fixtureBundles(): { name: string; bundle: Bundle; hosts: string[] }[] {
  return fixtureNames().flatMap((name) => {
    const f = loadFixture(name);
    if (f.model.topology.hosts.length === 0) return [];
    return [{ name, bundle: bundleOf(render(f.model, f.sources)), hosts: f.model.topology.hosts.map((h) => h.name) }];
  });
}
