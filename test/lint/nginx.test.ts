/**
 * nginx itself reads the rendered sites: `nginx -t` on every web host of every fixture (and on
 * the ACME bootstrap site), the security-header rule checked on the configuration as `nginx -T`
 * dumped it, and one public and one load-balanced site started for real to see the headers
 * and forwarded values on actual responses.
 */
import { execFile } from "node:child_process";
import { createServer, type IncomingHttpHeaders, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { nginxFamily } from "../../src/artifacts/nginx.js";
import { asgiHealthCheckPath, pathsOf, siteCertificate } from "../../src/artifacts/paths.js";
import type { FileSpec } from "../../src/tree.js";
import { fixtureContexts, fixtureNames, renderedAcrossFixtures } from "../helpers/fixtures.js";
import {
  freePort,
  programsAvailable,
  relocate,
  run,
  sandbox,
  selfSignedCertificate,
  startServer,
  stopAll,
  waitFor,
  type Sandbox,
} from "../helpers/programs.js";
import { nginxMainConf } from "../helpers/nginx.js";
import { directiveKey, expandIncludes, headerProblems, hostContexts, parseNginx, splitNginxDump } from "../artifacts/nginx-conf.js";

const available = programsAvailable("nginx lint", { nginx: "nginx", openssl: "openssl", curl: "curl" });

const cases = fixtureNames().flatMap((name) =>
  hostContexts(name)
    .filter((ctx) => ctx.host.roles.has("web"))
    .map((ctx) => ({ name: `${name}/${ctx.host.name}`, ctx })),
);

/** Whether this machine has an IPv6 loopback to relocate `[::]:port` listens to. */
async function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(0, "::1", () => s.close(() => resolve(true)));
  });
}

/**
 * Rewrites every `listen` to a free loopback port (the same port for the IPv4 and IPv6 form of
 * one original port), since `nginx -t` binds the sockets it is given.
 */
async function relocateListens(content: string, ports: Map<string, number>, v6: boolean): Promise<string> {
  const lines: string[] = [];
  for (const line of content.split("\n")) {
    const m = /^(\s*listen\s+)(\S+?)((?:\s+[^;]*)?;.*)$/.exec(line);
    if (!m) {
      lines.push(line);
      continue;
    }
    const [, head, address, tail] = m as unknown as [string, string, string, string];
    const port = address.replace(/^.*:/, "");
    if (!ports.has(port)) ports.set(port, await freePort());
    const local = ports.get(port)!;
    if (address.startsWith("[")) {
      if (v6) lines.push(`${head}[::1]:${local}${tail}`);
    } else lines.push(`${head}127.0.0.1:${local}${tail}`);
  }
  return lines.join("\n");
}

const boxes: Sandbox[] = [];
const certificates = new Map<string, { cert: string; key: string }>();

/** One self-signed certificate per site name, shared by the cases (RSA key generation is slow). */
function certificateFor(domain: string): { cert: string; key: string } {
  let cert = certificates.get(domain);
  if (!cert) {
    const box = sandbox("ncr-nginx-cert-");
    boxes.push(box);
    cert = selfSignedCertificate(box, "site", domain);
    certificates.set(domain, cert);
  }
  return cert;
}

interface Prepared {
  readonly box: Sandbox;
  readonly conf: string;
  /** Relocated site file in the sandbox (what the messages point at). */
  readonly site: string;
  readonly ports: Map<string, number>;
  readonly files: Map<string, FileSpec>;
}

/**
 * Writes the host's nginx files into a sandbox with every absolute path relocated, and a
 * minimal nginx.conf wrapper that includes `which` (the main site or the ACME site) inside http{}.
 */
async function prepare(ctx: HostContext, which: "nginxSite" | "nginxAcmeSite", extra: Record<string, string> = {}): Promise<Prepared> {
  const box = sandbox("ncr-nginx-");
  const p = pathsOf(ctx.model);
  const files = new Map(nginxFamily.files(ctx).map((f) => [f.path, f]));
  const cert = certificateFor(ctx.model.site.domain);
  const site = siteCertificate(ctx.model);
  const mapping: Record<string, string> = {
    [p.nginxSecurityHeaders]: box.path("snippets/security-headers.conf"),
    [p.nginxProxyHeaders]: box.path("snippets/proxy-headers.conf"),
    [p.nginxAccessLog]: box.path("logs/site-access.log"),
    [p.nginxErrorLog]: box.path("logs/site-error.log"),
    [site.certificate]: cert.cert,
    [site.key]: cert.key,
    ...extra,
  };
  const ports = new Map<string, number>();
  const v6 = await ipv6Loopback();
  for (const snippet of [p.nginxSecurityHeaders, p.nginxProxyHeaders]) box.write(mapping[snippet]!.slice(box.dir.length + 1), relocate(files.get(snippet)!.content, mapping));
  const sitePath = box.write(`sites/${which}.conf`, await relocateListens(relocate(files.get(p[which])!.content, mapping), ports, v6));
  box.write("logs/.keep", "");
  box.write("tmp/.keep", "");
  const conf = box.write("nginx.conf", nginxMainConf(box.dir, sitePath));
  return { box, conf, site: sitePath, ports, files };
}

function nginxArgs(prep: Prepared, ...more: string[]): string[] {
  return ["-p", `${prep.box.dir}/`, "-e", prep.box.path("logs/error.log"), "-c", prep.conf, ...more];
}

afterEach(async () => {
  await stopAll();
});
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

describe.skipIf(!available)("nginx -t", () => {
  it("has a case for every host that any fixture gives an nginx site", () => {
    const hosts = renderedAcrossFixtures((path) => /^[^/]+\/etc\/nginx\/sites-available\/[^/]+$/.test(path) && !path.endsWith("-acme")).map((p) => p.split("/").slice(0, 2).join("/"));
    expect(cases.map((c) => c.name).sort()).toEqual(hosts);
  });

  describe.each(cases)("$name", ({ ctx }) => {
    it("accepts the site without warnings", async () => {
      const prep = await prepare(ctx, "nginxSite");
      boxes.push(prep.box);
      const r = run("nginx", nginxArgs(prep, "-t"));
      const message = `nginx -t on ${pathsOf(ctx.model).nginxSite} (relocated: ${prep.site}):\n${r.output}`;
      expect(r.code, message).toBe(0);
      expect(r.output, message).not.toMatch(/\[(warn|emerg|alert|crit)\]/);
    });

    it("keeps the full security header set in every location of the config nginx read (nginx -T)", async () => {
      const prep = await prepare(ctx, "nginxSite");
      boxes.push(prep.box);
      const r = run("nginx", nginxArgs(prep, "-T"));
      expect(r.code, r.output).toBe(0);
      const dumped = splitNginxDump(r.stdout);
      const snippetPath = prep.box.path("snippets/security-headers.conf");
      expect([...dumped.keys()], "nginx -T did not read the security-header snippet").toContain(snippetPath);
      const required = parseNginx(dumped.get(snippetPath)!, snippetPath).map(directiveKey);
      expect(required.map((k) => k.split(" ")[1])).toEqual(["Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"]);
      const main = expandIncludes(parseNginx(dumped.get(prep.conf)!, prep.conf), (path) => dumped.get(path));
      const http = main.find((d) => d.name === "http")!.block!;
      expect(headerProblems(http, required), `security headers lost in ${pathsOf(ctx.model).nginxSite}`).toEqual([]);
    });

    if (!ctx.model.topology.lb && ctx.model.site.tls.mode === "letsencrypt") {
      it("accepts the ACME bootstrap site on its own (before any certificate exists)", async () => {
        const prep = await prepare(ctx, "nginxAcmeSite");
        boxes.push(prep.box);
        const r = run("nginx", nginxArgs(prep, "-t"));
        const message = `nginx -t on ${pathsOf(ctx.model).nginxAcmeSite} (relocated: ${prep.site}):\n${r.output}`;
        expect(r.code, message).toBe(0);
        expect(r.output, message).not.toMatch(/\[(warn|emerg|alert|crit)\]/);
        expect(prep.files.get(pathsOf(ctx.model).nginxAcmeSite)!.content).not.toContain("/etc/letsencrypt/");
      });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Started for real

interface Upstream {
  readonly server: HttpServer;
  readonly port: number;
  readonly seen: { url: string; headers: IncomingHttpHeaders }[];
}

/** A stand-in for gunicorn/daphne that records requests and answers like Django would. */
async function upstream(name: string): Promise<Upstream> {
  const seen: Upstream["seen"] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    // Django's own copies of headers nginx owns (NGX-15): nginx must hide them.
    res.setHeader("X-Frame-Options", "SAMEORIGIN");
    res.setHeader("Referrer-Policy", "same-origin");
    res.setHeader("Content-Type", "text/plain");
    res.end(`${name} ${req.url}`);
  });
  // A WebSocket handshake: accept it and close (nginx passes the 101 on to the client).
  server.on("upgrade", (req, socket) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    socket.end("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

interface Response {
  readonly status: number;
  readonly headers: [string, string][];
  readonly output: string;
}

/**
 * curl, asynchronously: the stand-in upstreams live in this process, so a synchronous child
 * would block the very event loop that has to answer nginx.
 */
function curlRaw(args: string[]): Promise<{ code: number; stdout: string; output: string }> {
  return new Promise((resolve) => {
    execFile("curl", args, { encoding: "utf8" }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, output: `${stdout}${stderr}` });
    });
  });
}

async function curl(args: string[]): Promise<Response> {
  const r = await curlRaw(["-sS", "-o", "/dev/null", "-D", "-", "--max-time", "5", ...args]);
  const lines = r.stdout.split(/\r?\n/);
  const status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(lines[0] ?? "")?.[1] ?? 0);
  const headers = lines.slice(1).flatMap((l) => {
    const i = l.indexOf(":");
    return i > 0 ? [[l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as [string, string]] : [];
  });
  return { status, headers, output: r.output };
}

const values = (r: Response, name: string) => r.headers.filter(([n]) => n === name.toLowerCase()).map(([, v]) => v);

function expectSecurityHeaders(r: Response, what: string, ctx: HostContext): void {
  const hsts = `max-age=${ctx.model.site.hsts.max_age}`;
  expect(values(r, "Strict-Transport-Security"), `${what}\n${r.output}`).toHaveLength(1);
  expect(values(r, "Strict-Transport-Security")[0]!.startsWith(hsts), what).toBe(true);
  expect(values(r, "X-Content-Type-Options"), what).toEqual(["nosniff"]);
  expect(values(r, "X-Frame-Options"), what).toEqual(["DENY"]);
  expect(values(r, "Referrer-Policy"), what).toEqual(["strict-origin-when-cross-origin"]);
}

async function startSite(ctx: HostContext, upstreams: { wsgi: Upstream; asgi: Upstream }, lbAsLoopback: boolean) {
  const m = ctx.model;
  const box = sandbox("ncr-nginx-run-");
  boxes.push(box);
  box.write("static/app.css", "body{}\n");
  box.write("media/upload.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>\n");
  const extra: Record<string, string> = {
    [`${m.project.staticDir}/`]: `${box.path("static")}/`,
    [`${m.project.mediaDir}/`]: `${box.path("media")}/`,
    [`server 127.0.0.1:${m.gunicorn.port};`]: `server 127.0.0.1:${upstreams.wsgi.port};`,
    [`server 127.0.0.1:${m.daphne.port};`]: `server 127.0.0.1:${upstreams.asgi.port};`,
  };
  if (lbAsLoopback) extra[`set_real_ip_from ${m.topology.lb!.address};`] = "set_real_ip_from 127.0.0.1;";
  const prep = await prepare(ctx, "nginxSite", extra);
  boxes.push(prep.box);
  const server = startServer("nginx", nginxArgs(prep, "-g", "daemon off;"));
  const port = (p: number) => prep.ports.get(String(p))!;
  await waitFor(`nginx on ${prep.site}`, async () => {
    if (server.process.exitCode !== null) throw new Error(`nginx exited:\n${server.output()}`);
    const r = await curlRaw(["-s", "-o", "/dev/null", "--max-time", "1", `http://127.0.0.1:${port(lbAsLoopback ? m.haproxy.backend_port : m.site.http_port)}/`]);
    return r.code === 0;
  });
  return { port };
}

describe.skipIf(!available)("nginx started with a rendered site", () => {
  it("public TLS site: security headers on files, uploads, errors and the app; ACME and redirect on :80", async () => {
    const ctx = hostContexts("single-node").find((c) => c.host.roles.has("web"))!;
    const m = ctx.model;
    const wsgi = await upstream("wsgi");
    const asgi = await upstream("asgi");
    try {
      const { port } = await startSite(ctx, { wsgi, asgi }, false);
      const https = port(m.site.https_port);
      const base = `https://${m.site.domain}:${https}`;
      const tls = ["-k", "--resolve", `${m.site.domain}:${https}:127.0.0.1`];

      const css = await curl([...tls, `${base}${m.site.static_url}app.css`]);
      expect(css.status, css.output).toBe(200);
      expectSecurityHeaders(css, "static file", ctx);
      expect(values(css, "Cache-Control")).toEqual(["max-age=2592000"]);

      const svg = await curl([...tls, `${base}${m.site.media_url}upload.svg`]);
      expect(svg.status, svg.output).toBe(200);
      expectSecurityHeaders(svg, "media file", ctx);
      expect(values(svg, "Content-Security-Policy")[0]).toContain("sandbox");

      const missing = await curl([...tls, `${base}${m.site.static_url}missing.css`]);
      expect(missing.status).toBe(404);
      expectSecurityHeaders(missing, "404 (always)", ctx);

      const app = await curl([...tls, "-H", "X-Forwarded-Proto: http", `${base}/dashboard/`]);
      expect(app.status, app.output).toBe(200);
      expectSecurityHeaders(app, "proxied response (Django's own copies hidden)", ctx);
      const req = wsgi.seen.at(-1)!;
      expect(req.headers.host).toBe(m.site.domain);
      expect(req.headers["x-forwarded-proto"]).toBe("https");
      expect(req.headers["x-real-ip"]).toBe("127.0.0.1");

      // HTTP/1.1: HTTP/2 has no Upgrade (RFC 9113 8.2.2).
      const ws = await curl([...tls, "--http1.1", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", `${base}${m.site.websocket_path}chat/`]);
      expect(ws.status, ws.output).toBe(101);
      expect(asgi.seen.at(-1)!.url).toBe(`${m.site.websocket_path}chat/`);
      expect(asgi.seen.at(-1)!.headers.upgrade).toBe("websocket");
      expect(asgi.seen.at(-1)!.headers["x-forwarded-proto"]).toBe("https");

      const http = port(m.site.http_port);
      const redirect = await curl(["-H", `Host: ${m.site.domain}`, `http://127.0.0.1:${http}/x?y=1`]);
      expect(redirect.status).toBe(301);
      expect(values(redirect, "Location")).toEqual([`https://${m.site.domain}/x?y=1`]);
      const acme = await curl(["-H", `Host: ${m.site.domain}`, `http://127.0.0.1:${http}/.well-known/acme-challenge/token`]);
      expect(acme.status, "the ACME path is not redirected").toBe(404);

      // NGX-16: another name gets no certificate at all.
      const other = await curlRaw(["-sS", "-k", "--max-time", "5", "--resolve", `other.example:${https}:127.0.0.1`, `https://other.example:${https}/`]);
      expect(other.code, other.output).not.toBe(0);
    } finally {
      wsgi.server.close();
      asgi.server.close();
    }
  });

  it("site behind the load balancer: real client address and X-Forwarded-Proto from HAProxy, headers still added", async () => {
    const ctx = hostContexts("ha-cluster").find((c) => c.host.roles.has("web"))!;
    const m = ctx.model;
    const wsgi = await upstream("wsgi");
    const asgi = await upstream("asgi");
    try {
      const { port } = await startSite(ctx, { wsgi, asgi }, true);
      const base = `http://127.0.0.1:${port(m.haproxy.backend_port)}`;
      const headers = ["-H", `Host: ${m.site.domain}`, "-H", "X-Forwarded-For: 203.0.113.7", "-H", "X-Forwarded-Proto: https"];
      const app = await curl([...headers, `${base}${m.site.health_check_path}`]);
      expect(app.status, app.output).toBe(200);
      expectSecurityHeaders(app, "proxied response behind the lb", ctx);
      const req = wsgi.seen.at(-1)!;
      expect(req.headers["x-real-ip"]).toBe("203.0.113.7");
      expect(req.headers["x-forwarded-for"]).toBe("203.0.113.7");
      expect(req.headers["x-forwarded-proto"]).toBe("https");
      // A chain (a client's own entry in front of HAProxy's): the app gets the last one only.
      const chained = await curl(["-H", `Host: ${m.site.domain}`, "-H", "X-Forwarded-For: 6.6.6.6, 203.0.113.7", `${base}/dashboard/`]);
      expect(chained.status, chained.output).toBe(200);
      expect(wsgi.seen.at(-1)!.headers["x-forwarded-for"]).toBe("203.0.113.7");
      // HAProxy's be_ws check reaches daphne's health check (issue #9 item 3).
      const wsCheck = await curl([...headers, `${base}${asgiHealthCheckPath(m)}`]);
      expect(wsCheck.status, wsCheck.output).toBe(200);
      expect(asgi.seen.at(-1)!.url).toBe(m.site.health_check_path);
      const css = await curl([...headers, `${base}${m.site.static_url}app.css`]);
      expect(css.status, css.output).toBe(200);
      expectSecurityHeaders(css, "static file behind the lb", ctx);
    } finally {
      wsgi.server.close();
      asgi.server.close();
    }
  });
});

// site.admin_path limited to site.admin_allow (issue 13 item 3), checked by nginx itself.
describe.skipIf(!available)("nginx started with an admin limit", () => {
  /** A web host of `fixture` with site.admin_allow set to `allow`. */
  const webWithAdminAllow = (fixture: string, allow: string[]) =>
    fixtureContexts(fixture, (raw) => {
      raw.site.admin_allow = allow;
    }).find((c) => c.host.roles.has("web"))!;

  it("public site: the admin answers an allowed client as / does, and 403 (with the security headers) to any other; the rest of the site stays open", async () => {
    const wsgi = await upstream("wsgi");
    const asgi = await upstream("asgi");
    try {
      for (const [allow, allowed] of [
        [["192.0.2.0/24", "127.0.0.1/32"], true],
        [["192.0.2.0/24", "127.0.0.2/32", "::1/128"], false],
      ] as const) {
        const ctx = webWithAdminAllow("single-node", [...allow]);
        const m = ctx.model;
        const { port } = await startSite(ctx, { wsgi, asgi }, false);
        const https = port(m.site.https_port);
        const base = `https://${m.site.domain}:${https}`;
        const tls = ["-k", "--resolve", `${m.site.domain}:${https}:127.0.0.1`];
        const before = wsgi.seen.length;
        const admin = await curl([...tls, `${base}${m.site.admin_path}login/?next=/admin/`]);
        expect(admin.status, `${allow.join(", ")}: ${admin.output}`).toBe(allowed ? 200 : 403);
        expectSecurityHeaders(admin, `admin, ${allowed ? "allowed" : "refused"}`, ctx);
        if (allowed) {
          // Proxied as / is: the same upstream, the same request headers.
          const req = wsgi.seen.at(-1)!;
          expect(req.url).toBe(`${m.site.admin_path}login/?next=/admin/`);
          expect(req.headers.host).toBe(m.site.domain);
          expect(req.headers["x-forwarded-proto"]).toBe("https");
          expect(req.headers["x-forwarded-for"]).toBe("127.0.0.1");
          expect(wsgi.seen.length).toBe(before + 1);
        } else expect(wsgi.seen.length, "a refused request never reaches the app").toBe(before);
        const app = await curl([...tls, `${base}/dashboard/`]);
        expect(app.status, "only the admin is limited").toBe(200);
        await stopAll();
      }
    } finally {
      wsgi.server.close();
      asgi.server.close();
    }
  });

  it("behind the load balancer: the client address HAProxy wrote decides, and X-Forwarded-For counts only from the lb", async () => {
    const ctx = webWithAdminAllow("ha-cluster", ["10.8.0.0/24"]);
    const m = ctx.model;
    const wsgi = await upstream("wsgi");
    const asgi = await upstream("asgi");
    try {
      // The lb is 127.0.0.1 here (set_real_ip_from relocated); 127.0.0.2 is some other peer.
      const { port } = await startSite(ctx, { wsgi, asgi }, true);
      const url = `http://127.0.0.1:${port(m.haproxy.backend_port)}${m.site.admin_path}`;
      const get = (...args: string[]) => curl(["-H", `Host: ${m.site.domain}`, "-H", "X-Forwarded-Proto: https", ...args, url]);
      const cases: [string, string[], number][] = [
        ["a VPN client, through the lb", ["-H", "X-Forwarded-For: 10.8.0.5"], 200],
        ["an outside client, through the lb", ["-H", "X-Forwarded-For: 203.0.113.7"], 403],
        ["an outside client that put a VPN address first (HAProxy's entry is the last)", ["-H", "X-Forwarded-For: 10.8.0.5, 203.0.113.7"], 403],
        ["the lb itself (no X-Forwarded-For)", [], 403],
        ["another peer claiming a VPN address", ["--interface", "127.0.0.2", "-H", "X-Forwarded-For: 10.8.0.5"], 403],
      ];
      for (const [who, args, status] of cases) {
        const r = await get(...args);
        expect(r.status, `${who}: ${r.output}`).toBe(status);
        expectSecurityHeaders(r, who, ctx);
      }
      expect(wsgi.seen.at(-1)!.headers["x-forwarded-for"], "the allowed request reached the app with the client's address").toBe("10.8.0.5");
      const open = await curl(["-H", `Host: ${m.site.domain}`, "-H", "X-Forwarded-For: 203.0.113.7", `http://127.0.0.1:${port(m.haproxy.backend_port)}/dashboard/`]);
      expect(open.status, "only the admin is limited").toBe(200);
    } finally {
      wsgi.server.close();
      asgi.server.close();
    }
  });
});
