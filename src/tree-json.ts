/**
 * The stable JSON form of a Tree, for tools and for `--format json` (issue #14): JSON.stringify
 * of the Map itself is `{}`, and a mode as a number (416) reads as nothing. Version 1:
 *
 *   { "format": "novacloud-render.tree/1",
 *     "files": [ { "path": "node1/etc/nginx/sites-available/app.conf",   tree path, sorted
 *                  "tree": "node1",                       a host's name, "ansible" or "compose"
 *                  "target": "/etc/nginx/sites-available/app.conf",   path on the host (bundle: in it)
 *                  "mode": "0644", "owner": "root", "group": "root",   mode as 4 octal digits
 *                  "secret": false, "family": "nginx", "template": "nginx/site.conf.njk",
 *                  "effects": [ { "kind": "reload", "unit": "nginx.service", "test": "nginx -t" } ],
 *                  "content": "..." } ] }
 *
 * `template` is absent for a serialized document, `effects` for a file outside the hosts'
 * trees. Fields may be added in version 1; a change of meaning gets a new format string.
 */
import type { Effect } from "./artifacts/effects.js";
import { ModelError } from "./model/errors.js";
import { buildTree, formatMode, type Tree, type TreeFile } from "./tree.js";

export const TREE_FORMAT = "novacloud-render.tree/1";

export interface TreeJsonFile {
  readonly path: string;
  readonly tree: string;
  readonly target: string;
  readonly mode: string;
  readonly owner: string;
  readonly group: string;
  readonly secret: boolean;
  readonly family: string;
  readonly template?: string;
  readonly effects?: readonly Effect[];
  readonly content: string;
}

export interface TreeJson {
  readonly format: typeof TREE_FORMAT;
  readonly files: readonly TreeJsonFile[];
}

/** The JSON form of `tree` (a plain object: JSON.stringify it). */
export function treeToJson(tree: Tree): TreeJson {
  const files = [...tree].map(([path, f]): TreeJsonFile => {
    const slash = path.indexOf("/");
    const name = path.slice(0, slash);
    const inBundle = name === "ansible" || name === "compose";
    return {
      path,
      tree: name,
      target: inBundle ? path.slice(slash + 1) : path.slice(slash),
      mode: formatMode(f.mode),
      owner: f.owner,
      group: f.group,
      secret: f.secret,
      family: f.family,
      ...(f.template !== undefined ? { template: f.template } : {}),
      ...(f.effects !== undefined ? { effects: f.effects } : {}),
      content: f.content,
    };
  });
  return { format: TREE_FORMAT, files };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const EFFECT_KINDS = new Set(["daemon-reload", "restart", "reload", "postgres-settings", "rerun"]);

/**
 * A Tree from its JSON form (the object or its text), checked: a wrong field is a ModelError
 * naming `files[n].field`, never a Tree that breaks later. Frozen like render()'s.
 */
export function treeFromJson(json: TreeJson | string): Tree {
  const data: unknown = typeof json === "string" ? JSON.parse(json) : json;
  const problems: { path: string; message: string }[] = [];
  if (!isObject(data) || data.format !== TREE_FORMAT || !Array.isArray(data.files)) {
    throw new ModelError([{ path: "", message: `not a tree in the JSON form (expected { "format": "${TREE_FORMAT}", "files": [...] })` }]);
  }
  const entries: [string, TreeFile][] = [];
  data.files.forEach((item: unknown, n) => {
    const at = (field: string) => `files[${n}].${field}`;
    if (!isObject(item)) return void problems.push({ path: `files[${n}]`, message: "expected an object" });
    for (const field of ["path", "owner", "group", "family", "content"]) {
      if (typeof item[field] !== "string") problems.push({ path: at(field), message: "expected a string" });
    }
    if (typeof item.mode !== "string" || !/^0?[0-7]{3,4}$/.test(item.mode)) problems.push({ path: at("mode"), message: 'expected an octal mode such as "0644"' });
    if (typeof item.secret !== "boolean") problems.push({ path: at("secret"), message: "expected true or false" });
    if (item.template !== undefined && typeof item.template !== "string") problems.push({ path: at("template"), message: "expected a string" });
    const effects = item.effects;
    if (effects !== undefined && !(Array.isArray(effects) && effects.every((e) => isObject(e) && EFFECT_KINDS.has(e.kind as string)))) {
      problems.push({ path: at("effects"), message: "expected a list of effects ({ kind: ... })" });
    }
    if (typeof item.path === "string" && !/^[^/]+\/./.test(item.path)) problems.push({ path: at("path"), message: "expected <tree>/<path>" });
    if (problems.length > 0) return;
    entries.push([
      item.path as string,
      {
        content: item.content as string,
        mode: Number.parseInt(item.mode as string, 8),
        owner: item.owner as string,
        group: item.group as string,
        secret: item.secret as boolean,
        family: item.family as string,
        ...(item.template !== undefined ? { template: item.template as string } : {}),
        ...(effects !== undefined ? { effects: effects as Effect[] } : {}),
      },
    ]);
  });
  if (problems.length > 0) throw new ModelError(problems);
  return buildTree(entries);
}
