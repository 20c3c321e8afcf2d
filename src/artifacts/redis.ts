/**
 * Redis and Sentinel (errata section 10, RD-01/02): a fragment included at the end of Debian's
 * /etc/redis/redis.conf on redis hosts (bind, password, replication), the whole sentinel.conf on
 * sentinel hosts, and the hand steps. The app's side (.env: REDIS_URL, the sentinels and the
 * master name) is in app.ts; both read the same model values and topology, so they agree.
 */
import type { ModelIssue } from "../model/errors.js";
import { flowsTo, type FlowTable } from "../model/flows.js";
import type { Host, Model } from "../model/normalize.js";
import type { Secrets } from "../model/secrets.js";
import { shell, UnsafeValueError } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import { restartUnit } from "./effects.js";
import type { Step } from "./steps.js";

/** Sentinel timings (sentinel.conf(5) defaults are 30000 and 180000: slow for a small cluster). */
export const SENTINEL_DOWN_AFTER_MS = 5000;
export const SENTINEL_FAILOVER_TIMEOUT_MS = 60000;

/**
 * A primary refuses writes unless this many replicas acknowledged within MIN_REPLICAS_MAX_LAG_S
 * (replicas acknowledge every second). Without it a primary cut off from the others, or one
 * restarting after the sentinels promoted another member while it was down, takes writes for
 * seconds that are lost when it rejoins as a replica (redis.conf, "min-replicas-to-write"; the
 * Sentinel documentation's partition example uses 1 and 10 s).
 */
export const MIN_REPLICAS_TO_WRITE = 1;
/**
 * The sentinels' down-after time: a primary stops taking writes once its replicas have been
 * silent as long as the sentinels wait before they start a failover, not later.
 */
export const MIN_REPLICAS_MAX_LAG_S = SENTINEL_DOWN_AFTER_MS / 1000;

/** Sentinels that must agree the primary is down: a majority of them. */
export function sentinelQuorum(sentinels: number): number {
  return Math.floor(sentinels / 2) + 1;
}

/**
 * The primary's address as the other hosts know it. Sentinel hands this address to the app, so it
 * is the private address whenever the primary listens there, even for a sentinel on the same host.
 */
function primaryAddress(model: Model, flows: FlowTable): string {
  const primary = model.topology.redisPrimary!;
  return flowsTo(flows, primary, "redis").length > 0 ? primary.address : "127.0.0.1";
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

/** Why `password` cannot be Sentinel's, or undefined when it can (one message: the model rule's and the quoting wall's). */
function sentinelPasswordProblem(password: string): string | undefined {
  return SENTINEL_UNSAFE.test(password)
    ? "contains a blank or a quote; Redis Sentinel writes `sentinel auth-pass` back unquoted when it rewrites sentinel.conf, which would then fail to load at its next start: use a password without blanks, ' or \""
    : undefined;
}

/** The second wall behind redisSecretIssues: sentinel.conf never gets such a password. */
export function assertSentinelPassword(password: string): string {
  const problem = sentinelPasswordProblem(password);
  if (problem !== undefined) throw new UnsafeValueError("sentinel.conf", `redis.password ${problem}`);
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
export function replicaOfLine(model: Model, flows: FlowTable, host: Host): string | undefined {
  const primary = model.topology.redisPrimary;
  if (!primary || primary.name === host.name || !host.roles.has("redis")) return undefined;
  return `replicaof ${primaryAddress(model, flows)} ${model.redis.port}`;
}

function fragmentView(ctx: HostContext) {
  const { model, host, secrets } = ctx;
  const t = model.topology;
  // Loopback only, unless another host connects (a flow reaches this host's Redis).
  const reachable = flowsTo(ctx.flows, host, "redis").length > 0;
  const replicated = t.redis.length > 1;
  return {
    redisConf: ctx.paths.redisConf,
    bind: bindAddresses(model, host, reachable).join(" "),
    reachable,
    port: model.redis.port,
    password: secrets.redisPassword,
    replicated,
    primary: t.redisPrimary!.name,
    // Every member gets masterauth: after a failover the old primary becomes a replica of the new one.
    masterauth: replicated && secrets.redisPassword !== undefined,
    // Every member: any of them may be the primary after a failover.
    minReplicas: replicated ? { toWrite: MIN_REPLICAS_TO_WRITE, maxLag: MIN_REPLICAS_MAX_LAG_S, members: t.redis.length } : undefined,
  };
}

function sentinelView(ctx: HostContext) {
  const { model, host, secrets } = ctx;
  const t = model.topology;
  return {
    caps: model.caps.redis,
    port: model.redis.sentinel_port,
    bind: bindAddresses(model, host, flowsTo(ctx.flows, host, "sentinel").length > 0).join(" "),
    password: secrets.redisPassword === undefined ? undefined : assertSentinelPassword(secrets.redisPassword),
    masterName: model.redis.master_name,
    primary: { name: t.redisPrimary!.name, address: primaryAddress(model, ctx.flows), port: model.redis.port },
    quorum: sentinelQuorum(t.sentinels.length),
    sentinels: t.sentinels.length,
    downAfter: SENTINEL_DOWN_AFTER_MS,
    failoverTimeout: SENTINEL_FAILOVER_TIMEOUT_MS,
  };
}

function redisFiles(ctx: HostContext): FileSpec[] {
  const paths = ctx.paths;
  const files: FileSpec[] = [];
  if (has(ctx, "redis")) {
    const secret = ctx.secrets.redisPassword !== undefined;
    files.push(
      templateFile(paths.redisFragment, "redis/fragment.conf.njk", fragmentView(ctx), {
        comment: "#",
        // redis-server runs as redis and reads it; with a password only root and redis may.
        ...(secret ? { mode: MODE.groupSecret, owner: "root", group: "redis", secret: true } : {}),
      }),
    );
  }
  if (has(ctx, "redis-sentinel")) {
    // Sentinel rewrites this file (Debian: dpkg-statoverride redis redis 0640), so redis owns it.
    files.push(templateFile(paths.sentinelConf, "redis/sentinel.conf.njk", sentinelView(ctx), { comment: "#", mode: MODE.groupSecret, owner: "redis", group: "redis", secret: ctx.secrets.redisPassword !== undefined }));
  }
  return files;
}

function redisSteps(ctx: HostContext): Step[] {
  const { model } = ctx;
  const paths = ctx.paths;
  const t = model.topology;
  const password = ctx.secrets.redisPassword !== undefined;
  const steps: Step[] = [];
  if (has(ctx, "redis")) {
    const include = `include ${paths.redisFragment}`;
    steps.push({ id: "redis.package", phase: "packages", title: "Redis", action: { kind: "packages", packages: ["redis-server"] } });
    steps.push({
      id: "redis.include",
      phase: "files",
      title: "Include the project's Redis settings",
      action: { kind: "commands", commands: [{ run: `echo ${shell(include)} >> ${shell(paths.redisConf)}`, unless: `grep -qxF ${shell(include)} ${shell(paths.redisConf)}` }] },
      effects: [restartUnit("redis-server")],
      why: `Appended once at the end of Debian's ${paths.redisConf}, so the fragment's bind, port and password override the packaged defaults. CONFIG REWRITE (run by Sentinel after a failover) keeps include lines and writes what it changes after them.`,
    });
    const replicaOf = replicaOfLine(model, ctx.flows, ctx.host);
    if (replicaOf !== undefined) {
      steps.push({
        id: "redis.replicaof",
        phase: "files",
        title: `Start this Redis as a replica of ${t.redisPrimary!.name}`,
        // Skipped once Redis has rewritten the file (CONFIG REWRITE, which Sentinel runs when it
        // reconfigures or promotes this host, heads what it writes with this comment: redis
        // src/config.c, CONFIG_REWRITE_SIGNATURE): a promoted replica has no replicaof line, and
        // adding one would demote the new primary (the fleet saw a re-run of the playbook do it).
        action: {
          kind: "commands",
          commands: [
            {
              run: `echo ${shell(replicaOf)} >> ${shell(paths.redisConf)}`,
              unless: `grep -q -e '^replicaof ' -e '^# Generated by CONFIG REWRITE' ${shell(paths.redisConf)}`,
            },
          ],
        },
        effects: [restartUnit("redis-server")],
        why: `Only when setting the host up: not once Redis has rewritten ${paths.redisConf} (CONFIG REWRITE). The line goes after the include, where Sentinel's CONFIG REWRITE maintains it from then on (it removes it on a replica it promotes, and a later run must not add it back); in the fragment it would survive a failover and demote the new primary at its next restart.`,
      });
    }
    steps.push({
      id: "redis.restart",
      phase: "services",
      title: "Restart Redis",
      action: { kind: "service", units: ["redis-server"], enable: true, state: "restarted" },
      after: t.redis.length > 1 && t.redisPrimary!.name !== ctx.host.name ? [{ host: t.redisPrimary!.name, id: "redis.restart" }] : [],
      why: "bind and port take effect only at a restart." + (t.redis.length > 1 ? ` Restart ${t.redisPrimary!.name} (the primary) first.` : ""),
    });
    const cli = `redis-cli -p ${model.redis.port}`;
    const verify = password
      ? [`${cli} ping   # NOAUTH Authentication required.`, `${redisCliAuth(paths.redisFragment)} ${cli} ping   # PONG`]
      : [`${cli} ping   # PONG`];
    if (t.redis.length > 1) verify.push(`${password ? `${redisCliAuth(paths.redisFragment)} ` : ""}${cli} info replication   # role; master_link_status:up on a replica, min_slaves_good_slaves:1 or more on the primary`);
    steps.push({
      id: "redis.check",
      phase: "verify",
      title: "Check Redis",
      action: { kind: "check", commands: verify },
      ...(password
        ? { why: "Without the password Redis refuses; with it, it answers. The password goes to redis-cli in REDISCLI_AUTH, read from the fragment for this one command: never -a, which every user sees in ps." }
        : {}),
    });
  }
  if (has(ctx, "redis-sentinel")) {
    steps.push({ id: "redis.sentinel-package", phase: "packages", title: "Redis Sentinel", action: { kind: "packages", packages: ["redis-sentinel"] } });
    steps.push({
      id: "redis.sentinel-restart",
      phase: "services",
      title: "Restart Redis Sentinel",
      action: { kind: "service", units: ["redis-sentinel"], enable: true, state: "restarted" },
      // Sentinel finds the primary and its replicas once they run.
      after: t.redis.map((r) => ({ host: r.name, id: "redis.restart" })),
      why: `After the Redis hosts run. Sentinel rewrites ${paths.sentinelConf} (its id, the replicas and sentinels it found, the primary after a failover): a drift check shows these rewrites, and installing the rendered file again resets them, so do it only to change settings, on every sentinel, then restart them.`,
    });
    const source = has(ctx, "redis") ? paths.redisFragment : paths.sentinelConf;
    const auth = password ? `${redisCliAuth(source)} ` : "";
    const cli = `${auth}redis-cli -p ${model.redis.sentinel_port}`;
    steps.push({
      id: "redis.sentinel-check",
      phase: "verify",
      title: "Check Redis Sentinel",
      action: {
        kind: "check",
        commands: [`${cli} sentinel get-master-addr-by-name ${shell(model.redis.master_name)}`, `${cli} sentinel ckquorum ${shell(model.redis.master_name)}`],
      },
      why: `The first prints the primary's address and port (${primaryAddress(model, ctx.flows)} ${model.redis.port} until a failover); ckquorum says OK once ${sentinelQuorum(t.sentinels.length)} of the ${t.sentinels.length} sentinels can authorize a failover.`,
    });
  }
  return steps;
}

/** Sentinel rewrites its file with the password unquoted: blanks and quotes cannot survive that. */
function redisSecretIssues(model: Model, secrets: Secrets): ModelIssue[] {
  const password = secrets.redisPassword;
  const problem = model.topology.sentinels.length === 0 || password === undefined ? undefined : sentinelPasswordProblem(password);
  return problem === undefined ? [] : [{ path: "redis.password", message: problem }];
}

export const redisFamily: HostFamily = { name: "redis", files: redisFiles, steps: redisSteps, secretIssues: redisSecretIssues };
