/**
 * What the zod schema accepts at a path, read from zod's own definitions (`_zod.def`): the keys
 * of a table (for "did you mean") and an option's description (for error messages). The only
 * module that walks zod internals.
 */
import type { PathSegment } from "./errors.js";
import { modelSchema } from "./schema.js";

type AnyDef = { type: string; [key: string]: unknown };
const defOf = (schema: unknown): AnyDef => (schema as { _zod: { def: AnyDef } })._zod.def;

function unwrap(schema: unknown): unknown {
  let s = schema;
  for (;;) {
    const def = defOf(s);
    if (["default", "prefault", "optional", "nullable", "readonly", "catch"].includes(def.type)) s = def.innerType;
    else if (def.type === "pipe") s = def.in;
    else return s;
  }
}

function keysOf(schema: unknown, value?: unknown): string[] {
  const def = defOf(unwrap(schema));
  if (def.type === "object") return Object.keys(def.shape as Record<string, unknown>);
  if (def.type === "union") {
    let options = def.options as unknown[];
    // A discriminated union with a known discriminator value: only that variant's keys.
    const discriminator = def.discriminator as string | undefined;
    if (discriminator !== undefined && value !== null && typeof value === "object") {
      const tag = (value as Record<string, unknown>)[discriminator];
      const matching = options.filter((o) => {
        const field = (defOf(unwrap(o)).shape as Record<string, unknown> | undefined)?.[discriminator];
        const values = field === undefined ? [] : ((defOf(field).values as unknown[] | undefined) ?? []);
        return values.includes(tag);
      });
      if (matching.length > 0) options = matching;
    }
    return [...new Set(options.flatMap((o) => keysOf(o)))];
  }
  return [];
}

function childOf(schema: unknown, seg: PathSegment): unknown {
  const s = unwrap(schema);
  const def = defOf(s);
  if (def.type === "object") return (def.shape as Record<string, unknown>)[String(seg)];
  if (def.type === "record") return def.valueType;
  if (def.type === "array") return def.element;
  if (def.type === "union") {
    for (const option of def.options as unknown[]) {
      const child = childOf(option, seg);
      if (child !== undefined) return child;
    }
  }
  return undefined;
}

function schemaAt(path: readonly PathSegment[]): unknown {
  let schema: unknown = modelSchema();
  for (const seg of path) {
    schema = childOf(schema, seg);
    if (schema === undefined) return undefined;
  }
  return schema;
}

/** Keys the schema accepts in the table at `path` (for a discriminated union, the variant `value` names). */
export function knownKeysAt(path: readonly PathSegment[], value?: unknown): string[] {
  const schema = schemaAt(path);
  return schema === undefined ? [] : keysOf(schema, value);
}

/** The description of the option at `path` (what the README and the JSON Schema say of it). */
export function descriptionAt(path: readonly PathSegment[]): string | undefined {
  const schema = schemaAt(path) as { description?: string } | undefined;
  return schema?.description;
}
