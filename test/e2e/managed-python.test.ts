/**
 * Issue #9 item 1: on Debian 12 the app's interpreter must run as the service account under the
 * units' sandboxing. This machine has no systemd as PID 1, so the unit's ProtectHome=yes is
 * emulated: everything runs in a private mount namespace (`unshare -m`) where
 *   - /opt, /root and /home are empty tmpfs (the machine's own are never touched),
 *   - /etc/passwd and /etc/group are sandbox copies with the model's service account added,
 *   - the runbook's code phase runs as root under umask 077 (a hardened root), each command with
 *     its guard, at the paths the runbook names; uv is the stand-in of test/helpers/release.ts
 *     (uv cannot be fetched here: no PyPI, no GitHub), put where the runbook's pip would put it
 *     and, for runbooks that call plain `uv`, on PATH;
 *   - then, as ProtectHome=yes does, /root and /home are covered by empty inaccessible tmpfs and
 *     the venv's python of the gunicorn unit's ExecStart runs with runuser as the account, in
 *     the unit's WorkingDirectory, and imports a package the runbook installed.
 * The old layout (uv's default, the interpreter under /root/.local/share/uv) must fail there.
 */
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import { pathsOf, unitNames } from "../../src/artifacts/paths.js";
import { systemdFamily } from "../../src/artifacts/systemd.js";
import { shell } from "../../src/quote.js";
import { contextOf, hostContexts, parseUnit, value } from "../artifacts/systemd-scripts-support.js";
import { IN_CI, programsAvailable, run, sandbox, type Sandbox } from "../helpers/programs.js";
import { gitEnv, gitOrigin, standInUv } from "../helpers/release.js";
import { guarded } from "../../src/artifacts/steps.js";

const tools = programsAvailable("managed Python under ProtectHome", { unshare: "util-linux", mount: "mount", runuser: "util-linux", git: "git", "/usr/bin/python3": "python3-venv" });
const isRoot = process.getuid?.() === 0;
function canUnshare(): boolean {
  if (!tools || !isRoot) {
    if (IN_CI) throw new Error("managed Python: needs root and unshare (CI runs as root)");
    return false;
  }
  const ok = run("unshare", ["-m", "true"]).code === 0;
  if (!ok && IN_CI) throw new Error("managed Python: `unshare -m` is not permitted here");
  return ok;
}

const boxes: Sandbox[] = [];
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

// single-node: Debian 12 (Python 3.11), so the runbook installs a uv-managed 3.12.
const ctx = contextOf(hostContexts("single-node"), "node1");
const model = ctx.model;
const p = model.project;
const pth = pathsOf(model);

/** A sandbox with the origin repository, the stand-in uv and passwd/group with the account. */
function prepare() {
  const box = sandbox("ncr-python-");
  boxes.push(box);
  const origin = gitOrigin(box.path("origin"), p.branch);
  origin.commit({ "requirements.txt": "release_marker==1\n", "manage.py": "print('manage')\n" }, "first");
  standInUv(box.path("uv"));
  // Runbooks that call `uv` from PATH (the layout before #9) find the same stand-in.
  box.write("bin/uv", `#!/bin/sh\nexec ${box.path("uv")} "$@"\n`, 0o755);
  const passwd = readFileSync("/etc/passwd", "utf8");
  const group = readFileSync("/etc/group", "utf8");
  const used = new Set([...passwd.matchAll(/^[^:]*:[^:]*:(\d+):/gm)].map((m) => Number(m[1])));
  let id = 61000;
  while (used.has(id)) id++;
  box.write("passwd", `${passwd.trimEnd()}\n${p.user}:x:${id}:${id}::${p.root}:/usr/sbin/nologin\n`);
  box.write("group", `${group.trimEnd()}\n${p.group}:x:${id}:\n`);
  return { box, origin };
}

/** The gunicorn unit's WorkingDirectory and the venv python beside its ExecStart program. */
function unitInterpreter() {
  const unit = parseUnit(systemdFamily.files(ctx).find((f) => f.path.endsWith(`/${unitNames(model).wsgi}`))!.content);
  const program = value(unit, "Service", "ExecStart").split(" ")[0]!;
  expect(value(unit, "Service", "ProtectHome")).toBe("yes");
  return { workingDirectory: value(unit, "Service", "WorkingDirectory"), python: `${program.slice(0, program.lastIndexOf("/"))}/python` };
}

/**
 * Runs `install` (shell lines, as root under umask 077) and then the interpreter as the account
 * behind ProtectHome, all in one private mount namespace. Returns the account's run.
 */
function inNamespace(box: Sandbox, install: string[], python: string, workingDirectory: string) {
  const script = [
    "set -e",
    "mount -t tmpfs -o mode=0755 tmpfs /opt",
    "mount -t tmpfs -o mode=0700 tmpfs /root",
    "mount -t tmpfs -o mode=0755 tmpfs /home",
    `mount --bind ${shell(box.path("passwd"))} /etc/passwd`,
    `mount --bind ${shell(box.path("group"))} /etc/group`,
    "umask 077",
    // Where the runbook's `pip install uv==...` would have put uv (PyPI is out of reach here).
    `install -D -m 0755 ${shell(box.path("uv"))} ${shell(pth.uv)}`,
    ...install,
    "umask 022",
    `echo "interpreter: $(readlink -f ${shell(python)})"`,
    // ProtectHome=yes: /root and /home (and /run/user) empty and inaccessible for the unit.
    "mount -t tmpfs -o mode=000 tmpfs /root",
    "mount -t tmpfs -o mode=000 tmpfs /home",
    `cd ${shell(workingDirectory)}`,
    `exec runuser -u ${shell(p.user)} -- ${shell(python)} -c 'import os, sys, release_marker; print("ran as", os.getuid(), "prefix", sys.prefix, "marker", release_marker.__version__)'`,
  ].join("\n");
  return run("unshare", ["-m", "--propagation", "private", "bash", "-c", script], {
    env: { ...gitEnv, HOME: "/root", PATH: `${box.path("bin")}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, LC_ALL: "C" },
    timeoutMs: 120_000,
  });
}

describe.skipIf(!canUnshare())("the uv-managed interpreter runs as the service account under ProtectHome=yes", () => {
  it("after the runbook's code phase, exactly as rendered (#9 item 1)", () => {
    const { box, origin } = prepare();
    // The runbook's code-phase steps of the app family, each command with its guard, the
    // repository URL pointing at the sandbox's origin. Skipped: uv's own install from PyPI.
    const code = appFamily.steps!(ctx).filter((s) => s.phase === "code");
    const lines = code.flatMap((s) => (s.action.kind === "commands" ? s.action.commands : []).filter((c) => !/pip install .*uv==/.test(c.run)).map(guarded));
    const install = lines.map((l) => l.split(p.repository!).join(origin.dir));
    const { python, workingDirectory } = unitInterpreter();
    const r = inNamespace(box, install, python, workingDirectory);
    expect(r.code, `${install.join("\n")}\n---\n${r.output}`).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^interpreter: ${pth.pythonInstallDir}/`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^ran as \\d+ prefix ${p.venv} marker 1$`, "m"));
    expect(r.stdout).not.toMatch(/^ran as 0 /m);
  });

  it("fails with the old layout: the interpreter under /root/.local/share/uv (control)", () => {
    const { box, origin } = prepare();
    // The commands the runbook gave before #9: uv from PATH, no UV_PYTHON_INSTALL_DIR.
    const root = "/opt/novacloud-old";
    const install = [
      `git clone ${shell(origin.dir)} ${root}`,
      "uv python install 3.12",
      `uv venv --python 3.12 ${root}/venv`,
      `uv pip install --python ${root}/venv/bin/python -r ${root}/requirements.txt`,
    ];
    const r = inNamespace(box, install, `${root}/venv/bin/python`, root);
    expect(r.code, r.output).not.toBe(0);
    expect(r.stdout).toMatch(/^interpreter: \/root\/\.local\/share\/uv\/python\//m);
    expect(r.output).toMatch(/runuser: failed to execute .*: (No such file or directory|Permission denied)/);
  });
});
