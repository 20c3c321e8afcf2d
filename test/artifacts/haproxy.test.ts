/**
 * The HAProxy family: haproxy.cfg on the lb host read back section by section and checked
 * against the model and against the nginx sites it forwards to (errata section 8, HAP-01..10;
 * TLS-01).
 */
import { stepLines, stepPackages } from "../../src/artifacts/steps.js";
import { describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { haproxyFamily } from "../../src/artifacts/haproxy.js";
import { nginxFamily } from "../../src/artifacts/nginx.js";
import { asgiHealthCheckPath, pathsOf } from "../../src/artifacts/paths.js";
import { fixtureNames, renderFixture } from "../helpers/fixtures.js";
import { hostContexts, parseNginx, setKey, variantContexts, type Directive } from "./nginx-conf.js";

/** haproxy.cfg as sections: "global", "defaults", "frontend fe_http", ... -> their lines. */
function sections(cfg: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const raw of cfg.split("\n")) {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") continue;
    if (!/^\s/.test(raw)) {
      current = [];
      out.set(line, current);
    } else current?.push(line.replace(/\s+/g, " "));
  }
  return out;
}

function lbOf(ctxs: HostContext[]): HostContext {
  const lb = ctxs.find((c) => c.host.roles.has("lb"));
  if (!lb) throw new Error("no lb host");
  return lb;
}

function config(ctx: HostContext) {
  const files = haproxyFamily.files(ctx);
  expect(files).toHaveLength(1);
  const file = files[0]!;
  expect(file.path).toBe(pathsOf(ctx.model).haproxyConfig);
  return { file, s: sections(file.content) };
}

const section = (s: Map<string, string[]>, name: string) => {
  const lines = s.get(name);
  if (!lines) throw new Error(`no section ${name}; have ${[...s.keys()].join(", ")}`);
  return lines;
};

const lbFixtures = fixtureNames().filter((n) => hostContexts(n).some((c) => c.host.roles.has("lb")));

describe("HAProxy family", () => {
  it("renders haproxy.cfg only on the lb host", () => {
    expect(lbFixtures).toEqual(["fleet", "ha-cluster", "ha-monitored", "ha-sentinel"]);
    for (const name of fixtureNames()) {
      for (const ctx of hostContexts(name)) {
        const files = haproxyFamily.files(ctx);
        expect(files.length, `${name}/${ctx.host.name}`).toBe(ctx.host.roles.has("lb") ? 1 : 0);
        if (!ctx.host.roles.has("lb")) expect(haproxyFamily.steps!(ctx)).toEqual([]);
      }
    }
  });

  describe.each(lbFixtures)("%s", (name) => {
    const ctxs = hostContexts(name);
    const ctx = lbOf(ctxs);
    const { model } = ctx;
    const { file, s } = config(ctx);
    const p = pathsOf(model);

    it("uses Mozilla intermediate TLS settings for binds (HAP-07)", () => {
      const g = section(s, "global");
      expect(g).toContain("ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets");
      // OpenSSL 3.5 (Debian 13) offers the hybrid post-quantum group first.
      expect(g).toContain(`ssl-default-bind-curves ${model.caps.openssl.mlkem ? "X25519MLKEM768:" : ""}X25519:prime256v1:secp384r1`);
      const ciphers = g.find((l) => l.startsWith("ssl-default-bind-ciphers "))!.split(" ")[1]!.split(":");
      expect(ciphers).toEqual(expect.arrayContaining(["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"]));
      expect(ciphers.filter((c) => c.startsWith("DHE-"))).toEqual([]);
      expect(g).toContain("user haproxy");
    });

    it("takes every timeout from the model with an explicit unit (HAP-06)", () => {
      const d = section(s, "defaults");
      const h = model.haproxy;
      for (const [kw, value] of [
        ["connect", h.timeout_connect],
        ["client", h.timeout_client],
        ["server", h.timeout_server],
        ["http-request", h.timeout_http_request],
        ["http-keep-alive", h.timeout_http_keep_alive],
        ["client-fin", h.timeout_client_fin],
        ["tunnel", h.timeout_tunnel],
      ]) {
        expect(d).toContain(`timeout ${kw} ${value}`);
      }
      for (const t of d.filter((l) => l.startsWith("timeout "))) expect(t).toMatch(/ \d+(ms|s|m|h|d)$/);
      expect(d).toEqual(expect.arrayContaining(["mode http", "option httplog"]));
      // option forwardfor appends to the client's own X-Forwarded-For: fe_https replaces it instead.
      expect(d).not.toContain("option forwardfor");
    });

    const acme = model.site.tls.mode === "letsencrypt";

    // Certificates from files (the fleet): nothing answers ACME, every HTTP request is redirected.
    if (!acme) {
      it("redirects every HTTP request to HTTPS and runs no certbot (certificates from files)", () => {
        const fe = section(s, "frontend fe_http");
        expect(fe.some((l) => l.startsWith("acl ") || l.startsWith("use_backend "))).toBe(false);
        expect(fe).toContain("http-request redirect scheme https code 301");
        expect([...s.keys()].filter((k) => k.startsWith("backend be_acme"))).toEqual([]);
        const commands = haproxyFamily.steps!(ctx).flatMap((st) => stepLines(st));
        expect(commands.filter((c) => c.includes("certbot"))).toEqual([]);
      });
    }

    if (acme) it("answers ACME challenges before redirecting everything else to HTTPS (HAP-02)", () => {
      const fe = section(s, "frontend fe_http");
      expect(fe.filter((l) => l.startsWith("bind "))).toEqual(model.site.ipv6 ? [":80", "[::]:80 v6only"].map((b) => `bind ${b}`) : ["bind :80"]);
      const acl = fe.find((l) => l.startsWith("acl "))!;
      expect(acl).toBe("acl is_acme path_beg /.well-known/acme-challenge/");
      expect(fe).toContain("http-request redirect scheme https code 301 unless is_acme");
      expect(fe).toContain("use_backend be_acme if is_acme");
      expect(section(s, "backend be_acme")).toEqual([`server certbot 127.0.0.1:${model.haproxy.acme_port}`]);
      // HAP-01: no stats on a public frontend.
      for (const [name, lines] of s) if (name.startsWith("frontend")) expect(lines.filter((l) => l.startsWith("stats"))).toEqual([]);
    });

    it("terminates TLS with the combined PEM and overwrites X-Forwarded-Proto and X-Forwarded-For (HAP-04, issue #9 item 4)", () => {
      const fe = section(s, "frontend fe_https");
      const binds = fe.filter((l) => l.startsWith("bind "));
      const tail = `ssl crt ${p.haproxyPem} alpn h2,http/1.1`;
      expect(binds).toEqual(model.site.ipv6 ? [`bind :443 ${tail}`, `bind [::]:443 v6only ${tail}`] : [`bind :443 ${tail}`]);
      expect(fe).toContain("http-request set-header X-Forwarded-Proto https");
      expect(fe).toContain("http-request set-header X-Forwarded-For %[src]");
      expect([...s.values()].flat().filter((l) => /forwardfor/.test(l))).toEqual([]);
      expect(fe).toContain(`acl is_websocket path_beg ${model.site.websocket_path}`);
      expect(fe).toContain("use_backend be_ws if is_websocket");
      expect(fe).toContain("default_backend be_web");
    });

    it("checks the app like a user's request: HTTP/1.1, the site's Host and X-Forwarded-Proto https, and lists every app host (HAP-03, HAP-10, issue #9 item 2)", () => {
      const be = section(s, "backend be_web");
      expect(be).toContain(`balance ${model.haproxy.balance}`);
      expect(be).toContain("option httpchk");
      expect(be).toContain(`http-check send meth GET uri ${model.site.health_check_path} ver HTTP/1.1 hdr Host ${model.site.domain} hdr X-Forwarded-Proto https`);
      expect(be).toContain("http-check expect status 200");
      expect(be).toContain("default-server inter 3s fall 3 rise 2");
      const expected = model.topology.hosts.filter((h) => h.roles.has("app")).map((h) => `server ${h.name} ${h.address}:${model.haproxy.backend_port} check`);
      expect(be.filter((l) => l.startsWith("server "))).toEqual(expected);
      expect(expected.length).toBeGreaterThan(1);
    });

    it("sends WebSockets to the asgi hosts with leastconn and the model's tunnel timeout, checked through daphne (issue #9 item 3)", () => {
      const be = section(s, "backend be_ws");
      expect(be).toContain("balance leastconn");
      const ws = asgiHealthCheckPath(model);
      expect(ws).toBe(`${model.site.websocket_path}${model.site.health_check_path.slice(1)}`);
      expect(be).toContain(`http-check send meth GET uri ${ws} ver HTTP/1.1 hdr Host ${model.site.domain} hdr X-Forwarded-Proto https`);
      // nginx on every asgi host proxies exactly that path to daphne's health check.
      for (const web of ctxs.filter((c) => c.host.roles.has("asgi"))) {
        const site = nginxFamily.files(web).find((f) => f.path === p.nginxSite)!;
        const server = parseNginx(site.content).find((d) => d.name === "server")!.block!;
        const location = server.find((d: Directive) => d.name === "location" && d.args.join(" ") === `= ${ws}`);
        expect(location, `${web.host.name}: location = ${ws}`).toBeDefined();
        expect(location!.block!.find((d: Directive) => d.name === "proxy_pass")!.args).toEqual([`http://novacloud_asgi${model.site.health_check_path}`]);
      }
      expect(be).toContain(`timeout tunnel ${model.haproxy.timeout_tunnel}`);
      const expected = model.topology.hosts.filter((h) => h.roles.has("asgi")).map((h) => `server ${h.name} ${h.address}:${model.haproxy.backend_port} check`);
      expect(be.filter((l) => l.startsWith("server "))).toEqual(expected);
    });

    it("forwards to exactly the address each app host's nginx listens on, and nginx trusts this lb", () => {
      const servers = section(s, "backend be_web").filter((l) => l.startsWith("server ")).map((l) => l.split(" ")[2]);
      const listens: string[] = [];
      for (const web of ctxs.filter((c) => c.host.roles.has("app"))) {
        const site = nginxFamily.files(web).find((f) => f.path === p.nginxSite)!;
        const server = parseNginx(site.content).find((d) => d.name === "server")!.block!;
        const arg = (n: string) => server.filter((d: Directive) => d.name === n).map((d) => d.args.join(" "));
        listens.push(...arg("listen"));
        expect(arg("set_real_ip_from")).toEqual([ctx.host.address]);
      }
      expect(servers).toEqual(listens);
    });

    it("keeps the stats page on loopback with hidden version (HAP-01)", () => {
      const st = section(s, "listen stats");
      expect(st.filter((l) => l.startsWith("bind "))).toEqual([`bind 127.0.0.1:${model.haproxy.stats_port}`]);
      expect(st).toEqual(expect.arrayContaining(["stats enable", "stats hide-version"]));
      const auth = st.filter((l) => l.startsWith("stats auth "));
      const password = ctx.secrets.statsPassword;
      if (password === undefined) {
        expect(auth).toEqual([]);
        expect(file.mode).toBe(0o644);
      } else {
        expect(auth).toHaveLength(1);
        expect(auth[0]).toContain(password);
        expect(file.mode).toBe(0o640);
        expect(file.owner).toBe("root");
        expect(file.group).toBe("haproxy");
      }
    });

    if (acme) it("has runbook steps with certbot behind HAProxy and no secret on any command line", () => {
      const steps = haproxyFamily.steps!(ctx);
      const commands = steps.flatMap((st) => stepLines(st));
      expect(steps.flatMap(stepPackages)).toEqual(expect.arrayContaining(["haproxy", "certbot"]));
      const certbot = commands.find((c) => c.includes("|| certbot "))!;
      expect(certbot).toContain(`certonly --standalone --http-01-address 127.0.0.1 --http-01-port ${model.haproxy.acme_port}`);
      for (const n of model.siteNames) expect(certbot).toContain(`-d ${n}`);
      // A self-signed PEM first (only if none exists), so HAProxy can start and route the challenge.
      const selfSigned = commands.findIndex((c) => c.includes("openssl req -x509") && c.startsWith(`test -e ${p.haproxyPem} ||`));
      expect(selfSigned).toBeGreaterThanOrEqual(0);
      expect(selfSigned).toBeLessThan(commands.indexOf(certbot));
      expect(commands).toContain(`haproxy -c -f ${p.haproxyConfig} && systemctl reload haproxy`);
      const text = JSON.stringify(steps);
      for (const secret of Object.values(ctx.secrets)) expect(text).not.toContain(secret);
    });
  });

  it("writes the stats password into haproxy.cfg (0640 root:haproxy) and no other file of the tree", () => {
    const ctx = lbOf(hostContexts("ha-cluster"));
    const password = ctx.secrets.statsPassword!;
    expect(password).toBeDefined();
    const tree = renderFixture("ha-cluster");
    const holders = [...tree].filter(([, f]) => f.content.includes(password));
    expect(holders.map(([path, f]) => [path, f.mode, f.owner, f.group])).toEqual([[`${ctx.host.name}${pathsOf(ctx.model).haproxyConfig}`, 0o640, "root", "haproxy"]]);
  });
});

describe("HAProxy options and version gates", () => {
  it("redirects with `redirect scheme` on the default ports", () => {
    const { s } = config(lbOf(hostContexts("ha-cluster")));
    expect(section(s, "frontend fe_http")).toContain("http-request redirect scheme https code 301 unless is_acme");
  });

  it("falls back to the pre-2.2 health check form only where `http-check send` does not exist (HAP-03)", () => {
    const check = (v: string) => section(config(lbOf(variantContexts("ha-sentinel", (m) => setKey(m, "platform.haproxy", v)))).s, "backend be_web");
    const modern = check("2.2.0");
    expect(modern.some((l) => l.startsWith("http-check send "))).toBe(true);
    expect(modern.filter((l) => l.startsWith("option httpchk"))).toEqual(["option httpchk"]);
    const legacy = check("2.1.12");
    expect(legacy.some((l) => l.startsWith("http-check send"))).toBe(false);
    expect(legacy).toContain("option httpchk GET /health-check/ HTTP/1.1\\r\\nHost:\\ iot.example.com\\r\\nX-Forwarded-Proto:\\ https");
  });

  it("offers X25519MLKEM768 only with OpenSSL 3.5", () => {
    const g = section(config(lbOf(variantContexts("ha-sentinel", (m) => setKey(m, "platform.openssl", "3.5.0")))).s, "global");
    expect(g).toContain("ssl-default-bind-curves X25519MLKEM768:X25519:prime256v1:secp384r1");
  });

  it("uses the model's ports, balance and timeouts, and no IPv6 binds when site.ipv6 is false", () => {
    const ctx = lbOf(
      variantContexts("ha-sentinel", (m) => {
        setKey(m, "site.ipv6", false);
        setKey(m, "site.http_port", 8081);
        setKey(m, "site.https_port", 8443);
        setKey(m, "site.websocket_path", "/socket/");
        setKey(m, "site.health_check_path", "/up/");
        setKey(m, "haproxy", { backend_port: 8090, acme_port: 8899, stats_port: 9404, balance: "leastconn", timeout_connect: "3s", timeout_tunnel: "2h", timeout_client_fin: "10s", timeout_http_keep_alive: "2s" });
      }),
    );
    const { s } = config(ctx);
    expect(section(s, "frontend fe_http").filter((l) => l.startsWith("bind "))).toEqual(["bind :8081"]);
    // Off the default ports the redirect drops the Host header's port and names the HTTPS one.
    expect(section(s, "frontend fe_http")).toContain("http-request redirect prefix https://%[req.hdr(host),field(1,:)]:8443 code 301 unless is_acme");
    expect(section(s, "frontend fe_https").filter((l) => l.startsWith("bind "))).toHaveLength(1);
    expect(section(s, "frontend fe_https")[0]).toMatch(/^bind :8443 ssl /);
    expect(section(s, "frontend fe_https")).toContain("acl is_websocket path_beg /socket/");
    expect(section(s, "backend be_acme")).toEqual(["server certbot 127.0.0.1:8899"]);
    expect(section(s, "listen stats")).toContain("bind 127.0.0.1:9404");
    const web = section(s, "backend be_web");
    expect(web).toContain("balance leastconn");
    expect(web).toContain("http-check send meth GET uri /up/ ver HTTP/1.1 hdr Host iot.example.com hdr X-Forwarded-Proto https");
    expect(section(s, "backend be_ws")).toContain("http-check send meth GET uri /socket/up/ ver HTTP/1.1 hdr Host iot.example.com hdr X-Forwarded-Proto https");
    expect(web).toContain("server app1 10.1.0.11:8090 check");
    expect(section(s, "defaults")).toEqual(expect.arrayContaining(["timeout connect 3s", "timeout client-fin 10s", "timeout http-keep-alive 2s"]));
    expect(section(s, "backend be_ws")).toContain("timeout tunnel 2h");
  });

  it("installs given certificate files into the PEM instead of asking Let's Encrypt", () => {
    const ctx = lbOf(
      variantContexts("ha-cluster", (m) => setKey(m, "site.tls", { mode: "files", certificate: "/etc/ssl/site/chain.pem", key: "/etc/ssl/site/key.pem" })),
    );
    const { s } = config(ctx);
    expect(s.has("backend be_acme")).toBe(false);
    expect(section(s, "frontend fe_http")).toContain("http-request redirect scheme https code 301");
    const steps = haproxyFamily.steps!(ctx);
    const commands = steps.flatMap((st) => stepLines(st));
    expect(commands.some((c) => c.startsWith("certbot"))).toBe(false);
    expect(steps.flatMap(stepPackages)).not.toContain("certbot");
    const pem = pathsOf(ctx.model).haproxyPem;
    // Only when the PEM is not that chain and key already: repeating the step changes nothing.
    expect(commands).toContain(
      `cat /etc/ssl/site/chain.pem /etc/ssl/site/key.pem | cmp -s - ${pem} || { cat /etc/ssl/site/chain.pem /etc/ssl/site/key.pem | install -m 0600 -o root -g root /dev/stdin ${pem}; }`,
    );
  });

  it("quotes a stats password with quotes, $, # and spaces as one HAProxy argument", () => {
    const nasty = `p a"s's $HOME #x \\y`;
    const ctx = lbOf(variantContexts("ha-sentinel", (m) => setKey(m, "haproxy.stats_password", nasty)));
    const { file } = config(ctx);
    const line = file.content.split("\n").find((l) => l.trim().startsWith("stats auth "))!.trim();
    // Double-quoted (the value holds a single quote): \" \\ and \$ are the only escapes.
    const arg = line.slice("stats auth ".length);
    expect(arg.startsWith('"') && arg.endsWith('"')).toBe(true);
    const unquoted = arg.slice(1, -1).replace(/\\(.)/g, "$1");
    expect(unquoted).toBe(`admin:${nasty}`);
    expect(file.mode).toBe(0o640);
  });
});
