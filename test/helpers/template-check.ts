/**
 * What a template reads, checked against the views it is really rendered with.
 *
 * nunjucks renders a misspelled variable inside `{% if %}` or `{% for %}` as an empty block, even
 * with throwOnUndefined (that option only guards output). So every symbol a template reads
 * (in outputs, conditions, loops, sets, macro bodies and included templates) is resolved
 * against the views that render() passes it for every fixture: a name no view has is a bug. In
 * executable files every value printed must go through the shell quoting filter, unless every
 * view gives it a number.
 */
import nunjucks from "nunjucks";

/** A read of a view value: the root name and the literal keys after it (`public.tls.curves`). */
export interface Read {
  readonly path: readonly string[];
  readonly line: number;
}

/** A value printed by `{{ ... }}`, with the filter applied last (if any). */
export interface Printed {
  readonly filter: string | undefined;
  /** The path printed, when the expression is a plain (possibly dotted) read. */
  readonly path: readonly string[] | undefined;
  readonly literal: boolean;
  readonly line: number;
  readonly text: string;
}

export interface TemplateShape {
  readonly reads: readonly Read[];
  readonly printed: readonly Printed[];
  /** Templates it includes (literal names). */
  readonly includes: readonly string[];
}

type AstNode = { typename: string; fields: string[]; lineno: number; [key: string]: unknown };

const isNode = (x: unknown): x is AstNode => typeof x === "object" && x !== null && typeof (x as AstNode).typename === "string";

/** Names nunjucks itself provides to every template. */
const GLOBALS = new Set(["range", "cycler", "joiner", "loop", "caller", "true", "false", "none", "True", "False", "None"]);

/** A read path through `node` (Symbol or LookupVal with literal keys), with loop variables expanded. */
function pathOf(node: AstNode, scope: Map<string, readonly string[] | null>): string[] | undefined {
  if (node.typename === "Symbol") {
    const name = node.value as string;
    if (scope.has(name)) {
      const bound = scope.get(name);
      return bound === null || bound === undefined ? undefined : [...bound];
    }
    return [name];
  }
  if (node.typename === "LookupVal") {
    const target = pathOf(node.target as AstNode, scope);
    const key = node.val as AstNode;
    if (target === undefined || key.typename !== "Literal" || typeof key.value !== "string") return undefined;
    return [...target, key.value];
  }
  return undefined;
}

/** The root symbol of a read (Symbol or LookupVal chain), bound locally or not. */
function rootSymbol(node: AstNode): string | undefined {
  if (node.typename === "Symbol") return node.value as string;
  if (node.typename === "LookupVal") return rootSymbol(node.target as AstNode);
  return undefined;
}

export function templateShape(source: string): TemplateShape {
  // The parser is part of nunjucks' runtime API, though @types/nunjucks does not declare it.
  const { parser } = nunjucks as unknown as { parser: { parse(src: string, extensions: unknown[], opts: object): unknown } };
  const ast = parser.parse(source, [], { trimBlocks: true, lstripBlocks: true }) as AstNode;
  const reads: Read[] = [];
  const printed: Printed[] = [];
  const includes: string[] = [];
  const srcLines = source.split("\n");
  // Macro names defined anywhere in the template may be called anywhere.
  const macros = new Set<string>();
  const findMacros = (n: unknown): void => {
    if (Array.isArray(n)) return n.forEach(findMacros);
    if (!isNode(n)) return;
    if (n.typename === "Macro") macros.add((n.name as AstNode).value as string);
    for (const f of n.fields) findMacros(n[f]);
  };
  findMacros(ast);

  // scope: local name -> the view path it stands for ("web", "[]") or null (unknown: a set, a macro argument).
  const visit = (n: unknown, scope: Map<string, readonly string[] | null>): void => {
    if (Array.isArray(n)) return n.forEach((c) => visit(c, scope));
    if (!isNode(n)) return;
    switch (n.typename) {
      case "Symbol":
      case "LookupVal": {
        const root = rootSymbol(n);
        if (root !== undefined && (macros.has(root) || GLOBALS.has(root))) return;
        const path = pathOf(n, scope);
        if (path !== undefined && !(root !== undefined && scope.get(root) === null)) reads.push({ path, line: n.lineno + 1 });
        if (n.typename === "LookupVal") {
          // A computed key (a[b]) reads b too.
          const key = n.val as AstNode;
          if (key.typename !== "Literal") visit(key, scope);
          if (path === undefined) visit(n.target, scope);
        }
        return;
      }
      case "For": {
        const inner = new Map(scope);
        const arr = pathOf(n.arr as AstNode, scope);
        visit(n.arr, scope);
        const name = n.name as AstNode;
        if (name.typename === "Symbol") inner.set(name.value as string, arr === undefined ? null : [...arr, "[]"]);
        else for (const child of (name.children as AstNode[]) ?? []) inner.set(child.value as string, null);
        visit(n.body, inner);
        visit(n.else_, scope);
        return;
      }
      case "Set": {
        visit(n.value, scope);
        visit(n.body, scope);
        // `set` binds in the current frame, seen by the rest of the template.
        for (const t of n.targets as AstNode[]) scope.set(t.value as string, null);
        return;
      }
      case "Macro": {
        const inner = new Map(scope);
        const args = n.args as AstNode;
        for (const a of (args.children as AstNode[]) ?? []) {
          if (a.typename === "Symbol") inner.set(a.value as string, null);
          if (a.typename === "KeywordArgs") for (const pair of (a.children as AstNode[]) ?? []) inner.set((pair.key as AstNode).value as string, null);
        }
        visit(n.body, inner);
        return;
      }
      case "FunCall": {
        const name = n.name as AstNode;
        if (!(name.typename === "Symbol" && (macros.has(name.value as string) || GLOBALS.has(name.value as string)))) visit(name, scope);
        visit(n.args, scope);
        return;
      }
      case "Filter": {
        // The filter's name is not a read; its arguments are.
        visit(n.args, scope);
        return;
      }
      case "Include": {
        const t = n.template as AstNode;
        if (t.typename === "Literal") includes.push(t.value as string);
        return;
      }
      case "Output": {
        for (const child of (n.children as AstNode[]) ?? []) {
          if (child.typename === "TemplateData") continue;
          const filter = child.typename === "Filter" ? ((child.name as AstNode).value as string) : undefined;
          const expr = child.typename === "Filter" ? ((child.args as AstNode).children as AstNode[])[0]! : child;
          printed.push({
            filter,
            path: pathOf(expr, scope),
            literal: expr.typename === "Literal",
            line: child.lineno + 1,
            text: (srcLines[child.lineno] ?? "").trim(),
          });
          visit(child, scope);
        }
        return;
      }
      default:
        for (const f of n.fields) visit(n[f], scope);
    }
  };
  visit(ast, new Map());
  return { reads, printed, includes };
}

/**
 * Where `path` leads in `view` (arrays expanded at "[]"): the values found, how many objects
 * the last key was looked up in (`parents`), and in how many of them it was present (`found`).
 */
function resolve(view: unknown, path: readonly string[]): { values: unknown[]; parents: number; found: number } {
  let current: unknown[] = [view];
  let parents = 0;
  let found = 0;
  for (const key of path) {
    const next: unknown[] = [];
    parents = 0;
    found = 0;
    for (const v of current) {
      if (key === "[]") {
        if (Array.isArray(v)) next.push(...v);
        continue;
      }
      if (v === null || typeof v !== "object") continue;
      parents++;
      if (Array.isArray(v) && key === "length") {
        found++;
        next.push(v.length);
      } else if (key in (v as object)) {
        found++;
        next.push((v as Record<string, unknown>)[key]);
      }
    }
    current = next;
  }
  return { values: current, parents, found };
}

/**
 * Problems of one template: reads no view answers, and (executable files) values printed
 * without shell quoting. `views` are the views it is rendered with (includers' views for a
 * partial).
 */
export function templateProblems(name: string, shape: TemplateShape, views: readonly object[], executable: boolean): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const read of shape.reads) {
    const key = read.path.join(".");
    if (seen.has(key)) continue;
    seen.add(key);
    const results = views.map((v) => resolve(v, read.path));
    // Wrong when some view has the object the key belongs in, and none has the key.
    if (results.some((r) => r.parents > 0) && results.every((r) => r.found === 0)) {
      problems.push(`templates/${name}:${read.line}: reads "${key.replace(/\.\[\]/g, "[]")}", which no view given to this template has`);
    }
  }
  if (executable) {
    for (const p of shape.printed) {
      if (p.literal || p.filter === "shell" || p.filter === "shellwords") continue;
      // Inside a `#` comment a value is inert: no value can hold a line break (the schema and
      // every quoting filter refuse control characters), so it cannot leave the comment.
      if (p.text.startsWith("#")) continue;
      const numeric =
        p.path !== undefined &&
        views.every((v) => resolve(v, p.path!).values.every((x) => typeof x === "number")) &&
        views.some((v) => resolve(v, p.path!).values.length > 0);
      if (!numeric) problems.push(`templates/${name}:${p.line}: prints a value without | shell in an executable file: ${p.text}`);
    }
  }
  return problems;
}
