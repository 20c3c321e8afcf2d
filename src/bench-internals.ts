/**
 * Not part of the public API (not in the package's exports): lets bench/run.mjs capture every
 * template name and view that render() uses, so its Jinja2 peer renders exactly the same files.
 */
import { render, type RenderOptions } from "./render.js";
import { observeTemplates } from "./templates.js";

export function captureViews(model: unknown, options: RenderOptions): { name: string; view: object }[] {
  const seen: { name: string; view: object }[] = [];
  observeTemplates((name, view) => seen.push({ name, view: JSON.parse(JSON.stringify(view)) as object }));
  try {
    render(model, options);
  } finally {
    observeTemplates(undefined);
  }
  return seen;
}
