/**
 * HAProxy itself reads the rendered haproxy.cfg: `haproxy -c -V` for the lb host of every
 * fixture (and a stats password full of quoting hazards), then one config started for real in
 * front of stand-in app nodes: health checks with the site's Host, X-Forwarded-Proto
 * overwritten, WebSockets and ACME routed to their backends, the stats login.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { haproxyFamily } from "../../src/artifacts/haproxy.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { fixtureNames } from "../helpers/fixtures.js";
import { freePort, programsAvailable, relocate, run, sandbox, selfSignedCertificate, startServer, stopAll, waitFor, type Sandbox } from "../helpers/programs.js";
import { hostContexts, setKey, variantContexts } from "../artifacts/nginx-conf.js";

const available = programsAvailable("haproxy lint", { haproxy: "haproxy", openssl: "openssl", curl: "curl" });

const NASTY = `st"ats 'pw' $HOME \\x #not-a-comment 100%`;

// The fleet's lb runs Debian 13's HAProxy 3.0 (its settings are 3.0's, newer than this
// machine's): the fleet test (npm run test:fleet) starts it there.
const cases = [
  ...fixtureNames()
    .filter((name) => name !== "fleet")
    .flatMap((name) => hostContexts(name).filter((c) => c.host.roles.has("lb")).map((ctx) => ({ name, ctx }))),
  { name: "ha-sentinel with a nasty stats password", ctx: variantContexts("ha-sentinel", (m) => setKey(m, "haproxy.stats_password", NASTY)).find((c) => c.host.roles.has("lb"))! },
];

const boxes: Sandbox[] = [];
afterEach(async () => {
  await stopAll();
});
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

/** The rendered config with the PEM path pointing at a self-signed combined PEM in a sandbox. */
function prepare(ctx: HostContext, edit: (cfg: string) => string = (c) => c) {
  const box = sandbox("ncr-haproxy-");
  boxes.push(box);
  const cert = selfSignedCertificate(box, "site", ctx.model.site.domain);
  const run1 = run("sh", ["-c", `cat "$1" "$2" > "$3"`, "sh", cert.cert, cert.key, box.path("site.pem")]);
  if (run1.code !== 0) throw new Error(run1.output);
  const [file] = haproxyFamily.files(ctx);
  const cfg = box.write("haproxy.cfg", edit(relocate(file!.content, { [pathsOf(ctx.model).haproxyPem]: box.path("site.pem") })));
  return { box, cfg };
}

describe.skipIf(!available)("haproxy -c", () => {
  it("has a case for every lb host (ha-cluster, ha-sentinel) and the quoting variant", () => {
    expect(cases.map((c) => c.name)).toEqual(["ha-cluster", "ha-monitored", "ha-sentinel", "ha-sentinel with a nasty stats password"]);
  });

  describe.each(cases)("$name", ({ ctx }) => {
    it("accepts the configuration without warnings", () => {
      // chroot, stats socket, user and group stay: -c neither binds nor changes user, and the
      // Debian package created the haproxy user here.
      const { cfg } = prepare(ctx);
      const r = run("haproxy", ["-c", "-V", "-f", cfg]);
      const message = `haproxy -c -V on ${pathsOf(ctx.model).haproxyConfig} (relocated: ${cfg}):\n${r.output}`;
      expect(r.code, message).toBe(0);
      expect(r.output, message).toMatch(/Configuration file is valid/);
      expect(r.output, message).not.toMatch(/\[(WARNING|ALERT)\]/);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Started for real

interface Backend {
  readonly name: string;
  readonly server: HttpServer;
  readonly port: number;
  readonly seen: { method: string; url: string; httpVersion: string; headers: IncomingHttpHeaders }[];
}

async function backend(name: string): Promise<Backend> {
  const seen: Backend["seen"] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", httpVersion: req.httpVersion, headers: req.headers });
    res.setHeader("Content-Type", "text/plain");
    res.end(`${name} ${req.url}`);
  });
  server.on("upgrade", (req, socket) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", httpVersion: req.httpVersion, headers: req.headers });
    // RFC 6455 4.2.2: the accept value HAProxy may verify.
    const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"] ?? ""}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { name, server, port: (server.address() as AddressInfo).port, seen };
}

function curl(args: string[]): Promise<{ code: number; status: number; headers: string; output: string }> {
  return new Promise((resolve) => {
    execFile("curl", ["-sS", "-o", "/dev/null", "-D", "-", "--max-time", "5", ...args], { encoding: "utf8" }, (error, stdout, stderr) => {
      const status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(stdout)?.[1] ?? 0);
      resolve({ code: error ? 1 : 0, status, headers: stdout, output: `${stdout}${stderr}` });
    });
  });
}

/** The stats page through curl, the credentials in a header file: never on a command line. */
async function stats(box: Sandbox, port: number, path: string, auth?: string): Promise<{ status: number; body: string }> {
  const args = ["-sS", "--max-time", "5", "-w", "\n%{http_code}"];
  if (auth !== undefined) args.push("-H", `@${box.write("auth.header", `Authorization: Basic ${Buffer.from(auth).toString("base64")}\n`, 0o600)}`);
  return new Promise((resolve) => {
    execFile("curl", [...args, `http://127.0.0.1:${port}${path}`], { encoding: "utf8" }, (_error, stdout) => {
      const i = stdout.lastIndexOf("\n");
      resolve({ status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) });
    });
  });
}

describe.skipIf(!available)("HAProxy started with the rendered config", () => {
  it("checks, routes and forwards like the model says, and guards the stats page with the password", async () => {
    const ctx = variantContexts("ha-cluster", (m) => setKey(m, "haproxy.stats_password", NASTY)).find((c) => c.host.roles.has("lb"))!;
    const m = ctx.model;
    const nodes = new Map<string, Backend>();
    for (const h of m.topology.app) nodes.set(h.name, await backend(h.name));
    const certbot = await backend("certbot");
    try {
      const ports = { http: await freePort(), https: await freePort(), stats: await freePort() };
      const mapping: Record<string, string> = {
        [`127.0.0.1:${m.haproxy.acme_port}`]: `127.0.0.1:${certbot.port}`,
        [`127.0.0.1:${m.haproxy.stats_port}`]: `127.0.0.1:${ports.stats}`,
      };
      for (const h of m.topology.app) mapping[`${h.address}:${m.haproxy.backend_port}`] = `127.0.0.1:${nodes.get(h.name)!.port}`;
      const { box, cfg } = prepare(ctx, (c) =>
        relocate(c, mapping)
          .split("\n")
          // Run unprivileged and in the foreground: no chroot, user switch, daemon mode, admin
          // socket or syslog; public binds moved to free loopback ports.
          .filter((l) => !/^\s*(chroot|user|group|daemon|stats socket|log \/dev\/log)\b/.test(l))
          .filter((l) => !/^\s*bind \[::\]/.test(l))
          .map((l) => l.replace(/^(\s*bind) :80\b/, `$1 127.0.0.1:${ports.http}`).replace(/^(\s*bind) :443\b/, `$1 127.0.0.1:${ports.https}`))
          .join("\n"),
      );
      const haproxy = startServer("haproxy", ["-db", "-f", cfg]);
      await waitFor("HAProxy health checks of every app node", async () => {
        if (haproxy.process.exitCode !== null) throw new Error(`haproxy exited:\n${haproxy.output()}`);
        return [...nodes.values()].every((n) => n.seen.some((r) => r.url === m.site.health_check_path));
      });

      // HAP-03: HTTP/1.1 with the site's Host, so Django's ALLOWED_HOSTS lets it through.
      for (const n of nodes.values()) {
        const check = n.seen.find((r) => r.url === m.site.health_check_path)!;
        expect(check.method).toBe("GET");
        expect(check.httpVersion).toBe("1.1");
        expect(check.headers.host).toBe(m.site.domain);
      }

      const https = ["-k", "--resolve", `${m.site.domain}:${ports.https}:127.0.0.1`];
      const base = `https://${m.site.domain}:${ports.https}`;
      const dashboard = await curl([...https, "-H", "X-Forwarded-Proto: http", `${base}/dashboard/`]);
      expect(dashboard.status, dashboard.output).toBe(200);
      const forwarded = [...nodes.values()].flatMap((n) => n.seen).find((r) => r.url === "/dashboard/")!;
      expect(forwarded.headers["x-forwarded-proto"], "HAP-04: the client's value is overwritten").toBe("https");
      expect(forwarded.headers["x-forwarded-for"]).toBe("127.0.0.1");

      const handshake = ["-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="];
      const ws = await curl([...https, "--http1.1", ...handshake, `${base}${m.site.websocket_path}chat/`]);
      expect(ws.status, ws.output).toBe(101);
      const upgraded = [...nodes.values()].flatMap((n) => n.seen).filter((r) => r.url === `${m.site.websocket_path}chat/`);
      expect(upgraded.map((r) => r.headers.upgrade)).toEqual(["websocket"]);

      const redirect = await curl(["-H", `Host: ${m.site.domain}`, `http://127.0.0.1:${ports.http}/x`]);
      expect(redirect.status, redirect.output).toBe(301);
      expect(redirect.headers).toMatch(new RegExp(`^location: https://${m.site.domain.replace(/\./g, "\\.")}/x\\r?$`, "im"));
      const acme = await curl(["-H", `Host: ${m.site.domain}`, `http://127.0.0.1:${ports.http}/.well-known/acme-challenge/token1`]);
      expect(acme.status, "the ACME path reaches certbot, not the redirect").toBe(200);
      expect(certbot.seen.map((r) => r.url)).toEqual(["/.well-known/acme-challenge/token1"]);

      // HAP-01: the stats page wants the password, and the quoted password is the one it takes.
      expect((await stats(box, ports.stats, "/")).status).toBe(401);
      expect((await stats(box, ports.stats, "/", `${m.haproxy.stats_user}:wrong`)).status).toBe(401);
      const page = await stats(box, ports.stats, "/;csv", `${m.haproxy.stats_user}:${NASTY}`);
      expect(page.status, page.body).toBe(200);
      const up = page.body.split("\n").filter((l) => l.startsWith("be_web,") && !l.startsWith("be_web,BACKEND"));
      expect(up.map((l) => `${l.split(",")[1]} ${l.split(",")[17]}`)).toEqual(m.topology.app.map((h) => `${h.name} UP`));
    } finally {
      for (const n of nodes.values()) n.server.close();
      certbot.server.close();
    }
  });

  it("serves its Prometheus metrics on the lb's private address at /metrics only (monitored model)", async () => {
    const ctx = hostContexts("ha-monitored").find((c) => c.host.roles.has("lb"))!;
    const m = ctx.model;
    const node = await backend("app");
    try {
      const ports = { http: await freePort(), https: await freePort(), stats: await freePort(), metrics: await freePort() };
      const lb = ctx.host;
      const mapping: Record<string, string> = {
        [`${lb.address}:8405`]: `127.0.0.1:${ports.metrics}`,
        [`127.0.0.1:${m.haproxy.stats_port}`]: `127.0.0.1:${ports.stats}`,
      };
      // app1 answers its health check; the others are down.
      mapping[`${m.topology.app[0]!.address}:${m.haproxy.backend_port}`] = `127.0.0.1:${node.port}`;
      for (const h of m.topology.app.slice(1)) mapping[`${h.address}:${m.haproxy.backend_port}`] = `127.0.0.1:${await freePort()}`;
      for (const h of m.topology.mqtt) mapping[`${h.address}:${m.mqtt.device_port}`] = `127.0.0.1:${await freePort()}`;
      const { cfg } = prepare(ctx, (c) =>
        relocate(c, mapping)
          .split("\n")
          .filter((l) => !/^\s*(chroot|user|group|daemon|stats socket|log \/dev\/log)\b/.test(l))
          .filter((l) => !/^\s*bind \[::\]/.test(l))
          // Devices' MQTT over TLS is not what this test is about: its bind goes.
          .filter((l) => !new RegExp(`^\\s*bind :${m.mqtt.tls_port}\\b`).test(l))
          .map((l) => l.replace(/^(\s*bind) :80\b/, `$1 127.0.0.1:${ports.http}`).replace(/^(\s*bind) :443\b/, `$1 127.0.0.1:${ports.https}`))
          .join("\n"),
      );
      expect(readFileSync(cfg, "utf8")).toContain(`bind 127.0.0.1:${ports.metrics}\n`);
      const haproxy = startServer("haproxy", ["-db", "-f", cfg]);
      const metrics = async () => {
        const r = await fetch(`http://127.0.0.1:${ports.metrics}/metrics`).catch(() => undefined);
        return r?.ok ? r.text() : "";
      };
      // The series the alert rules read (HaproxyBackendDown, HaproxyServerDown).
      await waitFor("app1 UP in HAProxy's metrics", async () => (await metrics()).includes(`haproxy_server_status{proxy="be_web",server="${m.topology.app[0]!.name}",state="UP"} 1`), 20_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${haproxy.output()}`);
      });
      // A server whose checks fail goes DOWN once they have failed `fall` times.
      const down = `haproxy_server_status{proxy="be_web",server="${m.topology.app[1]!.name}",state="DOWN"} 1`;
      await waitFor("app2 DOWN in HAProxy's metrics", async () => (await metrics()).includes(down), 30_000);
      expect(await metrics()).toContain(`haproxy_server_status{proxy="be_web",server="${m.topology.app[0]!.name}",state="UP"} 1`);
      const other = await fetch(`http://127.0.0.1:${ports.metrics}/`);
      expect(other.status).toBe(404);
    } finally {
      node.server.close();
    }
  });
});
