/**
 * The template runtime: templates/ precompiled at build time (scripts/compile-templates.mjs),
 * run by nunjucks' runtime-only build, so rendering needs no file system and no compiler.
 * Settings follow style.md: no HTML autoescape, undefined is an error, block tags leave no
 * blank lines.
 */
import nunjucks from "nunjucks/browser/nunjucks-slim.js";
import { precompiled } from "./generated/templates.js";
import { FORMAT_FILTERS, QUOTE_FILTERS } from "./quote.js";
import { MODE, normalizeNewlines, withMarker, type CommentStyle, type FileSpec } from "./tree.js";

/** The nunjucks environment, made on first use: a library import that never renders pays nothing for it. */
type Environment = InstanceType<typeof nunjucks.Environment>;
function makeEnvironment(): Environment {
  const env = new nunjucks.Environment(new nunjucks.PrecompiledLoader(precompiled as never), {
    autoescape: false,
    throwOnUndefined: true,
  });
  for (const [name, filter] of Object.entries({ ...QUOTE_FILTERS, ...FORMAT_FILTERS })) env.addFilter(name, filter as (value: unknown, ...args: unknown[]) => string);
  return env;
}
let environment: Environment | undefined;

/** The template environment (the benchmark wraps its render to see every template and view). */
export const templates: { render(name: string, view: object): string } = {
  render: (name, view) => (environment ??= makeEnvironment()).render(name, view),
};

/** Renders one template with a view object. */
export function renderTemplate(name: string, view: object): string {
  return templates.render(name, view);
}

export interface FileOptions {
  readonly mode?: number;
  readonly owner?: string;
  readonly group?: string;
  /**
   * The file holds a secret or a hash of one: give it MODE.secret or MODE.groupSecret too.
   * Its values then never show in a diff (TreeFile.secret).
   */
  readonly secret?: boolean;
  /** Comment syntax of the target format, for the generated-file marker; null for none. */
  readonly comment: CommentStyle | null;
}

/** A file whose content is one template rendered with `view`, marked as generated. */
export function templateFile(path: string, template: string, view: object, options: FileOptions): FileSpec {
  const body = renderTemplate(template, view);
  return {
    path,
    template,
    content: options.comment === null ? normalizeNewlines(body) : withMarker(body, options.comment),
    mode: options.mode ?? MODE.config,
    ...(options.owner !== undefined ? { owner: options.owner } : {}),
    ...(options.group !== undefined ? { group: options.group } : {}),
    ...(options.secret ? { secret: true } : {}),
  };
}
