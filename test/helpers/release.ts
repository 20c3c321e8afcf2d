/**
 * What the release tests share: a git repository in the sandbox standing in for the
 * application's remote, the runbook's own first-deploy commands run against the sandbox, and a
 * stand-in for uv.
 *
 * uv itself cannot be fetched here (no PyPI, no GitHub), so `standInUv` writes a program that
 * behaves like uv for what the runbook and update.sh ask of it:
 * - `uv python install [--no-bin] X.Y` puts an interpreter (a copy of Debian's python3.11 binary, named
 *   like a managed one) under $UV_PYTHON_INSTALL_DIR, default ~/.local/share/uv/python as uv's;
 * - `uv venv --python X.Y DIR` makes DIR a virtualenv of that interpreter (`bin/python` links
 *   to it, as uv's do); with UV_PYTHON_DOWNLOADS=manual or never and no such interpreter it
 *   fails as uv does, otherwise it installs one first, as uv's automatic download would;
 * - `uv pip install --python PY --requirement FILE` "installs" each `name==version` line as a
 *   module `name.py` with `__version__` in that virtualenv's site-packages.
 * The one liberty: its virtualenvs see Debian's dist-packages (--system-site-packages), so the
 * real gunicorn 20.1 runs in them; the stand-in packages come first on sys.path.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { expect } from "vitest";
import type { Step } from "../../src/artifacts/steps.js";
import { guarded } from "../../src/artifacts/steps.js";
import { relocate, run } from "./programs.js";

const GIT_ENV = {
  GIT_AUTHOR_NAME: "test",
  GIT_AUTHOR_EMAIL: "test@example.invalid",
  GIT_COMMITTER_NAME: "test",
  GIT_COMMITTER_EMAIL: "test@example.invalid",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_CONFIG_NOSYSTEM: "1",
};

/** A repository at `dir` on `branch`; commit() writes files (null removes one) and returns the commit. */
export function gitOrigin(dir: string, branch: string) {
  mkdirSync(dir, { recursive: true });
  const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, env: { ...process.env, ...GIT_ENV }, encoding: "utf8" }).trim();
  git("init", "--quiet", "--initial-branch", branch);
  return {
    dir,
    commit(files: Record<string, string | null>, message: string): string {
      for (const [path, content] of Object.entries(files)) {
        if (content === null) {
          git("rm", "--quiet", "--ignore-unmatch", path);
        } else {
          mkdirSync(dirname(join(dir, path)), { recursive: true });
          writeFileSync(join(dir, path), content);
          git("add", path);
        }
      }
      git("commit", "--quiet", "-m", message);
      return git("rev-parse", "HEAD");
    },
  };
}

/** The environment git and the scripts under test get: no user or system git config. */
export const gitEnv = GIT_ENV;

/**
 * Runs the commands of the named steps as the runbook gives them (each with its guard), every
 * path and URL relocated by `mapping`, in bash, and expects each to succeed. `skip` leaves out
 * commands a test cannot run here (the pip install of uv from PyPI); their guard's target must
 * then be in place.
 */
export function runSteps(steps: readonly Step[], ids: readonly string[], mapping: Record<string, string>, env: NodeJS.ProcessEnv, skip: (run: string) => boolean = () => false): void {
  for (const id of ids) {
    const step = steps.find((s) => s.id === id);
    if (!step) continue;
    if (step.action.kind !== "commands") continue;
    for (const command of step.action.commands) {
      if (skip(command.run)) continue;
      const line = relocate(guarded(command), mapping);
      const r = run("bash", ["-c", line], { env: { ...process.env, ...GIT_ENV, ...env }, timeoutMs: 60_000 });
      expect(r.code, `${id}: ${line}\n${r.output}`).toBe(0);
    }
  }
}

/** Writes the stand-in uv (see the header) to `path`. */
export function standInUv(path: string): string {
  const script = `#!/usr/bin/python3
# Stand-in for uv in tests: python install, venv, pip install (see test/helpers/release.ts).
import os, shutil, subprocess, sys

args = sys.argv[1:]
install_dir = os.environ.get("UV_PYTHON_INSTALL_DIR") or os.path.join(os.environ["HOME"], ".local/share/uv/python")

def option(name):
    return args[args.index(name) + 1] if name in args else None

def managed(version):
    return os.path.join(install_dir, "cpython-%s-linux-stand-in" % version, "bin", "python" + version)

def install(version):
    target = managed(version)
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.realpath("/usr/bin/python3"), target)
    return target

if args[:2] == ["python", "install"]:
    install(args[-1])
elif args[:1] == ["venv"]:
    version = option("--python")
    interpreter = managed(version)
    if not os.path.exists(interpreter):
        if os.environ.get("UV_PYTHON_DOWNLOADS") in ("manual", "never"):
            sys.exit("error: No interpreter found for Python %s in managed installations" % version)
        interpreter = install(version)
    subprocess.run([interpreter, "-m", "venv", "--without-pip", "--system-site-packages", args[-1]], check=True)
elif args[:2] == ["pip", "install"]:
    python = option("--python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True).stdout.strip()
    for line in open(option("--requirement") or option("-r")):
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            with open(os.path.join(site, name.replace("-", "_") + ".py"), "w") as f:
                f.write("__version__ = %r\\n" % version)
else:
    sys.exit("stand-in uv: unsupported: %s" % " ".join(args))
`;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, script, { mode: 0o755 });
  return path;
}

/** Every file below `dir` with its content hash, for "untouched" checks. */
export function treeHash(dir: string): string {
  return execFileSync("bash", ["-c", 'cd "$1" && find . -type f -o -type l | sort | while read -r f; do if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else sha256sum "$f"; fi; done', "bash", dir], { encoding: "utf8" });
}
