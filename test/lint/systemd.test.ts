/**
 * systemd itself reads the rendered units: `systemd-analyze verify` on every unit of every host
 * of every fixture, and `systemd-analyze security --offline` for the sandboxing.
 *
 * The sandbox: verify refuses a unit whose ExecStart binary does not exist, so the project root
 * (the running release's virtualenv) and /etc/<name> (.env) are relocated into a temporary
 * directory with stub python, daphne and celery executables and an empty .env. It runs without systemd as PID 1 (this is a
 * container): verify only loads and checks the unit files, it talks to no manager. User= and
 * Group= stay as rendered: systemd 252's verify does not resolve accounts (a unit with an unknown
 * User= verifies cleanly), so no account is created on the test machine and none is relocated.
 * Unknown or misplaced directives are only warnings to verify (exit status 0), so any output at
 * all fails the check.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { systemdFamily } from "../../src/artifacts/systemd.js";
import { fixtureNames, loadFixture, renderedAcrossFixtures } from "../helpers/fixtures.js";
import { programsAvailable, relocate, run, sandbox, type Sandbox } from "../helpers/programs.js";
import { hostContexts } from "../artifacts/systemd-scripts-support.js";

const available = programsAvailable("systemd lint", { "systemd-analyze": "systemd" });

const cases = fixtureNames()
  .filter((fixture) => loadFixture(fixture).model.topology.hosts.length > 0)
  .flatMap((fixture) => hostContexts(fixture).map((ctx) => ({ name: `${fixture}/${ctx.host.name}`, ctx })))
  .filter(({ ctx }) => systemdFamily.files(ctx).length > 0);

const boxes: Sandbox[] = [];
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

/** The host's units with the project root relocated into a sandbox that has stub binaries. */
function prepare(ctx: HostContext, edit: (content: string) => string = (c) => c): { box: Sandbox; units: { original: string; path: string }[] } {
  const box = sandbox("ncr-systemd-");
  boxes.push(box);
  const p = ctx.model.project;
  const root = box.path(p.root.slice(1));
  for (const bin of ["python", "daphne", "celery"]) box.write(`${p.venv.slice(1)}/bin/${bin}`, "#!/bin/sh\nexit 0\n", 0o755);
  box.write(p.envFile.slice(1), "");
  const units = systemdFamily.files(ctx).map((f) => ({
    original: f.path,
    path: box.write(`units/${f.path.slice(f.path.lastIndexOf("/") + 1)}`, edit(relocate(f.content, { [p.root]: root, [p.etcDir]: box.path(p.etcDir.slice(1)) }))),
  }));
  return { box, units };
}

function verify(files: string[]) {
  return run("systemd-analyze", ["verify", "--man=no", ...files], { env: { ...process.env, SYSTEMD_LOG_COLOR: "0", SYSTEMD_PAGER: "" } });
}

describe.skipIf(!available)("systemd-analyze verify", () => {
  it("has a case for every host that any fixture gives units", () => {
    // The app's units; the backup's service and timer and the media mount have their own lint
    // tests (test/lint/backup.test.ts, test/lint/media.test.ts).
    const hosts = new Set(
      renderedAcrossFixtures((path, f) => /\/etc\/systemd\/system\/[^/]+\.service$/.test(path) && (f as { family?: string }).family === "systemd").map((p) => p.split("/").slice(0, 2).join("/")),
    );
    expect(cases.map((c) => c.name).sort()).toEqual([...hosts].sort());
  });

  describe.each(cases)("$name", ({ ctx }) => {
    it("verifies every unit without a word", () => {
      const { units } = prepare(ctx);
      const r = verify(units.map((u) => u.path));
      const message = `systemd-analyze verify on ${units.map((u) => `${u.original} (relocated: ${u.path})`).join(", ")}:\n${r.output}`;
      expect(r.code, message).toBe(0);
      expect(r.output.trim(), message).toBe("");
    });

    it("keeps every unit's exposure in systemd's OK band (security --offline, threshold 4.0)", () => {
      const { units } = prepare(ctx);
      for (const u of units) {
        const r = run("systemd-analyze", ["security", "--offline=true", "--threshold=40", "--no-pager", u.path]);
        const level = /Overall exposure level for \S+: (\S+)/.exec(r.output)?.[1];
        expect(r.code, `systemd-analyze security on ${u.original} (relocated: ${u.path}): exposure ${level}\n${r.output}`).toBe(0);
      }
    });
  });
});

describe.skipIf(!available)("the check fails when a unit is broken", () => {
  const single = hostContexts("single-node").find((c) => c.host.name === "node1")!;

  it("reports a misspelt directive with systemd's own message", () => {
    const { units } = prepare(single, (c) => c.replace(/^ProtectSystem=strict$/m, "ProtectSystemm=strict"));
    const r = verify(units.map((u) => u.path));
    expect(r.output).toMatch(/Unknown key 'ProtectSystemm' in section \[Service\], ignoring\./);
  });

  it("reports an ExecStart binary that does not exist", () => {
    const { units } = prepare(single, (c) => c.replace("/venv/bin/python -P", "/venv/bin/python-missing -P"));
    const r = verify(units.map((u) => u.path));
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/python-missing is not executable: No such file or directory/);
  });

  it("scores a unit without its sandboxing above the threshold", () => {
    const { units } = prepare(single, (c) => c.replace(/^# Sandboxing[\s\S]*?(?=\n\[Install\])/m, ""));
    const r = run("systemd-analyze", ["security", "--offline=true", "--threshold=40", "--no-pager", units[0]!.path]);
    expect(r.code, r.output).not.toBe(0);
  });
});
