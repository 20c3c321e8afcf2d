/**
 * The template runtime: templates/ precompiled at build time (scripts/compile-templates.mjs),
 * run by nunjucks' runtime-only build, so rendering needs no file system and no compiler.
 * Settings follow style.md: no HTML autoescape, undefined is an error, block tags leave no
 * blank lines.
 */
import nunjucks from "nunjucks/browser/nunjucks-slim.js";
import { precompiled } from "./generated/templates.js";
import { QUOTE_FILTERS } from "./quote.js";
import { MODE, normalizeNewlines, withMarker, type CommentStyle, type FileSpec } from "./tree.js";

const env = new nunjucks.Environment(new nunjucks.PrecompiledLoader(precompiled as never), {
  autoescape: false,
  throwOnUndefined: true,
});
for (const [name, filter] of Object.entries(QUOTE_FILTERS)) env.addFilter(name, filter as (value: string) => string);
// Octal modes in runbooks and comments: {{ file.mode | octal }} -> 0640.
env.addFilter("octal", (mode: number) => mode.toString(8).padStart(4, "0"));

type TemplateObserver = (name: string, view: object) => void;
let observer: TemplateObserver | undefined;

/**
 * For the benchmark only (bench/run.mjs renders the same templates and views with Jinja2 as a
 * peer): sees every template rendered and its view. Unset, it costs one comparison.
 */
export function observeTemplates(fn: TemplateObserver | undefined): void {
  observer = fn;
}

/** Renders one template with a view object. */
export function renderTemplate(name: string, view: object): string {
  observer?.(name, view);
  return env.render(name, view);
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
    content: options.comment === null ? normalizeNewlines(body) : withMarker(body, options.comment),
    mode: options.mode ?? MODE.config,
    ...(options.owner !== undefined ? { owner: options.owner } : {}),
    ...(options.group !== undefined ? { group: options.group } : {}),
    ...(options.secret ? { secret: true } : {}),
  };
}
