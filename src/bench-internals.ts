/**
 * Not part of the public API (not in the package's exports): lets bench/run.mjs capture every
 * template name and view that render() uses, so its Jinja2 peer renders exactly the same files.
 * The hook lives here, in the benchmark's entry, not in the core: it wraps the template
 * environment's render for the duration of one call.
 */
import { render, type RenderOptions } from "./render.js";
import { templates } from "./templates.js";
import type { ModelInput } from "./model/schema.js";

export function captureViews(model: ModelInput, options: RenderOptions): { name: string; view: object }[] {
  const seen: { name: string; view: object }[] = [];
  const original = templates.render;
  templates.render = (name, view) => {
    seen.push({ name, view: JSON.parse(JSON.stringify(view)) as object });
    return original.call(templates, name, view);
  };
  try {
    render(model, options);
  } finally {
    templates.render = original;
  }
  return seen;
}
