/**
 * Quoting per target syntax: the second wall behind model validation. Each function returns a
 * value that the target program reads back as exactly `value`, or throws UnsafeValueError when
 * the target syntax cannot carry it. Model values never reach these throws (the schema rejects
 * them first); secrets, which may hold any printable character, are quoted here.
 */

export class UnsafeValueError extends Error {
  constructor(target: string, reason: string) {
    super(`refusing to write a value into ${target}: ${reason}`);
  }
}

// C0 controls, DEL and C1 controls: never legitimate in any config value we write.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function assertNoControl(value: string, target: string): void {
  if (CONTROL.test(value)) throw new UnsafeValueError(target, "it contains a control character or line break");
}

const SHELL_BARE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** POSIX shell word: bare when that is unambiguous, otherwise single-quoted ('\'' for '). */
export function shell(value: string): string {
  assertNoControl(value, "a shell script");
  if (SHELL_BARE.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Several shell words, each quoted with shell(), separated by blanks. */
export function shellWords(values: readonly string[]): string {
  return values.map(shell).join(" ");
}

/** Python string literal (JSON string syntax is a subset of Python's). */
export function python(value: string): string {
  assertNoControl(value, "a Python file");
  return JSON.stringify(value);
}

/**
 * Value in an env file read by systemd's EnvironmentFile= and by `set -a; . FILE` in bash.
 * Inside double quotes both unescape exactly \" \\ \` \$ (systemd: SHELL_NEED_ESCAPE in
 * src/basic/env-file.c) and neither expands variables (systemd never does; bash does not for
 * an escaped $), so the same bytes mean the same value to both readers.
 */
export function envValue(value: string): string {
  assertNoControl(value, "an env file");
  if (/^[A-Za-z0-9_@%+=:,./-]*$/.test(value)) return value;
  return `"${value.replace(/[\\"`$]/g, (c) => `\\${c}`)}"`;
}

/**
 * A token in an nginx config. Model values that reach nginx are hostnames, paths, sizes and
 * ports; nginx has no escape for `$` (variables) and `;`/`{`/`}` end directives, so anything
 * outside this set is refused rather than quoted.
 */
export function nginx(value: string): string {
  assertNoControl(value, "an nginx config");
  if (!/^[A-Za-z0-9_.:/@*~+=,-]+$/.test(value)) {
    throw new UnsafeValueError("an nginx config", `${JSON.stringify(value)} has characters nginx would interpret`);
  }
  return value;
}

/**
 * One argument in a systemd unit (ExecStart= etc.): `%` starts a specifier and `$` a variable,
 * so both are doubled; whitespace or quotes would split or end the word, so they are refused.
 */
export function systemd(value: string): string {
  assertNoControl(value, "a systemd unit");
  if (/[\s"'\\;]/.test(value)) {
    throw new UnsafeValueError("a systemd unit", `${JSON.stringify(value)} would be split into several words`);
  }
  return value.replace(/%/g, "%%").replace(/\$/g, "$$$$");
}

/** SQL string literal (standard_conforming_strings = on, the default since 9.1). */
export function sqlLiteral(value: string): string {
  assertNoControl(value, "an SQL file");
  return `'${value.replace(/'/g, "''")}'`;
}

const SQL_RESERVED = new Set([
  "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast",
  "check", "collate", "column", "constraint", "create", "current_catalog", "current_date", "current_role",
  "current_time", "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do",
  "else", "end", "except", "false", "fetch", "for", "foreign", "from", "grant", "group", "having", "in",
  "initially", "intersect", "into", "lateral", "leading", "limit", "localtime", "localtimestamp", "not",
  "null", "offset", "on", "only", "or", "order", "placing", "primary", "references", "returning", "select",
  "session_user", "some", "symmetric", "system_user", "table", "then", "to", "trailing", "true", "union",
  "unique", "user", "using", "variadic", "when", "where", "window", "with",
]);

/** SQL identifier: bare when it is a plain lower-case name and not reserved, else double-quoted. */
export function sqlIdent(value: string): string {
  assertNoControl(value, "an SQL file");
  if (/^[a-z_][a-z0-9_]*$/.test(value) && !SQL_RESERVED.has(value)) return value;
  return `"${value.replace(/"/g, '""')}"`;
}

/** String value in postgresql.conf: single quotes; the GUC lexer unescapes \\ and '' . */
export function pgConf(value: string): string {
  assertNoControl(value, "postgresql.conf");
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

/** One field of a ~/.pgpass line: `:` and `\` are escaped with a backslash (libpq passwordFromFile). */
export function pgpassField(value: string): string {
  assertNoControl(value, "a .pgpass file");
  return value.replace(/[\\:]/g, (c) => `\\${c}`);
}

// Words pg_hba.conf reads as keywords in the DATABASE and USER fields (auth-pg-hba-conf.html).
const PG_HBA_KEYWORDS = new Set(["all", "sameuser", "samerole", "samegroup", "replication"]);

/**
 * A database or user name in pg_hba.conf. Quoting makes a keyword (all, replication, ...) a plain
 * name; inside double quotes "" is a literal quote (hba.c next_token). Names starting with + (group),
 * @ (file) or / (regular expression, 16+) and names with blanks, commas or # are quoted too.
 */
export function pgHba(value: string): string {
  assertNoControl(value, "pg_hba.conf");
  if (/^[A-Za-z0-9_.-]+$/.test(value) && !PG_HBA_KEYWORDS.has(value)) return value;
  return `"${value.replace(/"/g, '""')}"`;
}

/** One value in a libpq connection string: single-quoted, \' and \\ escaped. */
export function conninfoValue(value: string): string {
  assertNoControl(value, "a connection string");
  if (/^[A-Za-z0-9_.:/@-]+$/.test(value)) return value;
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/**
 * One HAProxy argument. Single quotes are strong (nothing inside is interpreted) but cannot hold
 * a single quote; then double quotes, where \" \\ and \$ are the escapes and `$` would otherwise
 * expand an environment variable (configuration.txt, 2.2 "Quoting and escaping").
 */
export function haproxy(value: string): string {
  assertNoControl(value, "haproxy.cfg");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  if (!value.includes("'")) return `'${value}'`;
  return `"${value.replace(/[\\"$]/g, (c) => `\\${c}`)}"`;
}

/** One redis.conf / sentinel.conf argument: double-quoted, \\ and \" escaped (sdssplitargs). */
export function redis(value: string): string {
  assertNoControl(value, "redis.conf");
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * A mosquitto.conf string option: the broker takes the rest of the line with surrounding blanks
 * trimmed and has no quoting, so leading or trailing blanks cannot be represented.
 */
export function mosquitto(value: string): string {
  assertNoControl(value, "mosquitto.conf");
  if (value !== value.trim() || value === "") {
    throw new UnsafeValueError("mosquitto.conf", "a value with leading or trailing blanks cannot be written");
  }
  return value;
}

/**
 * A value in a Compose env_file (compose.env, .env.db), read back exactly by Compose v2, whose
 * reader is compose-go's dotenv parser (dotenv/parser.go, v2.x): unquoted values are cut at " #"
 * and interpolate `$`; inside '...' nothing is interpolated and only \' is an escape (any other
 * backslash stays); inside "..." \" drops its backslash, then \\ \$ \n \t... are unescaped and
 * `$` is interpolated. So: bare for a plain word; single quotes when there is no backslash
 * (\' for a quote); otherwise double quotes with \\ \" \$ (errata DC-11, S-COMPOSE-ENV).
 * docker-compose 1.29 (python-dotenv) reads the bare and single-quoted forms the same, and the
 * double-quoted one too except that it keeps the backslash of \$, so only a value holding both
 * a backslash and a `$` differs there.
 */
export function composeEnv(value: string): string {
  assertNoControl(value, "a Compose env file");
  if (/^[A-Za-z0-9_@%+=:,./-]*$/.test(value)) return value;
  if (!value.includes("\\")) return `'${value.replace(/'/g, "\\'")}'`;
  return `"${value.replace(/[\\"$]/g, (c) => `\\${c}`)}"`;
}

/**
 * A path in /etc/exports (exports(5)): blanks end it and `#` starts a comment; the \040 escape
 * exists but exportfs also reads `(` and `"` specially, so only plain path characters are written.
 */
export function exportsPath(value: string): string {
  assertNoControl(value, "an exports file");
  if (/^\/[A-Za-z0-9._+@\/-]*$/.test(value)) return value;
  throw new UnsafeValueError("an exports file", `${JSON.stringify(value)} is not a plain absolute path`);
}

/** Which reader an env file is for: systemd/bash on hosts, Compose in the Compose bundle. */
/**
 * A YAML scalar (Prometheus, Alertmanager and blackbox exporter configs): always a
 * double-quoted string, whose JSON escapes YAML reads the same, so no value can turn into a
 * number, a boolean, a null or a mapping. U+2028/U+2029 are line breaks to YAML 1.1 readers
 * (Go's yaml.v2) and the BOM is a stream marker: refused with the control characters.
 */
export function yaml(value: string): string {
  assertNoControl(value, "a YAML file");
  if (/[\u2028\u2029\ufeff]/.test(value)) throw new UnsafeValueError("a YAML file", "it contains a Unicode line separator or byte order mark");
  return JSON.stringify(value);
}

export type EnvDialect = "systemd" | "compose";

/** `{{ value | env(dialect) }}`: the env-file quoting for that reader. */
export function envFor(value: string, dialect: EnvDialect = "systemd"): string {
  return dialect === "compose" ? composeEnv(value) : envValue(value);
}

/** All quoting filters by the name templates use them with. */
export const QUOTE_FILTERS = {
  shell,
  python,
  env: envFor,
  nginx,
  systemd,
  sql: sqlLiteral,
  sqlident: sqlIdent,
  pgconf: pgConf,
  pgpass: pgpassField,
  pghba: pgHba,
  haproxy,
  redis,
  mosquitto,
  composeEnv,
  exports: exportsPath,
  yaml,
} as const;

/**
 * A value padded with blanks to `width` (never cut), so a table-like file (pg_hba.conf) keeps
 * its columns aligned in the template instead of in the view.
 */
export function column(value: string, width: number): string {
  return value.padEnd(width);
}

/** Filters that lay values out (a list of shell words, a padded column), each quoting nothing itself. */
export const FORMAT_FILTERS = {
  shellwords: shellWords,
  column,
} as const;
