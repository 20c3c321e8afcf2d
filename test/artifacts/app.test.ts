/**
 * The app family's first-deploy steps (issue #9 items 1, 8, 13): where the interpreter comes
 * from per platform, that every uv call uses the shared interpreter directory, and that the
 * first release has the layout update.sh keeps.
 */
import { describe, expect, it } from "vitest";
import { appFamily, UV_VERSION } from "../../src/artifacts/app.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { commandsOf, type Step } from "../../src/artifacts/steps.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { contextOf, hostContexts } from "./systemd-scripts-support.js";

const django = fixtureNames()
  .filter((fixture) => loadFixture(fixture).model.topology.hosts.length > 0)
  .flatMap((fixture) => hostContexts(fixture).map((ctx) => ({ name: `${fixture}/${ctx.host.name}`, ctx })))
  .filter(({ ctx }) => ctx.model.topology.django.some((h) => h.name === ctx.host.name));

const ids = (steps: Step[]) => steps.map((s) => s.id);

describe("the first deploy", () => {
  it.each(django)("$name: uv and its interpreter only where the system Python is too old, then the release", ({ ctx }) => {
    const steps = appFamily.steps!(ctx).filter((s) => s.phase === "code");
    const managed = !ctx.model.caps.python.systemPythonFits;
    expect(ids(steps)).toEqual([...(managed ? ["app.uv", "app.python"] : []), "app.repository", "app.release", "app.directories"]);
    const uvCalls = steps.flatMap(commandsOf).filter((c) => c.includes("uv/bin/uv "));
    const pth = pathsOf(ctx.model);
    // Never a bare `uv` from PATH, never an interpreter outside the shared directory.
    expect(steps.flatMap(commandsOf).filter((c) => /(^|[ (;&|])uv /.test(c))).toEqual([]);
    for (const call of uvCalls) expect(call).toContain(`UV_PYTHON_INSTALL_DIR=${pth.pythonInstallDir} UV_PYTHON_DOWNLOADS=manual ${pth.uv} `);
    expect(uvCalls.length).toBe(managed ? 3 : 0);
  });

  it("installs the pinned uv from PyPI into its own virtualenv on Debian 12", () => {
    const ctx = contextOf(hostContexts("single-node"), "node1");
    const uv = appFamily.steps!(ctx).find((s) => s.id === "app.uv")!;
    const pth = pathsOf(ctx.model);
    expect(commandsOf(uv)).toEqual([`python3 -m venv ${pth.uvEnv}`, `${pth.uvEnv}/bin/pip install --disable-pip-version-check uv==${UV_VERSION}`]);
    expect(uv.packages).toEqual(["python3-venv"]);
    expect(pth.uv).toBe(`${pth.uvEnv}/bin/uv`);
    expect(pth.pythonInstallDir).toBe("/opt/novacloud/python");
  });

  it("exports the branch into releases/<commit> and links current to it; the settings stay in /etc/<name>", () => {
    const ctx = contextOf(hostContexts("options"), "iot1");
    const p = ctx.model.project;
    const release = appFamily.steps!(ctx).find((s) => s.id === "app.release")!;
    const [dir, exported, venv] = release.action.kind === "commands" ? release.action.commands : [];
    expect(dir!.run).toBe(`install -d -m 0755 ${p.releases}`);
    expect(exported!.creates).toBe(p.current);
    expect(exported!.run).toContain("rev-parse --verify 'release^{commit}'");
    expect(exported!.run).toContain(`archive "$c" | tar -x -C ${p.releases}/"$c" && ln -sfn ${p.releases}/"$c" ${p.current})`);
    expect(venv!.creates).toBe(`${p.current}/venv/bin/python`);
    expect(p.envFile).toBe("/etc/iotcloud/iotcloud.env");
    expect(pathsOf(ctx.model).gunicornConfig).toBe("/etc/iotcloud/gunicorn_config.py");
    for (const path of [p.envFile, pathsOf(ctx.model).gunicornConfig]) expect(path.startsWith(`${p.root}/`)).toBe(false);
  });
});
