/**
 * Entry point of the `novacloud-render` command. Only argument parsing is loaded eagerly, so
 * --help and --version cost little more than starting node; everything that renders is
 * imported on demand.
 */
import { HELP, parseCli, UsageError } from "./args.js";


async function main(argv: readonly string[]): Promise<number> {
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
    process.stdout.write(`${__VERSION__}\n`);
    return 0;
  }
  const { run } = await import("./run.js");
  return run(options);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`novacloud-render: internal error: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    process.exitCode = 70;
  },
);
