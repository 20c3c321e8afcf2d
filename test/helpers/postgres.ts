/**
 * Running the installed PostgreSQL in tests: as the postgres OS user when the tests run as root
 * (initdb and the server refuse root), files it reads owned by it, and clusters stopped by the
 * PID in their postmaster.pid.
 */
import { chmodSync, chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, waitFor, type RunResult } from "./programs.js";

export const INSTALLED = 15;
export const BIN = `/usr/lib/postgresql/${INSTALLED}/bin`;

export const AS_ROOT = process.getuid?.() === 0;

/** initdb and the server refuse to run as root: as root, run them as the postgres OS user. */
export function asPostgres(command: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): RunResult {
  return AS_ROOT ? run("runuser", ["-u", "postgres", "--", command, ...args], options) : run(command, args, options);
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (!AS_ROOT) return undefined;
  return { uid: Number(run("id", ["-u", "postgres"]).stdout.trim()), gid: Number(run("id", ["-g", "postgres"]).stdout.trim()) };
}

export function giveToPostgres(path: string): void {
  const ids = postgresIds();
  if (ids) chownSync(path, ids.uid, ids.gid);
}

/** Writes a file the server reads (owned by postgres when running as root). */
export function put(path: string, content: string, mode = 0o600): string {
  writeFileSync(path, content, { mode });
  chmodSync(path, mode);
  giveToPostgres(path);
  return path;
}

/** Stops the cluster in `dataDir` by the PID in its postmaster.pid, and waits until it is gone. */
export async function stopCluster(dataDir: string): Promise<void> {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  // The postmaster is reparented when pg_ctl exits: once it has exited it may linger as a
  // zombie until its new parent reaps it, so a zombie counts as stopped.
  const alive = () => {
    try {
      return readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0] !== "Z";
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, "SIGQUIT");
  await waitFor(`postgres ${pid} to stop`, () => !alive(), 20_000);
}
