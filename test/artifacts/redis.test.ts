/**
 * The Redis family (errata section 10, RD-01/02): the fragment and sentinel.conf read back the
 * way Redis reads them (sdssplitargs), checked against the topology, the version gates and the
 * app's .env (every address the app uses must be bound, the master name and password must
 * agree); Sentinel's quorum; modes and owners; the runbook never puts the password on a
 * command line.
 */
import { stepLines, stepPackages } from "../../src/artifacts/steps.js";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { redisFamily, replicaOfLine, sentinelQuorum } from "../../src/artifacts/redis.js";
import { parseSecretsFile } from "../../src/node/files.js";
import { parseModel } from "../../src/model/parse.js";
import { parse as parseToml } from "smol-toml";
import { UnsafeValueError } from "../../src/quote.js";
import { secretForms } from "../../src/redact.js";
import { contextOf, fixtureContexts, fixtureNames, loadFixture } from "../helpers/fixtures.js";


/** Redis' sdssplitargs: blanks separate; "..." with \\ \" \n \xHH escapes; '...' with \' only. */
function splitArgs(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++;
    if (i >= line.length) break;
    let arg = "";
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw new Error(`unbalanced quotes: ${line}`);
        const c = line[i]!;
        if (c === "\\" && line[i + 1] === "x" && /^[0-9a-f]{2}$/i.test(line.slice(i + 2, i + 4))) {
          arg += String.fromCharCode(parseInt(line.slice(i + 2, i + 4), 16));
          i += 4;
        } else if (c === "\\" && i + 1 < line.length) {
          const n = line[i + 1]!;
          arg += { n: "\n", r: "\r", t: "\t", b: "\b", a: "\x07" }[n] ?? n;
          i += 2;
        } else if (c === '"') {
          i++;
          if (i < line.length && !/\s/.test(line[i]!)) throw new Error(`closing quote must be followed by a space: ${line}`);
          break;
        } else {
          arg += c;
          i++;
        }
      }
    } else if (line[i] === "'") {
      i++;
      for (;;) {
        if (i >= line.length) throw new Error(`unbalanced quotes: ${line}`);
        if (line[i] === "\\" && line[i + 1] === "'") {
          arg += "'";
          i += 2;
        } else if (line[i] === "'") {
          i++;
          break;
        } else arg += line[i++];
      }
    } else {
      while (i < line.length && !/\s/.test(line[i]!)) arg += line[i++];
    }
    args.push(arg);
  }
  return args;
}

/** A redis.conf / sentinel.conf as directives (comments and blank lines dropped). */
function directives(text: string): string[][] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"))
    .map(splitArgs);
}

function one(ds: string[][], ...prefix: string[]): string[] {
  const hits = ds.filter((d) => prefix.every((p, i) => d[i] === p));
  if (hits.length !== 1) throw new Error(`expected one ${prefix.join(" ")}, found ${hits.length}`);
  return hits[0]!.slice(prefix.length);
}

function has(ds: string[][], ...prefix: string[]): boolean {
  return ds.some((d) => prefix.every((p, i) => d[i] === p));
}

function fragment(ctx: HostContext) {
  return redisFamily.files(ctx).find((f) => f.path === pathsOf(ctx.model).redisFragment);
}

function sentinel(ctx: HostContext) {
  return redisFamily.files(ctx).find((f) => f.path === pathsOf(ctx.model).sentinelConf);
}

function envOf(ctx: HostContext): Record<string, string> {
  const env = appFamily.files(ctx).find((f) => f.path === ctx.model.project.envFile)!;
  return parseSecretsFile(env.content, env.path);
}

/** Does a bind list (with Redis' "-" prefix for optional addresses) cover `address`? */
function binds(bind: string[], address: string): boolean {
  return bind.some((b) => b.replace(/^-/, "") === address);
}

const ALL = fixtureNames().flatMap((name) => (loadFixture(name).model.topology.hosts.length > 0 ? fixtureContexts(name).map((ctx) => ({ name, ctx })) : []));

describe("Redis family", () => {
  it("gives redis hosts the fragment and sentinel hosts sentinel.conf, with the right owners", () => {
    for (const { name, ctx } of ALL) {
      const where = `${name}/${ctx.host.name}`;
      const frag = fragment(ctx);
      const sent = sentinel(ctx);
      expect(frag !== undefined, where).toBe(ctx.host.roles.has("redis"));
      expect(sent !== undefined, where).toBe(ctx.host.roles.has("redis-sentinel"));
      expect(redisFamily.files(ctx).length, where).toBe(Number(frag !== undefined) + Number(sent !== undefined));
      if (frag) {
        expect(frag, where).toMatchObject(
          ctx.secrets.redisPassword !== undefined ? { mode: 0o640, owner: "root", group: "redis" } : { mode: 0o644 },
        );
        expect(frag.content.startsWith("# Generated by novacloud-render")).toBe(true);
      }
      if (sent) expect(sent, where).toMatchObject({ mode: 0o640, owner: "redis", group: "redis" });
    }
  });

  it("binds loopback only when no other host connects, never 0.0.0.0 (RD-01)", () => {
    for (const { name, ctx } of ALL) {
      const frag = fragment(ctx);
      if (!frag) continue;
      const d = directives(frag.content);
      const bind = one(d, "bind");
      const t = ctx.model.topology;
      const remote = t.redis.length > 1 || [...t.django, ...t.sentinels].some((h) => h.name !== ctx.host.name);
      expect(bind, `${name}/${ctx.host.name}`).toEqual(["127.0.0.1", "-::1", ...(remote ? [ctx.host.address] : [])]);
      expect(one(d, "protected-mode")).toEqual(["yes"]);
      expect(one(d, "port")).toEqual([String(ctx.model.redis.port)]);
      expect(one(d, "appendonly")).toEqual(["yes"]);
      // The rules make a password required as soon as another host connects.
      if (remote) expect(one(d, "requirepass")).toEqual([ctx.secrets.redisPassword]);
    }
  });

  it("writes the password so redis-server reads back exactly the secret (nasty options fixture)", () => {
    const ctx = contextOf(fixtureContexts("options"), "iot1");
    const d = directives(fragment(ctx)!.content);
    expect(one(d, "requirepass")).toEqual([ctx.secrets.redisPassword]);
    expect(ctx.secrets.redisPassword).toMatch(/["'$`#% ]/);
    const none = contextOf(fixtureContexts("minimal"), "server");
    expect(has(directives(fragment(none)!.content), "requirepass")).toBe(false);
  });

  it("agrees with the app's .env: every address it connects to is bound, same port, password and master", () => {
    for (const { name, ctx } of ALL) {
      if (!ctx.model.topology.django.some((h) => h.name === ctx.host.name)) continue;
      const env = envOf(ctx);
      const ctxs = fixtureContexts(name);
      const t = ctx.model.topology;
      const where = `${name}: .env of ${ctx.host.name}`;
      expect(env.REDIS_PASSWORD, where).toBe(ctx.secrets.redisPassword);
      for (const url of env.REDIS_URL!.split(";")) {
        const u = new URL(url);
        const password = u.password === "" ? undefined : decodeURIComponent(u.password);
        const addr = u.hostname;
        // The host behind that address, as seen from this app host.
        const target = addr === "127.0.0.1" ? ctx.host : t.hosts.find((h) => h.address === addr)!;
        const targetCtx = contextOf(ctxs, target.name);
        if (u.protocol === "sentinel:") {
          const d = directives(sentinel(targetCtx)!.content);
          expect(binds(one(d, "bind"), addr), `${where}: sentinel ${target.name} does not bind ${addr}`).toBe(true);
          expect(one(d, "port"), where).toEqual([u.port]);
          expect(one(d, "requirepass"), where).toEqual([password]);
          expect(one(d, "sentinel", "monitor")[0], where).toBe(env.REDIS_SENTINEL_MASTER);
        } else {
          const d = directives(fragment(targetCtx)!.content);
          expect(binds(one(d, "bind"), addr), `${where}: redis ${target.name} does not bind ${addr}`).toBe(true);
          expect(one(d, "port"), where).toEqual([u.port]);
          if (password === undefined) expect(has(d, "requirepass"), where).toBe(false);
          else expect(one(d, "requirepass"), where).toEqual([password]);
        }
      }
    }
  });

  it("monitors the primary at its private address with a majority quorum, on every sentinel", () => {
    const ctxs = fixtureContexts("ha-sentinel");
    const primary = contextOf(ctxs, "data1").host;
    expect(sentinelQuorum(3)).toBe(2);
    expect(sentinelQuorum(4)).toBe(3);
    expect(sentinelQuorum(5)).toBe(3);
    for (const name of ["arbiter", "data1", "data2"]) {
      const ctx = contextOf(ctxs, name);
      const d = directives(sentinel(ctx)!.content);
      const master = ctx.model.redis.master_name;
      // The app gets this address from Sentinel, so it is the private one even on data1 itself.
      expect(one(d, "sentinel", "monitor"), name).toEqual([master, primary.address, String(ctx.model.redis.port), "2"]);
      expect(one(d, "sentinel", "auth-pass", master)).toEqual([ctx.secrets.redisPassword]);
      expect(one(d, "requirepass")).toEqual([ctx.secrets.redisPassword]);
      expect(one(d, "sentinel", "parallel-syncs", master)).toEqual(["1"]);
      expect(Number(one(d, "sentinel", "down-after-milliseconds", master)[0])).toBeGreaterThan(0);
      expect(Number(one(d, "sentinel", "failover-timeout", master)[0])).toBeGreaterThan(0);
      expect(one(d, "sentinel", "resolve-hostnames")).toEqual(["no"]);
      expect(one(d, "bind")).toEqual(["127.0.0.1", "-::1", ctx.host.address]);
      expect(one(d, "port")).toEqual([String(ctx.model.redis.sentinel_port)]);
    }
  });

  it("starts replicas with masterauth everywhere and replicaof in redis.conf, not in the fragment", () => {
    const ctxs = fixtureContexts("ha-sentinel");
    for (const name of ["data1", "data2"]) {
      const d = directives(fragment(contextOf(ctxs, name))!.content);
      expect(one(d, "masterauth"), name).toEqual([contextOf(ctxs, name).secrets.redisPassword]);
      expect(has(d, "replicaof") || has(d, "slaveof"), name).toBe(false);
    }
    const data1 = contextOf(ctxs, "data1");
    const data2 = contextOf(ctxs, "data2");
    expect(replicaOfLine(data1.model, data1.flows, data1.host)).toBeUndefined();
    expect(replicaOfLine(data2.model, data2.flows, data2.host)).toBe(`replicaof ${data1.host.address} ${data2.model.redis.port}`);
    const p = pathsOf(data2.model);
    const files = redisFamily.steps!(data2).filter((s) => s.phase === "files").flatMap((s) => stepLines(s));
    expect(files).toEqual([
      `grep -qxF 'include ${p.redisFragment}' ${p.redisConf} || echo 'include ${p.redisFragment}' >> ${p.redisConf}`,
      `grep -q -e '^replicaof ' -e '^# Generated by CONFIG REWRITE' ${p.redisConf} || echo 'replicaof ${data1.host.address} 6379' >> ${p.redisConf}`,
    ]);
    // Run on a copy: it adds the line to Debian's file once, and never to a file Redis has
    // rewritten (a replica Sentinel promoted has no replicaof line; adding one demotes it).
    const dir = mkdtempSync(join(tmpdir(), "ncr-replicaof-"));
    try {
      const conf = join(dir, "redis.conf");
      const step = files[1]!.split(p.redisConf).join(conf);
      const run = () => spawnSync("bash", ["-c", step]).status;
      writeFileSync(conf, "bind 127.0.0.1\n");
      run();
      run();
      expect(readFileSync(conf, "utf8")).toBe(`bind 127.0.0.1\nreplicaof ${data1.host.address} 6379\n`);
      const promoted = "bind 127.0.0.1\n# Generated by CONFIG REWRITE\nsave 3600 1\n";
      writeFileSync(conf, promoted);
      run();
      expect(readFileSync(conf, "utf8")).toBe(promoted);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // A single redis host has no replication settings.
    const single = directives(fragment(contextOf(fixtureContexts("ha-cluster"), "cache1"))!.content);
    expect(has(single, "masterauth")).toBe(false);
  });

  it("makes every member of a replicated Redis refuse writes without a replica, within the sentinels' down-after time (issue #9 item 13)", () => {
    for (const { name, ctx } of ALL) {
      const f = fragment(ctx);
      if (!f) continue;
      const d = directives(f.content);
      const replicated = ctx.model.topology.redis.length > 1;
      expect(has(d, "min-replicas-to-write"), `${name}/${ctx.host.name}`).toBe(replicated);
      if (!replicated) continue;
      expect(one(d, "min-replicas-to-write")).toEqual(["1"]);
      // No later than the sentinels start failing the primary over.
      const downAfter = Number(one(directives(sentinel(contextOf(fixtureContexts(name), ctx.model.topology.sentinels[0]!.name))!.content), "sentinel", "down-after-milliseconds", ctx.model.redis.master_name)[0]);
      expect(Number(one(d, "min-replicas-max-lag")[0]) * 1000).toBe(downAfter);
      // Two Redis hosts: the file says what the setting costs.
      expect(/either one is down/.test(f.content)).toBe(ctx.model.topology.redis.length === 2);
    }
  });

  it("asks the version gates: Redis 6.0 gets no '-' bind prefix and no resolve-hostnames", () => {
    const ctxs = fixtureContexts("ha-sentinel", (raw) => (raw.platform.distribution = "ubuntu-22.04"));
    const ctx = contextOf(ctxs, "data1");
    expect(ctx.model.versions.redis.startsWith("6.0")).toBe(true);
    expect(one(directives(fragment(ctx)!.content), "bind")).toEqual(["127.0.0.1", "::1", ctx.host.address]);
    const d = directives(sentinel(ctx)!.content);
    expect(one(d, "bind")).toEqual(["127.0.0.1", "::1", ctx.host.address]);
    expect(has(d, "sentinel", "resolve-hostnames")).toBe(false);
    expect(has(d, "sentinel", "announce-hostnames")).toBe(false);
  });

  it("refuses a Sentinel password that Sentinel's own rewrite would break, without echoing it", () => {
    const password = "has blank";
    const ctxs = fixtureContexts("ha-sentinel", undefined, { NOVACLOUD_REDIS_PASSWORD: password });
    let error: unknown;
    try {
      redisFamily.files(contextOf(ctxs, "arbiter"));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UnsafeValueError);
    expect((error as Error).message).toMatch(/auth-pass/);
    expect((error as Error).message).not.toContain(password);
    // Without sentinels the same password is fine: redis-server quotes it on CONFIG REWRITE.
    expect(() => redisFamily.files(contextOf(fixtureContexts("ha-cluster", undefined, { NOVACLOUD_REDIS_PASSWORD: password }), "cache1"))).not.toThrow();
  });

  it("installs the packages, includes the fragment once and verifies with REDISCLI_AUTH, never -a", () => {
    const ctx = contextOf(fixtureContexts("ha-sentinel"), "arbiter");
    const steps = redisFamily.steps!(ctx);
    expect(steps.flatMap(stepPackages)).toEqual(["redis-sentinel"]);
    const p = pathsOf(ctx.model);
    const verify = steps.filter((s) => s.phase === "verify").flatMap((s) => stepLines(s));
    expect(verify.length).toBeGreaterThan(0);
    // A sentinel-only host reads the password from sentinel.conf.
    for (const c of verify) expect(c).toContain(`REDISCLI_AUTH="$(sed -n 's/^requirepass "\\(.*\\)"$/\\1/p' ${p.sentinelConf}`);
    expect(verify.some((c) => c.includes(`sentinel get-master-addr-by-name ${ctx.model.redis.master_name}`))).toBe(true);

    const data1 = redisFamily.steps!(contextOf(fixtureContexts("ha-sentinel"), "data1"));
    expect(data1.flatMap(stepPackages).sort()).toEqual(["redis-sentinel", "redis-server"]);
    for (const { name, ctx: c } of ALL) {
      const all = redisFamily.steps!(c).flatMap((s) => stepLines(s));
      for (const command of all) expect(command, name).not.toMatch(/redis-cli(\s+\S+)*\s+-a\s/);
      const forms = Object.values(c.secrets).filter((s): s is string => s !== undefined).flatMap(secretForms);
      const text = JSON.stringify(redisFamily.steps!(c));
      for (const form of forms) expect(text.includes(form), `${name}/${c.host.name}: a secret in the runbook`).toBe(false);
      for (const f of redisFamily.files(c)) {
        if ((f.mode & 0o004) === 0) continue;
        for (const form of forms) expect(f.content.includes(form), `${name}/${c.host.name}${f.path}`).toBe(false);
      }
    }
  });
});

describe("two Redis hosts (found by the fleet test bed)", () => {
  const raw = (name: string) => parseToml(readFileSync(loadFixture(name).modelPath, "utf8")) as Record<string, any>;
  const redisWarnings = (model: Record<string, any>) => {
    const parsed = parseModel(model);
    if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
    return parsed.warnings.filter((w) => w.message.includes('role "redis"'));
  };

  it("warn that a failover keeps only reads: each member refuses writes while the other is down", () => {
    const warnings = redisWarnings(raw("ha-sentinel"));
    expect(warnings.map((w) => w.path)).toEqual(["hosts"]);
    expect(warnings[0]!.message).toMatch(/^two hosts have the role "redis" \(data1 and data2\): .*min-replicas-to-write 1.*give a third host the role "redis"/);
  });

  it("a third Redis host, or a single one, is not warned about", () => {
    const three = raw("ha-sentinel");
    three.hosts.arbiter.roles = ["redis-sentinel", "redis"];
    expect(redisWarnings(three)).toEqual([]);
    for (const name of ["single-node", "ha-cluster", "fleet"]) expect(redisWarnings(raw(name)), name).toEqual([]);
  });
});
