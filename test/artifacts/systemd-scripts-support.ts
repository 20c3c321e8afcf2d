/**
 * Shared by the systemd and scripts tests: host contexts for a fixture (or for a fixture model
 * with a few keys changed), and a reader for systemd unit files.
 */
import type { HostContext } from "../../src/artifacts/context.js";
import { contextOf, fixtureContexts } from "../helpers/fixtures.js";

/** One context per host of a fixture, as render() builds them. */
export function hostContexts(fixture: string): HostContext[] {
  return fixtureContexts(fixture);
}

type Plain = Record<string, unknown>;

/** Tables that are one choice (a tagged union): replaced whole, never merged key by key. */
const REPLACED = new Set(["tls"]);

function merge(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      !REPLACED.has(k) && v !== null && typeof v === "object" && !Array.isArray(v) && b !== null && typeof b === "object" && !Array.isArray(b)
        ? merge(b as Plain, v as Plain)
        : v;
  }
  return out;
}

/**
 * Contexts for a fixture's model with `changes` merged in (objects merge, other values replace;
 * `hosts` and `site.tls` are replaced whole when given). Secrets come from the fixture's secrets file.
 */
export function contextsWith(fixture: string, changes: Plain): HostContext[] {
  return fixtureContexts(fixture, (raw) => {
    const next = changes.hosts !== undefined ? { ...merge(raw, { ...changes, hosts: {} }), hosts: changes.hosts } : merge(raw, changes);
    for (const key of Object.keys(raw)) delete raw[key];
    Object.assign(raw, next);
  });
}

export { contextOf };

/** A unit file as sections of key -> every value assigned (in order); comments dropped. */
export type Unit = Map<string, Map<string, string[]>>;

export function parseUnit(content: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const line of content.split("\n")) {
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = unit.get(header[1]!) ?? new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 0) throw new Error(`not a unit line: ${line}`);
    const key = line.slice(0, eq);
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1)]);
  }
  return unit;
}

/** The one value of `key` in `section` (fails when it is missing or set twice). */
export function value(unit: Unit, section: string, key: string): string {
  const values = unit.get(section)?.get(key) ?? [];
  if (values.length !== 1) throw new Error(`[${section}] ${key}= is set ${values.length} times`);
  return values[0]!;
}

export function values(unit: Unit, section: string, key: string): string[] {
  return unit.get(section)?.get(key) ?? [];
}
