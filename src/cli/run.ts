/** The CLI's commands. All I/O of the project lives under src/cli/. */
import { pbkdf2Sync } from "node:crypto";
import { dirname, extname, resolve } from "node:path";
import { formatIssue, ModelError, type ModelIssue } from "../model/errors.js";
import { flowTable, formatEntry, formatFlow } from "../model/flows.js";
import { parseModelText } from "../model/parse.js";
import { locateIssues, type SourceFormat } from "../model/source-lines.js";
import { shown } from "../model/values.js";
import { secretUses, secretValues, resolveSecrets } from "../model/secrets.js";
import { redact } from "../redact.js";
import { describeEffect } from "../artifacts/effects.js";
import { render } from "../render.js";
import { formatMode, type Tree } from "../tree.js";
import type { CliOptions } from "./args.js";
import { config as zodConfig } from "zod";
import { IoError, parseSecretsFile, readSecretFiles, readText, writeTree } from "./files.js";

export const EXIT = { ok: 0, drift: 1, invalid: 2, io: 3 } as const;

// One validation per process: zod's eval-compiled fast paths cost more to build than they save
// (about 10 ms of a cold render, bench/run.mjs).
zodConfig({ jitless: true });

interface Output {
  json: boolean;
  quiet: boolean;
  out(text: string): void;
  err(text: string): void;
}

function output(options: CliOptions): Output {
  return {
    json: options.format === "json",
    quiet: options.quiet,
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  };
}

function reportIssues(o: Output, issues: readonly ModelIssue[], file: string | undefined, secrets: readonly string[] = []): number {
  if (o.json) {
    o.out(`${JSON.stringify({ ok: false, errors: issues.map((i) => ({ file, ...i, message: redact(i.message, secrets) })) }, null, 2)}\n`);
  } else {
    for (const issue of issues) o.err(`${redact(formatIssue(issue, file), secrets)}\n`);
    o.err(`${issues.length} problem${issues.length === 1 ? "" : "s"} in the model; nothing was written.\n`);
  }
  return EXIT.invalid;
}

function formatOf(path: string, text: string): SourceFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".toml") return "toml";
  return text.trimStart().startsWith("{") ? "json" : "toml";
}

function hostOnly(tree: Tree, host: string): Tree {
  return new Map([...tree].filter(([path]) => path.startsWith(`${host}/`)));
}

function listing(tree: Tree): string {
  return [...tree]
    .map(([path, f]) => `${formatMode(f.mode)} ${`${f.owner}:${f.group}`.padEnd(20)} ${String(Buffer.byteLength(f.content)).padStart(7)}  ${path}`)
    .join("\n");
}

function useColor(options: CliOptions): boolean {
  if (options.color === "always") return true;
  if (options.color === "never") return false;
  return Boolean(process.stdout.isTTY) && !("NO_COLOR" in process.env && process.env.NO_COLOR !== "");
}

export async function run(options: CliOptions): Promise<number> {
  const o = output(options);
  try {
    // Commands load what only they need (the JSON Schema generator, diff, init's template).
    if (options.command === "schema") {
      const { modelJsonSchema } = await import("../schema-json.js");
      o.out(`${JSON.stringify(modelJsonSchema(), null, 2)}\n`);
      return EXIT.ok;
    }
    if (options.command === "init") return (await import("./init.js")).writeStarter(options.model ?? "novacloud.toml", o);
    if (options.command === "flows") return flowsCommand(options, o);
    return await renderCommand(options, o);
  } catch (error) {
    if (error instanceof IoError) {
      if (o.json) o.out(`${JSON.stringify({ ok: false, errors: [{ message: error.message }] })}\n`);
      else o.err(`novacloud-render: ${error.message}\n`);
      return EXIT.io;
    }
    throw error;
  }
}

/** `flows`: the flow table of the model (needs no secrets: who connects to whom is not one). */
function flowsCommand(options: CliOptions, o: Output): number {
  const modelPath = options.model ?? "novacloud.toml";
  const text = readText(modelPath);
  const label = modelPath === "-" ? "<stdin>" : modelPath;
  const parsed = parseModelText(text, formatOf(modelPath, text));
  if (!parsed.ok) return reportIssues(o, parsed.issues, label);
  const table = flowTable(parsed.model);
  const host = options.host;
  if (host !== undefined && !parsed.model.topology.hosts.some((h) => h.name === host)) {
    return reportIssues(o, [{ path: "hosts", message: `--host ${shown(host)}: no such host (hosts: ${parsed.model.topology.hosts.map((h) => h.name).join(", ") || "none"})` }], label);
  }
  const touches = (from: string, to: string) => host === undefined || from === host || to === host;
  const flows = table.flows.filter((f) => touches(f.from.name, f.to.name));
  const entries = table.entries.filter((e) => touches("", e.to.name));
  if (o.json) {
    const json = {
      ok: true,
      flows: flows.map((f) => ({ from: f.from.name, fromAddress: f.from.address, to: f.to.name, toAddress: f.to.address, port: f.port, protocol: f.protocol, service: f.service, client: f.client, purpose: f.purpose })),
      entries: entries.map((e) => ({ to: e.to.name, toAddress: e.to.address, port: e.port, protocol: e.protocol, service: e.service, purpose: e.purpose, from: e.from })),
    };
    o.out(`${JSON.stringify(json, null, 2)}\n`);
  } else {
    const lines = [
      "# Private network: client -> server:port/protocol service (purpose)",
      ...flows.map(formatFlow),
      "",
      "# Entry points: from -> server:port/protocol service (purpose)",
      ...entries.map(formatEntry),
    ];
    o.out(`${lines.join("\n")}\n`);
  }
  return EXIT.ok;
}

async function renderCommand(options: CliOptions, o: Output): Promise<number> {
  const modelPath = options.model ?? "novacloud.toml";
  const text = readText(modelPath);
  const label = modelPath === "-" ? "<stdin>" : modelPath;
  const parsed = parseModelText(text, formatOf(modelPath, text));
  if (!parsed.ok) return reportIssues(o, parsed.issues, label);
  if (!o.quiet && !o.json) for (const w of parsed.warnings) o.err(`warning: ${formatIssue(w, label)}\n`);

  const fileValues = Object.assign({}, ...options.secrets.map((f) => parseSecretsFile(readText(f), f))) as Record<string, string>;
  const env = { ...process.env, ...fileValues };
  const baseDir = modelPath === "-" ? process.cwd() : dirname(resolve(modelPath));
  const fileRefs = secretUses(parsed.model).flatMap((u) => (typeof u.ref === "object" && "file" in u.ref ? [u.ref.file] : []));
  const sources = { env, files: readSecretFiles(fileRefs, baseDir) };
  // Node's native PBKDF2 gives the same bytes as the core's pure-JS default, much faster.
  const pbkdf2 = (digest: "sha256" | "sha512", password: Uint8Array, salt: Uint8Array, iterations: number, length: number) =>
    new Uint8Array(pbkdf2Sync(password, salt, iterations, length, digest));
  // Known secret values, to redact from anything shown (resolved again inside render).
  const shownSecrets = secretValues(resolveSecrets(parsed.model, sources).secrets);

  let tree: Tree;
  try {
    tree = render(parsed.model, { ...sources, pbkdf2 });
  } catch (error) {
    if (error instanceof ModelError) return reportIssues(o, locateIssues(text, formatOf(modelPath, text), error.issues), label, shownSecrets);
    throw error;
  }
  if (options.host !== undefined) {
    const hosts = parsed.model.topology.hosts.map((h) => h.name);
    if (!hosts.includes(options.host) && options.host !== "compose") {
      return reportIssues(o, [{ path: "hosts", message: `--host ${shown(options.host)}: no such host (hosts: ${hosts.join(", ") || "none"})` }], label);
    }
    tree = hostOnly(tree, options.host);
  }

  if (options.list) {
    if (o.json) {
      const files = [...tree].map(([path, f]) => ({
        path,
        mode: formatMode(f.mode),
        owner: f.owner,
        group: f.group,
        size: Buffer.byteLength(f.content),
        // Where it comes from: src/artifacts/<family>.ts renders templates/<template>.
        family: f.family,
        template: f.template,
        secret: f.secret,
        // On a host: what a change to it requires there (src/artifacts/effects.ts).
        effects: f.effects?.map(describeEffect),
      }));
      o.out(`${JSON.stringify({ ok: true, files }, null, 2)}\n`);
    } else o.out(`${listing(tree)}\n`);
    return EXIT.ok;
  }
  if (options.print !== undefined) {
    const file = tree.get(options.print.replace(/^\/+/, ""));
    if (!file) {
      return reportIssues(o, [{ path: "", message: `--print: no rendered file ${options.print} (see --list for the paths)` }], label);
    }
    o.out(file.content);
    return EXIT.ok;
  }
  const outDir = options.out!;
  if (options.check) {
    const { compareWithDirectory, driftChanges, formatDrift, formatPlan, hasDrift } = await import("./check.js");
    const { planChanges } = await import("../plan.js");
    const drift = compareWithDirectory(tree, outDir, shownSecrets);
    const plan = hasDrift(drift) ? planChanges(parsed.model, { ...sources, pbkdf2 }, driftChanges(drift, outDir), drift.removed) : [];
    const shownPlan = options.host === undefined ? plan : plan.filter((p) => p.host === options.host);
    if (o.json) o.out(`${JSON.stringify({ ok: !hasDrift(drift), ...drift, plan: shownPlan }, null, 2)}\n`);
    else if (hasDrift(drift)) o.out(`${formatDrift(drift, outDir, useColor(options))}${formatPlan(shownPlan)}`);
    else if (!o.quiet) o.out(formatDrift(drift, outDir, useColor(options)));
    return hasDrift(drift) ? EXIT.drift : EXIT.ok;
  }
  writeTree(tree, outDir);
  const trees = new Set([...tree.keys()].map((p) => p.split("/")[0]!));
  if (o.json) o.out(`${JSON.stringify({ ok: true, out: outDir, files: tree.size, trees: trees.size })}\n`);
  else if (!o.quiet) {
    const hosts = parsed.model.topology.hosts.filter((h) => trees.has(h.name)).length;
    const what = [
      ...(hosts > 0 ? [`${hosts} host${hosts === 1 ? "" : "s"}`] : []),
      ...(trees.has("ansible") ? ["the Ansible bundle"] : []),
      ...(trees.has("compose") ? ["the Compose bundle"] : []),
    ];
    o.err(`wrote ${tree.size} files for ${what.join(", ").replace(/, ([^,]*)$/, " and $1")} to ${outDir}\n`);
  }
  return EXIT.ok;
}
