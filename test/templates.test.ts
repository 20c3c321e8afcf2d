/**
 * Every template reads only what its views provide, checked statically against the views that
 * render() really passes it for every fixture (test/helpers/template-check.ts says why
 * throwOnUndefined is not enough), and prints no unquoted value into an executable file.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { describe, expect, it } from "vitest";
import { render } from "../src/render.js";
import { templates } from "../src/templates.js";
import { fixtureNames, loadFixture, ROOT } from "./helpers/fixtures.js";
import { templateProblems, templateShape } from "./helpers/template-check.js";

const TEMPLATES = join(ROOT, "templates");

function templateNames(dir = TEMPLATES): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) return templateNames(full);
    return entry.endsWith(".njk") ? [relative(TEMPLATES, full).split(sep).join("/")] : [];
  });
}

/** Every (template, view) pair render() uses for every fixture, and the templates of executable files. */
function captureRenders(): { views: Map<string, object[]>; executable: Set<string> } {
  const views = new Map<string, object[]>();
  const executable = new Set<string>();
  const original = templates.render;
  templates.render = (name, view) => {
    views.set(name, [...(views.get(name) ?? []), view]);
    return original.call(templates, name, view);
  };
  try {
    for (const name of fixtureNames()) {
      const f = loadFixture(name);
      for (const file of render(f.model, f.sources).values()) if ((file.mode & 0o111) !== 0 && file.template !== undefined) executable.add(file.template);
    }
  } finally {
    templates.render = original;
  }
  // `novacloud-render init` renders the starter model with the output file's name (src/cli/init.ts).
  views.set("init/novacloud.toml.njk", [{ file: "novacloud.toml" }]);
  return { views, executable };
}

const { views, executable } = captureRenders();
const shapes = new Map(templateNames().map((name) => [name, templateShape(readFileSync(join(TEMPLATES, name), "utf8"))]));

/** A partial is rendered with the context of every template that includes it. */
function viewsOf(name: string): object[] {
  const own = views.get(name) ?? [];
  const viaIncludes = [...shapes].filter(([, s]) => s.includes.includes(name)).flatMap(([includer]) => viewsOf(includer));
  return [...own, ...viaIncludes];
}

function isExecutable(name: string): boolean {
  return executable.has(name) || [...shapes].some(([includer, s]) => s.includes.includes(name) && isExecutable(includer));
}

describe("templates read only what their views provide", () => {
  it("every template is rendered by some fixture (otherwise nothing checks it)", () => {
    expect([...shapes.keys()].filter((name) => viewsOf(name).length === 0)).toEqual([]);
  });

  for (const name of shapes.keys()) {
    it(`templates/${name}`, () => {
      expect(templateProblems(name, shapes.get(name)!, viewsOf(name), isExecutable(name))).toEqual([]);
    });
  }
});

describe("the check catches what nunjucks would render silently", () => {
  /** Renames `from` to `to` inside the first `{% if %}` tag that reads it. */
  const renameInIf = (source: string, from: string, to: string) => {
    const re = new RegExp(`(\\{%-?\\s*(?:if|elif)\\b[^%]*?)\\b${from.replace(/\./g, "\\.")}\\b`);
    expect(re.test(source), `an {% if %} reading ${from}`).toBe(true);
    return source.replace(re, `$1${to}`);
  };

  it.each([
    { name: "nginx/site.conf.njk", from: "public.acmeWebroot", to: "public.acmeWebRoot" },
    { name: "haproxy/haproxy.cfg.njk", from: "acme", to: "acmee" },
    { name: "postgres/conf.d.conf.njk", from: "replication", to: "replicaton" },
    { name: "systemd/_hardening.njk", from: "protectClock", to: "protectClok" },
  ])("$name: $from renamed to $to inside an if", ({ name, from, to }) => {
    const source = renameInIf(readFileSync(join(TEMPLATES, name), "utf8"), from, to);
    const problems = templateProblems(name, templateShape(source), viewsOf(name), isExecutable(name));
    expect(problems.join("\n")).toContain(`templates/${name}:`);
    expect(problems.join("\n")).toContain(`"${to}"`);
  });

  it("a renamed loop variable's key inside {% for %}", () => {
    const name = "haproxy/haproxy.cfg.njk";
    const source = readFileSync(join(TEMPLATES, name), "utf8").replace("{{ s.address }}", "{{ s.adress }}");
    const problems = templateProblems(name, templateShape(source), viewsOf(name), false);
    expect(problems.join("\n")).toContain('"web[].adress"');
  });

  it("an unquoted value in an executable file", () => {
    const name = "backup/backup.sh.njk";
    const source = readFileSync(join(TEMPLATES, name), "utf8").replace("{{ dir | shell }}", "{{ dir }}");
    const problems = templateProblems(name, templateShape(source), viewsOf(name), true);
    expect(problems.join("\n")).toMatch(/without \| shell in an executable file: readonly BACKUP_DIR=\{\{ dir \}\}/);
  });
});
