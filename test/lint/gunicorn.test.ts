/**
 * gunicorn itself reads the rendered gunicorn_config.py (the app family renders it; the WSGI
 * unit starts gunicorn with it): `gunicorn --check-config` on every app host of every fixture,
 * which executes the config and imports the WSGI application, and `--print-config`, whose
 * values must be the model's.
 *
 * The sandbox holds a tiny WSGI package with the model's dotted name (djangoModule + ".wsgi",
 * with an `application` callable) and the config with its log files and its chdir (the
 * running release) relocated into it. Debian's
 * gunicorn 20.1 runs under /usr/bin/python3 (`python3` on PATH may be another build that cannot
 * see Debian's python3-* packages), so /usr/bin/gunicorn is called with a minimal environment.
 */
import { cpus } from "node:os";
import { afterAll, describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { pathsOf, unitNames } from "../../src/artifacts/paths.js";
import { systemdFamily } from "../../src/artifacts/systemd.js";
import { fixtureNames, loadFixture, renderedAcrossFixtures } from "../helpers/fixtures.js";
import { programsAvailable, relocate, run, sandbox, type Sandbox } from "../helpers/programs.js";
import { hostContexts, parseUnit, value } from "../artifacts/systemd-scripts-support.js";

const GUNICORN = "/usr/bin/gunicorn";
const available = programsAvailable("gunicorn lint", { [GUNICORN]: "gunicorn" });

const cases = fixtureNames()
  .filter((fixture) => loadFixture(fixture).model.topology.hosts.length > 0)
  .flatMap((fixture) => hostContexts(fixture).map((ctx) => ({ name: `${fixture}/${ctx.host.name}`, ctx })))
  .filter(({ ctx }) => ctx.host.roles.has("app"));

const boxes: Sandbox[] = [];
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

function configOf(ctx: HostContext): string {
  const f = appFamily.files(ctx).find((file) => file.path === pathsOf(ctx.model).gunicornConfig);
  if (!f) throw new Error(`${ctx.host.name} has no ${pathsOf(ctx.model).gunicornConfig}`);
  return f.content;
}

/** The config relocated into a sandbox next to a stand-in WSGI package of the model's name. */
function prepare(ctx: HostContext, edit: (config: string) => string = (c) => c) {
  const box = sandbox("ncr-gunicorn-");
  boxes.push(box);
  const parts = ctx.model.project.djangoModule.split(".");
  parts.forEach((_, i) => box.write(`app/${parts.slice(0, i + 1).join("/")}/__init__.py`, ""));
  box.write(
    `app/${parts.join("/")}/wsgi.py`,
    'def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"ok"]\n',
  );
  box.write("log/.keep", "");
  // chdir (the running release's link) points at the stand-in package's directory.
  const config = box.write("gunicorn_config.py", edit(relocate(configOf(ctx), { [ctx.model.project.logDir]: box.path("log"), [ctx.model.project.current]: box.path("app") })));
  return { box, config };
}

function gunicorn(box: Sandbox, ...args: string[]) {
  // Started outside the package: only the config's chdir makes it importable.
  return run(GUNICORN, args, { cwd: box.dir, env: { PATH: "/usr/bin:/bin", LC_ALL: "C.UTF-8" } });
}

/** `--print-config` output as name -> value text. */
function printed(output: string): Map<string, string> {
  return new Map(
    output
      .split("\n")
      .map((l) => /^(\w+)\s+= (.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!]),
  );
}

describe.skipIf(!available)("gunicorn --check-config", () => {
  it("has a case for every host that any fixture gives a gunicorn_config.py", () => {
    const hosts = renderedAcrossFixtures((path) => path.endsWith("/gunicorn_config.py") && !path.startsWith("compose/")).map((p) => p.split("/").slice(0, 2).join("/"));
    expect(cases.map((c) => c.name).sort()).toEqual(hosts);
  });

  describe.each(cases)("$name", ({ ctx }) => {
    it("loads the config and imports the WSGI application", () => {
      const { box, config } = prepare(ctx);
      const r = gunicorn(box, "--check-config", "-c", config);
      expect(r.code, `gunicorn --check-config on ${pathsOf(ctx.model).gunicornConfig} (relocated: ${config}):\n${r.output}`).toBe(0);
    });

    it("reads the model's values back (--print-config), and the unit's stop timeout outlasts graceful_timeout", () => {
      const { box, config } = prepare(ctx);
      const r = gunicorn(box, "--print-config", "-c", config);
      expect(r.code, r.output).toBe(0);
      const cfg = printed(r.stdout);
      const g = ctx.model.gunicorn;
      const workers = g.workers === "auto" ? Math.min(cpus().length * 2 + 1, g.max_workers) : g.workers;
      const expected: Record<string, string> = {
        wsgi_app: `${ctx.model.project.djangoModule}.wsgi:application`,
        bind: `['127.0.0.1:${g.port}']`,
        workers: String(workers),
        worker_class: g.worker_class,
        timeout: String(g.timeout),
        graceful_timeout: String(g.graceful_timeout),
        max_requests: String(g.max_requests),
        max_requests_jitter: String(g.max_requests_jitter),
        forwarded_allow_ips: "['127.0.0.1']",
        accesslog: box.path("log/gunicorn-access.log"),
        errorlog: box.path("log/gunicorn-error.log"),
        preload_app: "False",
        // The release link: each reload (HUP) changes into what it points to then.
        chdir: box.path("app"),
        capture_output: "True",
      };
      if (g.worker_class === "gthread") expected.threads = String(g.threads);
      for (const [key, want] of Object.entries(expected)) expect(cfg.get(key), `${key} in ${pathsOf(ctx.model).gunicornConfig}`).toBe(want);
      // The unit gives gunicorn longer than its graceful timeout to stop (SD-10).
      const unit = systemdFamily.files(ctx).find((f) => f.path.endsWith(`/${unitNames(ctx.model).wsgi}`))!;
      expect(Number(value(parseUnit(unit.content), "Service", "TimeoutStopSec"))).toBeGreaterThan(Number(cfg.get("graceful_timeout")));
    });
  });
});

describe.skipIf(!available)("the check fails when the config is broken", () => {
  const single = cases.find((c) => c.name === "single-node/node1")!.ctx;

  it("reports a syntax error with gunicorn's own message", () => {
    const { box, config } = prepare(single, (c) => c.replace(/^timeout = (\d+)$/m, "timeout = ($1"));
    const r = gunicorn(box, "--check-config", "-c", config);
    expect(r.code).not.toBe(0);
    expect(r.output).toContain(`Failed to read config file: ${config}`);
    expect(r.output).toMatch(/SyntaxError: '\(' was never closed/);
  });

  it("reports a WSGI module that cannot be imported", () => {
    const { box, config } = prepare(single, (c) => c.replace(/^wsgi_app = "(\w+)\.wsgi:application"$/m, 'wsgi_app = "$1.wsgj:application"'));
    const r = gunicorn(box, "--check-config", "-c", config);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/ModuleNotFoundError: No module named '\w+\.wsgj'/);
  });
});
