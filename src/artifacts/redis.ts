/**
 * Redis and Sentinel (errata section 10, RD-01/02): a fragment included at the end of Debian's
 * /etc/redis/redis.conf on redis hosts (bind, password, replication), the whole sentinel.conf on
 * sentinel hosts, and the hand steps. The app's side (.env: REDIS_URL, the sentinels and the
 * master name) is in app.ts; both read the same model values and topology, so they agree.
 */
import type { ModelIssue } from "../model/errors.js";
import type { Host, Model } from "../model/normalize.js";
import type { Secrets } from "../model/secrets.js";
import { shell, UnsafeValueError } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily, type RunbookStep } from "./context.js";
import { paths } from "./paths.js";

/** Sentinel timings (sentinel.conf(5) defaults are 30000 and 180000: slow for a small cluster). */
export const SENTINEL_DOWN_AFTER_MS = 5000;
export const SENTINEL_FAILOVER_TIMEOUT_MS = 60000;

/** Sentinels that must agree the primary is down: a majority of them. */
export function sentinelQuorum(sentinels: number): number {
  return Math.floor(sentinels / 2) + 1;
}

/** True when a host other than `host` connects to its Redis (the rules then require a password). */
function redisReachable(model: Model, host: Host): boolean {
  const t = model.topology;
  return (
    t.redis.length > 1 ||
    t.django.some((d) => d.name !== host.name) ||
    t.sentinels.some((s) => s.name !== host.name)
  );
}

/** True when a host other than `host` connects to its Sentinel (other sentinels, remote apps). */
function sentinelReachable(model: Model, host: Host): boolean {
  const t = model.topology;
  return t.sentinels.some((s) => s.name !== host.name) || (t.redis.length > 1 && t.django.some((d) => d.name !== host.name));
}

/**
 * The primary's address as the other hosts know it. Sentinel hands this address to the app, so it
 * is the private address whenever the primary listens there, even for a sentinel on the same host.
 */
function primaryAddress(model: Model): string {
  const primary = model.topology.redisPrimary!;
  return redisReachable(model, primary) ? primary.address : "127.0.0.1";
}

/** bind: loopback (IPv6 loopback optional where Redis allows it), plus the private address if needed. */
function bindAddresses(model: Model, host: Host, reachable: boolean): string[] {
  const v6 = model.caps.redis.optionalBind ? "-::1" : "::1";
  return ["127.0.0.1", v6, ...(reachable ? [host.address] : [])];
}

/**
 * Sentinel 7.0 rewrites its config file at start and after every failover, and writes
 * `sentinel auth-pass <name> <password>` without quoting (sentinel.c, rewriteConfigSentinelOption):
 * a password with blanks or quotes then makes the next start fail with FATAL CONFIG FILE ERROR.
 */
const SENTINEL_UNSAFE = /[\s"']/;

export function assertSentinelPassword(password: string): string {
  if (SENTINEL_UNSAFE.test(password)) {
    throw new UnsafeValueError(
      "sentinel.conf",
      "redis.password contains a blank or a quote, and Redis Sentinel writes `sentinel auth-pass` back unquoted when it rewrites its config, so sentinel.conf would no longer load at its next start; use a Redis password without blanks, ' or \"",
    );
  }
  return password;
}

/**
 * A shell prefix that puts the requirepass of `file` into redis-cli's environment: REDISCLI_AUTH
 * is read by redis-cli and, unlike -a, never shows in `ps` (only root and the same user can read a
 * process's environment). The sed undoes the "..." quoting of the line (\\ and \").
 */
export function redisCliAuth(file: string): string {
  return `REDISCLI_AUTH="$(sed -n 's/^requirepass "\\(.*\\)"$/\\1/p' ${shell(file)} | sed 's/\\\\\\(.\\)/\\1/g')"`;
}

/**
 * The `replicaof` line a replica starts with. It goes into redis.conf itself, after the include
 * (runbook), never into the fragment: Sentinel's CONFIG REWRITE edits redis.conf only, so after a
 * failover it can drop the line on the promoted replica and add one on the old primary. A line in
 * the included fragment would survive and demote the new primary at its next restart.
 */
export function replicaOfLine(model: Model, host: Host): string | undefined {
  const primary = model.topology.redisPrimary;
  if (!primary || primary.name === host.name || !host.roles.has("redis")) return undefined;
  return `replicaof ${primaryAddress(model)} ${model.redis.port}`;
}

function fragmentView(ctx: HostContext) {
  const { model, host, secrets } = ctx;
  const t = model.topology;
  const reachable = redisReachable(model, host);
  const replicated = t.redis.length > 1;
  return {
    redisConf: paths(model).redisConf,
    bind: bindAddresses(model, host, reachable).join(" "),
    reachable,
    port: model.redis.port,
    password: secrets.redisPassword,
    replicated,
    primary: t.redisPrimary!.name,
    // Every member gets masterauth: after a failover the old primary becomes a replica of the new one.
    masterauth: replicated && secrets.redisPassword !== undefined,
  };
}

function sentinelView(ctx: HostContext) {
  const { model, host, secrets } = ctx;
  const t = model.topology;
  return {
    caps: model.caps.redis,
    port: model.redis.sentinel_port,
    bind: bindAddresses(model, host, sentinelReachable(model, host)).join(" "),
    password: secrets.redisPassword === undefined ? undefined : assertSentinelPassword(secrets.redisPassword),
    masterName: model.redis.master_name,
    primary: { name: t.redisPrimary!.name, address: primaryAddress(model), port: model.redis.port },
    quorum: sentinelQuorum(t.sentinels.length),
    sentinels: t.sentinels.length,
    downAfter: SENTINEL_DOWN_AFTER_MS,
    failoverTimeout: SENTINEL_FAILOVER_TIMEOUT_MS,
  };
}

function redisFiles(ctx: HostContext): FileSpec[] {
  const { model } = ctx;
  const p = paths(model);
  const files: FileSpec[] = [];
  if (has(ctx, "redis")) {
    const secret = ctx.secrets.redisPassword !== undefined;
    files.push(
      templateFile(p.redisFragment, "redis/fragment.conf.njk", fragmentView(ctx), {
        comment: "#",
        // redis-server runs as redis and reads it; with a password only root and redis may.
        ...(secret ? { mode: MODE.groupSecret, owner: "root", group: "redis", secret: true } : {}),
      }),
    );
  }
  if (has(ctx, "redis-sentinel")) {
    // Sentinel rewrites this file (Debian: dpkg-statoverride redis redis 0640), so redis owns it.
    files.push(templateFile(p.sentinelConf, "redis/sentinel.conf.njk", sentinelView(ctx), { comment: "#", mode: MODE.groupSecret, owner: "redis", group: "redis", secret: ctx.secrets.redisPassword !== undefined }));
  }
  return files;
}

function redisSteps(ctx: HostContext): RunbookStep[] {
  const { model } = ctx;
  const p = paths(model);
  const t = model.topology;
  const password = ctx.secrets.redisPassword !== undefined;
  const steps: RunbookStep[] = [];
  if (has(ctx, "redis")) {
    const include = `include ${p.redisFragment}`;
    steps.push({ phase: "packages", title: "Redis", packages: ["redis-server"] });
    steps.push({
      phase: "files",
      title: "Include the project's Redis settings",
      commands: [`grep -qxF ${shell(include)} ${shell(p.redisConf)} || echo ${shell(include)} >> ${shell(p.redisConf)}`],
      why: `Appended once at the end of Debian's ${p.redisConf}, so the fragment's bind, port and password override the packaged defaults. CONFIG REWRITE (run by Sentinel after a failover) keeps include lines and writes what it changes after them.`,
    });
    const replicaOf = replicaOfLine(model, ctx.host);
    if (replicaOf !== undefined) {
      steps.push({
        phase: "files",
        title: `Start this Redis as a replica of ${t.redisPrimary!.name}`,
        commands: [`grep -q '^replicaof ' ${shell(p.redisConf)} || echo ${shell(replicaOf)} >> ${shell(p.redisConf)}`],
        why: `Only when setting the host up. The line goes after the include in ${p.redisConf}, where Sentinel's CONFIG REWRITE maintains it from then on (it removes it on a replica it promotes); in the fragment it would survive a failover and demote the new primary at its next restart.`,
      });
    }
    steps.push({
      phase: "services",
      title: "Restart Redis",
      commands: ["systemctl enable redis-server", "systemctl restart redis-server"],
      why: "bind and port take effect only at a restart." + (t.redis.length > 1 ? ` Restart ${t.redisPrimary!.name} (the primary) first.` : ""),
    });
    const cli = `redis-cli -p ${model.redis.port}`;
    const verify = password
      ? [`${cli} ping   # NOAUTH Authentication required.`, `${redisCliAuth(p.redisFragment)} ${cli} ping   # PONG`]
      : [`${cli} ping   # PONG`];
    if (t.redis.length > 1) verify.push(`${password ? `${redisCliAuth(p.redisFragment)} ` : ""}${cli} info replication   # role, and master_link_status:up on a replica`);
    steps.push({
      phase: "verify",
      title: "Check Redis",
      commands: verify,
      why: password
        ? "Without the password Redis refuses; with it, it answers. The password goes to redis-cli in REDISCLI_AUTH, read from the fragment for this one command: never -a, which every user sees in ps."
        : undefined,
    });
  }
  if (has(ctx, "redis-sentinel")) {
    steps.push({ phase: "packages", title: "Redis Sentinel", packages: ["redis-sentinel"] });
    steps.push({
      phase: "services",
      title: "Restart Redis Sentinel",
      commands: ["systemctl enable redis-sentinel", "systemctl restart redis-sentinel"],
      why: `After the Redis hosts run. Sentinel rewrites ${p.sentinelConf} (its id, the replicas and sentinels it found, the primary after a failover): a drift check shows these rewrites, and installing the rendered file again resets them, so do it only to change settings, on every sentinel, then restart them.`,
    });
    const source = has(ctx, "redis") ? p.redisFragment : p.sentinelConf;
    const auth = password ? `${redisCliAuth(source)} ` : "";
    const cli = `${auth}redis-cli -p ${model.redis.sentinel_port}`;
    steps.push({
      phase: "verify",
      title: "Check Redis Sentinel",
      commands: [
        `${cli} sentinel get-master-addr-by-name ${shell(model.redis.master_name)}`,
        `${cli} sentinel ckquorum ${shell(model.redis.master_name)}`,
      ],
      why: `The first prints the primary's address and port (${primaryAddress(model)} ${model.redis.port} until a failover); ckquorum says OK once ${sentinelQuorum(t.sentinels.length)} of the ${t.sentinels.length} sentinels can authorize a failover.`,
    });
  }
  return steps;
}

/** Sentinel rewrites its file with the password unquoted: blanks and quotes cannot survive that. */
function redisSecretIssues(model: Model, secrets: Secrets): ModelIssue[] {
  const password = secrets.redisPassword;
  if (model.topology.sentinels.length === 0 || password === undefined || !SENTINEL_UNSAFE.test(password)) return [];
  return [
    {
      path: "redis.password",
      message:
        "contains a blank or a quote; Redis Sentinel writes `sentinel auth-pass` back unquoted when it rewrites sentinel.conf, which would then fail to load at its next start: use a password without blanks, ' or \"",
    },
  ];
}

export const redisFamily: HostFamily = { files: redisFiles, steps: redisSteps, secretIssues: redisSecretIssues };
