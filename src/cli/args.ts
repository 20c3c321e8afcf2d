/** Command-line parsing: no I/O here, so it is cheap to load for --help and --version. */
import { parseArgs } from "node:util";

export const HELP = `novacloud-render: compile a NovaCloud deployment model into every file its hosts need

Usage:
  novacloud-render [MODEL] --out DIR            render MODEL into DIR (DIR/<host>/ per host)
  novacloud-render [MODEL] --check --out DIR    compare DIR with what MODEL renders now
  novacloud-render [MODEL] --list               list the files MODEL renders
  novacloud-render [MODEL] --print PATH         print one rendered file to stdout
  novacloud-render [MODEL] --format json        print the rendered tree as JSON
  novacloud-render flows [MODEL]                print every network flow (who connects to whom)
                                                and the public entry points; --format json
  novacloud-render schema                       print the model's JSON Schema
  novacloud-render init [FILE]                  write a commented starter model and its secrets

MODEL is a .toml or .json file (default ./novacloud.toml); - reads it from stdin.

Options:
  -o, --out DIR        output directory. Each host's files mirror their path on the host
                       (rsync -a DIR/node1/ root@node1:/ deploys node1); Compose goes to DIR/compose/,
                       the Ansible inventory and playbook that apply the host trees to DIR/ansible/.
                       Written to a temporary directory beside DIR and renamed into place; only
                       files this tool generated before are ever replaced or removed.
  -s, --secrets FILE   KEY=VALUE file supplying { env = "KEY" } secrets; repeatable. Its values
                       win over the environment. { file = "path" } secrets are read directly.
      --check          with --out: print a unified diff per changed file (secrets redacted), list
                       added and removed files, then the plan: what the drift needs on each host
                       (reloads, restarts, steps run again) in the order the playbook runs it;
                       exit 1 on any drift; writes nothing.
      --list           print mode, owner:group, size and path of every file.
      --print PATH     print the file at PATH (as --list shows it) to stdout.
      --host NAME      only this host's files.
      --format FORMAT  text (default) or json: results and errors as JSON on stdout; without
                       --out, --list or --print, the rendered tree itself (every file with its
                       content, mode, owner and what a change to it requires) as JSON.
  -q, --quiet          no summary or warnings on stderr.
      --color WHEN     auto (default: on a TTY unless NO_COLOR is set), always or never.
  -h, --help           show this help.
  -V, --version        show the version.

Exit codes:
  0  success (with --check: no drift)
  1  --check found drift
  2  invalid model, missing secret or usage error: one line per problem, nothing written
  3  a file could not be read or written

Secrets are references in the model ({ env = "NAME" } or { file = "path" }); their values are
written only into files with mode 0600/0640 and are redacted from diffs and errors.
The README (in the package) documents the model, every option and the library API.`;

export type Command = "render" | "flows" | "schema" | "init";

export interface CliOptions {
  readonly command: Command;
  readonly model: string | undefined;
  readonly out: string | undefined;
  readonly secrets: readonly string[];
  readonly check: boolean;
  readonly list: boolean;
  readonly print: string | undefined;
  readonly host: string | undefined;
  readonly format: "text" | "json";
  readonly quiet: boolean;
  readonly color: "auto" | "always" | "never";
  readonly help: boolean;
  readonly version: boolean;
}

export class UsageError extends Error {}

export function parseCli(argv: readonly string[]): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        out: { type: "string", short: "o" },
        secrets: { type: "string", short: "s", multiple: true },
        check: { type: "boolean" },
        list: { type: "boolean" },
        print: { type: "string" },
        host: { type: "string" },
        format: { type: "string" },
        quiet: { type: "boolean", short: "q" },
        color: { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional argument.*$/s, ""));
  }
  const { values, positionals } = parsed;
  let command: Command = "render";
  let rest = positionals;
  if (positionals[0] === "schema" || positionals[0] === "init" || positionals[0] === "flows") {
    command = positionals[0];
    rest = positionals.slice(1);
  }
  if (rest.length > 1) throw new UsageError(`expected at most one model file, got ${rest.length}: ${rest.join(" ")}`);
  const format = values.format ?? "text";
  if (format !== "text" && format !== "json") throw new UsageError(`--format must be text or json, not ${JSON.stringify(format)}`);
  const color = values.color ?? "auto";
  if (color !== "auto" && color !== "always" && color !== "never") throw new UsageError(`--color must be auto, always or never, not ${JSON.stringify(color)}`);
  const options: CliOptions = {
    command,
    model: rest[0],
    out: values.out,
    secrets: values.secrets ?? [],
    check: values.check ?? false,
    list: values.list ?? false,
    print: values.print,
    host: values.host,
    format,
    quiet: values.quiet ?? false,
    color,
    help: values.help ?? false,
    version: values.version ?? false,
  };
  if (options.help || options.version) return options;
  if (command === "schema" && (options.out || options.check || options.list || options.print)) {
    throw new UsageError("schema takes no other options; it prints the JSON Schema to stdout");
  }
  if (command === "flows" && (options.out || options.check || options.list || options.print || options.secrets.length > 0)) {
    throw new UsageError("flows takes a model and --format (and --host) only; it prints the flow table to stdout");
  }
  if (command === "render") {
    const modes = [options.check, options.list, options.print !== undefined].filter(Boolean).length;
    if (modes > 1) throw new UsageError("choose one of --check, --list and --print");
    if (options.check && !options.out) throw new UsageError("--check compares with a directory: give it with --out DIR");
    if (modes === 0 && !options.out && options.format !== "json") {
      throw new UsageError("nothing to do: give --out DIR to write the files, or --list, --print PATH, --check or --format json");
    }
    if ((options.list || options.print !== undefined) && options.out) throw new UsageError(`--${options.list ? "list" : "print"} writes nothing, so --out makes no sense with it`);
  }
  return options;
}
