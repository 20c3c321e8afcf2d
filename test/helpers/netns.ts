/**
 * Hosts of a model as network namespaces, for tests that need real private addresses (a daemon
 * binding an address that is not there yet, pg_hba.conf and ufw rules by source address, a
 * firewall coming up under an open connection). Each host is a namespace held by a `sleep`
 * process, with an `eth0` on one bridge that lives in a namespace of its own, so the machine's
 * own network is never touched. Every holder and every server started in a namespace is a
 * `startServer` process: `stopAll()` stops them by their PIDs, and the namespaces go with them.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { IN_CI, programsAvailable, run, startServer, waitFor, type RunResult, type Sandbox, type Server } from "./programs.js";

/** True when this machine lets the tests make network namespaces (root, iproute2, veth and bridge links). */
export function netnsAvailable(check: string): boolean {
  if (!programsAvailable(check, { unshare: "util-linux", nsenter: "util-linux", ip: "iproute2", sleep: "coreutils" })) return false;
  const why =
    process.getuid?.() !== 0
      ? "network namespaces need root"
      : run("unshare", ["-n", "sh", "-c", "ip link add ncr-br type bridge && ip link add ncr-a type veth peer name ncr-b && ip link set ncr-a master ncr-br"]).code !== 0
        ? "`unshare -n` with a bridge and a veth pair is not permitted here"
        : undefined;
  if (why === undefined) return true;
  if (IN_CI) throw new Error(`${check}: ${why}; CI must run this check`);
  console.warn(`SKIPPED ${check}: ${why}`);
  return false;
}

export interface NetHost {
  readonly name: string;
  readonly address: string;
  /** PID of the process holding the namespace. */
  readonly pid: number;
  /** `nsenter --net=...`: the words that run a command inside this host's namespace. */
  readonly enter: readonly string[];
  /** Runs a command in the namespace and waits for it. */
  run(command: string, args: readonly string[], options?: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number }): RunResult;
  /** Like run(), without blocking the event loop (for commands that take a while). */
  runAsync(command: string, args: readonly string[], options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<RunResult>;
  /** Starts a long-running program in the namespace (stopped by stopAll()). */
  start(command: string, args: readonly string[], options?: { env?: NodeJS.ProcessEnv; cwd?: string }): Server;
  /** Puts the host's private address on its eth0 (done at the start unless `later`). */
  addAddress(): void;
  /** A kernel counter of the namespace, e.g. snmp("Tcp", "RetransSegs"). */
  snmp(group: string, field: string): number;
}

export interface HostSpec {
  readonly name: string;
  readonly address: string;
  /** Leave the address off until addAddress(): the host "boots" without it. */
  readonly later?: boolean;
}

function holder(): Server {
  return startServer("unshare", ["--net", "--", "sleep", "infinity"]);
}

function netHost(spec: HostSpec, pid: number): NetHost {
  const enter = ["nsenter", `--net=/proc/${pid}/ns/net`, "--"];
  const host: NetHost = {
    name: spec.name,
    address: spec.address,
    pid,
    enter,
    run: (command, args, options = {}) => run(enter[0]!, [...enter.slice(1), command, ...args], options),
    runAsync: (command, args, options = {}) =>
      new Promise((resolve) => {
        execFile(enter[0]!, [...enter.slice(1), command, ...args], { env: options.env ?? process.env, encoding: "utf8", timeout: options.timeoutMs ?? 60_000 }, (error, stdout, stderr) => {
          const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
          resolve({ code, stdout, stderr, output: `${stdout}${stderr}` });
        });
      }),
    start: (command, args, options = {}) => startServer(enter[0]!, [...enter.slice(1), command, ...args], options),
    addAddress() {
      const r = host.run("ip", ["addr", "add", `${spec.address}/24`, "dev", "eth0"]);
      if (r.code !== 0) throw new Error(`${spec.name}: ip addr add ${spec.address}: ${r.output}`);
    },
    snmp(group, field) {
      // /proc/PID/net/snmp is the namespace's own: a header line and a value line per group.
      const lines = readFileSync(`/proc/${pid}/net/snmp`, "utf8").split("\n").filter((l) => l.startsWith(`${group}:`));
      const names = lines[0]!.split(/\s+/);
      const values = lines[1]!.split(/\s+/);
      return Number(values[names.indexOf(field)]);
    },
  };
  return host;
}

/** Sets a command up in the switch namespace or fails with what ip said. */
function must(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what}: ${r.output}`);
}

/**
 * One namespace per host, each with eth0 on a bridge (in a namespace of its own) and its address
 * in a /24, loopback up. Stop everything with stopAll().
 */
export async function startNetwork(specs: readonly HostSpec[]): Promise<Map<string, NetHost>> {
  const sw = holder();
  const holders = specs.map(() => holder());
  // unshare has set the namespace up once sleep runs (it execs sleep after unshare(2)).
  await waitFor("the namespace holders", () =>
    [sw, ...holders].every((h) => {
      if (h.process.exitCode !== null) throw new Error(`unshare -n exited: ${h.output()}`);
      try {
        return readFileSync(`/proc/${h.pid}/comm`, "utf8").trim() === "sleep";
      } catch {
        return false;
      }
    }),
  );
  const swEnter = ["nsenter", `--net=/proc/${sw.pid}/ns/net`, "--"];
  const inSwitch = (...args: string[]) => run(swEnter[0]!, [...swEnter.slice(1), "ip", ...args]);
  must(inSwitch("link", "add", "br0", "type", "bridge"), "bridge");
  must(inSwitch("link", "set", "br0", "up"), "bridge up");
  const hosts = new Map<string, NetHost>();
  specs.forEach((spec, i) => {
    const pid = holders[i]!.pid;
    must(inSwitch("link", "add", `p${i}`, "type", "veth", "peer", "name", "eth0", "netns", String(pid)), `veth for ${spec.name}`);
    must(inSwitch("link", "set", `p${i}`, "master", "br0"), `bridge port for ${spec.name}`);
    must(inSwitch("link", "set", `p${i}`, "up"), `port up for ${spec.name}`);
    const host = netHost(spec, pid);
    must(host.run("ip", ["link", "set", "lo", "up"]), `lo up on ${spec.name}`);
    must(host.run("ip", ["link", "set", "eth0", "up"]), `eth0 up on ${spec.name}`);
    if (!spec.later) host.addAddress();
    hosts.set(spec.name, host);
  });
  return hosts;
}

/**
 * Runs a rendered ufw script with the real ufw in `host`'s namespace. ufw keeps its rules and
 * state in /etc/ufw and /etc/default/ufw: a private mount namespace puts sandbox copies there,
 * so the machine's own firewall files are never touched. Each host gets its own copy, kept
 * across runs (a second run sees what the first one enabled).
 */
export function runUfwScript(host: NetHost, box: Sandbox, script: string): Promise<RunResult> {
  const dir = box.path(`ufw-${host.name}`);
  const etc = `${dir}/etc-ufw`;
  const defaults = `${dir}/default-ufw`;
  if (!existsSync(etc)) {
    mkdirSync(etc, { recursive: true });
    must(run("cp", ["-a", "/etc/ufw/.", etc]), "copy /etc/ufw");
    must(run("cp", ["/etc/default/ufw", defaults]), "copy /etc/default/ufw");
  }
  const file = box.write(`ufw-${host.name}/firewall`, script, 0o755);
  const inner = [`mount --bind ${etc} /etc/ufw`, `mount --bind ${defaults} /etc/default/ufw`, `exec bash ${file}`].join(" && ");
  return host.runAsync("unshare", ["-m", "--propagation", "private", "sh", "-c", inner]);
}
