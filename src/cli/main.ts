/**
 * The `novacloud-render` command (src/cli/bin.ts starts it). Only argument parsing is loaded
 * eagerly, so --help and --version cost little more than starting node; everything that
 * renders (src/cli/run.ts) is loaded on demand by `loadRun`.
 */
import { writeSync } from "node:fs";
import { HELP, parseCli, UsageError } from "./args.js";

/**
 * Writes a short text to stdout without making process.stdout: that stream (a SyncWriteStream
 * or a socket, with node's stream modules) was the largest part of what --version loads beyond
 * `node -e 0`. A non-blocking pipe that is full refuses the write (EAGAIN): then the stream.
 */
function writeStdout(text: string): void {
  const bytes = Buffer.from(text);
  let written = 0;
  try {
    written = writeSync(1, bytes);
  } catch {
    // EAGAIN and the like: the stream below waits for the pipe
  }
  if (written < bytes.length) process.stdout.write(bytes.subarray(written));
}


/** Loads the commands that render: run.ts, or the bundle the build made of it. */
export type LoadRun = () => Promise<Pick<typeof import("./run.js"), "run">>;

export async function main(argv: readonly string[], loadRun: LoadRun): Promise<number> {
  let options;
  try {
    options = parseCli(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`novacloud-render: ${error.message}\nTry 'novacloud-render --help'.\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (options.version) {
    writeStdout(`${__VERSION__}\n`);
    return 0;
  }
  const { run } = await loadRun();
  return run(options);
}

/** Runs the command with `argv`, setting the exit code; an unexpected error exits 70. */
export function start(argv: readonly string[], loadRun: LoadRun): void {
  main(argv, loadRun).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`novacloud-render: internal error: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
      process.exitCode = 70;
    },
  );
}
