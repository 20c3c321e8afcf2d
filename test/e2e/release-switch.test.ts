/**
 * Issue #9 item 8: update.sh builds the release beside the running one and switches only when
 * it passed its checks, and gunicorn's reload (HUP) then really serves the new release.
 *
 * One Django host of a Debian 12 model (ha-cluster's app1: web, app, asgi; it migrates), every
 * absolute path relocated into a sandbox:
 *   - the application's remote is a git repository in the sandbox; each commit has a tiny WSGI
 *     module that answers with its code version and the version of a package its
 *     requirements.txt pins, and a stand-in manage.py whose `check` fails where a FAIL_CHECK
 *     file is;
 *   - the first release comes from the runbook's own code-phase commands (uv is the stand-in of
 *     test/helpers/release.ts: no PyPI or GitHub here);
 *   - the real gunicorn 20.1 of Debian runs as the rendered unit's ExecStart says, from its
 *     WorkingDirectory, with the rendered gunicorn_config.py (its bind moved to a free port);
 *   - update.sh runs as rendered, as root, in a private mount namespace whose /etc/passwd and
 *     /etc/group are sandbox copies with the service account (runuser is the real one); its
 *     systemctl is a stand-in that records the call and sends gunicorn the HUP that the unit's
 *     ExecReload sends.
 */
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import { pathsOf, unitNames } from "../../src/artifacts/paths.js";
import { systemdFamily } from "../../src/artifacts/systemd.js";
import { updateFamily } from "../../src/artifacts/update.js";
import { shell } from "../../src/quote.js";
import { contextOf, hostContexts, parseUnit, value } from "../artifacts/systemd-scripts-support.js";
import { freePort, IN_CI, programsAvailable, relocate, run, sandbox, startServer, stopAll, waitFor, type Sandbox, type Server } from "../helpers/programs.js";
import { gitEnv, gitOrigin, runSteps, standInUv, treeHash } from "../helpers/release.js";

const tools = programsAvailable("release switch", {
  "/usr/lib/python3/dist-packages/gunicorn/__init__.py": "gunicorn",
  "/usr/bin/python3": "python3-venv",
  git: "git",
  curl: "curl",
  unshare: "util-linux",
  runuser: "util-linux",
});
const isRoot = process.getuid?.() === 0;
if (tools && !isRoot && IN_CI) throw new Error("release switch: update.sh runs as root (CI runs as root)");
const available = tools && isRoot && run("unshare", ["-m", "true"]).code === 0;
if (tools && isRoot && !available && IN_CI) throw new Error("release switch: `unshare -m` is not permitted here");

const ctx = contextOf(hostContexts("ha-cluster"), "app1");
const model = ctx.model;
const p = model.project;
const pth = pathsOf(model);
const wsgiUnit = unitNames(model).wsgi;

let box: Sandbox;
let mapping: Record<string, string>;
let origin: ReturnType<typeof gitOrigin>;
let port = 0;
const at = (path: string) => relocate(path, mapping);

/** One commit of the application: its code version, its pinned package, whether check fails. */
function release(version: string, failCheck = false): Record<string, string | null> {
  const pkg = p.djangoModule.split(".").join("/");
  return {
    [`${pkg}/__init__.py`]: "",
    [`${pkg}/wsgi.py`]: [
      "import release_marker",
      `CODE = ${JSON.stringify(version)}`,
      "def application(environ, start_response):",
      '    start_response("200 OK", [("Content-Type", "text/plain")])',
      '    return [("code=%s dep=%s" % (CODE, release_marker.__version__)).encode()]',
      "",
    ].join("\n"),
    "requirements.txt": `release_marker==${version}\n`,
    "manage.py": [
      "import os, sys",
      'if sys.argv[1:2] == ["check"] and os.path.exists("FAIL_CHECK"):',
      '    sys.exit("SystemCheckError: System check identified some issues (stand-in)")',
      'print("manage.py", *sys.argv[1:], "as uid", os.getuid())',
      "",
    ].join("\n"),
    FAIL_CHECK: failCheck ? "" : null,
  };
}

async function answer(at = port): Promise<string> {
  const r = run("curl", ["-sS", "--max-time", "5", `http://127.0.0.1:${at}/`]);
  return r.code === 0 ? r.stdout : `curl failed: ${r.output}`;
}

/** gunicorn as the rendered unit starts it, its config relocated, bound to `listen`. */
function startGunicorn(listen: number, editConfig: (c: string) => string = (c) => c): Server {
  const unit = parseUnit(systemdFamily.files(ctx).find((f) => f.path.endsWith(`/${wsgiUnit}`))!.content);
  const config = appFamily.files(ctx).find((f) => f.path === pth.gunicornConfig)!.content;
  const configPath = box.write(`etc/gunicorn-${listen}.py`, editConfig(relocate(config, mapping).replace(`bind = "127.0.0.1:${model.gunicorn.port}"`, `bind = "127.0.0.1:${listen}"`)));
  const [program, ...args] = value(unit, "Service", "ExecStart").split(" ").map(at);
  const configArg = args.indexOf("--config") + 1;
  args[configArg] = configPath;
  // No PWD in the environment: systemd starts the unit in WorkingDirectory without one.
  return startServer(program!, args, { cwd: at(value(unit, "Service", "WorkingDirectory")), env: { PATH: "/usr/bin:/bin", LC_ALL: "C.UTF-8" } });
}

/** update.sh as rendered, relocated, as root, with the service account in the namespace's passwd. */
function update(ref: string) {
  const script = box.write("update.sh", relocate(updateFamily.files(ctx).find((f) => f.path === pth.updateScript)!.content, mapping), 0o755);
  return inNamespace(`exec bash ${shell(script)} ${shell(ref)}`);
}

function inNamespace(command: string) {
  const inner = [`mount --bind ${shell(box.path("passwd"))} /etc/passwd`, `mount --bind ${shell(box.path("group"))} /etc/group`, command].join(" && ");
  return run("unshare", ["-m", "--propagation", "private", "bash", "-c", inner], {
    env: { ...gitEnv, HOME: "/root", PATH: `${box.path("bin")}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, LC_ALL: "C" },
    timeoutMs: 120_000,
  });
}

const calls = () => (existsSync(box.path("calls.log")) ? readFileSync(box.path("calls.log"), "utf8").split("\n").filter(Boolean) : []);
const link = (path: string) => readlinkSync(at(path));

let server: Server;
let first = "";
let second = "";

beforeAll(async () => {
  if (!available) return;
  box = sandbox("ncr-release-");
  port = await freePort();
  origin = gitOrigin(box.path("origin"), p.branch);
  mapping = {
    [p.repository!]: origin.dir,
    [p.root]: box.path("app"),
    [p.etcDir]: box.path("etc"),
    [p.logDir]: box.path("log"),
    [`/run/lock/${p.name}-update.lock`]: box.path("update.lock"),
  };
  box.write("log/.keep", "");
  box.write(`etc/${p.envFile.slice(p.etcDir.length + 1)}`, appFamily.files(ctx).find((f) => f.path === p.envFile)!.content, 0o640);
  // systemctl: records the call; reload/restart of the WSGI unit is the unit's HUP to gunicorn.
  box.write(
    "bin/systemctl",
    `#!/bin/bash\necho "systemctl $*" >> ${shell(box.path("calls.log"))}\nfor u in "\${@:2}"; do if [ "$u" = ${shell(wsgiUnit)} ]; then kill -HUP "$(cat ${shell(box.path("gunicorn.pid"))})"; fi; done\n`,
    0o755,
  );
  const passwd = readFileSync("/etc/passwd", "utf8");
  const used = new Set([...passwd.matchAll(/^[^:]*:[^:]*:(\d+):/gm)].map((m) => Number(m[1])));
  let id = 61100;
  while (used.has(id)) id++;
  box.write("passwd", `${passwd.trimEnd()}\n${p.user}:x:${id}:${id}::${p.root}:/usr/sbin/nologin\n`);
  box.write("group", `${readFileSync("/etc/group", "utf8").trimEnd()}\n${p.group}:x:${id}:\n`);

  first = origin.commit(release("A"), "A");
  // The first deploy: the runbook's code phase on this host (uv's own install from PyPI left out:
  // the stand-in is where it would be).
  standInUv(at(pth.uv));
  runSteps(appFamily.steps!(ctx), ["app.python", "app.repository", "app.release"], mapping, { HOME: box.path("root-home") });
  expect(link(p.current)).toBe(at(`${p.releases}/${first}`));
  server = startGunicorn(port);
  box.write("gunicorn.pid", String(server.pid));
  await waitFor("gunicorn to answer", async () => (await answer()).startsWith("code=") || server.process.exitCode !== null, 30_000);
}, 180_000);

afterAll(async () => {
  if (!available) return;
  await stopAll();
  box.cleanup();
});

describe.skipIf(!available)("update.sh and gunicorn's reload (#9 item 8)", () => {
  it("serves the first release, built by the runbook's code phase", async () => {
    expect(await answer(), server.output()).toBe("code=A dep=A");
  });

  it("a failing check changes nothing: the running release serves on, its files untouched, the new one removed, nothing reloaded", async () => {
    const before = treeHash(at(`${p.releases}/${first}`));
    const failing = origin.commit(release("C", true), "C fails its check");
    const r = update(failing);
    expect(r.code, r.output).not.toBe(0);
    expect(r.stderr).toContain("SystemCheckError");
    expect(r.stderr).toContain(`update.sh: ${failing} (${failing}) NOT deployed: ${at(`${p.releases}/${first}`)} still runs, unchanged`);
    expect(link(p.current)).toBe(at(`${p.releases}/${first}`));
    expect(existsSync(at(`${p.releases}/${failing}`))).toBe(false);
    expect(treeHash(at(`${p.releases}/${first}`))).toBe(before);
    expect(calls()).toEqual([]);
    expect(r.stdout).not.toContain("manage.py migrate");
    expect(await answer()).toBe("code=A dep=A");
  });

  it("a good release is built beside, checked and migrated as the account, switched to, and gunicorn's HUP serves it", async () => {
    const good = (second = origin.commit(release("B"), "B"));
    const pid = server.pid;
    const r = update(p.branch);
    expect(r.code, r.output).toBe(0);
    // manage.py ran from the new release as the service account, before the switch.
    expect(r.stdout).toMatch(/^manage\.py check --deploy as uid [1-9]\d*$/m);
    expect(r.stdout).toMatch(/^manage\.py migrate --noinput as uid [1-9]\d*$/m);
    expect(r.stdout.indexOf("manage.py collectstatic")).toBeLessThan(r.stdout.indexOf("update.sh: "));
    expect(r.stdout).toContain(`update.sh: ${p.branch} (${good}) deployed`);
    expect(link(p.current)).toBe(at(`${p.releases}/${good}`));
    expect(link(pth.previousRelease)).toBe(at(`${p.releases}/${first}`));
    expect(calls()).toEqual([`systemctl reload ${wsgiUnit}`, `systemctl restart ${unitNames(model).asgi}`]);
    let body = "";
    await waitFor("the reloaded workers to serve B", async () => (body = await answer()) === "code=B dep=B", 30_000).catch(() => undefined);
    expect(body, server.output()).toBe("code=B dep=B");
    // A reload, not a restart: the same arbiter.
    expect(server.process.exitCode).toBeNull();
    expect(server.pid).toBe(pid);
  });

  it("deploying the running commit again changes nothing", () => {
    const before = calls().length;
    const r = update(p.branch);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout).toContain("is the running release already; nothing changed");
    expect(calls().length).toBe(before);
  });

  it("the runbook's rollback switches back and the reload serves the previous release again", async () => {
    const rollback = updateFamily.steps!(ctx).find((s) => s.id === "update.rollback")!;
    expect(rollback.action.kind).toBe("manual");
    const lines = rollback.action.kind === "manual" ? rollback.action.lines : [];
    const r = inNamespace(relocate(lines.join(" && "), mapping));
    expect(r.code, r.output).toBe(0);
    expect(link(p.current)).toBe(at(`${p.releases}/${first}`));
    let body = "";
    await waitFor("the reloaded workers to serve A", async () => (body = await answer()) === "code=A dep=A", 30_000).catch(() => undefined);
    expect(body, server.output()).toBe("code=A dep=A");
  });

  it("without the config's chdir, a HUP after the switch keeps serving the old code (control)", async () => {
    const controlPort = await freePort();
    const control = startGunicorn(controlPort, (c) => c.replace(/^chdir = .*\n/m, ""));
    await waitFor("the control gunicorn", async () => (await answer(controlPort)).startsWith("code=") || control.process.exitCode !== null, 30_000);
    expect(await answer(controlPort), control.output()).toBe("code=A dep=A");
    const booted = () => control.output().split("Booting worker with pid").length - 1;
    const workers = booted();
    // Switch to B the way update.sh does, then HUP as the unit's ExecReload does.
    const next = at(`${p.root}/.current.new`);
    run("bash", ["-c", `ln -sfn ${shell(at(`${p.releases}/${second}`))} ${shell(next)} && mv -T ${shell(next)} ${shell(at(p.current))}`]);
    process.kill(control.pid, "SIGHUP");
    await waitFor("the control's new workers", () => booted() >= 2 * workers, 30_000);
    const body = await answer(controlPort);
    // The code stays A's: the default chdir was fixed at start.
    expect(body, control.output()).toMatch(/^code=A /);
    await control.stop();
  });
});
