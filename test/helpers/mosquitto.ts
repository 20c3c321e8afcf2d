/**
 * Running a rendered Mosquitto configuration for real, in a sandbox: listeners moved to free
 * ports on 127.0.0.1, files moved into the sandbox and owned by the broker's user (2.0 drops
 * privileges right after reading its configuration), and clients that never put a password on
 * their command line (mosquitto_pub/sub read `-P` from $XDG_CONFIG_HOME/<program>).
 * Shared by test/lint/mosquitto.test.ts and test/lint/compose.test.ts.
 */
import { spawn } from "node:child_process";
import { chownSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort, relocate, run, startServer, waitFor, type Sandbox, type Server } from "./programs.js";

/** Debian 12's packaged /etc/mosquitto/mosquitto.conf, used when the real one is not installed. */
const DEBIAN_MAIN_CONF = `# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
`;

/** The packaged main file (the real one when mosquitto is installed). */
export function debianMainConf(): string {
  return existsSync("/etc/mosquitto/mosquitto.conf") ? readFileSync("/etc/mosquitto/mosquitto.conf", "utf8") : DEBIAN_MAIN_CONF;
}

export interface RelocatedListener {
  /** Port and address as rendered. */
  readonly port: number;
  readonly address: string | undefined;
  readonly tls: boolean;
  /** Where it listens in the sandbox (always 127.0.0.1). */
  readonly sandboxPort: number;
}

/** Rewrites every `listener PORT [ADDRESS]` to a free port on 127.0.0.1. */
export async function relocateListeners(conf: string): Promise<{ conf: string; listeners: RelocatedListener[] }> {
  const lines = conf.split("\n");
  const listeners: RelocatedListener[] = [];
  for (const [i, line] of lines.entries()) {
    const m = /^listener (\d+)(?: (\S+))?$/.exec(line);
    if (!m) continue;
    const sandboxPort = await freePort();
    // A TLS listener is the one followed by certfile before the next listener.
    const rest = lines.slice(i + 1);
    const next = rest.findIndex((l) => l.startsWith("listener ") || l.startsWith("connection "));
    const tls = (next === -1 ? rest : rest.slice(0, next)).some((l) => l.startsWith("certfile "));
    listeners.push({ port: Number(m[1]), address: m[2], tls, sandboxPort });
    lines[i] = `listener ${sandboxPort} 127.0.0.1`;
  }
  return { conf: lines.join("\n"), listeners };
}

function mosquittoIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = run("id", ["-u", "mosquitto"]);
  const gid = run("id", ["-g", "mosquitto"]);
  if (uid.code !== 0 || gid.code !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** chown -R to the broker's user (only as root: the broker drops privileges only then). */
export function giveToMosquitto(dir: string): void {
  const ids = mosquittoIds();
  if (!ids) return;
  const walk = (path: string) => {
    chownSync(path, ids.uid, ids.gid);
    if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) walk(join(path, entry));
  };
  walk(dir);
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export interface Broker {
  readonly server: Server;
  readonly listeners: readonly RelocatedListener[];
  /** The sandbox copy of the main file (what the broker was started with). */
  readonly mainConf: string;
  /** Everything the broker said: its stdout/stderr and its log file. */
  log(): string;
  /** Stops it and starts it again from the same files (`systemctl restart mosquitto`). */
  restart(): Promise<Broker>;
  /** The sandbox port of the listener rendered as `listener <port> [address]`. */
  port(filter: (l: RelocatedListener) => boolean): number;
}

export interface BrokerFiles {
  /** Config text to start from: either a conf.d fragment (debianLayout) or a standalone main file. */
  readonly conf: string;
  /** Absolute paths in the rendered config -> file contents to put into the sandbox instead. */
  readonly files: Readonly<Record<string, string>>;
  /** Extra path rewrites (e.g. certificates already in the sandbox). */
  readonly mapping?: Readonly<Record<string, string>>;
  /** Rewrites applied after relocation (e.g. a bridge address). */
  readonly rewrite?: (conf: string) => string;
}

/**
 * Starts mosquitto from `files` in `box`. With `debianLayout` the rendered file is a conf.d
 * fragment, included by Debian's main file (its pid, persistence and log paths moved into the
 * sandbox) through include_dir, as on a Debian host. Resolves once every listener accepts
 * connections; rejects with the broker's own words if it exits first (2.0 has no
 * --test-config, MQ-10: a broken config stops it at once).
 */
export async function startBroker(box: Sandbox, name: string, input: BrokerFiles, debianLayout: boolean): Promise<Broker> {
  const dir = box.path(name);
  const mapping: Record<string, string> = { ...(input.mapping ?? {}) };
  for (const [path, content] of Object.entries(input.files)) {
    const base = path.split("/").pop()!;
    mapping[path] = box.write(`${name}/files/${base}`, content, 0o600);
  }
  let { conf, listeners } = await relocateListeners(relocate(input.conf, mapping));
  if (input.rewrite) conf = input.rewrite(conf);
  let mainPath: string;
  let logFile: string | undefined;
  if (debianLayout) {
    box.write(`${name}/conf.d/rendered.conf`, conf, 0o640);
    logFile = `${dir}/log/mosquitto.log`;
    const main = relocate(debianMainConf(), {
      "/run/mosquitto/": `${dir}/run/`,
      "/var/lib/mosquitto/": `${dir}/lib/`,
      "/var/log/mosquitto/": `${dir}/log/`,
      "/etc/mosquitto/conf.d": `${dir}/conf.d`,
    });
    box.write(`${name}/run/.keep`, "");
    box.write(`${name}/lib/.keep`, "");
    box.write(`${name}/log/.keep`, "");
    mainPath = box.write(`${name}/mosquitto.conf`, main);
  } else {
    mainPath = box.write(`${name}/mosquitto.conf`, conf);
  }
  giveToMosquitto(dir);
  return launch(name, mainPath, listeners, logFile, conf);
}

/** Runs mosquitto with `mainPath` and waits until every listener accepts connections. */
async function launch(name: string, mainPath: string, listeners: readonly RelocatedListener[], logFile: string | undefined, conf: string): Promise<Broker> {
  const server = startServer("mosquitto", ["-c", mainPath]);
  const log = () => `${server.output()}${logFile && existsSync(logFile) ? readFileSync(logFile, "utf8") : ""}`;
  const exited = () => server.process.exitCode !== null || server.process.signalCode !== null;
  await waitFor(`mosquitto ${name} to listen`, async () => {
    if (exited()) return true;
    for (const l of listeners) if (!(await portOpen(l.sandboxPort))) return false;
    return true;
  });
  if (exited()) {
    throw new Error(`mosquitto stopped (exit ${server.process.exitCode}) with ${mainPath}:\n${log()}\n--- config ---\n${conf}`);
  }
  return {
    server,
    listeners,
    mainConf: mainPath,
    log,
    restart: async () => {
      await server.stop();
      return launch(name, mainPath, listeners, logFile, conf);
    },
    port(filter) {
      const found = listeners.find(filter);
      if (!found) throw new Error(`no such listener in ${mainPath}: ${JSON.stringify(listeners)}`);
      return found.sandboxPort;
    },
  };
}

/** A client options directory: mosquitto_pub/sub read `-P <password>` from it, not from argv. */
export function clientConfig(box: Sandbox, name: string, password: string | undefined): string {
  const dir = box.path(`clients-${name}`);
  const line = password === undefined ? "" : `-P ${password}\n`;
  box.write(`clients-${name}/mosquitto_pub`, line, 0o600);
  box.write(`clients-${name}/mosquitto_sub`, line, 0o600);
  return dir;
}

export interface ClientOptions {
  readonly port: number;
  readonly user?: string;
  /** Directory from clientConfig(). */
  readonly config: string;
  /** CA file: connect with TLS. */
  readonly cafile?: string;
}

function clientArgs(o: ClientOptions): string[] {
  return ["-h", "127.0.0.1", "-p", String(o.port), ...(o.user ? ["-u", o.user] : []), ...(o.cafile ? ["--cafile", o.cafile] : [])];
}

function clientEnv(o: ClientOptions): NodeJS.ProcessEnv {
  return { ...process.env, XDG_CONFIG_HOME: o.config, HOME: o.config };
}

/** One publish; resolves to the client's exit code and words. */
export function publish(o: ClientOptions, topic: string, message: string) {
  return run("mosquitto_pub", [...clientArgs(o), "-t", topic, "-q", "1", "-m", message], { env: clientEnv(o), timeoutMs: 10_000 });
}

/**
 * Subscribes with `sub`, then publishes with `pub` every 200 ms (at most 40 times) until the
 * subscriber prints the message: the subscription and any bridge may need a moment. Returns
 * what the subscriber received and everything both clients said.
 */
export async function roundTrip(sub: ClientOptions, pub: ClientOptions, topic: string, message: string): Promise<{ received: string; output: string }> {
  const child = spawn("mosquitto_sub", [...clientArgs(sub), "-t", topic, "-C", "1", "-W", "15"], { env: clientEnv(sub), stdio: ["ignore", "pipe", "pipe"] });
  let received = "";
  let output = "";
  child.stdout.on("data", (d: Buffer) => (received += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    for (let i = 0; i < 40 && child.exitCode === null && !received.includes(message); i++) {
      const r = publish(pub, topic, message);
      if (r.code !== 0) output += `mosquitto_pub exit ${r.code}: ${r.output}`;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    if (child.exitCode === null) child.kill("SIGTERM");
    await done;
  }
  return { received: received.trim(), output };
}
