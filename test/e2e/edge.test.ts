/**
 * The edge with a real Django app (test/reference-app: production settings, SECURE_SSL_REDIRECT
 * included) behind the rendered nginx and HAProxy, every server started from the rendered files
 * on the loopback addresses the model gives the hosts:
 *   - HAProxy's health checks reach the app as a user's request would and get its 200, so every
 *     server is UP and users get the app (issue #9 item 2: with only a Host header the app
 *     answered 301, every server went DOWN,L7STS and users got 503);
 *   - be_ws is checked through daphne: with daphne stopped its server goes DOWN while be_web
 *     stays UP (item 3: the check went to gunicorn, so a dead daphne stayed UP);
 *   - a client that sends its own X-Forwarded-For does not become the client the app sees,
 *     under gunicorn or daphne, through HAProxy and nginx or through a public nginx alone (item 4).
 * The client connects from 127.0.0.55, an address no host has, so the address the app reports
 * can only be the client's if the proxies passed it on.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseModel } from "../../src/model/parse.js";
import type { Model } from "../../src/model/normalize.js";
import { render } from "../../src/render.js";
import type { Tree } from "../../src/tree.js";
import {
  curl,
  describeServers,
  EDGE_PROGRAMS,
  haproxyServers,
  installApp,
  manage,
  REFERENCE_APP_MODULE,
  startDaphne,
  startGunicorn,
  startHaproxy,
  startNginx,
  type App,
} from "../helpers/edge.js";
import { freePort, programsAvailable, sandbox, selfSignedCertificate, stopAll, waitFor, type Sandbox, type Server } from "../helpers/programs.js";

const available = programsAvailable("edge end-to-end (Django behind nginx and HAProxy)", EDGE_PROGRAMS);

const DOMAIN = "iot.example.com";
const CLIENT = "127.0.0.55";
const SPOOFED = "6.6.6.6";
const SECRETS = {
  EDGE_DB_PASSWORD: "edge-db-password",
  EDGE_REDIS_PASSWORD: "edge-redis-password",
  EDGE_MQTT_PASSWORD: "edge-mqtt-password",
  // check --deploy wants 50+ characters, 5+ distinct ones, no django-insecure- prefix.
  EDGE_SECRET_KEY: "reference-app-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
};

const names = ["http", "https", "backend", "gunicorn", "daphne", "stats", "acme", "singleHttp", "singleHttps"] as const;
type Ports = Record<(typeof names)[number], number>;

/**
 * The lb at 127.0.0.1 (HAProxy's connections to a node come from there, which nginx's
 * set_real_ip_from must match), one web host with gunicorn and daphne at 127.0.0.11, the data
 * services elsewhere (not started: these views need none). Or the whole site on one host.
 */
function modelOf(ports: Ports, shape: "lb" | "single"): Model {
  const hosts =
    shape === "lb"
      ? {
          lb: { address: "127.0.0.1", roles: ["lb"] },
          web1: { address: "127.0.0.11", roles: ["web", "app", "asgi"] },
          data: { address: "127.0.0.12", roles: ["db", "redis", "mqtt"] },
        }
      : { node: { address: "127.0.0.21", roles: ["web", "app", "asgi", "db", "redis", "mqtt"] } };
  const parsed = parseModel({
    project: { django_module: REFERENCE_APP_MODULE },
    site: {
      domain: DOMAIN,
      tls: { mode: "files", certificate: "/etc/ssl/edge/fullchain.pem", key: "/etc/ssl/edge/privkey.pem" },
      ipv6: false,
      http_port: shape === "lb" ? ports.http : ports.singleHttp,
      https_port: shape === "lb" ? ports.https : ports.singleHttps,
    },
    hosts,
    gunicorn: { port: ports.gunicorn, workers: 2 },
    daphne: { port: ports.daphne },
    postgres: { password: { env: "EDGE_DB_PASSWORD" } },
    redis: { password: { env: "EDGE_REDIS_PASSWORD" } },
    mqtt: { password: { env: "EDGE_MQTT_PASSWORD" } },
    django: { secret_key: { env: "EDGE_SECRET_KEY" } },
    haproxy: { backend_port: ports.backend, stats_port: ports.stats, acme_port: ports.acme },
  });
  if (!parsed.ok) throw new Error(parsed.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  return parsed.model;
}

let box: Sandbox;
let ports: Ports;
let lbModel: Model;
let singleModel: Model;
let lbTree: Tree;
let singleTree: Tree;
let cert: { cert: string; key: string };
let app: App;
let daphne: Server;
let haproxy: Server;

beforeAll(async () => {
  if (!available) return;
  box = sandbox("ncr-edge-");
  const picked = new Set<number>();
  ports = {} as Ports;
  for (const name of names) {
    let port = await freePort();
    while (picked.has(port)) port = await freePort();
    picked.add(port);
    ports[name] = port;
  }
  lbModel = modelOf(ports, "lb");
  singleModel = modelOf(ports, "single");
  lbTree = render(lbModel, { env: SECRETS });
  singleTree = render(singleModel, { env: SECRETS });
  cert = selfSignedCertificate(box, "site", DOMAIN);
  // gunicorn and daphne of web1; the single host's site proxies to the same loopback ports.
  app = installApp(box, lbTree, lbModel, "web1");
  await startGunicorn(box, lbTree, lbModel, "web1", app);
  daphne = await startDaphne(lbTree, lbModel, "web1", app);
  await startNginx(box, lbTree, lbModel, "web1", cert);
  haproxy = startHaproxy(box, lbTree, lbModel, "lb", cert);
}, 120_000);

afterAll(async () => {
  if (!available) return;
  await stopAll();
  box.cleanup();
}, 60_000);

const viaLb = () => ["--cacert", cert.cert, "--resolve", `${DOMAIN}:${ports.https}:127.0.0.1`, "--interface", CLIENT];
const lbUrl = (path: string) => `https://${DOMAIN}:${ports.https}${path}`;

/**
 * Waits until every server is in the state `want` says, for good: checked (not INI) and not in
 * transition ("UP 1/3" is an UP server that failed a check). Returns the states either way.
 */
async function settledServers(model: Model, want: (s: { backend: string; server: string }) => string): Promise<string[]> {
  let states: string[] = [];
  try {
    await waitFor("HAProxy's checks to settle", async () => {
      if (haproxy.process.exitCode !== null) throw new Error(`haproxy exited:\n${haproxy.output()}`);
      // The stats page answers once HAProxy has started.
      const servers = await haproxyServers(model).catch(() => []);
      states = describeServers(servers);
      return servers.length > 0 && servers.every((s) => s.status === want(s) && s.check !== "INI" && !s.check.startsWith("*"));
    }, 30_000);
  } catch {
    // The assertion below shows the states the servers were left in.
  }
  return states;
}

interface Seen {
  readonly remote_addr: string;
  readonly x_forwarded_for: string | null;
  readonly secure: boolean;
  readonly interface: "wsgi" | "asgi";
}

function seen(body: string): Seen {
  return JSON.parse(body) as Seen;
}

describe.skipIf(!available)("Django behind the rendered nginx and HAProxy", () => {
  it("the reference app passes `manage.py check --deploy` with the rendered .env (its settings are production's)", () => {
    const check = manage(app, ["check", "--deploy", "--fail-level", "WARNING"]);
    expect(check.code, check.output).toBe(0);
    // Without X-Forwarded-Proto the app redirects: the health check must send it.
    expect(app.env.DEBUG).toBe("False");
  });

  it("item 2: the health checks get the app's 200 through nginx, every server is UP and users get the app", { timeout: 60_000 }, async () => {
    const states = await settledServers(lbModel, () => "UP");
    expect(states.sort(), `HAProxy's servers:\n${haproxy.output()}`).toEqual(["be_web/web1 UP L7OK 200", "be_ws/web1 UP L7OK 200"]);
    const health = await curl([...viaLb(), lbUrl(lbModel.site.health_check_path)]);
    expect(health.status, health.output).toBe(200);
    expect(health.body).toBe("ok");
    const page = await curl([...viaLb(), lbUrl("/client/")]);
    expect(page.status, page.output).toBe(200);
    expect(seen(page.body)).toMatchObject({ secure: true, interface: "wsgi" });
    // Plain HTTP is still refused by the app itself when the proxy does not say HTTPS.
    const direct = await curl(["-H", `Host: ${DOMAIN}`, `http://127.0.0.1:${ports.gunicorn}${lbModel.site.health_check_path}`]);
    expect(direct.status, "the app redirects a request that did not arrive over HTTPS").toBe(301);
  });

  it("item 4: a client's own X-Forwarded-For never becomes the client address gunicorn or daphne sees (HAProxy -> nginx)", { timeout: 60_000 }, async () => {
    expect((await settledServers(lbModel, () => "UP")).sort()).toEqual(["be_web/web1 UP L7OK 200", "be_ws/web1 UP L7OK 200"]);
    for (const path of ["/client/", `${lbModel.site.websocket_path}client/`]) {
      const r = await curl([...viaLb(), "-H", `X-Forwarded-For: ${SPOOFED}`, lbUrl(path)]);
      expect(r.status, `${path}: ${r.output}`).toBe(200);
      const s = seen(r.body);
      expect(r.body, `${path}: the app saw the client's chosen address`).not.toContain(SPOOFED);
      expect(s.x_forwarded_for, `${path}: one address, the client's`).toBe(CLIENT);
      // gunicorn leaves REMOTE_ADDR to the peer (nginx); daphne --proxy-headers takes the header's first entry.
      expect(s.remote_addr).toBe(s.interface === "asgi" ? CLIENT : "127.0.0.1");
      expect(s.interface).toBe(path === "/client/" ? "wsgi" : "asgi");
    }
  });

  it("item 4: the same through nginx facing the internet itself (single host)", { timeout: 30_000 }, async () => {
    await startNginx(box, singleTree, singleModel, "node", cert);
    const https = ["--cacert", cert.cert, "--resolve", `${DOMAIN}:${ports.singleHttps}:127.0.0.1`, "--interface", CLIENT];
    for (const path of ["/client/", `${singleModel.site.websocket_path}client/`]) {
      let r = await curl([...https, "-H", `X-Forwarded-For: ${SPOOFED}`, `https://${DOMAIN}:${ports.singleHttps}${path}`]);
      await waitFor("nginx to answer over TLS", async () => {
        r = await curl([...https, "-H", `X-Forwarded-For: ${SPOOFED}`, `https://${DOMAIN}:${ports.singleHttps}${path}`]);
        return r.code === 0;
      });
      expect(r.status, `${path}: ${r.output}`).toBe(200);
      expect(r.body, `${path}: the app saw the client's chosen address`).not.toContain(SPOOFED);
      const s = seen(r.body);
      expect(s.x_forwarded_for).toBe(CLIENT);
      expect(s.remote_addr).toBe(s.interface === "asgi" ? CLIENT : "127.0.0.1");
      expect(s.secure).toBe(true);
    }
  });

  it("item 3: with daphne stopped, its server leaves be_ws while be_web stays UP", { timeout: 60_000 }, async () => {
    expect((await settledServers(lbModel, () => "UP")).sort()).toEqual(["be_web/web1 UP L7OK 200", "be_ws/web1 UP L7OK 200"]);
    await daphne.stop();
    const states = await settledServers(lbModel, (s) => (s.backend === "be_ws" ? "DOWN" : "UP"));
    expect(states.map((s) => s.split(" ").slice(0, 2).join(" ")).sort(), states.join("\n")).toEqual(["be_web/web1 UP", "be_ws/web1 DOWN"]);
    // WebSocket clients now get HAProxy's 503 (no server) instead of nginx's 502 from a node
    // that still looked healthy; the rest of the site still works.
    const ws = await curl([...viaLb(), lbUrl(`${lbModel.site.websocket_path}client/`)]);
    expect(ws.status, ws.output).toBe(503);
    const page = await curl([...viaLb(), lbUrl("/client/")]);
    expect(page.status, page.output).toBe(200);
  });
});
