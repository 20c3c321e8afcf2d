#!/usr/bin/env node
// The benchmark (npm run bench; never part of the test suite). Prints a table of:
//   - cold CLI renders of the single-node and ha-cluster fixtures, each paired with a bare node
//     script that writes the same files (A B A B ..., median of the per-pair ratios);
//   - `--version` paired with `node -e 0`, and a cold `import("novacloud-render")`;
//   - warm in-process render() per fixture (median of batch means), and one with a new options
//     object each time (no hash cached);
//   - render() for models with 10, 100, 1,000 and 10,000 app hosts (per-host cost);
//   - peers, when they can run here: a Jinja2 script rendering the same templates.
// NODE_EXTRA_CA_CERTS adds ~40 ms to every node start on this machine; it is unset for
// every child process so both sides of a comparison start alike.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
// The command as installed: package.json's bin.
const CLI = join(ROOT, JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).bin["novacloud-render"]);
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const quick = process.argv.includes("--quick");
const PAIRS = quick ? 5 : 21;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmtMs = (ns) => `${(ns / 1e6).toFixed(1)} ms`;
const fmtUs = (ns) => `${(ns / 1e3).toFixed(1)} µs`;

function timeChild(args, cwd = ROOT) {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd, env, stdio: ["ignore", "ignore", "pipe"] });
  const elapsed = Number(process.hrtime.bigint() - start);
  if (r.status !== 0) throw new Error(`${args.join(" ")} failed: ${r.stderr}`);
  return elapsed;
}

/**
 * A B A B ...: medians of each side, and the medians of the per-pair ratios A/B and
 * differences A-B (each pair ran back to back, so they share the machine's load).
 */
function paired(a, b) {
  const as = [];
  const bs = [];
  const ratios = [];
  const diffs = [];
  for (let i = 0; i < PAIRS; i++) {
    const x = a();
    const y = b();
    as.push(x);
    bs.push(y);
    ratios.push(x / y);
    diffs.push(x - y);
  }
  return { a: median(as), b: median(bs), ratio: median(ratios), diff: median(diffs) };
}

const lib = await import(join(ROOT, "dist", "index.js"));

function fixtureSources(name) {
  const dir = join(ROOT, "fixtures", name);
  const text = readFileSync(join(dir, "secrets.env"), "utf8");
  const env = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2];
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\([\\"$`])/g, "$1");
    env[m[1]] = v;
  }
  return { env };
}

function loadFixture(name) {
  const parsed = lib.parseModelText(readFileSync(join(ROOT, "fixtures", name, "novacloud.toml"), "utf8"), "toml");
  if (!parsed.ok) throw new Error(`fixture ${name} invalid`);
  return { model: parsed.model, sources: fixtureSources(name) };
}

const work = mkdtempSync(join(tmpdir(), "ncr-bench-"));
const rows = [];
const targets = [];

// --- cold CLI vs a bare node script writing the same files -------------------------------------
for (const name of ["single-node", "ha-cluster"]) {
  const { model, sources } = loadFixture(name);
  const tree = lib.render(model, sources);
  const files = [...tree].map(([path, f]) => [path, f.content, f.mode]);
  const dump = join(work, `${name}.json`);
  writeFileSync(dump, JSON.stringify(files));
  const bare = join(work, `bare-${name}.mjs`);
  writeFileSync(
    bare,
    `import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
const out = process.argv[2];
for (const [path, content, mode] of JSON.parse(readFileSync(${JSON.stringify(dump)}, "utf8"))) {
  mkdirSync(dirname(join(out, path)), { recursive: true });
  writeFileSync(join(out, path), content, { mode });
}
`,
  );
  const dir = join(ROOT, "fixtures", name);
  let n = 0;
  const r = paired(
    () => {
      const out = join(work, `cli-${name}-${n++}`);
      return timeChild([CLI, join(dir, "novacloud.toml"), "--secrets", join(dir, "secrets.env"), "--out", out, "--quiet"]);
    },
    () => timeChild([bare, join(work, `bare-${name}-${n++}`)]),
  );
  rows.push([`cold CLI render, ${name} (${tree.size} files)`, fmtMs(r.a), `bare node writing the same files: ${fmtMs(r.b)}`, `${r.ratio.toFixed(2)}x`]);
  if (name === "single-node") targets.push(["cold CLI render single-node <= 1.5x bare script", r.ratio <= 1.5, `${r.ratio.toFixed(2)}x`]);
}

// --- --version and library import vs node -e 0 ----------------------------------------------
{
  const r = paired(() => timeChild([CLI, "--version"]), () => timeChild(["-e", "0"]));
  rows.push(["novacloud-render --version", fmtMs(r.a), `node -e 0: ${fmtMs(r.b)}`, `${r.ratio.toFixed(2)}x`]);
  targets.push(["--version <= 1.3x node -e 0", r.ratio <= 1.3, `${r.ratio.toFixed(2)}x`]);
  const imp = paired(() => timeChild(["--input-type=module", "-e", `await import(${JSON.stringify(join(ROOT, "dist", "index.js"))})`]), () => timeChild(["-e", "0"]));
  rows.push(["import('novacloud-render') (ESM)", fmtMs(imp.a), `node -e 0: ${fmtMs(imp.b)}`, `+${fmtMs(imp.diff)}`]);
  targets.push(["import('novacloud-render') <= 40 ms over node -e 0", imp.diff <= 40e6, `+${fmtMs(imp.diff)}`]);
  const req = paired(() => timeChild(["-e", `require(${JSON.stringify(join(ROOT, "dist", "index.cjs"))})`]), () => timeChild(["-e", "0"]));
  rows.push(["require('novacloud-render') (CommonJS)", fmtMs(req.a), `node -e 0: ${fmtMs(req.b)}`, `+${fmtMs(req.diff)}`]);
}

// --- warm in-process render ------------------------------------------------------------------
function warm(model, sources, budgetMs = quick ? 300 : 1500) {
  for (let i = 0; i < 50; i++) lib.render(model, sources); // warm up the JIT and caches
  const batches = [];
  const deadline = Date.now() + budgetMs;
  while (Date.now() < deadline || batches.length < 5) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < 20; i++) lib.render(model, sources);
    batches.push(Number(process.hrtime.bigint() - start) / 20);
  }
  return median(batches);
}
for (const name of ["single-node", "minimal", "ha-cluster", "options"]) {
  const { model, sources } = loadFixture(name);
  const t = warm(model, sources);
  rows.push([`warm render(), ${name}`, fmtUs(t), "", ""]);
  if (name === "single-node") targets.push(["warm single-node render <= 200 µs", t <= 200_000, fmtUs(t)]);
}
{
  // A new options object each time: nothing is cached, every password hash is computed again
  // (pure JS here; the CLI passes Node's native PBKDF2). Renders sharing an options object reuse them.
  const { model, sources } = loadFixture("single-node");
  const times = [];
  for (let i = 0; i < (quick ? 5 : 21); i++) {
    const start = process.hrtime.bigint();
    lib.render(model, { ...sources });
    times.push(Number(process.hrtime.bigint() - start));
  }
  rows.push(["render(), single-node, new options object each time", fmtMs(median(times)), "password hashes computed (pure JS)", ""]);
}
{
  // Including validation: render() of the raw object, as an embedder without parseModel would.
  const { sources } = loadFixture("single-node");
  const raw = (await import("smol-toml")).parse(readFileSync(join(ROOT, "fixtures", "single-node", "novacloud.toml"), "utf8"));
  const t = warm(raw, sources);
  rows.push(["warm render() incl. validation, single-node", fmtUs(t), "", ""]);
}

// --- scaling with the number of app hosts ----------------------------------------------------
function scaled(n) {
  const hosts = {
    lb: { address: "10.0.0.2", roles: ["lb"] },
    db: { address: "10.0.0.3", roles: ["db"] },
    cache: { address: "10.0.0.4", roles: ["redis", "mqtt"] },
    beat: { address: "10.0.0.5", roles: ["worker", "scheduler"] },
  };
  for (let i = 0; i < n; i++) hosts[`app${i}`] = { address: `10.${1 + Math.floor(i / 65000)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`, roles: ["web", "app", "asgi"] };
  return {
    project: { django_module: "DjangoNovaCloud" },
    site: { domain: "iot.example.com" },
    hosts,
    // Uploads on many web hosts need one home (the media rule): S3 adds no step between hosts.
    media: { storage: "s3", bucket: "media", access_key_id: "k", secret_access_key: "s" },
    postgres: { password: "p" },
    redis: { password: "r" },
    mqtt: { password: "m" },
    django: { secret_key: "s" },
  };
}
const perHost = [];
for (const n of [10, 100, 200, 1000, 10000]) {
  const parsed = lib.parseModel(scaled(n));
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  // One options object: the password hashes (a fixed cost) are computed once, as for a re-render.
  const options = {};
  lib.render(parsed.model, options);
  const runs = n >= 10000 ? 3 : n >= 1000 ? 5 : 15;
  const times = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    lib.render(parsed.model, options);
    times.push(Number(process.hrtime.bigint() - start));
  }
  const t = median(times);
  perHost.push([n, t / (n + 4)]);
  rows.push([`render(), ${n} app hosts`, fmtMs(t), `${fmtUs(t / (n + 4))} per host`, ""]);
}
const flat = perHost.find(([n]) => n === 10000)[1] / perHost.find(([n]) => n === 100)[1];
targets.push(["per-host cost flat from 100 to 10,000 hosts (ratio <= 1.5)", flat <= 1.5, `${flat.toFixed(2)}x`]);

// --- peers ----------------------------------------------------------------------------------
function peer(label, command, args, probeArgs = ["--version"], missing = `${command} not available`) {
  const probe = spawnSync(command, probeArgs, { env, encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    rows.push([label, "not measured", missing, ""]);
    return;
  }
  const times = [];
  for (let i = 0; i < (quick ? 3 : 11); i++) {
    const start = process.hrtime.bigint();
    const r = spawnSync(command, args, { env, encoding: "utf8" });
    if (r.status !== 0) {
      rows.push([label, "failed", r.stderr.split("\n")[0], ""]);
      return;
    }
    times.push(Number(process.hrtime.bigint() - start));
  }
  rows.push([label, fmtMs(median(times)), "", ""]);
}
{
  // A Jinja2 script rendering the same templates from the same views (captured from render()).
  const viewsDump = join(work, "views.json");
  const { captureViews } = await import(join(ROOT, "dist", "bench-internals.js"));
  // bench-internals.js is its own bundle: give it the raw model, which it validates itself.
  const raw = (await import("smol-toml")).parse(readFileSync(join(ROOT, "fixtures", "single-node", "novacloud.toml"), "utf8"));
  const captured = captureViews(raw, loadFixture("single-node").sources);
  writeFileSync(viewsDump, JSON.stringify(captured));
  const script = join(ROOT, "bench", "jinja_peer.py");
  peer(
    `peer: Jinja2 script rendering the same ${captured.length} templates`,
    "/usr/bin/python3",
    [script, join(ROOT, "templates"), viewsDump, join(work, "jinja-out")],
    ["-c", "import jinja2"],
    "python3-jinja2 not installed (apt-get install python3-jinja2)",
  );
}

if (process.argv.includes("--peers")) {
  // cdk8s and projen from the npm registry, installed once into bench/.peers (not committed).
  const peers = join(ROOT, "bench", ".peers");
  mkdirSync(peers, { recursive: true });
  writeFileSync(join(peers, "package.json"), JSON.stringify({ name: "bench-peers", private: true }));
  const install = spawnSync("npm", ["install", "--no-audit", "--no-fund", "cdk8s@2", "constructs@10", "cdk8s-cli@2", "projen@0"], { cwd: peers, env, encoding: "utf8" });
  if (install.status !== 0) {
    rows.push(["peers: cdk8s, projen", "not measured", install.stderr.split("\n")[0], ""]);
  } else {
    const single = loadFixture("single-node");
    const files = String(lib.render(single.model, single.sources).size);
    const cdk8sDir = join(work, "cdk8s");
    mkdirSync(cdk8sDir, { recursive: true });
    writeFileSync(join(cdk8sDir, "cdk8s.yaml"), `app: node ${join(ROOT, "bench", "peers", "cdk8s-main.cjs")}\n`);
    // CDK8S_CHECK_UPGRADE=false: cdk8s-cli otherwise asks a web service for its latest version.
    const withPeers = { ...env, NODE_PATH: join(peers, "node_modules"), FILES: files, CDK8S_CHECK_UPGRADE: "false" };
    const time = (label, command, args, cwd) => {
      const times = [];
      for (let i = 0; i < (quick ? 3 : 11); i++) {
        const start = process.hrtime.bigint();
        const r = spawnSync(command, args, { cwd, env: { ...withPeers, OUTDIR: join(work, `projen-${i}`) }, encoding: "utf8" });
        if (r.status !== 0) return rows.push([label, "failed", (r.stderr || r.stdout).split("\n")[0], ""]);
        times.push(Number(process.hrtime.bigint() - start));
      }
      rows.push([label, fmtMs(median(times)), `${files} files`, ""]);
    };
    time(`peer: cdk8s synth (${files} charts)`, process.execPath, [join(peers, "node_modules", "cdk8s-cli", "bin", "cdk8s"), "synth"], cdk8sDir);
    time(`peer: projen synth (${files} text files)`, process.execPath, [join(ROOT, "bench", "peers", "projenrc.cjs")], work);
  }
}

rmSync(work, { recursive: true, force: true });

// --- report ---------------------------------------------------------------------------------
const width = [0, 0, 0, 0];
for (const r of rows) r.forEach((c, i) => (width[i] = Math.max(width[i], String(c).length)));
const line = (r) => `| ${r.map((c, i) => String(c).padEnd(width[i])).join(" | ")} |`;
console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}; pairs: ${PAIRS}; NODE_EXTRA_CA_CERTS unset; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
console.log(line(["measurement", "median", "compared with", "ratio"]));
console.log(line(width.map((w) => "-".repeat(w))));
for (const r of rows) console.log(line(r));
console.log("");
for (const [what, ok, value] of targets) console.log(`${ok ? "met   " : "MISSED"}  ${what}: ${value}`);
