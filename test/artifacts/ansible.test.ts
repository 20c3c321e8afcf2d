/**
 * The Ansible bundle of every fixture, read back by a real YAML parser: the inventory is exactly
 * the model's hosts, every runbook step is in the playbook in the same order and runs the same
 * commands, every reference inside the bundle resolves (handlers, included files, copied files,
 * registered results), and every task is idempotent by construction: a module, a command with
 * `creates` or `changed_when`, or a task that runs only when asked for (tag never).
 */
import { describe, expect, it } from "vitest";
import { unitName } from "../../src/artifacts/effects.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { stepLines } from "../../src/artifacts/steps.js";
import { render, renderHosts } from "../../src/render.js";
import type { Role } from "../../src/model/schema.js";
import { fixtureNames, loadFixture, renderFixture } from "../helpers/fixtures.js";
import { bundleOf, fixtureBundles, hostTaskFiles, hostTasks, waveHosts } from "../helpers/ansible.js";
import { INSTALL_PACKAGES, SWITCH_VARIABLES } from "../../src/artifacts/ansible.js";
import { programsAvailable } from "../helpers/programs.js";

const available = programsAvailable("Ansible bundle structure", { "/usr/bin/python3": "python3-yaml" });

/** The step ids of a runbook, in order: its `### Title [`id`]` headings. */
function runbookSteps(runbook: string): { id: string; title: string }[] {
  return [...runbook.matchAll(/^### (.*) \[`([^`]+)`\]$/gm)].map((m) => ({ title: m[1]!, id: m[2]! }));
}

/** The module a task calls: its one ansible.builtin.* key. */
function moduleOf(task: any): string {
  const modules = Object.keys(task).filter((k) => k.startsWith("ansible.builtin."));
  if (modules.length !== 1) throw new Error(`task ${JSON.stringify(task.name)} calls ${modules.length} modules`);
  return modules[0]!;
}

const asList = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v as string]);

describe("the Ansible bundle of a large fleet", () => {
  it("renders for 10,000 app hosts: every host in the inventory, its services after the one migration", () => {
    const hosts: Record<string, { address: string; roles: Role[] }> = {
      lb: { address: "10.0.0.2", roles: ["lb"] },
      db: { address: "10.0.0.3", roles: ["db"] },
      cache: { address: "10.0.0.4", roles: ["redis", "mqtt"] },
    };
    for (let i = 0; i < 10_000; i++) hosts[`app${i}`] = { address: `10.${1 + Math.floor(i / 62500)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`, roles: ["web", "app"] };
    // Uploads on 10,000 web hosts need one home: S3 adds no step between hosts.
    const media = { storage: "s3" as const, bucket: "media", access_key_id: "k", secret_access_key: "s" };
    const tree = render({ project: { django_module: "App" }, site: { domain: "example.org" }, hosts, media, postgres: { password: "p" }, redis: { password: "r" }, mqtt: { password: "m" }, django: { secret_key: "s" } });
    expect((tree.get("ansible/inventory.yml")!.content.match(/ansible_host: /g) ?? []).length).toBe(10_003);
    // app0 migrates after db's roles (wave 2); every other app host starts its services in wave 3.
    expect(tree.has("ansible/tasks/app0/wave-2.yml")).toBe(true);
    expect(tree.has("ansible/tasks/app9999/wave-3.yml")).toBe(true);
    expect(tree.get("ansible/site.yml")!.content).toContain("... and 9988 more");
  }, 120_000);
});

describe.skipIf(!available)("the Ansible bundle", () => {
  const bundles = available ? fixtureBundles() : [];

  it("exists for every fixture with hosts, and not for a Compose-only model", () => {
    expect(bundles.map((b) => b.name)).toEqual(fixtureNames().filter((n) => loadFixture(n).model.topology.hosts.length > 0));
    expect(bundles.length).toBeGreaterThanOrEqual(5);
    const compose = renderFixture("compose");
    expect([...compose.keys()].filter((p) => p.startsWith("ansible/"))).toEqual([]);
  });

  it("lists exactly the model's hosts at their addresses, and one group per role", () => {
    for (const { name, bundle } of bundles) {
      const model = loadFixture(name).model;
      const all = bundle.inventory.all;
      expect(Object.keys(all.hosts).sort(), name).toEqual(model.topology.hosts.map((h) => h.name).sort());
      for (const h of model.topology.hosts) expect(all.hosts[h.name].ansible_host, `${name} ${h.name}`).toBe(h.address);
      for (const h of model.topology.hosts) {
        for (const role of h.roles) expect(Object.keys(all.children[`role_${role.replace(/-/g, "_")}`].hosts), `${name} ${role}`).toContain(h.name);
      }
      expect(all.vars.ansible_port).toBe(model.firewall.ssh_port);
      expect(all.vars.ansible_user).toBe("root");
    }
  });

  it("has every step of every host's runbook, in the same order and under the same title", () => {
    for (const { name, bundle, hosts } of bundles) {
      const p = pathsOf(loadFixture(name).model);
      for (const host of hosts) {
        const runbook = runbookSteps(bundle.tree.get(`${host}${p.runbook}`)!.content);
        expect(runbook.length, `${name}/${host}: runbook headings`).toBeGreaterThan(5);
        const tasks = hostTasks(bundle, host);
        const ids = tasks.map((t) => t.tags[0] as string).filter((id, i, all) => i === 0 || all[i - 1] !== id);
        expect(ids, `${name}/${host}: the playbook's steps`).toEqual(runbook.map((s) => s.id));
        for (const step of runbook) {
          const first = tasks.find((t) => t.tags[0] === step.id)!;
          expect(first.name.toLowerCase(), `${name}/${host} ${step.id}`).toContain(step.title.toLowerCase());
        }
      }
    }
  });

  it("runs the runbook's commands as they are, and nothing that asks for input", () => {
    for (const { name, bundle } of bundles) {
      const f = loadFixture(name);
      for (const { ctx, steps } of renderHosts(f.model, f.sources)) {
        const tasks = hostTasks(bundle, ctx.host.name);
        for (const step of steps) {
          const mine = tasks.filter((t) => t.tags[0] === step.id);
          const cmds = mine.flatMap((t) => ["ansible.builtin.command", "ansible.builtin.shell"].map((m) => t[m]?.cmd).filter((c) => c !== undefined)) as string[];
          const ran = cmds.map((c) => c.replace(/^set -o pipefail; /, ""));
          if (step.interactive || step.action.kind === "manual") {
            expect(mine.every((t) => moduleOf(t) === "ansible.builtin.debug" && t.tags.includes("never")), `${name}/${ctx.host.name} ${step.id}`).toBe(true);
            continue;
          }
          const expected =
            step.action.kind === "commands"
              ? step.action.commands.filter((c) => c.state === undefined).map((c) => c.run)
              : step.action.kind === "check"
                ? [...step.action.commands]
                : [];
          for (const run of expected) expect(ran, `${name}/${ctx.host.name} ${step.id}`).toContain(run);
          if (step.action.kind === "check") expect(mine.every((t) => t.tags.includes("never") && t.tags.includes("verify"))).toBe(true);
          if (step.action.kind === "commands") {
            for (const c of step.action.commands) if (c.unless !== undefined) expect(ran, `${name}/${ctx.host.name} ${step.id}: its check`).toContain(c.unless);
          }
        }
        // What a by-hand task shows is the runbook's text.
        for (const step of steps.filter((s) => s.interactive)) {
          const shown = tasks.find((t) => t.tags[0] === step.id)!["ansible.builtin.debug"].msg.join("\n");
          // A manual step's lines are comments in the runbook; the message drops the "# ".
          for (const line of stepLines(step)) expect(shown).toContain(line.replace(/^# /, "").trim());
        }
      }
    }
  });

  // The inventory's own variables (all.vars), which the operator may set with -e.
  const INVENTORY_VARIABLES = new Set([INSTALL_PACKAGES, ...Object.values(SWITCH_VARIABLES)]);

  it("resolves every reference: included task files, handlers, copied files, registered results", () => {
    for (const { name, bundle, hosts } of bundles) {
      const topics = new Set(bundle.handlers.flatMap((h: any) => asList(h.listen)));
      const notified = (tasks: any[]) => tasks.flatMap((t) => asList(t.notify));
      for (const topic of notified(bundle.handlers)) expect(topics.has(topic), `${name}: handler for ${topic}`).toBe(true);
      for (const [i, play] of bundle.plays.entries()) {
        for (const host of waveHosts(play)) expect(Array.isArray(bundle.yaml[`ansible/tasks/${host}/wave-${i + 1}.yml`]), `${name}: ${host}'s tasks of ${play.name}`).toBe(true);
        // A later wave stops when a host failed in an earlier one.
        if (i > 0) expect(play.tasks[0]["ansible.builtin.assert"].that).toBe("ansible_play_hosts_all | difference(ansible_play_hosts) | length == 0");
        for (const task of play.tasks) expect(task.tags, `${name} ${play.name}: ${task.name} runs whatever --tags select`).toEqual(["always"]);
      }
      // Every host file of the bundle is included by a play.
      const included = new Set(hosts.flatMap((h) => hostTaskFiles(bundle, h)));
      for (const path of Object.keys(bundle.yaml).filter((p) => p.startsWith("ansible/tasks/"))) expect(included.has(path), `${name}: ${path} is run`).toBe(true);
      for (const host of hosts) {
        const tasks = hostTasks(bundle, host);
        for (const topic of notified(tasks)) expect(topics.has(topic), `${name}/${host}: handler for ${topic}`).toBe(true);
        const registered = new Set<string>();
        for (const t of tasks) {
          const src = t["ansible.builtin.copy"]?.src as string | undefined;
          if (src?.startsWith("{{ playbook_dir }}/../{{ inventory_hostname }}/")) {
            expect(bundle.tree.has(`${host}/${src.slice("{{ playbook_dir }}/../{{ inventory_hostname }}/".length)}`), `${name}/${host}: ${src}`).toBe(true);
          }
          // when: results of earlier tasks; changed_when may also read the task's own.
          for (const v of JSON.stringify(t.when ?? null).match(/novacloud_[a-z0-9_]+/g) ?? []) {
            if (!INVENTORY_VARIABLES.has(v)) expect(registered.has(v), `${name}/${host} ${t.name}: ${v} registered before`).toBe(true);
          }
          for (const v of JSON.stringify([t.changed_when ?? null, t.failed_when ?? null]).match(/novacloud_[a-z0-9_]+/g) ?? []) expect(v, `${name}/${host} ${t.name}`).toBe(t.register);
          if (t.register) registered.add(t.register);
        }
      }
    }
  });

  it("is idempotent by construction: modules, or commands that say when they change something", () => {
    const modules = new Set([
      "ansible.builtin.apt",
      "ansible.builtin.group",
      "ansible.builtin.user",
      "ansible.builtin.copy",
      "ansible.builtin.file",
      "ansible.builtin.git",
      "ansible.builtin.stat",
      "ansible.builtin.systemd_service",
      "ansible.builtin.meta",
      "ansible.builtin.debug",
      "ansible.builtin.command",
      "ansible.builtin.shell",
    ]);
    for (const { name, bundle, hosts } of bundles) {
      for (const host of hosts) {
        for (const t of hostTasks(bundle, host)) {
          const m = moduleOf(t);
          expect(modules.has(m), `${name}/${host} ${t.name}: ${m}`).toBe(true);
          if (t.tags.includes("never")) continue;
          if (m === "ansible.builtin.command" || m === "ansible.builtin.shell") {
            expect(t[m].creates !== undefined || t.changed_when !== undefined, `${name}/${host} ${t.name}: runs every time without saying whether it changed something`).toBe(true);
            // changed_when: true only for what runs when a check or a re-run gate says it is needed.
            if (t.changed_when === true) expect(t.when, `${name}/${host} ${t.name}`).toBeDefined();
          }
          if (m === "ansible.builtin.systemd_service" && t[m].state !== undefined) expect(["started", "stopped"]).toContain(t[m].state);
          if (m === "ansible.builtin.apt") expect(JSON.stringify(t.when)).toContain("novacloud_install_packages | bool");
        }
      }
    }
  });

  it("never shows a secret file's content: no_log on every copy of a file that holds a secret", () => {
    for (const { name, bundle, hosts } of bundles) {
      for (const host of hosts) {
        for (const t of hostTasks(bundle, host).filter((x) => x["ansible.builtin.copy"])) {
          const copy = t["ansible.builtin.copy"];
          const file = copy.src.startsWith("{{") ? bundle.tree.get(`${host}/${copy.src.split("{{ inventory_hostname }}/")[1]}`)! : bundle.tree.get(`${host}${copy.src}`);
          if (file?.secret) expect(t.no_log, `${name}/${host} ${t.name}`).toBe(true);
        }
      }
      for (const h of bundle.handlers.filter((x: any) => x["ansible.builtin.copy"])) expect(h.no_log, `${name} ${h.name}`).toBe(true);
    }
  });

  it("runs a step that waits for another host's step in a later play", () => {
    for (const { name, bundle } of bundles) {
      const f = loadFixture(name);
      const hosts = renderHosts(f.model, f.sources);
      const playOf = (host: string, id: string) => bundle.plays.findIndex((play: any, i: number) => waveHosts(play).includes(host) && bundle.yaml[`ansible/tasks/${host}/wave-${i + 1}.yml`].some((t: any) => t.tags[0] === id));
      let waits = 0;
      for (const { ctx, steps } of hosts) {
        for (const step of steps) {
          for (const ref of step.after ?? []) {
            if (ref.host === ctx.host.name) continue;
            waits++;
            expect(playOf(ctx.host.name, step.id), `${name}: ${ctx.host.name} ${step.id} after ${ref.host} ${ref.id}`).toBeGreaterThan(playOf(ref.host, ref.id));
          }
        }
      }
      if (hosts.length > 1) expect(waits, name).toBeGreaterThan(0);
    }
  });

  it("handlers change running units only, after their configuration test, and read the unit states first", () => {
    for (const { name, bundle } of bundles) {
      const handlers = bundle.handlers;
      const facts = handlers.findIndex((h: any) => h["ansible.builtin.service_facts"] !== undefined);
      for (const [i, h] of handlers.entries()) {
        const unit = h["ansible.builtin.systemd_service"]?.name as string | undefined;
        if (unit === undefined) continue;
        expect(i, `${name}: ${h.name} after the service facts`).toBeGreaterThan(facts);
        expect(asList(h.when).join(" "), `${name}: ${h.name}`).toContain(`ansible_facts.services['${unitName(unit)}'].state == 'running'`);
        expect(asList(handlers[facts].listen)).toContain(h.listen);
      }
      const nginx = handlers.findIndex((h: any) => h.name === "Reload nginx.service");
      if (nginx >= 0) expect(handlers[nginx - 1]["ansible.builtin.command"].cmd).toBe("nginx -t");
    }
  });

  it("installs sentinel.conf from a kept copy only when the rendered one changes, and restarts Sentinel then", () => {
    const bundle = bundleOf(renderFixture("ha-sentinel"));
    const p = pathsOf(loadFixture("ha-sentinel").model);
    const kept = `${p.appliedDir}${p.sentinelConf}`;
    const copy = hostTasks(bundle, "arbiter").find((t) => t["ansible.builtin.copy"]?.src?.endsWith(p.sentinelConf))!;
    expect(copy["ansible.builtin.copy"]).toMatchObject({ dest: kept, owner: "root", mode: "0600" });
    expect(copy.notify).toEqual([`install ${p.sentinelConf}`]);
    expect(hostTasks(bundle, "arbiter").some((t) => t["ansible.builtin.copy"]?.dest === p.sentinelConf)).toBe(false);
    const install = bundle.handlers.find((h: any) => h.listen === `install ${p.sentinelConf}`);
    expect(install["ansible.builtin.copy"]).toMatchObject({ src: kept, dest: p.sentinelConf, remote_src: true, owner: "redis", group: "redis", mode: "0640" });
    expect(install.notify).toEqual(["restart redis-sentinel.service"]);
    const runbook = bundle.tree.get(`arbiter${p.runbook}`)!.content;
    expect(runbook).toContain(`cmp -s /root/novacloud-render${p.sentinelConf} ${kept} ||`);
    expect(runbook).toContain(`kept in ${p.appliedDir}`);
  });

  it("runs the init SQL again only when it differs from the copy kept when it last ran", () => {
    const bundle = bundleOf(renderFixture("ha-cluster"));
    const p = pathsOf(loadFixture("ha-cluster").model);
    const tasks = hostTasks(bundle, "db1").filter((t) => t.tags[0] === "postgres.init-sql");
    const gate = tasks[0];
    expect(gate["ansible.builtin.command"].cmd).toBe(`cmp -s ${p.pgInitSql} ${p.appliedDir}${p.pgInitSql}`);
    expect(gate).toMatchObject({ changed_when: false, failed_when: false, check_mode: false });
    const sql = tasks.find((t) => t["ansible.builtin.shell"]?.cmd.includes("psql"))!;
    expect(sql.when).toBe(`${gate.register}.rc != 0`);
    const keep = tasks.at(-1);
    expect(keep["ansible.builtin.copy"]).toMatchObject({ src: p.pgInitSql, dest: `${p.appliedDir}${p.pgInitSql}`, remote_src: true, mode: "0600" });
    expect(keep.no_log).toBe(true);
    expect(keep.when).toBe(`${gate.register}.rc != 0`);
  });
});

describe("novacloud_system_site_packages (a switch the fleet test sets)", () => {
  it("makes the release's virtualenv with --system-site-packages and skips pip; off by default", () => {
    const bundle = bundleOf(renderFixture("fleet"));
    const tasks = hostTasks(bundle, "app1").filter((t) => String(t.name).startsWith("Build the first release"));
    const cmd = (t: (typeof tasks)[number]) => String((t["ansible.builtin.shell"] as { cmd?: string } | undefined)?.cmd ?? "");
    const venv = tasks.filter((t) => /-m venv/.test(cmd(t)));
    expect(venv.map((t) => [cmd(t).includes("--system-site-packages"), t.when])).toEqual([
      [false, "not (novacloud_system_site_packages | bool)"],
      [true, "novacloud_system_site_packages | bool"],
    ]);
    const pip = tasks.filter((t) => /pip" install/.test(cmd(t)));
    expect(pip.map((t) => t.when)).toEqual(["not (novacloud_system_site_packages | bool)"]);
    expect(bundle.inventory).toMatchObject({ all: { vars: { novacloud_system_site_packages: false } } });
  });
});
