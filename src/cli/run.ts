/** The CLI's commands, on the library's entry points (novacloud-render and novacloud-render/node). */
import { pbkdf2Sync } from "node:crypto";
import { formatIssue, ModelError, type ModelIssue } from "../model/errors.js";
import { flowTable, formatEntry, formatFlow } from "../model/flows.js";
import { parseModelText } from "../model/parse.js";
import { shown } from "../model/values.js";
import { secretValues, resolveSecrets } from "../model/secrets.js";
import { redact } from "../redact.js";
import { describeEffect } from "../artifacts/effects.js";
import { render } from "../render.js";
import { formatMode, type Tree } from "../tree.js";
import type { CliOptions } from "./args.js";
import { config as zodConfig } from "zod";
import { IoError, readText } from "../node/files.js";
import { checkTree, formatOfModelFile, loadModel, readSecretsFile, writeTree } from "../node/index.js";
import { treeToJson } from "../tree-json.js";

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
    if (IoError.is(error)) {
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
  const parsed = parseModelText(text, formatOfModelFile(modelPath, text));
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

/**
 * The library's issues, as the command line words them: where a library message names an
 * option of render(), a person at the shell wants the flag that supplies it.
 */
function forTheCommandLine(issue: ModelIssue): ModelIssue {
  const missingEnv = /^(environment variable \S+ is not set) \(no value for it in the env option\)$/.exec(issue.message);
  return missingEnv ? { ...issue, message: `${missingEnv[1]} (export it, or put it in a secrets file passed with --secrets)` } : issue;
}

async function renderCommand(options: CliOptions, o: Output): Promise<number> {
  const modelPath = options.model ?? "novacloud.toml";
  const label = modelPath === "-" ? "<stdin>" : modelPath;
  const loaded = loadModel(modelPath);
  if (!loaded.ok) return reportIssues(o, loaded.issues, label);
  const model = loaded.model;
  if (!o.quiet && !o.json) for (const w of loaded.warnings) o.err(`warning: ${formatIssue(w, label)}\n`);

  const env = Object.assign({ ...process.env }, ...options.secrets.map((f) => readSecretsFile(f))) as Record<string, string>;
  const sources = { env, files: loaded.files };
  // Node's native PBKDF2 gives the same bytes as the core's pure-JS default, much faster.
  const pbkdf2 = (digest: "sha256" | "sha512", password: Uint8Array, salt: Uint8Array, iterations: number, length: number) =>
    new Uint8Array(pbkdf2Sync(password, salt, iterations, length, digest));
  // Known secret values, to redact from anything shown (resolved again inside render).
  const shownSecrets = secretValues(resolveSecrets(model, sources).secrets);

  if (options.host !== undefined) {
    const hosts = model.topology.hosts.map((h) => h.name);
    if (!hosts.includes(options.host) && options.host !== "compose") {
      return reportIssues(o, [{ path: "hosts", message: `--host ${shown(options.host)}: no such host (hosts: ${hosts.join(", ") || "none"})` }], label);
    }
  }
  const renderOptions = { ...sources, pbkdf2, ...(options.host !== undefined ? { hosts: [options.host] } : {}) };
  let tree: Tree;
  try {
    tree = render(model, renderOptions);
  } catch (error) {
    if (ModelError.is(error)) return reportIssues(o, loaded.locate(error.issues).map(forTheCommandLine), label, shownSecrets);
    throw error;
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
  if (options.out === undefined) {
    // --format json alone: the tree in its documented JSON form (src/tree-json.ts).
    o.out(`${JSON.stringify({ ok: true, tree: treeToJson(tree) }, null, 2)}\n`);
    return EXIT.ok;
  }
  const outDir = options.out;
  if (options.check) {
    const { formatDrift, formatPlan } = await import("../node/check.js");
    const check = checkTree(tree, outDir, { model, render: renderOptions });
    const { clean, plan, ...drift } = check;
    if (o.json) o.out(`${JSON.stringify({ ok: clean, ...drift, plan }, null, 2)}\n`);
    else if (!clean) o.out(`${formatDrift(drift, outDir, useColor(options))}${formatPlan(plan)}`);
    else if (!o.quiet) o.out(formatDrift(drift, outDir, useColor(options)));
    return clean ? EXIT.ok : EXIT.drift;
  }
  writeTree(tree, outDir);
  const trees = new Set([...tree.keys()].map((p) => p.split("/")[0]!));
  if (o.json) o.out(`${JSON.stringify({ ok: true, out: outDir, files: tree.size, trees: trees.size })}\n`);
  else if (!o.quiet) {
    const hosts = model.topology.hosts.filter((h) => trees.has(h.name)).length;
    const what = [
      ...(hosts > 0 ? [`${hosts} host${hosts === 1 ? "" : "s"}`] : []),
      ...(trees.has("ansible") ? ["the Ansible bundle"] : []),
      ...(trees.has("compose") ? ["the Compose bundle"] : []),
    ];
    o.err(`wrote ${tree.size} files for ${what.join(", ").replace(/, ([^,]*)$/, " and $1")} to ${outDir}\n`);
  }
  return EXIT.ok;
}
