/**
 * Value types of the model, validated for what they are (not only typed): every string that
 * reaches a config file is constrained so it cannot add a directive, a line, a quote, a brace,
 * a `;`, a `$` expansion or a shell command in any output format. Each message names what was
 * expected; `shown()` prints the offending value on one line.
 */
// A namespace import, so bundlers keep only the parts of zod the model uses.
import * as z from "zod";
import type { SecretRef } from "../generated/model-types.js";

// Characters JSON.stringify leaves as they are but a terminal or editor may act on: DEL and C1
// controls (0x9b is a CSI escape), soft hyphen, zero-width and bidi controls ("trojan source"),
// the Unicode line and paragraph separators, BOM and interlinear annotation marks.
const UNSAFE_IN_MESSAGE = /[\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;

/** `text` with every character a terminal could act on written as a \uXXXX escape. */
export function escapeUnsafe(text: string): string {
  return text
    .replace(/[\u0000-\u001f]/g, (c) => JSON.stringify(c).slice(1, -1))
    .replace(UNSAFE_IN_MESSAGE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * The offending value as JSON, shortened and on one line, for an error message. Control,
 * invisible and bidi characters are escaped, so a value can neither break the line nor disguise
 * itself on a terminal; TOML's nan/inf and dates are named as TOML writes them.
 */
export function shown(input: unknown): string {
  let text: string;
  if (typeof input === "number" && !Number.isFinite(input)) text = Number.isNaN(input) ? "nan" : input > 0 ? "inf" : "-inf";
  else if (typeof input === "bigint") text = input.toString();
  else if (input instanceof Date) text = Number.isNaN(input.getTime()) ? "an invalid date" : input.toISOString();
  else if (input === undefined) text = "nothing";
  else {
    try {
      text = JSON.stringify(input) ?? String(input);
    } catch {
      text = String(input);
    }
  }
  text = escapeUnsafe(text);
  const chars = Array.from(text); // by code point, so an emoji is never cut in half
  if (chars.length <= 70) return text;
  // Drop an escape the cut broke in two (a lone backslash, or \u with fewer than four digits).
  const cut = chars.slice(0, 66).join("").replace(/(^|[^\\])((?:\\\\)*)\\(?:u[0-9a-fA-F]{0,3})?$/, "$1$2");
  return typeof input === "string" ? `${cut}..."` : `${cut}...`;
}

/**
 * Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), for "did you
 * mean": `tsl` -> `tls` and `prot` -> `port` are one edit, not two.
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate `word` is most likely a typo of, if one is close enough (case-insensitive). */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** ` (did you mean "x"?)` when `value` is a near miss of one of `candidates`, else "". */
export function didYouMean(value: unknown, candidates: readonly string[]): string {
  if (typeof value !== "string" || value === "") return "";
  const guess = closest(value, candidates);
  return guess !== undefined && guess !== value ? ` (did you mean ${JSON.stringify(guess)}?)` : "";
}

type Input = { input?: unknown };
const says = (what: string) => (iss: Input) => `${shown(iss.input)} ${what}`;

// RFC 1123 labels, lower case, at most 253 characters in all.
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export const hostname = () =>
  z.string().regex(HOSTNAME, {
    error: (iss: Input) =>
      typeof iss.input === "string" && /[^\x00-\x7f]/.test(iss.input)
        ? `${shown(iss.input)} is not a valid hostname (internationalized names must be written in punycode, xn--...)`
        : `${shown(iss.input)} is not a valid hostname (lower-case letters, digits, '-' and '.' only)`,
  });

const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
export const IPV4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`);

export const ipv4 = () => z.string().regex(IPV4, { error: says("is not an IPv4 address (four numbers 0-255 separated by dots)") });

export const cidr = () =>
  z.string().regex(new RegExp(`^${OCTET}(?:\\.${OCTET}){3}(?:/(?:3[0-2]|[12]?[0-9]))?$`), {
    error: says("is not an IPv4 address or network (e.g. 10.0.0.0/24)"),
  });

/** The 16 bytes of an IPv6 address (RFC 4291 2.2 text forms: `::` once, an IPv4 tail), or undefined. */
function ipv6Bytes(text: string): number[] | undefined {
  let tail: number[] = [];
  let hex = text;
  const v4 = /^(.*:)((?:\d{1,3}\.){3}\d{1,3})$/.exec(text);
  if (v4) {
    if (!IPV4.test(v4[2]!)) return undefined;
    tail = v4[2]!.split(".").map(Number);
    hex = v4[1]!.endsWith("::") ? v4[1]! : v4[1]!.slice(0, -1);
  }
  const halves = hex.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  const left = groups(halves[0]!);
  const right = halves.length === 2 ? groups(halves[1]!) : [];
  if ([...left, ...right].some((g) => !/^[0-9A-Fa-f]{1,4}$/.test(g))) return undefined;
  const words = 8 - tail.length / 2;
  const given = left.length + right.length;
  // Without "::" every group is written; with it, "::" stands for at least one.
  if (halves.length === 1 ? given !== words : given > words - 1) return undefined;
  const zeros = halves.length === 2 ? Array<string>(words - given).fill("0") : [];
  return [...[...left, ...zeros, ...right].flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]), ...tail];
}

/** Why `text` is not an IPv4 or IPv6 address or network (CIDR), or undefined when it is one. */
export function networkProblem(text: string): string | undefined {
  const [address, prefix, ...more] = text.split("/");
  if (more.length > 0) return "has more than one '/'";
  const bytes = IPV4.test(address!) ? address!.split(".").map(Number) : ipv6Bytes(address!);
  if (!bytes) return "is not an IPv4 or IPv6 address or network (e.g. 10.8.0.0/24, 192.0.2.7 or 2001:db8::/32)";
  if (prefix === undefined) return undefined;
  const max = bytes.length * 8;
  if (!/^(?:0|[1-9][0-9]{0,2})$/.test(prefix) || Number(prefix) > max) return `has a prefix length that is not a number from 0 to ${max}`;
  // nginx only warns ("low address bits ... are meaningless") and ignores them; a typo such as
  // 10.8.0.1/16 for 10.8.1.0/24 would silently allow far more than meant.
  const bits = Number(prefix);
  const hostBits = bytes.some((b, i) => (b & (0xff >> Math.min(8, Math.max(0, bits - i * 8)))) !== 0);
  if (hostBits) return `has address bits set beyond its /${bits} prefix: write the network's first address`;
  return undefined;
}

const NETWORK_CHARS = /^[0-9A-Fa-f:./]+$/;

/** An IPv4 or IPv6 address or network (CIDR), host bits clear: nginx `allow`, ufw `from`. */
export const network = () =>
  z
    .string()
    .regex(NETWORK_CHARS, { error: says("is not an IPv4 or IPv6 address or network (digits, hex letters, '.', ':' and one '/'; e.g. 10.8.0.0/24 or 2001:db8::/32)") })
    .superRefine((value, ctx) => {
      if (!NETWORK_CHARS.test(value)) return; // one problem, one line: the characters were named above
      const problem = networkProblem(value);
      if (problem) ctx.addIssue({ code: "custom", message: `${shown(value)} ${problem}`, input: value });
    });

export const port = () =>
  z
    .number({ error: says("is not a port number (an integer from 1 to 65535)") })
    .int({ error: says("is not a port number (an integer from 1 to 65535)") })
    .min(1, { error: says("is not a port number (an integer from 1 to 65535)") })
    .max(65535, { error: says("is not a port number (an integer from 1 to 65535)") });

/** Integer in [min, max], with a message that names the range. */
export const int = (min: number, max: number) => {
  const error = says(`is out of range (expected an integer from ${min} to ${max})`);
  return z
    .number({ error: says(`is not a number (expected an integer from ${min} to ${max})`) })
    .int({ error: says(`is not a whole number (expected an integer from ${min} to ${max})`) })
    .min(min, { error })
    .max(max, { error });
};

// Absolute POSIX path of portable characters; no empty, `.` or `..` segments, no trailing slash.
const ABS_PATH = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._@+-]+)+$/;

export const absPath = () =>
  z.string().regex(ABS_PATH, {
    error: says("is not an absolute path (letters, digits and . _ - + @ between slashes; no spaces, quotes, '..' or trailing '/')"),
  });

export const unixName = () =>
  z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, {
    error: says("is not a valid Unix user or group name (lower-case letter or '_' first, then letters, digits, '_' or '-', at most 32)"),
  });

/** Prefix of systemd units, nginx sites, logrotate files and paths. */
export const projectName = () =>
  z.string().regex(/^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$/, {
    error: says("is not a valid project name (lower-case letters, digits and '-', starting with a letter, at most 32; it names units, sites and files)"),
  });

export const hostKey = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const hostKeyMessage = "is not a valid host name for [hosts.NAME] (lower-case letters, digits and '-'; it becomes a directory and a server name)";

export const pythonModule = () =>
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/, {
    error: says("is not a Python module path (identifiers separated by dots, e.g. DjangoNovaCloud)"),
  });

export const pgIdentifier = () =>
  z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, {
    error: says("is not a PostgreSQL identifier this tool writes unquoted (lower-case letter or '_' first, then letters, digits, '_', at most 63)"),
  });

export const envName = () =>
  z.string().regex(/^[A-Z_][A-Z0-9_]*$/, {
    error: says("is not an environment variable name (upper-case letters, digits and '_', not starting with a digit)"),
  });

/** nginx size: 10M, 512k, 1g or a byte count. */
export const nginxSize = () =>
  z.string().regex(/^[1-9][0-9]{0,9}[kKmMgG]?$/, { error: says("is not a size (a number with an optional k, m or g suffix, e.g. 10M)") });

/** PostgreSQL memory size: 1GB, 512MB, 64kB. */
export const pgSize = () =>
  z.string().regex(/^[1-9][0-9]{0,9}(?:kB|MB|GB|TB)$/, { error: says("is not a PostgreSQL size (a number with kB, MB, GB or TB, e.g. 1GB)") });

/** Duration in HAProxy/nginx units: 30s, 5m, 1h, 250ms, 1d. */
export const duration = () =>
  z.string().regex(/^[1-9][0-9]{0,8}(?:ms|s|m|h|d)$/, { error: says("is not a duration (a number with ms, s, m, h or d, e.g. 30s)") });

/** URL path that nginx and HAProxy can carry unquoted: starts and ends with '/'. */
export const urlPath = () =>
  z.string().regex(/^\/(?:(?!\.\.?\/)[A-Za-z0-9._~-]+\/)*$/, {
    error: says("is not a URL path (starts and ends with '/', letters, digits and . _ ~ - between slashes; no '.' or '..' segments)"),
  });

export const email = () =>
  z.string().regex(/^[A-Za-z0-9._%+-]+@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/, {
    error: says("is not an e-mail address (name@example.com; the domain in lower case)"),
  });

/** Git remote: https://, ssh:// or scp-like git@host:path, without shell metacharacters. */
export const gitUrl = () =>
  z.string().regex(/^(?:https:\/\/|ssh:\/\/|git@)[A-Za-z0-9._~:/@+-]+$/, {
    error: says("is not a git URL (https://..., ssh://... or git@host:path, no spaces or quotes)"),
  });

export const gitRef = () =>
  z.string().regex(/^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,100}$/, { error: says("is not a git branch, tag or commit name") });

export const ageRecipient = () =>
  z.string().regex(/^age1[02-9ac-hj-np-z]{58}$/, { error: says("is not an age public key (age1 followed by 58 characters)") });

/** Docker image reference: [registry[:port]/]name[:tag][@digest]. */
export const imageRef = () =>
  z.string().regex(/^(?:[a-z0-9][a-z0-9.-]{0,252}:[0-9]{1,5}\/)?[a-z0-9][a-z0-9._/-]{0,200}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/, {
    error: says("is not a container image reference (e.g. postgres:15 or registry.example.com/app:1.2)"),
  });

/**
 * The version an image's tag names (nginx:1.26 -> 1.26, nginx:1.26.3-alpine -> 1.26.3), or
 * undefined for a tag without one (nginx:stable, latest, a digest only).
 */
export function imageTagVersion(image: string): string | undefined {
  const tag = /^[^@]*:([^:/@]+)$/.exec(image)?.[1];
  return tag === undefined ? undefined : /^(\d+(?:\.\d+){0,2})(?:-[A-Za-z0-9._-]+)?$/.exec(tag)?.[1];
}

/** Software version as the distribution names it: 1.22.1, 2.6, 15. */
export const version = () =>
  z.string().regex(/^[0-9]{1,3}(?:\.[0-9]{1,4}){0,3}$/, { error: says("is not a version number (e.g. 1.22.1)") });

// --- cron -------------------------------------------------------------------------------------

const CRON_FIELDS: readonly { name: string; min: number; max: number }[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12 },
  { name: "day of week", min: 0, max: 7 },
];
const CRON_MACROS = new Set(["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"]);

/** Why a cron schedule is invalid, or undefined when it is valid. Names only, no `@reboot`. */
export function cronProblem(schedule: string): string | undefined {
  if (CRON_MACROS.has(schedule)) return undefined;
  const fields = schedule.split(" ");
  if (fields.length !== 5 || fields.some((f) => f === "")) {
    return "expected five fields separated by single spaces (minute hour day-of-month month day-of-week) or @daily, @weekly, ...";
  }
  for (const [i, field] of fields.entries()) {
    const spec = CRON_FIELDS[i]!;
    for (const part of field.split(",")) {
      const m = /^(\*|([0-9]{1,2})(?:-([0-9]{1,2}))?)(?:\/([0-9]{1,2}))?$/.exec(part);
      if (!m) return `the ${spec.name} field ${JSON.stringify(field)} is not a number, range, list or */step`;
      const values = [m[2], m[3]].filter((v): v is string => v !== undefined).map(Number);
      if (values.some((v) => v < spec.min || v > spec.max)) {
        return `the ${spec.name} field ${JSON.stringify(field)} is outside ${spec.min}-${spec.max}`;
      }
      if (values.length === 2 && values[0]! > values[1]!) return `the ${spec.name} range ${JSON.stringify(part)} runs backwards`;
      if (m[4] !== undefined && Number(m[4]) === 0) return `the ${spec.name} step in ${JSON.stringify(part)} is zero`;
    }
  }
  return undefined;
}

const CRON_CHARS = /^[@*0-9a-z,\/ -]+$/;

export const cron = () =>
  z
    .string()
    .regex(CRON_CHARS, { error: says("is not a cron schedule (five fields of digits and * , - / separated by single spaces, or @daily, @weekly, ...; e.g. \"0 3 * * *\")") })
    .superRefine((value, ctx) => {
      if (!CRON_CHARS.test(value)) return; // one problem, one line: the characters were named above
      const problem = cronProblem(value);
      if (problem) ctx.addIssue({ code: "custom", message: `${shown(value)} is not a cron schedule: ${problem}`, input: value });
    });

// --- secrets -----------------------------------------------------------------------------------

// Relative secret files are resolved against the model file's directory by the CLI.
const SECRET_FILE = /^(?:\/?(?!\.\.?(?:\/|$))[A-Za-z0-9._@+-]+)(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._@+-]+)*$/;

/** The two reference forms, built on first use like the model schema (src/model/schema.ts) and shared by every secret. */
function buildSecretRefs() {
  return {
    env: z.strictObject({ env: envName().describe("Name of the environment variable that holds the secret.") }),
    file: z.strictObject({
      file: z
        .string()
        .regex(SECRET_FILE, { error: says("is not a file path (absolute, or relative to the model file; no spaces, quotes or '..')") })
        .describe("File whose content (without the final newline) is the secret; relative paths start at the model file."),
    }),
  };
}
let secretRefs: ReturnType<typeof buildSecretRefs> | undefined;

/**
 * A secret is a reference: `{ env = "NAME" }` or `{ file = "/path" }`. An inline string is
 * accepted (and warned about) so a throw-away model can be self-contained.
 */
export const secret = () => {
  const refs = (secretRefs ??= buildSecretRefs());
  return z
    .union([refs.env, refs.file, z.string().min(1, { error: "an inline secret may not be empty" })], {
      error: 'expected a secret reference: { env = "VARIABLE" } or { file = "/path" }',
    })
    .describe('A secret: { env = "NAME" } (read from the environment) or { file = "/path" }. Inline strings work but are warned about.');
};

/** A secret reference as written (generated from `secret()` by scripts/write-model-types.mjs). */
export type { SecretRef } from "../generated/model-types.js";
export type SecretRefIsTheSchemas = Assert<Same<SecretRef, z.infer<ReturnType<typeof secret>>>>;

/** Compile-time checks: Assert<Same<A, B>> fails to compile unless A and B are the same type. */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export type Assert<T extends true> = T;
