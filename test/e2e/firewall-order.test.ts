/**
 * Issue #9, item 12: enabling the firewall must not strand running services. ufw's rules accept
 * replies by connection tracking (`ctstate RELATED,ESTABLISHED`), and the kernel only tracks
 * connections once a rule needs it: a connection opened before ufw comes up is first seen
 * mid-stream, its next inbound packet counts as NEW, and the default-deny policy drops it. A
 * Celery worker blocked in BRPOP on Redis then never sees another task.
 *
 * Each host of the ha-cluster fixture that takes part (cache1: Redis; worker1: the Celery
 * worker) is a network namespace with its model address, running the real redis-server with
 * its rendered fragment and the real ufw with its rendered script (ufw's files in a private
 * mount namespace). The Celery worker is a stand-in that does what kombu's Redis transport does:
 * one connection, AUTH, then BLPOP on the "celery" list, again after every task.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { pathsOf, unitNames } from "../../src/artifacts/paths.js";
import type { Step } from "../../src/artifacts/steps.js";
import { renderHosts } from "../../src/render.js";
import { loadFixture } from "../helpers/fixtures.js";
import { netnsAvailable, runUfwScript, startNetwork, type NetHost } from "../helpers/netns.js";
import { programsAvailable, sandbox, stopAll, waitFor, type Sandbox, type Server } from "../helpers/programs.js";

const available =
  programsAvailable("firewall order", { "redis-server": "redis-server", "redis-cli": "redis-tools", ufw: "ufw", mount: "mount" }) && netnsAvailable("firewall order");

const fixture = loadFixture("ha-cluster");
const hosts = renderHosts(fixture.model, fixture.sources);
const host = (name: string) => hosts.find((h) => h.ctx.host.name === name)!;
const PASSWORD = fixture.sources.env!.NOVACLOUD_REDIS_PASSWORD!;
const REDIS = host("cache1").ctx.host;
const QUEUE = "celery";

/** The stand-in worker: one connection, AUTH, BLPOP celery 0; prints every reply and blocks again. */
const WORKER_JS = `
const net = require("node:net");
const [host, port] = process.argv.slice(2);
const resp = (...words) => "*" + words.length + "\\r\\n" + words.map((w) => "$" + Buffer.byteLength(w) + "\\r\\n" + w + "\\r\\n").join("");
const socket = net.connect(Number(port), host, () => socket.write(resp("AUTH", process.env.REDIS_PASSWORD) + resp("BLPOP", ${JSON.stringify(QUEUE)}, "0")));
socket.on("data", (data) => {
  process.stdout.write(data.toString("latin1").replace(/\\r\\n/g, " ") + "\\n");
  if (data.includes(${JSON.stringify(QUEUE)})) socket.write(resp("BLPOP", ${JSON.stringify(QUEUE)}, "0"));
});
socket.on("error", (e) => { console.error(String(e)); process.exit(1); });
`;

let box: Sandbox | undefined;

afterEach(async () => {
  await stopAll();
  box?.cleanup();
  box = undefined;
});
afterAll(stopAll);

function file(ctx: HostContext, path: string): string {
  const spec = host(ctx.host.name).files.find((f) => f.path === path);
  if (!spec) throw new Error(`${ctx.host.name} has no ${path}`);
  return spec.content;
}

/** redis-cli on the Redis host itself (loopback), authenticated. */
function redisCli(net: Map<string, NetHost>, ...args: string[]) {
  return net.get("cache1")!.run("redis-cli", ["-h", "127.0.0.1", "-p", String(fixture.model.redis.port), ...args], { env: { ...process.env, REDISCLI_AUTH: PASSWORD } });
}

/** redis-server with cache1's rendered fragment (bind, port, password), data in the sandbox. */
async function startRedis(net: Map<string, NetHost>): Promise<Server> {
  const ctx = host("cache1").ctx;
  const fragment = box!.write("cache1/redis.conf", file(ctx, pathsOf(ctx.model).redisFragment), 0o600);
  const server = net.get("cache1")!.start("redis-server", [fragment, "--dir", box!.path("cache1"), "--daemonize", "no", "--appendonly", "no"]);
  await waitFor("redis-server on cache1", () => {
    if (server.process.exitCode !== null) throw new Error(`redis-server exited:\n${server.output()}`);
    return redisCli(net, "ping").stdout.includes("PONG");
  });
  return server;
}

/** The stand-in Celery worker on worker1, waiting until Redis has it blocked in BLPOP. */
async function startWorker(net: Map<string, NetHost>): Promise<Server> {
  const script = box!.write("worker.cjs", WORKER_JS);
  const worker = net.get("worker1")!.start(process.execPath, [script, REDIS.address, String(fixture.model.redis.port)], { env: { ...process.env, REDIS_PASSWORD: PASSWORD } });
  await waitFor("the worker to block in BLPOP", () => {
    if (worker.process.exitCode !== null) throw new Error(`worker exited:\n${worker.output()}`);
    return redisCli(net, "client", "list").stdout.includes("cmd=blpop");
  });
  return worker;
}

async function firewall(net: Map<string, NetHost>, name: string): Promise<void> {
  const ctx = host(name).ctx;
  const r = await runUfwScript(net.get(name)!, box!, file(ctx, pathsOf(ctx.model).firewallScript));
  expect(r.code, `${name}'s firewall script:\n${r.output}`).toBe(0);
  expect(r.output).toContain("Status: active");
}

/** Queues a task and waits until the worker printed it. */
async function delivered(net: Map<string, NetHost>, worker: Server, task: string): Promise<void> {
  expect(redisCli(net, "rpush", QUEUE, task).code).toBe(0);
  const retrans = net.get("cache1")!.snmp("Tcp", "RetransSegs");
  try {
    await waitFor(`the worker to get ${task}`, () => worker.output().includes(task));
  } catch (error) {
    const now = net.get("cache1")!.snmp("Tcp", "RetransSegs");
    throw new Error(`${(error as Error).message}: Redis retransmitted ${now - retrans} segments to a worker that never got them\n${worker.output()}`);
  }
}

describe.skipIf(!available)("enabling the firewall under running services (ha-cluster: cache1, worker1)", () => {
  it("the failure: a worker connected before its host's firewall comes up never gets the next task", { timeout: 90_000 }, async () => {
    box = sandbox("ncr-fw-");
    const net = await startNetwork([
      { name: "cache1", address: REDIS.address },
      { name: "worker1", address: host("worker1").ctx.host.address },
    ]);
    await startRedis(net);
    const worker = await startWorker(net);
    await firewall(net, "worker1");

    const before = net.get("cache1")!.snmp("Tcp", "RetransSegs");
    expect(redisCli(net, "rpush", QUEUE, "task-lost").code).toBe(0);
    // Redis sent the task; wait until it has resent it twice, unanswered.
    await waitFor("Redis to retransmit the task", () => net.get("cache1")!.snmp("Tcp", "RetransSegs") >= before + 2, 30_000);
    expect(worker.output()).not.toContain("task-lost");
    expect(worker.process.exitCode, "the worker is still blocked, as Celery would be").toBeNull();
    // worker1's ufw dropped it: the reply looked like a new, unsolicited connection to an
    // unopened port, and fell through to the default-deny policy of INPUT.
    const input = net.get("worker1")!.run("iptables", ["-L", "INPUT", "-n", "-v", "-x"]);
    const dropped = Number(/^Chain INPUT \(policy DROP (\d+) packets/.exec(input.stdout)?.[1]);
    expect(dropped, input.output).toBeGreaterThanOrEqual(2);
  });

  it("the runbooks' order: every host's firewall is up before its services start, and the worker gets every task, also after a second run", { timeout: 120_000 }, async () => {
    box = sandbox("ncr-fw-");
    const net = await startNetwork([
      { name: "cache1", address: REDIS.address },
      { name: "worker1", address: host("worker1").ctx.host.address },
    ]);
    const workerUnit = unitNames(fixture.model).worker;
    let worker: Server | undefined;
    // What each step does on these two hosts, when the runbooks are followed top to bottom.
    const actions: Record<string, (step: Step) => Promise<void>> = {
      "cache1/firewall.enable": () => firewall(net, "cache1"),
      "cache1/redis.restart": async () => void (await startRedis(net)),
      "worker1/firewall.enable": () => firewall(net, "worker1"),
      "worker1/systemd.start": async (step) => {
        expect(step.action.kind === "service" && step.action.units.includes(workerUnit)).toBe(true);
        worker = await startWorker(net);
      },
    };
    const done: string[] = [];
    // cache1 first: the worker needs Redis.
    for (const name of ["cache1", "worker1"]) {
      for (const step of host(name).steps) {
        const action = actions[`${name}/${step.id}`];
        if (!action) continue;
        await action(step);
        done.push(`${name}/${step.id}`);
      }
    }
    expect(done.sort()).toEqual(Object.keys(actions).sort());
    await delivered(net, worker!, "task-1");

    // A second run of the runbooks (a model change, an update) runs the firewall scripts again.
    await firewall(net, "cache1");
    await firewall(net, "worker1");
    await delivered(net, worker!, "task-2");
  });
});
