/**
 * A validated model cannot change after validation (issue #14): every object, array, Set and Map
 * in it is frozen, so `model.gunicorn.port = -5` throws in strict mode instead of rendering a
 * port the rules never saw. Object.freeze does not stop Set.add or Map.set (their entries are
 * not properties), so those get methods of their own that refuse.
 *
 * A copy of a model (`{ ...model }`, structuredClone, a model made by the other module format's
 * copy of this package) is not trusted by identity: it is validated again from its `input`, and
 * must then equal what that validation gives (see firstDifference), so a copy that was edited
 * is refused rather than silently rendered from its unedited input.
 */

function refuse(): never {
  throw new TypeError("a validated model and a rendered tree are read-only");
}

const REFUSE_SET = { add: refuse, delete: refuse, clear: refuse };
const REFUSE_MAP = { set: refuse, delete: refuse, clear: refuse };

/** Freezes `value` and everything reachable from it; returns it. */
export function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== "object" || Object.isFrozen(value)) return value;
  if (value instanceof Set) {
    Object.assign(value, REFUSE_SET);
    for (const item of value) deepFreeze(item);
  } else if (value instanceof Map) {
    Object.assign(value, REFUSE_MAP);
    for (const [k, v] of value) {
      deepFreeze(k);
      deepFreeze(v);
    }
  }
  Object.freeze(value);
  for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<PropertyKey, unknown>)[key]);
  return value;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

/**
 * The first path where `a` and `b` differ as data (own enumerable keys, array items, Set and
 * Map entries in order, Dates by time), or undefined when they are equal. Functions and the
 * freezing methods above are not data.
 */
export function firstDifference(a: unknown, b: unknown, path = ""): string | undefined {
  if (Object.is(a, b)) return undefined;
  if (!isRecord(a) || !isRecord(b)) return path || "(model)";
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime() ? undefined : path;
  }
  if (a instanceof Set || a instanceof Map || b instanceof Set || b instanceof Map) {
    if (Object.prototype.toString.call(a) !== Object.prototype.toString.call(b)) return path;
    return firstDifference([...(a as unknown as Iterable<unknown>)], [...(b as unknown as Iterable<unknown>)], path);
  }
  if (Array.isArray(a) !== Array.isArray(b)) return path;
  const keysA = Object.keys(a).filter((k) => typeof a[k] !== "function");
  const keysB = Object.keys(b).filter((k) => typeof b[k] !== "function");
  if (keysA.length !== keysB.length) return path || "(model)";
  for (const key of keysA) {
    if (!Object.prototype.hasOwnProperty.call(b, key)) return path ? `${path}.${key}` : key;
    const at = Array.isArray(a) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
    const diff = firstDifference(a[key], b[key], at);
    if (diff !== undefined) return diff;
  }
  return undefined;
}

/**
 * True for something shaped like a validated model (its `input` and what normalization adds),
 * from whichever copy of the package: such a value is validated again from its input.
 */
export function looksLikeModel(value: unknown): value is { readonly input: unknown } {
  return isRecord(value) && isRecord(value.input) && isRecord(value.topology) && isRecord(value.caps) && isRecord(value.versions);
}
