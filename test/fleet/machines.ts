/**
 * Debian machines on this host for the fleet test: systemd as PID 1 under systemd-nspawn, one
 * network namespace each with the model's own address on one bridge, reachable over SSH from a
 * control namespace, plus an "internet" namespace for outside clients. The recipe and its
 * pitfalls are ../shared/docs/fleet-recipe.md (tools/fleet-proto.sh), ported here:
 * - image: debootstrap --variant=minbase + apt-get install in the image (policy-rc.d forbids
 *   starting daemons while building), cached by its package list;
 * - each container runs on an overlayfs over the image, in its own cgroup (this host has no
 *   systemd as PID 1, so --keep-unit would otherwise put every container in the same one);
 * - --capability=CAP_NET_ADMIN gives ufw back what --network-namespace-path drops, and
 *   SYSTEMD_NSPAWN_API_VFS_WRITABLE=network leaves /proc/sys/net writable (the playbook's sysctl
 *   sets net.ipv4.ip_nonlocal_bind; systemd-nspawn(1), "Environment"), both safe in a namespace
 *   of the container's own;
 * - the machine's own network namespace and routes are never touched: the bridge lives in the
 *   control namespace, and nothing routes outside the namespaces made here.
 * Every process started here is stopped by its PID (container: SIGRTMIN+4 to its systemd for a
 * clean poweroff; nspawn: SIGKILL if it does not exit).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, renameSync, openSync, closeSync } from "node:fs";
import { join } from "node:path";

export interface Machine {
  readonly name: string;
  readonly address: string;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly output: string;
}

export function sh(command: string, args: readonly string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): RunResult {
  const r = spawnSync(command, args, { encoding: "utf8", input: options.input, timeout: options.timeoutMs ?? 120_000, env: options.env ?? process.env, maxBuffer: 64 * 1024 * 1024 });
  const stdout = r.stdout ?? "";
  const stderr = r.stderr ?? (r.error ? String(r.error) : "");
  return { code: r.status, stdout, stderr, output: `${stdout}${stderr}` };
}

/** sh without blocking: for commands that run side by side (the scans from every host). */
export function shAsync(command: string, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], timeout: options.timeoutMs ?? 120_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", (e) => (stderr += String(e)));
    child.once("close", (code) => resolve({ code, stdout, stderr, output: `${stdout}${stderr}` }));
  });
}

function must(what: string, r: RunResult): RunResult {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.output.slice(-4000)}`);
  return r;
}

/** What this machine must offer; the message names what is missing. */
export function fleetCapability(): { ok: true } | { ok: false; why: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: "the fleet needs root (network namespaces, overlayfs, systemd-nspawn)" };
  for (const [program, pkg] of [
    ["systemd-nspawn", "systemd-container"],
    ["debootstrap", "debootstrap"],
    ["ip", "iproute2"],
    ["ansible-playbook", "ansible"],
    ["ssh", "openssh-client"],
  ] as const) {
    if (sh("sh", ["-c", `command -v ${program}`]).code !== 0) return { ok: false, why: `${program} is missing (apt-get install ${pkg})` };
  }
  return { ok: true };
}

export interface ImageOptions {
  readonly suite: string;
  readonly packages: readonly string[];
  /** Where images are cached, one directory per package list. */
  readonly cacheDir: string;
  readonly mirror?: string;
  readonly log: (line: string) => void;
}

function defaultMirror(): string {
  const sources = "/etc/apt/sources.list.d/debian.sources";
  if (existsSync(sources)) {
    const m = /^URIs:\s*(\S+)/m.exec(readFileSync(sources, "utf8"));
    if (m) return m[1]!;
  }
  return "http://deb.debian.org/debian";
}

/** Runs `command` in a cgroup of its own (this host's systemd is not PID 1), then exec's it. */
function inOwnCgroup(cgroup: string, command: string): string {
  const dirs = existsSync("/sys/fs/cgroup/unified") ? [`/sys/fs/cgroup/unified/${cgroup}`, `/sys/fs/cgroup/systemd/${cgroup}`] : [`/sys/fs/cgroup/${cgroup}`];
  return `for d in ${dirs.join(" ")}; do mkdir -p "$d" && echo $$ > "$d/cgroup.procs"; done; exec ${command}`;
}

function removeCgroup(cgroup: string): void {
  const dirs = existsSync("/sys/fs/cgroup/unified") ? [`/sys/fs/cgroup/unified/${cgroup}`, `/sys/fs/cgroup/systemd/${cgroup}`] : [`/sys/fs/cgroup/${cgroup}`];
  for (const d of dirs) if (existsSync(d)) sh("sh", ["-c", `find ${d} -depth -type d -exec rmdir {} \\; 2>/dev/null || true`]);
}

/**
 * A Debian image with `packages` installed, built once per package list (the directory name is
 * a hash of suite and packages) and reused when present. Returns the image directory.
 */
export function debianImage(o: ImageOptions): string {
  const packages = [...new Set(o.packages)].sort();
  const key = createHash("sha256").update(`${o.suite}\n${packages.join("\n")}`).digest("hex").slice(0, 16);
  const image = join(o.cacheDir, `debian-${o.suite}-${key}`);
  if (existsSync(join(image, ".fleet-image-ok"))) {
    o.log(`image ${image} cached`);
    return image;
  }
  mkdirSync(o.cacheDir, { recursive: true });
  const tmp = `${image}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  o.log(`debootstrap ${o.suite}`);
  must("debootstrap", sh("debootstrap", ["--variant=minbase", o.suite, tmp, o.mirror ?? defaultMirror()], { timeoutMs: 900_000 }));
  // Package scripts must not start nginx, PostgreSQL, ... inside the build container.
  writeFileSync(join(tmp, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", { mode: 0o755 });
  o.log(`apt-get install ${packages.length} packages`);
  const cgroup = "ncr-fleet-build";
  const install = `apt-get update -q && apt-get install -y -q --no-install-recommends ${packages.join(" ")} && apt-get clean`;
  must(
    "apt-get install in the image",
    sh("bash", ["-c", inOwnCgroup(cgroup, `systemd-nspawn --register=no --keep-unit -q -D ${tmp} -E DEBIAN_FRONTEND=noninteractive sh -c '${install}'`)], { timeoutMs: 1_200_000 }),
  );
  removeCgroup(cgroup);
  rmSync(join(tmp, "usr/sbin/policy-rc.d"));
  rmSync(join(tmp, "etc/hostname"), { force: true });
  rmSync(join(tmp, "var/lib/dbus/machine-id"), { force: true });
  // Each container gets its machine-id from nspawn.
  writeFileSync(join(tmp, "etc/machine-id"), "");
  // The playbook starts what it deploys; nothing else wakes up during a test.
  for (const unit of ["nginx", "haproxy", "postgresql", "redis-server", "redis-sentinel", "mosquitto", "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer", "e2scrub_all.timer", "systemd-pstore.service", "man-db.timer", "logrotate.timer"]) {
    // One at a time: a missing unit aborts a combined disable.
    sh("systemctl", [`--root=${tmp}`, "disable", unit]);
  }
  writeFileSync(join(tmp, ".fleet-image-ok"), `${packages.join("\n")}\n`);
  renameSync(tmp, image);
  o.log(`image built: ${image}`);
  return image;
}

export interface FleetOptions {
  readonly image: string;
  readonly machines: readonly Machine[];
  /** Work directory for overlays, keys and logs (removed by down()). */
  readonly dir: string;
  /** Prefix of every namespace, link and cgroup this fleet makes (short: link names are 15 chars). */
  readonly prefix: string;
  /** Prefix length of the machines' network, e.g. 24 for 10.44.0.0/24. */
  readonly prefixLength: number;
  /** The control namespace's address (Ansible runs there) and the internet client's. */
  readonly controlAddress: string;
  readonly internetAddress: string;
  readonly log: (line: string) => void;
  /** Writes what a machine needs before it boots (its root is mounted, not yet running). */
  readonly prepare?: (machine: Machine, root: string) => void;
}

interface Running {
  readonly machine: Machine;
  readonly root: string;
  nspawn: ChildProcess | undefined;
}

/** A booted fleet: run commands on its machines, restart one, tear it all down. */
export class Fleet {
  private readonly running = new Map<string, Running>();
  readonly control: string;
  readonly internet: string;
  readonly sshKey: string;

  constructor(readonly o: FleetOptions) {
    this.control = `${o.prefix}ctl`;
    this.internet = `${o.prefix}net`;
    this.sshKey = join(o.dir, "ssh", "id_ed25519");
  }

  private ns(name: string): string {
    return `${this.o.prefix}${name}`;
  }

  /** Namespaces, bridge, overlays, then every container booted to multi-user. */
  async up(): Promise<void> {
    const o = this.o;
    mkdirSync(join(o.dir, "ssh"), { recursive: true });
    if (!existsSync(this.sshKey)) must("ssh-keygen", sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "fleet", "-f", this.sshKey]));
    const bridge = `${o.prefix}br`;
    const ip = (...args: string[]) => must(`ip ${args.join(" ")}`, sh("ip", args));
    ip("netns", "add", this.control);
    ip("-n", this.control, "link", "set", "lo", "up");
    ip("-n", this.control, "link", "add", bridge, "type", "bridge");
    ip("-n", this.control, "addr", "add", `${o.controlAddress}/${o.prefixLength}`, "dev", bridge);
    ip("-n", this.control, "link", "set", bridge, "up");
    const attach = (ns: string, index: number, address: string) => {
      ip("netns", "add", ns);
      ip("-n", ns, "link", "set", "lo", "up");
      ip("-n", this.control, "link", "add", `${o.prefix}v${index}`, "type", "veth", "peer", "name", "eth0", "netns", ns);
      ip("-n", this.control, "link", "set", `${o.prefix}v${index}`, "master", bridge, "up");
      ip("-n", ns, "addr", "add", `${address}/${o.prefixLength}`, "dev", "eth0");
      ip("-n", ns, "link", "set", "eth0", "up");
    };
    attach(this.internet, 0, o.internetAddress);
    o.machines.forEach((m, i) => attach(this.ns(`m${i + 1}`), i + 1, m.address));
    const pub = readFileSync(`${this.sshKey}.pub`, "utf8");
    o.machines.forEach((m, i) => {
      const dir = join(o.dir, "machines", m.name);
      const root = join(dir, "root");
      for (const d of ["upper", "work", "root"]) mkdirSync(join(dir, d), { recursive: true });
      must("mount overlay", sh("mount", ["-t", "overlay", `${o.prefix}-${m.name}`, "-o", `lowerdir=${o.image},upperdir=${dir}/upper,workdir=${dir}/work`, root]));
      mkdirSync(join(root, "root/.ssh"), { recursive: true, mode: 0o700 });
      writeFileSync(join(root, "root/.ssh/authorized_keys"), pub, { mode: 0o600 });
      writeFileSync(join(root, "etc/hostname"), `${m.name}\n`);
      o.prepare?.(m, root);
      this.running.set(m.name, { machine: m, root, nspawn: undefined });
      this.start(m.name, i + 1);
    });
    await Promise.all(o.machines.map((m) => this.waitRunning(m.name)));
    o.log(`${o.machines.length} machines running`);
  }

  private start(name: string, index: number): void {
    const r = this.running.get(name)!;
    const log = openSync(join(this.o.dir, "machines", name, "console.log"), "a");
    const command = inOwnCgroup(
      `${this.o.prefix}-${name}`,
      `env SYSTEMD_NSPAWN_API_VFS_WRITABLE=network systemd-nspawn --register=no --keep-unit -q -b -D ${r.root} -M ${this.o.prefix}${name} --network-namespace-path=/run/netns/${this.ns(`m${index}`)} --capability=CAP_NET_ADMIN`,
    );
    r.nspawn = spawn("bash", ["-c", command], { stdio: ["ignore", log, log] });
    closeSync(log);
  }

  private indexOf(name: string): number {
    return this.o.machines.findIndex((m) => m.name === name) + 1;
  }

  /** PID of the container's systemd (the nspawn process's child). */
  private leader(name: string): number | undefined {
    const pid = this.running.get(name)?.nspawn?.pid;
    if (pid === undefined) return undefined;
    const r = sh("pgrep", ["-P", String(pid), "-x", "systemd"]);
    const leader = Number(r.stdout.trim().split("\n")[0]);
    return Number.isInteger(leader) && leader > 0 ? leader : undefined;
  }

  private async waitRunning(name: string, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let state = "";
    while (Date.now() < deadline) {
      const nspawn = this.running.get(name)?.nspawn;
      if (!nspawn || nspawn.exitCode !== null) throw new Error(`${name}: systemd-nspawn exited; see ${join(this.o.dir, "machines", name, "console.log")}`);
      const leader = this.leader(name);
      // systemctl fails until PID 1's bus is up: poll instead of --wait.
      if (leader !== undefined) {
        state = sh("nsenter", ["-t", String(leader), "-a", "systemctl", "is-system-running"]).stdout.trim();
        if (state === "running" || state === "degraded") return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${name}: not running after ${timeoutMs} ms (state ${state || "unknown"})`);
  }

  /** A command as root on a machine, over SSH from the control namespace (as Ansible and operators reach it). */
  ssh(name: string, command: string, timeoutMs = 120_000): RunResult {
    return sh("ip", this.sshArgs(name, command), { timeoutMs });
  }

  /** ssh, without blocking the test while it runs. */
  sshAsync(name: string, command: string, timeoutMs = 120_000): Promise<RunResult> {
    return shAsync("ip", this.sshArgs(name, command), { timeoutMs });
  }

  /** `ip` arguments that run a command as root on a machine over its shared SSH connection. */
  private sshArgs(name: string, command: string): string[] {
    const m = this.running.get(name)?.machine;
    if (!m) throw new Error(`no machine ${name}`);
    return ["netns", "exec", this.control, "ssh", ...this.sshOptions(), `root@${m.address}`, command];
  }

  sshOptions(master: "no" | "yes" = "no"): string[] {
    return [
      ...["-i", this.sshKey, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"],
      // One connection per machine, reused (as Ansible does): the firewall rate-limits new SSH
      // connections (ufw limit: 6 in 30 s), which a test's many commands would exceed.
      ...["-o", `ControlPath=${join(this.o.dir, "ssh", "cm-%h")}`, "-o", `ControlMaster=${master}`],
    ];
  }

  /**
   * Opens the shared SSH connection to a machine (the master runs in the background; no pipes,
   * so no caller waits for it). Commands fall back to a connection of their own without it.
   */
  openSsh(name: string): void {
    const m = this.running.get(name)?.machine;
    if (!m) throw new Error(`no machine ${name}`);
    // A socket left by a master whose machine went away (a reboot) would keep a new one from binding.
    rmSync(join(this.o.dir, "ssh", `cm-${m.address}`), { force: true });
    const r = spawnSync("ip", ["netns", "exec", this.control, "ssh", ...this.sshOptions("yes"), "-o", "ControlPersist=yes", "-f", "-N", `root@${m.address}`], { stdio: "ignore", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`ssh master connection to ${name} failed (exit ${r.status})`);
    const check = sh("ip", ["netns", "exec", this.control, "ssh", ...this.sshOptions(), "-O", "check", `root@${m.address}`]);
    if (check.code !== 0) throw new Error(`no shared ssh connection to ${name}: ${check.output}`);
  }

  /** Ends the shared SSH connection (ssh -O exit: the master stops itself). */
  closeSsh(name: string): void {
    const m = this.running.get(name)?.machine;
    if (!m) return;
    spawnSync("ip", ["netns", "exec", this.control, "ssh", ...this.sshOptions(), "-O", "exit", `root@${m.address}`], { stdio: "ignore", timeout: 10_000 });
  }

  /** A command in the internet namespace (an outside client). */
  fromInternet(command: string, timeoutMs = 60_000): RunResult {
    return sh("ip", ["netns", "exec", this.internet, "bash", "-c", command], { timeoutMs });
  }

  /** A command in the control namespace (where Ansible runs). */
  fromControl(command: string, args: readonly string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): RunResult {
    return sh("ip", ["netns", "exec", this.control, command, ...args], options);
  }

  /** Powers a machine off cleanly and boots it again (a reboot as its services see it). */
  async reboot(name: string): Promise<void> {
    await this.stop(name);
    this.start(name, this.indexOf(name));
    await this.waitRunning(name);
  }

  private async stop(name: string): Promise<void> {
    const r = this.running.get(name);
    const nspawn = r?.nspawn;
    if (!r || !nspawn || nspawn.exitCode !== null || nspawn.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => nspawn.once("exit", () => resolve()));
    const leader = this.leader(name);
    // SIGRTMIN+4 asks systemd for a clean poweroff (systemd(1) "Signals").
    if (leader !== undefined) sh("kill", ["-s", "RTMIN+4", String(leader)]);
    const timer = setTimeout(() => nspawn.pid !== undefined && process.kill(nspawn.pid, "SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
    removeCgroup(`${this.o.prefix}-${name}`);
  }

  /** Everything this fleet made, also after a failure: containers, mounts, namespaces, cgroups, files. */
  async down(): Promise<void> {
    for (const name of this.running.keys()) this.closeSsh(name);
    await Promise.all([...this.running.keys()].map((name) => this.stop(name).catch(() => undefined)));
    for (const r of this.running.values()) sh("umount", [r.root]);
    for (const ns of [...this.o.machines.map((_, i) => this.ns(`m${i + 1}`)), this.internet, this.control]) sh("ip", ["netns", "del", ns]);
    // The consoles outlive the machines, for a failure's post-mortem.
    mkdirSync(join(this.o.dir, "logs"), { recursive: true });
    for (const name of this.running.keys()) {
      const console = join(this.o.dir, "machines", name, "console.log");
      if (existsSync(console)) renameSync(console, join(this.o.dir, "logs", `${name}.console.log`));
    }
    rmSync(join(this.o.dir, "machines"), { recursive: true, force: true });
  }
}
