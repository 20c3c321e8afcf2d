/**
 * The rendered Redis files on the installed redis-server 7.0: every redis host's fragment is
 * included at the end of Debian's redis.conf (as the runbook does, with its own commands), moved
 * to a free port on 127.0.0.1 with persistence in the sandbox; replicas follow the primary with
 * the runbook's `replicaof` line; every sentinel host's sentinel.conf (copied into the sandbox,
 * where Sentinel rewrites it) monitors the primary. Checked: no auth -> refused, the password
 * (also read back by the runbook's REDISCLI_AUTH command) -> answered, replication up, the
 * sentinels name the primary, and Sentinel still starts from its own rewrite of the file.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { pathsOf } from "../../src/artifacts/paths.js";
import { flowTable } from "../../src/model/flows.js";
import { redisCliAuth, replicaOfLine } from "../../src/artifacts/redis.js";
import type { Host, Model } from "../../src/model/normalize.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import { fixtureNames, loadFixture } from "../helpers/fixtures.js";
import { freePort, programsAvailable, run, sandbox, startServer, stopAll, waitFor, type Sandbox, type Server } from "../helpers/programs.js";

const available = programsAvailable("Redis lint", { "redis-server": "redis-server", "redis-cli": "redis-tools", bash: "bash", sed: "sed", grep: "grep" });

/** Debian 12's packaged redis.conf when it is installed; a minimal stand-in otherwise. */
function debianRedisConf(): string {
  return existsSync("/etc/redis/redis.conf") ? readFileSync("/etc/redis/redis.conf", "utf8") : "bind 127.0.0.1 -::1\nport 6379\ndaemonize yes\ndir /var/lib/redis\n";
}

interface Deployment {
  readonly label: string;
  readonly model: Model;
  readonly tree: Tree;
  readonly password: string | undefined;
}

function deployments(): Deployment[] {
  const out: Deployment[] = [];
  for (const name of fixtureNames()) {
    const f = loadFixture(name);
    const tree = render(f.model, f.sources);
    const ref = f.model.redis.password;
    const password = ref === undefined ? undefined : typeof ref === "string" ? ref : "env" in ref ? f.sources.env?.[ref.env] : undefined;
    out.push({ label: name, model: f.model, tree, password });
  }
  // ha-sentinel with a password full of characters Sentinel's rewrite keeps ($ ` \ # %, no blanks or quotes).
  const f = loadFixture("ha-sentinel");
  const nasty = "n\\a$ty`#pw%x\\\\$(id)";
  out.push({
    label: "ha-sentinel (nasty password)",
    model: f.model,
    tree: render(f.model, { ...f.sources, env: { ...f.sources.env, NOVACLOUD_REDIS_PASSWORD: nasty } }),
    password: nasty,
  });
  return out.filter((d) => d.model.topology.redis.length > 0);
}

const DEPLOYMENTS = deployments();

/** redis-cli against 127.0.0.1:port, the password (if any) in REDISCLI_AUTH, never on the command line. */
function cli(port: number, password: string | undefined, ...args: string[]) {
  const env = { ...process.env };
  delete env.REDISCLI_AUTH;
  if (password !== undefined) env.REDISCLI_AUTH = password;
  return run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { env });
}

/** Starts a server and waits until it answers (NOAUTH counts) or dies with its own message. */
async function startRedis(args: string[], what: string, port: number): Promise<Server> {
  const server = startServer("redis-server", args);
  await waitFor(`${what} on port ${port}`, () => {
    if (server.process.exitCode !== null) throw new Error(`${what} exited:\n${server.output()}`);
    const r = cli(port, undefined, "ping");
    return /PONG|NOAUTH/.test(r.output);
  });
  return server;
}

/** waitFor, failing with what the program says and the file it read instead of a bare timeout. */
async function waitOrExplain(what: string, check: () => boolean, explain: () => string, timeoutMs?: number): Promise<void> {
  try {
    await waitFor(what, check, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${explain()}`);
  }
}

/** Replaces the one line matching `pattern` (which must exist exactly once) by `line`. */
function replaceLine(text: string, pattern: RegExp, line: string, file: string): string {
  const lines = text.split("\n");
  const hits = lines.filter((l) => pattern.test(l));
  expect(hits.length, `${file}: expected one line matching ${pattern}`).toBe(1);
  return lines.map((l) => (pattern.test(l) ? line : l)).join("\n");
}

/** Runs a runbook command with bash, its paths moved into the sandbox. */
function runbookCommand(command: string, mapping: Record<string, string>) {
  let c = command;
  for (const [from, to] of Object.entries(mapping)) c = c.split(from).join(to);
  return run("bash", ["-c", c]);
}

describe.skipIf(!available)("redis-server 7.0 runs the rendered Redis and Sentinel files", () => {
  let box: Sandbox | undefined;
  afterEach(async () => {
    await stopAll();
    box?.cleanup();
    box = undefined;
  });
  afterAll(stopAll);

  it("covers a fixture with sentinels", () => {
    expect(DEPLOYMENTS.some((d) => d.model.topology.sentinels.length >= 3)).toBe(true);
  });

  it("Sentinel 7.0 writes auth-pass back unquoted, so a password with a blank breaks its next start (why sentinel.conf refuses one)", { timeout: 30_000 }, async () => {
    box = sandbox("ncr-sentinel-");
    const port = await freePort();
    const file = box.write(
      "sentinel.conf",
      `port ${port}\nbind 127.0.0.1\ndir ${box.dir}\nsentinel monitor m 127.0.0.1 ${await freePort()} 1\nsentinel auth-pass m "two words"\n`,
      0o600,
    );
    await startRedis([file, "--sentinel"], "redis-sentinel", port);
    await waitFor("the rewrite", () => readFileSync(file, "utf8").includes("sentinel myid"));
    await stopAll();
    const again = run("redis-server", [file, "--sentinel"], { timeoutMs: 10_000 });
    expect(again.output).toContain("FATAL CONFIG FILE ERROR");
    expect(readFileSync(file, "utf8")).toContain("sentinel auth-pass m two words");
  });

  it("a replicated primary refuses writes until a replica acknowledges, and again once it is gone (ha-sentinel; single-node writes alone)", { timeout: 60_000 }, async () => {
    box = sandbox("ncr-redis-minrep-");
    const sentinel = DEPLOYMENTS.find((d) => d.label === "ha-sentinel")!;
    const single = DEPLOYMENTS.find((d) => d.label === "single-node")!;
    const p = pathsOf(sentinel.model);
    const t = sentinel.model.topology;
    const replicaHost = t.redis.find((h) => h.name !== t.redisPrimary!.name)!;
    /** A host's rendered fragment on a free loopback port, data in the sandbox. */
    const start = async (d: Deployment, host: string, extra: string[] = []) => {
      const path = `${host}${p.redisFragment}`;
      const port = await freePort();
      let fragment = replaceLine(d.tree.get(path)!.content, /^bind /, "bind 127.0.0.1", path);
      fragment = replaceLine(fragment, /^port /, `port ${port}`, path);
      const file = box!.write(`${d.label}-${host}/fragment.conf`, fragment, 0o600);
      const server = await startRedis([file, "--dir", box!.path(`${d.label}-${host}`), ...extra], `redis-server with ${path}`, port);
      return { port, server };
    };

    // The guide's one host has no replica to wait for: it takes writes alone.
    const alone = await start(single, "node1");
    expect(cli(alone.port, single.password, "set", "k", "v").stdout.trim()).toBe("OK");

    const primary = await start(sentinel, t.redisPrimary!.name);
    const refused = cli(primary.port, sentinel.password, "set", "k", "v");
    expect(refused.output, "a primary without a replica took a write").toMatch(/NOREPLICAS/);
    const replica = await start(sentinel, replicaHost.name, ["--replicaof", "127.0.0.1", String(primary.port)]);
    await waitOrExplain(
      "the primary to count its replica as good",
      () => /min_slaves_good_slaves:1/.test(cli(primary.port, sentinel.password, "info", "replication").stdout),
      () => cli(primary.port, sentinel.password, "info", "replication").output,
    );
    expect(cli(primary.port, sentinel.password, "set", "k", "v").stdout.trim()).toBe("OK");
    // The replica goes away (a partition, a crash): writes stop once it has been silent for the lag.
    await replica.server.stop();
    await waitFor("the primary to refuse writes again", () => /NOREPLICAS/.test(cli(primary.port, sentinel.password, "set", "k", "w").output), 30_000);
    expect(cli(primary.port, sentinel.password, "get", "k").stdout.trim()).toBe("v");
  });

  for (const d of DEPLOYMENTS) {
    it(d.label, { timeout: 60_000 }, async () => {
      box = sandbox("ncr-redis-");
      const { model, tree, password } = d;
      const p = pathsOf(model);
      const t = model.topology;
      const ports = new Map<string, number>();
      const servers = new Map<string, Server>();

      // Redis: the primary first, so the replicas have something to follow.
      const ordered: Host[] = [t.redisPrimary!, ...t.redis.filter((h) => h.name !== t.redisPrimary!.name)];
      for (const host of ordered) {
        const fragmentPath = `${host.name}${p.redisFragment}`;
        const rendered = tree.get(fragmentPath)!.content;
        const port = await freePort();
        ports.set(host.name, port);
        const dir = box.path(host.name);
        // bind and port replaced by a loopback-only free port; everything else as rendered.
        let fragment = replaceLine(rendered, /^bind /, "bind 127.0.0.1", fragmentPath);
        fragment = replaceLine(fragment, /^port /, `port ${port}`, fragmentPath);
        const fragmentFile = box.write(`${host.name}/fragment.conf`, fragment, 0o600);
        const mainFile = box.write(`${host.name}/redis.conf`, debianRedisConf(), 0o600);
        // The runbook's own commands: the include line (twice: it must stay one line) and replicaof.
        const map: Record<string, string> = { [p.redisFragment]: fragmentFile, [p.redisConf]: mainFile };
        const includeStep = `grep -qxF 'include ${p.redisFragment}' ${p.redisConf} || echo 'include ${p.redisFragment}' >> ${p.redisConf}`;
        for (let i = 0; i < 2; i++) expect(runbookCommand(includeStep, map).code).toBe(0);
        expect(readFileSync(mainFile, "utf8").split("\n").filter((l) => l === `include ${fragmentFile}`)).toHaveLength(1);
        const replicaOf = replicaOfLine(model, flowTable(model), host);
        if (replicaOf !== undefined) {
          const primaryPort = ports.get(t.redisPrimary!.name)!;
          const line = `replicaof 127.0.0.1 ${primaryPort}`;
          expect(replicaOf).toBe(`replicaof ${t.redisPrimary!.address} ${model.redis.port}`);
          const step = `grep -q -e '^replicaof ' -e '^# Generated by CONFIG REWRITE' ${p.redisConf} || echo '${line}' >> ${p.redisConf}`;
          for (let i = 0; i < 2; i++) expect(runbookCommand(step, map).code).toBe(0);
        }
        // Debian's daemonize/pidfile/logfile/dir point outside the sandbox: overridden on the command line.
        const server = await startRedis(
          [mainFile, "--daemonize", "no", "--dir", dir, "--pidfile", join(dir, "redis.pid"), "--logfile", "", "--supervised", "no"],
          `redis-server with ${fragmentPath}`,
          port,
        );
        servers.set(host.name, server);

        if (password !== undefined) {
          const refused = cli(port, undefined, "ping");
          expect(refused.output, `${fragmentPath}: answered without a password`).toContain("NOAUTH");
          const ok = cli(port, password, "ping");
          expect(ok.output, `${fragmentPath}: the password was refused:\n${ok.output}`).toContain("PONG");
          // The runbook's REDISCLI_AUTH command reads the same password back from the fragment.
          const viaRunbook = runbookCommand(`${redisCliAuth(p.redisFragment)} redis-cli -h 127.0.0.1 -p ${port} ping`, map);
          expect(viaRunbook.output, `${fragmentPath}: runbook's REDISCLI_AUTH did not authenticate`).toContain("PONG");
        } else {
          expect(cli(port, undefined, "ping").output).toContain("PONG");
        }
        if (replicaOf !== undefined) {
          await waitOrExplain(
            `${host.name} to sync from ${t.redisPrimary!.name}`,
            () => /master_link_status:up/.test(cli(port, password, "info", "replication").output),
            () => `${fragmentPath} (masterauth):\n${cli(port, password, "info", "replication").output}\n${servers.get(host.name)!.output()}`,
          );
        }
      }

      // Sentinels, each with its own writable copy of sentinel.conf.
      const primaryPort = ports.get(t.redisPrimary!.name)!;
      const sentinelPorts: number[] = [];
      for (const host of t.sentinels) {
        const confPath = `${host.name}${p.sentinelConf}`;
        const rendered = tree.get(confPath)!.content;
        const port = await freePort();
        sentinelPorts.push(port);
        const dir = box.path(`${host.name}-sentinel`);
        let conf = replaceLine(rendered, /^bind /, "bind 127.0.0.1", confPath);
        conf = replaceLine(conf, /^port /, `port ${port}`, confPath);
        conf = replaceLine(conf, /^pidfile /, `pidfile ${join(dir, "sentinel.pid")}`, confPath);
        conf = replaceLine(conf, /^logfile /, 'logfile ""', confPath);
        conf = replaceLine(conf, /^dir /, `dir ${dir}`, confPath);
        conf = replaceLine(conf, /^daemonize /, "daemonize no", confPath);
        conf = replaceLine(conf, /^sentinel monitor /, conf.split("\n").find((l) => l.startsWith("sentinel monitor "))!.replace(/ \S+ \d+ (\d+)$/, ` 127.0.0.1 ${primaryPort} $1`), confPath);
        const file = box.write(`${host.name}-sentinel/sentinel.conf`, conf, 0o600);
        const sentinel = await startRedis([file, "--sentinel"], `redis-sentinel with ${confPath}`, port);
        if (password !== undefined) expect(cli(port, undefined, "ping").output, `${confPath}: sentinel answered without a password`).toContain("NOAUTH");
        const master = cli(port, password, "sentinel", "get-master-addr-by-name", model.redis.master_name);
        expect(master.stdout.trim().split("\n"), `${confPath}:\n${master.output}`).toEqual(["127.0.0.1", String(primaryPort)]);
        // auth-pass works: Sentinel's INFO of the primary succeeded (it learnt the run id).
        await waitOrExplain(
          `${host.name}'s sentinel to authenticate to the primary (auth-pass)`,
          () => {
            const info = cli(port, password, "sentinel", "master", model.redis.master_name).stdout.split("\n");
            const runid = info[info.indexOf("runid") + 1] ?? "";
            return /^[0-9a-f]{40}$/.test(runid.trim());
          },
          () => `${confPath}:\n${sentinel.output()}\n${servers.get(t.redisPrimary!.name)!.output()}`,
        );
      }

      if (t.sentinels.length > 0) {
        const first = sentinelPorts[0]!;
        if (t.redis.length > 1) {
          await waitOrExplain(
            "the sentinels to discover the replicas",
            () => {
              const replicas = cli(first, password, "sentinel", "replicas", model.redis.master_name).stdout;
              return t.redis.filter((h) => h.name !== t.redisPrimary!.name).every((h) => replicas.includes(String(ports.get(h.name))));
            },
            () => cli(first, password, "sentinel", "replicas", model.redis.master_name).output,
          );
        }
        if (t.sentinels.length > 1) {
          // The sentinels found each other (they AUTH to each other with requirepass).
          await waitOrExplain(
            "the sentinels to see each other",
            () => cli(first, password, "sentinel", "ckquorum", model.redis.master_name).stdout.startsWith("OK"),
            () => `${p.sentinelConf}: ${cli(first, password, "sentinel", "ckquorum", model.redis.master_name).output}`,
            30_000,
          );
        }
        // Sentinel rewrote its file at start; it must load that rewrite too (auth-pass is written back unquoted).
        await stopAll();
        for (const [i, host] of t.sentinels.entries()) {
          const file = box.path(`${host.name}-sentinel`, "sentinel.conf");
          const restarted = startServer("redis-server", [file, "--sentinel"]);
          await waitFor(`${host.name}'s sentinel to start from its rewritten config`, () => {
            if (restarted.process.exitCode !== null) throw new Error(`${host.name}${p.sentinelConf} after Sentinel's rewrite:\n${restarted.output()}\n${readFileSync(file, "utf8")}`);
            return cli(sentinelPorts[i]!, password, "ping").output.includes("PONG");
          });
          if (password !== undefined) {
            // The runbook reads the sentinel password from sentinel.conf on sentinel-only hosts, after rewrites too.
            const viaRunbook = runbookCommand(`${redisCliAuth(p.sentinelConf)} redis-cli -h 127.0.0.1 -p ${sentinelPorts[i]} ping`, { [p.sentinelConf]: file });
            expect(viaRunbook.output, `${host.name}${p.sentinelConf}: runbook's REDISCLI_AUTH after Sentinel's rewrite`).toContain("PONG");
          }
        }
      }
    });
  }
});
