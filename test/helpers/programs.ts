/**
 * Running the real programs in tests: finding them (a missing one skips locally, with what to
 * install, and fails under CI=true), temporary sandboxes, free loopback ports, and servers that
 * are always stopped by their PID.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export const IN_CI = process.env.CI === "true";

/** Absolute path of `name` on PATH (or at an absolute path), or undefined. */
export function which(name: string): string | undefined {
  if (name.startsWith("/")) return existsSync(name) ? name : undefined;
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin", "/usr/bin"])) {
    const full = join(dir, name);
    if (dir && existsSync(full)) return full;
  }
  return undefined;
}

/**
 * Whether every program is available. When one is missing: under CI=true this throws (a
 * skipped check must never count as passed there); locally it warns with the Debian package to
 * install and returns false, for describe.skipIf.
 */
export function programsAvailable(check: string, programs: Record<string, string>): boolean {
  const missing = Object.entries(programs).filter(([program]) => !which(program));
  if (missing.length === 0) return true;
  const hint = `${check}: missing ${missing.map(([p, pkg]) => `${p} (apt-get install ${pkg})`).join(", ")}`;
  if (IN_CI) throw new Error(`${hint}; CI must run every check (.ci/run installs them)`);
  console.warn(`SKIPPED ${hint}`);
  return false;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr together, for assertion messages that show the program's own words. */
  readonly output: string;
}

export function run(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): RunResult {
  const result = spawnSync(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    input: options.input,
    encoding: "utf8",
    timeout: options.timeoutMs ?? 30_000,
  });
  if (result.error && (result.error as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${command}: not found`);
  const stdout = result.stdout ?? "";
  const stderr = result.stderr ?? "";
  return { code: result.status, stdout, stderr, output: `${stdout}${stderr}` };
}

export interface Sandbox {
  readonly dir: string;
  path(...parts: string[]): string;
  write(relPath: string, content: string, mode?: number): string;
  cleanup(): void;
}

/** A temporary directory that tests put config, certificates, sockets and logs into. */
export function sandbox(prefix = "ncr-"): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  // Daemons that drop privileges (mosquitto, postgres under a user) must traverse it.
  chmodSync(dir, 0o755);
  return {
    dir,
    path: (...parts) => join(dir, ...parts),
    write(relPath, content, mode = 0o644) {
      const full = join(dir, relPath);
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, content, { mode });
      chmodSync(full, mode);
      return full;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A free TCP port on 127.0.0.1 (the kernel picks it; closed again before returning). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A self-signed certificate and key for `cn` (and 127.0.0.1), made with openssl. */
export function selfSignedCertificate(box: Sandbox, name: string, cn: string): { cert: string; key: string } {
  const cert = box.path(`${name}.crt`);
  const key = box.path(`${name}.key`);
  const r = run("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${cn}`,
    "-addext", `subjectAltName=DNS:${cn},IP:127.0.0.1`, "-keyout", key, "-out", cert,
  ]);
  if (r.code !== 0) throw new Error(`openssl failed: ${r.output}`);
  chmodSync(key, 0o644); // test sandbox only: daemons under other users read it
  return { cert, key };
}

export interface Server {
  readonly pid: number;
  readonly process: ChildProcess;
  /** Everything the server printed so far. */
  output(): string;
  /** Stops the server by its PID (SIGTERM, then SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
}

const running = new Set<Server>();

/** Starts a long-running program; register `stopAll` in afterAll/afterEach so it always stops. */
export function startServer(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Server {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (child.pid === undefined) throw new Error(`${command} did not start`);
  const server: Server = {
    pid: child.pid,
    process: child,
    output: () => out,
    async stop() {
      running.delete(server);
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(child.pid!, "SIGTERM");
      const timer = setTimeout(() => {
        try {
          process.kill(child.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      }, 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(server);
  return server;
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** Polls until `check` returns true (or throws the last reason after `timeoutMs`). */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Rewrites absolute paths in a rendered file so they point into the sandbox. */
export function relocate(content: string, mapping: Record<string, string>): string {
  let out = content;
  for (const [from, to] of Object.entries(mapping).sort(([a], [b]) => b.length - a.length)) out = out.split(from).join(to);
  return out;
}
