/**
 * The fleet test bed: the fixture `fleet` rendered, its hosts booted as Debian 13 machines at
 * the model's addresses (machines.ts), the reference app (test/fleet/app) in a git repository
 * served over HTTPS from the control namespace (with the media bucket's S3 endpoint), and the
 * rendered Ansible bundle applied over SSH the way users apply it. What the test adds that an
 * operator would have: a CA the hosts trust (the repository's, S3's and the site's
 * certificates), the site certificate on the lb (site.tls mode "files"), names in /etc/hosts
 * instead of DNS, objects in the bucket. Everything it starts is stopped by PID.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, cpSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { loadFixture, type Fixture } from "../helpers/fixtures.js";
import { render } from "../../src/render.js";
import type { Tree, TreeFile } from "../../src/tree.js";
import { writeTree } from "../../src/node/files.js";
import { debianImage, Fleet, sh, type Machine, type RunResult } from "./machines.js";
import { imagePackages } from "./packages.js";

export const SUITE = "trixie";
/** The fixture's network (its hosts' addresses), the control node's and the outside client's. */
export const NETWORK = { prefixLength: 24, control: "10.44.0.1", internet: "10.44.0.200" } as const;
/** Names the hosts resolve through /etc/hosts: the repository (control), the site (lb). */
const GIT_NAME = "git.fleet.test";
const SERVER = join(import.meta.dirname, "clients", "https_server.py");
const APP_SOURCE = join(import.meta.dirname, "app");

export interface Bed {
  readonly fixture: Fixture;
  readonly tree: Tree;
  readonly fleet: Fleet;
  readonly dir: string;
  readonly out: string;
  readonly caFile: string;
  /** The S3 bucket's objects, a directory the control namespace serves (media.storage "s3"). */
  readonly bucketDir: string;
  /** Seconds per phase, in order. */
  readonly timings: [string, number][];
  playbook(extra?: readonly string[]): RunResult;
  /** Renders the model again into the bundle's directory (as an operator does after any change). */
  rerender(): void;
  /** A command on the internet namespace, with the site's names resolving to the lb. */
  fromInternet(command: string, timeoutMs?: number): RunResult;
  /** Commits the app's tree as it is now under `dir/app` (a new version) and publishes it. */
  publishApp(edit: (appDir: string) => void, message: string): void;
  down(): Promise<void>;
}

function must(what: string, r: RunResult): RunResult {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.output.slice(-6000)}`);
  return r;
}

/**
 * The tree with the replacements of NOVACLOUD_FLEET_BREAK_RERENDER ([[path, from, to], ...]):
 * a rendered line broken on purpose, to watch the check of a re-render fail.
 */
function brokenOnPurpose(tree: Tree): Tree {
  const edits = JSON.parse(process.env.NOVACLOUD_FLEET_BREAK_RERENDER ?? "[]") as [string, string, string][];
  if (edits.length === 0) return tree;
  const files = new Map<string, TreeFile>(tree);
  for (const [path, from, to] of edits) {
    const file = files.get(path);
    if (!file || !file.content.includes(from)) throw new Error(`NOVACLOUD_FLEET_BREAK_RERENDER: no "${from}" in ${path}`);
    files.set(path, { ...file, content: file.content.split(from).join(to) });
    console.log(`broken on purpose in the re-render: ${path}: "${from}" -> "${to}"`);
  }
  return files;
}

/** A CA and one certificate signed by it for `names` (openssl, as an operator's CA would). */
function certificates(dir: string, certs: Record<string, readonly string[]>): void {
  mkdirSync(dir, { recursive: true });
  const ssl = (...args: string[]) => must(`openssl ${args[0]}`, sh("openssl", args));
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.crt"), "-days", "2", "-subj", "/CN=fleet test CA");
  for (const [name, names] of Object.entries(certs)) {
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.csr`), "-subj", `/CN=${names[0]}`);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\n`);
    ssl("x509", "-req", "-in", join(dir, `${name}.csr`), "-CA", join(dir, "ca.crt"), "-CAkey", join(dir, "ca.key"), "-CAcreateserial", "-out", join(dir, `${name}.crt`), "-days", "2", "-extfile", join(dir, `${name}.ext`));
  }
}

/**
 * The control namespace's HTTPS server on address:443 (clients/https_server.py): the git
 * repository's files, and a minimal S3 API over `s3Root` for requests to `s3Name`.
 */
function httpsServer(o: { namespace: string; address: string; cert: string; key: string; gitRoot: string; s3Name: string; s3Root: string; log: string }): ChildProcess {
  const out = openLog(o.log);
  return spawn("ip", ["netns", "exec", o.namespace, "python3", SERVER, o.address, o.cert, o.key, o.gitRoot, o.s3Name, o.s3Root], { stdio: ["ignore", out, out] });
}

/** What users uploaded: a few media objects, one with a space in its name, in nested prefixes. */
function seedBucket(dir: string): void {
  const put = (key: string, data: Buffer | string) => {
    mkdirSync(dirname(join(dir, key)), { recursive: true });
    writeFileSync(join(dir, key), data);
  };
  put("uploads/2026/12/photo 1.jpg", randomBytes(200_000));
  put("uploads/2026/12/reading.csv", "device,temperature\nsensor-1,21.5\n");
  put("avatars/operator.png", randomBytes(3_000));
}

function openLog(path: string): number {
  mkdirSync(dirname(path), { recursive: true });
  return openSync(path, "a");
}

const git = (cwd: string, ...args: string[]) =>
  must(`git ${args[0]}`, sh("git", ["-C", cwd, "-c", "user.name=fleet", "-c", "user.email=fleet@fleet.test", "-c", "init.defaultBranch=main", ...args]));

export async function bedUp(options: { dir: string; cacheDir: string; log: (line: string) => void }): Promise<Bed> {
  const { dir, log } = options;
  const timings: [string, number][] = [];
  let t = Date.now();
  const phase = (name: string) => {
    const now = Date.now();
    timings.push([name, (now - t) / 1000]);
    log(`${name}: ${((now - t) / 1000).toFixed(1)} s`);
    t = now;
  };
  const fixture = loadFixture("fleet");
  const model = fixture.model;
  const tree = render(model, fixture.sources);
  const out = join(dir, "out");
  // A fresh directory per run; later renders replace it as the CLI does (novacloud-render/node).
  rmSync(out, { recursive: true, force: true });
  writeTree(tree, out);
  const site = model.site;
  const lb = model.topology.hosts.find((h) => h.roles.has("lb"))!;
  const tlsFiles = site.tls.mode === "files" ? site.tls : undefined;
  if (!tlsFiles) throw new Error("the fleet fixture's site certificate is a file the test provides");
  const certs = join(dir, "pki");
  // The S3 endpoint (media.storage "s3") is served from the control namespace, beside git.
  const s3Name = model.media.storage === "s3" && model.media.endpoint ? new URL(model.media.endpoint).hostname : "s3.invalid";
  certificates(certs, { site: [...model.siteNames, ...(model.mqtt.domain ? [model.mqtt.domain] : [])], control: [GIT_NAME, s3Name] });
  const caFile = join(certs, "ca.crt");
  const ca = readFileSync(caFile, "utf8");

  // The app's repository: a bare mirror-able repository, served as files.
  const appDir = join(dir, "app");
  const served = join(dir, "git");
  rmSync(appDir, { recursive: true, force: true });
  rmSync(served, { recursive: true, force: true });
  cpSync(APP_SOURCE, appDir, { recursive: true });
  git(appDir, "init", "-q");
  git(appDir, "add", "-A");
  git(appDir, "commit", "-q", "-m", "fleet reference app");
  mkdirSync(served, { recursive: true });
  must("git clone --bare", sh("git", ["clone", "-q", "--bare", appDir, join(served, "fleetapp.git")]));
  git(join(served, "fleetapp.git"), "update-server-info");
  const s3Root = join(dir, "s3");
  rmSync(s3Root, { recursive: true, force: true });
  const bucketDir = join(s3Root, model.media.storage === "s3" ? model.media.bucket : "none");
  seedBucket(bucketDir);
  phase("render, certificates, repository");

  const image = debianImage({ suite: SUITE, packages: imagePackages(model, fixture.sources), cacheDir: options.cacheDir, log });
  phase("image");

  const hostsFile = [
    `${NETWORK.control} ${GIT_NAME} ${s3Name}`,
    `${lb.address} ${[...model.siteNames, ...(model.mqtt.domain ? [model.mqtt.domain] : [])].join(" ")}`,
    ...model.topology.hosts.map((h) => `${h.address} ${h.name}`),
  ].join("\n");
  const machines: Machine[] = model.topology.hosts.map((h) => ({ name: h.name, address: h.address }));
  const fleet = new Fleet({
    image,
    machines,
    dir,
    prefix: "ncf",
    prefixLength: NETWORK.prefixLength,
    controlAddress: NETWORK.control,
    internetAddress: NETWORK.internet,
    log,
    prepare: (m, root) => {
      appendFileSync(join(root, "etc/hosts"), `\n${hostsFile}\n`);
      // The CA as update-ca-certificates would add it to the bundle every TLS client reads.
      appendFileSync(join(root, "etc/ssl/certs/ca-certificates.crt"), ca);
      if (m.address === lb.address) {
        mkdirSync(join(root, dirname(tlsFiles.certificate)), { recursive: true });
        writeFileSync(join(root, tlsFiles.certificate), `${readFileSync(join(certs, "site.crt"), "utf8")}${ca}`, { mode: 0o644 });
        writeFileSync(join(root, tlsFiles.key), readFileSync(join(certs, "site.key")), { mode: 0o600 });
      }
    },
  });
  // The internet namespace resolves the site's names to the lb (ip netns exec bind-mounts it).
  const netnsEtc = `/etc/netns/${fleet.internet}`;
  mkdirSync(netnsEtc, { recursive: true });
  writeFileSync(join(netnsEtc, "hosts"), `127.0.0.1 localhost\n${hostsFile}\n`);
  let server: ChildProcess | undefined;
  const down = async () => {
    if (server?.pid !== undefined && server.exitCode === null) process.kill(server.pid, "SIGTERM");
    await fleet.down();
    rmSync(netnsEtc, { recursive: true, force: true });
  };
  try {
    await fleet.up();
    phase("boot");
    server = httpsServer({
      namespace: fleet.control,
      address: NETWORK.control,
      cert: join(certs, "control.crt"),
      key: join(certs, "control.key"),
      gitRoot: served,
      s3Name,
      s3Root,
      log: join(dir, "logs", "control-https.log"),
    });
    await Promise.all(machines.map(async (m) => fleet.openSsh(m.name)));

    writeFileSync(
      join(dir, "ansible.cfg"),
      [
        "[defaults]",
        "host_key_checking = False",
        "forks = 12",
        "interpreter_python = /usr/bin/python3",
        `private_key_file = ${fleet.sshKey}`,
        "callback_result_format = yaml",
        "[ssh_connection]",
        "pipelining = True",
        `ssh_args = -o ControlMaster=auto -o ControlPersist=300s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no`,
        `control_path_dir = ${join(dir, "cp")}`,
        "",
      ].join("\n"),
    );
    const playbook = (extra: readonly string[] = []) =>
      fleet.fromControl(
        "ansible-playbook",
        [
          "-i", join(out, "ansible/inventory.yml"),
          join(out, "ansible/site.yml"),
          // The machines have every package and no mirror, and the app's Python packages are
          // Debian's (no package index): the two switches the inventory documents.
          "-e", "novacloud_install_packages=false",
          "-e", "novacloud_system_site_packages=true",
          ...extra,
        ],
        { timeoutMs: 900_000, env: { ...process.env, ANSIBLE_CONFIG: join(dir, "ansible.cfg"), ANSIBLE_FORCE_COLOR: "0", ANSIBLE_NOCOLOR: "1" } },
      );
    const first = playbook();
    writeFileSync(join(dir, "logs", "playbook-1.log"), first.output);
    must("ansible-playbook", first);
    phase("playbook");
    return {
      fixture,
      tree,
      fleet,
      dir,
      out,
      caFile,
      bucketDir,
      timings,
      playbook,
      rerender: () => writeTree(brokenOnPurpose(render(model, fixture.sources)), out),
      fromInternet: (command, timeoutMs) => fleet.fromInternet(command, timeoutMs),
      publishApp: (edit, message) => {
        edit(appDir);
        git(appDir, "add", "-A");
        git(appDir, "commit", "-q", "-m", message);
        git(appDir, "push", "-q", join(served, "fleetapp.git"), "main");
        git(join(served, "fleetapp.git"), "update-server-info");
      },
      down,
    };
  } catch (e) {
    await down();
    throw e;
  }
}

/** Polls `probe` until it returns a value (not undefined) or the time is up. */
export async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 60_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

