/**
 * The Ansible bundle of every fixture with hosts, checked by Ansible's own programs (Debian's
 * `ansible` and `ansible-lint` packages: ansible-core 2.14, ansible-lint 6.13): the playbook
 * passes `ansible-playbook --syntax-check` and `ansible-lint` with its default profile, and
 * `ansible-inventory` reads exactly the model's hosts, addresses, connection settings and role
 * groups from the inventory.
 */
import { describe, expect, it } from "vitest";
import { renderFixture, fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { programsAvailable, run, sandbox } from "../helpers/programs.js";
import type { Tree } from "../../src/tree.js";

const available = programsAvailable("Ansible lint", { "ansible-playbook": "ansible", "ansible-inventory": "ansible", "ansible-lint": "ansible-lint" });

const fixtures = fixtureNames().filter((name) => loadFixture(name).model.topology.hosts.length > 0);

/** The rendered tree written out as the CLI writes it, so the playbook finds ../<host>/. */
function writeTree(tree: Tree) {
  const box = sandbox("ncr-ansible-");
  for (const [path, file] of tree) box.write(path, file.content, file.mode);
  return box;
}

/** Ansible with no configuration or state from the machine running the tests. */
function env(home: string): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ANSIBLE_")));
  return { ...clean, HOME: home, ANSIBLE_LOCAL_TEMP: `${home}/tmp`, NO_COLOR: "1", ANSIBLE_NOCOLOR: "1" };
}

describe.skipIf(!available)("Ansible reads every fixture's bundle", () => {
  it("has fixtures with hosts", () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(5);
  });

  for (const name of fixtures) {
    it(`${name}: ansible-playbook --syntax-check, ansible-lint (default profile), ansible-inventory`, () => {
      const box = writeTree(renderFixture(name));
      try {
        const dir = box.path("ansible");
        const e = env(box.dir);
        const syntax = run("ansible-playbook", ["--syntax-check", "-i", "inventory.yml", "site.yml"], { cwd: dir, env: e, timeoutMs: 120_000 });
        expect(syntax.code, syntax.output).toBe(0);

        const files = ["site.yml", "handlers.yml", "inventory.yml", "tasks"];
        const lint = run("ansible-lint", ["--nocolor", "--offline", ...files], { cwd: dir, env: e, timeoutMs: 300_000 });
        expect(lint.code, lint.output).toBe(0);
        expect(lint.output).toMatch(/Passed with production profile: 0 failure\(s\), 0 warning\(s\)/);

        const inventory = run("ansible-inventory", ["-i", "inventory.yml", "--list"], { cwd: dir, env: e, timeoutMs: 60_000 });
        expect(inventory.code, inventory.output).toBe(0);
        const listed = JSON.parse(inventory.stdout);
        const model = loadFixture(name).model;
        const hostvars = listed._meta.hostvars as Record<string, Record<string, unknown>>;
        expect(Object.keys(hostvars).sort()).toEqual(model.topology.hosts.map((h) => h.name).sort());
        for (const h of model.topology.hosts) {
          expect(hostvars[h.name]).toMatchObject({ ansible_host: h.address, ansible_port: model.firewall.ssh_port, ansible_user: model.ansible.user, ansible_become: model.ansible.become });
          for (const role of h.roles) expect(listed[`role_${role.replace(/-/g, "_")}`].hosts).toContain(h.name);
        }
        expect(inventory.stderr).not.toMatch(/WARNING/);
      } finally {
        box.cleanup();
      }
    }, 400_000);
  }
});
