/**
 * The nginx family: the site, its snippets and the ACME bootstrap site, read back with an nginx
 * config parser and checked against the model (errata section 5, NGX-01..18; INST-07).
 */
import { stepPackages, unguardedLines } from "../../src/artifacts/steps.js";
import { describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { nginxFamily } from "../../src/artifacts/nginx.js";
import { pathsOf, siteCertificate } from "../../src/artifacts/paths.js";
import { identifierFrom } from "../../src/model/normalize.js";
import type { FileSpec } from "../../src/tree.js";
import { fixtureNames, renderFixture } from "../helpers/fixtures.js";
import {
  directiveKey,
  expandIncludes,
  headerProblems,
  hostContexts,
  locationReport,
  parseNginx,
  setKey,
  variantContexts,
  type Directive,
} from "./nginx-conf.js";

const SECURITY_HEADER_NAMES = ["Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"];

interface Rendered {
  readonly ctx: HostContext;
  readonly files: Map<string, FileSpec>;
  readonly p: ReturnType<typeof pathsOf>;
  /** The site, includes expanded. */
  readonly site: Directive[];
  /** The site as written (includes not expanded). */
  readonly raw: Directive[];
  readonly text: (path: string) => string;
}

function rendered(ctx: HostContext): Rendered {
  const files = new Map(nginxFamily.files(ctx).map((f) => [f.path, f]));
  const p = pathsOf(ctx.model);
  const text = (path: string) => {
    const f = files.get(path);
    if (!f) throw new Error(`${ctx.host.name}: no ${path}`);
    return f.content;
  };
  const raw = parseNginx(text(p.nginxSite), p.nginxSite);
  return { ctx, files, p, raw, site: expandIncludes(raw, (path) => files.get(path)?.content), text };
}

const webHosts = (ctxs: HostContext[]) => ctxs.filter((c) => c.host.roles.has("web"));
const servers = (ds: Directive[]) => ds.filter((d) => d.name === "server").map((d) => d.block!);
const all = (ds: Directive[], name: string): Directive[] => ds.flatMap((d) => [...(d.name === name ? [d] : []), ...(d.block ? all(d.block, name) : [])]);
const args = (ds: Directive[], name: string) => ds.filter((d) => d.name === name).map((d) => d.args.join(" "));
const location = (server: Directive[], path: string) => server.find((d) => d.name === "location" && d.args.join(" ") === path)?.block;
/** The server that serves the site (it proxies to the application). */
const mainServer = (site: Directive[]) => {
  const found = servers(site).filter((s) => location(s, "/")?.some((d) => d.name === "proxy_pass"));
  expect(found).toHaveLength(1);
  return found[0]!;
};
const one = (variants: HostContext[]) => rendered(webHosts(variants)[0]!);

const cases = fixtureNames().flatMap((name) => webHosts(hostContexts(name)).map((ctx) => ({ name: `${name}/${ctx.host.name}`, ctx })));

describe("nginx family", () => {
  it("covers every web host of every fixture", () => {
    // single-node, minimal, options, pg12: one each; ha-cluster, ha-monitored: 3; ha-sentinel, fleet: 2; compose: none.
    expect(cases.map((c) => c.name)).toEqual(
      expect.arrayContaining(["fleet/app1", "fleet/app2", "ha-cluster/app1", "ha-cluster/app2", "ha-cluster/app3", "ha-sentinel/app1", "ha-sentinel/app2", "minimal/server"]),
    );
    expect(cases).toHaveLength(14);
  });

  it("places the files under each web host in the rendered tree, with the family's content and modes", () => {
    const tree = renderFixture("ha-cluster");
    for (const ctx of webHosts(hostContexts("ha-cluster"))) {
      for (const f of nginxFamily.files(ctx)) {
        const placed = tree.get(`${ctx.host.name}${f.path}`);
        expect(placed, `${ctx.host.name}${f.path}`).toBeDefined();
        expect(placed!.content).toBe(f.content);
        expect([placed!.mode, placed!.owner, placed!.group]).toEqual([0o644, "root", "root"]);
      }
    }
    expect([...tree.keys()].filter((k) => k.includes("/etc/nginx/")).map((k) => k.split("/")[0])).not.toContain("lb1");
  });

  it("renders nothing on hosts without the web role", () => {
    for (const name of fixtureNames()) {
      for (const ctx of hostContexts(name).filter((c) => !c.host.roles.has("web"))) {
        expect(nginxFamily.files(ctx), `${name}/${ctx.host.name}`).toEqual([]);
        expect(nginxFamily.steps!(ctx)).toEqual([]);
      }
    }
  });

  describe.each(cases)("$name", ({ ctx }) => {
    const r = rendered(ctx);
    const { model } = ctx;
    const lb = model.topology.lb;
    const main = mainServer(r.site);

    it("limits site.admin_path to site.admin_allow, proxied as / is, or has no admin location without a list", () => {
      const admin = location(main, `^~ ${model.site.admin_path}`);
      if (model.site.admin_allow.length === 0) return expect(admin).toBeUndefined();
      expect(admin, "no admin location").toBeDefined();
      const access = admin!.filter((d) => d.name === "allow" || d.name === "deny").map((d) => `${d.name} ${d.args.join(" ")}`);
      expect(access).toEqual([...model.site.admin_allow.map((n) => `allow ${n}`), "deny all"]);
      const body = (b: Directive[]) => b.filter((d) => d.name !== "allow" && d.name !== "deny").map((d) => `${d.name} ${d.args.join(" ")}`);
      expect(body(admin!)).toEqual(body(location(main, "/")!));
      expect(admin!.some((d) => d.name === "add_header"), "an add_header here would drop the server's security headers").toBe(false);
      // Behind the lb the check needs realip from the lb, and only from it.
      if (lb) expect(args(main, "set_real_ip_from")).toEqual([lb.address]);
    });

    it("writes the site and both snippets as world-readable root files", () => {
      for (const path of [r.p.nginxSite, r.p.nginxSecurityHeaders, r.p.nginxProxyHeaders]) {
        const f = r.files.get(path);
        expect(f, path).toBeDefined();
        expect(f!.mode).toBe(0o644);
        expect(f!.owner ?? "root").toBe("root");
      }
    });

    it("sends the four security headers with `always`, HSTS from the model, and no X-XSS-Protection", () => {
      const snippet = parseNginx(r.text(r.p.nginxSecurityHeaders));
      expect(snippet.every((d) => d.name === "add_header")).toBe(true);
      expect(snippet.map((d) => d.args[0])).toEqual(SECURITY_HEADER_NAMES);
      expect(snippet.every((d) => d.args.length === 3 && d.args[2] === "always")).toBe(true);
      const hsts = model.site.hsts;
      const hstsArgs = snippet[0]!.args[1]!.split("; ");
      expect(hstsArgs[0]).toBe(`max-age=${hsts.max_age}`);
      expect(hstsArgs.includes("includeSubDomains")).toBe(hsts.include_subdomains);
      expect(hstsArgs.includes("preload")).toBe(hsts.preload);
      expect(snippet.find((d) => d.args[0] === "X-Frame-Options")!.args[1]).toBe("DENY");
      const everyArg = [...r.site, ...snippet].flatMap(function flat(d): string[] {
        return [d.name, ...d.args, ...(d.block ?? []).flatMap(flat)];
      });
      expect(everyArg.filter((a) => /X-XSS-Protection/i.test(a))).toEqual([]);
    });

    it("keeps the security headers in every location that has its own add_header (NGX-01)", () => {
      const required = parseNginx(r.text(r.p.nginxSecurityHeaders)).map(directiveKey);
      expect(headerProblems(r.site, required)).toEqual([]);
      // Written form: a location with add_header includes the snippet itself, not a copy.
      for (const loc of all(r.raw, "location")) {
        if (loc.block!.some((d) => d.name === "add_header")) {
          expect(args(loc.block!, "include"), `location ${loc.args.join(" ")}`).toContain(r.p.nginxSecurityHeaders);
        }
      }
      // At least one location really has its own add_header (media), so the rule is exercised.
      // Media in S3 are not served by nginx at all.
      const reports = locationReport(r.site, "add_header");
      if (model.media.storage === "s3") return expect(reports.find((l) => l.location === model.site.media_url)).toBeUndefined();
      const media = reports.find((l) => l.location === model.site.media_url)!;
      expect(media.own.length).toBeGreaterThan(required.length);
      expect(media.own).toEqual(expect.arrayContaining(required));
    });

    it("lets a location without add_header inherit the server's security headers", () => {
      const required = parseNginx(r.text(r.p.nginxSecurityHeaders)).map(directiveKey);
      const serverLevel = main.filter((d) => d.name === "add_header").map(directiveKey);
      expect(serverLevel).toEqual(required);
      const stat = locationReport(r.site, "add_header").find((l) => l.location === model.site.static_url)!;
      expect(stat.own).toEqual([]);
      expect(stat.effective).toEqual(serverLevel);
      expect(args(mainServer(r.raw), "include")).toContain(r.p.nginxSecurityHeaders);
    });

    it("gives every proxying location the whole proxy header set (NGX-08) and never $server_name (NGX-06)", () => {
      const set = parseNginx(r.text(r.p.nginxProxyHeaders)).filter((d) => d.name === "proxy_set_header").map(directiveKey);
      expect(set.map((s) => s.split(" ")[1])).toEqual(expect.arrayContaining(["Host", "X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto"]));
      const proxying = locationReport(r.site, "proxy_set_header").filter((l) => l.names.has("proxy_pass"));
      expect(proxying.length).toBeGreaterThan(0);
      for (const l of proxying) expect(l.effective, `location ${l.location}`).toEqual(expect.arrayContaining(set));
      const host = set.find((s) => s.startsWith("proxy_set_header Host "));
      expect(host).toBe("proxy_set_header Host $host");
      // One address, the client's as nginx took it: never the client's own chain appended to
      // (issue #9 item 4: daphne and Django code read the first, client-chosen entry).
      expect(set.find((s) => s.startsWith("proxy_set_header X-Forwarded-For "))).toBe("proxy_set_header X-Forwarded-For $remote_addr");
      const xfh = set.find((s) => s.startsWith("proxy_set_header X-Forwarded-Host "));
      if (xfh !== undefined) expect(xfh).toBe("proxy_set_header X-Forwarded-Host $host");
      const everyArg = r.site.flatMap(function flat(d): string[] {
        return [...d.args, ...(d.block ?? []).flatMap(flat)];
      });
      expect(everyArg.filter((a) => a.includes("$server_name"))).toEqual([]);
    });

    it("prefixes upstreams, the upgrade map and the TLS session cache with the project (NGX-09, NGX-10)", () => {
      const id = identifierFrom(model.project.name);
      const upstreams = r.site.filter((d) => d.name === "upstream");
      const byName = new Map(upstreams.map((u) => [u.args[0], args(u.block!, "server")]));
      if (ctx.host.roles.has("app")) expect(byName.get(`${id}_wsgi`)).toEqual([`127.0.0.1:${model.gunicorn.port}`]);
      if (ctx.host.roles.has("asgi")) expect(byName.get(`${id}_asgi`)).toEqual([`127.0.0.1:${model.daphne.port}`]);
      for (const name of byName.keys()) expect(name!.startsWith(`${id}_`)).toBe(true);
      for (const map of r.site.filter((d) => d.name === "map")) expect(map.args[1]).toBe(`$${id}_connection_upgrade`);
      for (const cache of all(r.site, "ssl_session_cache")) {
        expect(cache.args[0]).toMatch(new RegExp(`^shared:${id}_[a-z]+:\\d+m$`));
        expect(cache.args[0]).not.toMatch(/^shared:SSL:/);
      }
    });

    it("serves static and media from the model's directories with paired trailing slashes (NGX-11, NGX-18)", () => {
      const stat = location(main, model.site.static_url)!;
      expect(args(stat, "alias")).toEqual([`${model.project.staticDir}/`]);
      // Media in S3 are served from the bucket, not by nginx.
      if (model.media.storage === "s3") return expect(location(main, model.site.media_url)).toBeUndefined();
      const media = location(main, model.site.media_url)!;
      expect(args(media, "alias")).toEqual([`${model.project.mediaDir}/`]);
      for (const loc of all(r.site, "location")) {
        const alias = args(loc.block!, "alias")[0];
        if (alias !== undefined) expect(loc.args.at(-1)!.endsWith("/"), `location ${loc.args.join(" ")}`).toBe(alias.endsWith("/"));
      }
      const mediaHeaders = locationReport(r.site, "add_header").find((l) => l.location === model.site.media_url)!;
      expect(mediaHeaders.effective).toContain('add_header X-Content-Type-Options nosniff always');
    });

    it("routes the websocket path to daphne only on asgi hosts, with daphne's timeout", () => {
      const ws = location(main, model.site.websocket_path);
      if (!ctx.host.roles.has("asgi")) {
        expect(ws).toBeUndefined();
        expect(r.site.some((d) => d.name === "map")).toBe(false);
        return;
      }
      const id = identifierFrom(model.project.name);
      expect(args(ws!, "proxy_pass")).toEqual([`http://${id}_asgi`]);
      expect(args(ws!, "proxy_http_version")).toEqual(["1.1"]);
      expect(args(ws!, "proxy_set_header")).toEqual(expect.arrayContaining(["Upgrade $http_upgrade", `Connection $${id}_connection_upgrade`]));
      expect(args(ws!, "proxy_read_timeout")).toEqual([`${model.daphne.websocket_timeout}s`]);
    });

    it("takes the body size and log paths from the model, and never staples OCSP (NGX-14)", () => {
      expect(args(main, "client_max_body_size")).toEqual([model.site.max_body]);
      expect(args(main, "access_log")).toEqual([r.p.nginxAccessLog]);
      expect(args(main, "error_log")).toEqual([r.p.nginxErrorLog]);
      expect(all(r.site, "ssl_stapling")).toEqual([]);
    });

    if (lb) {
      it("listens only on the private address for the load balancer, plain HTTP, real IP from it", () => {
        expect(servers(r.site)).toHaveLength(1);
        expect(args(main, "listen")).toEqual([`${ctx.host.address}:${model.haproxy.backend_port}`]);
        expect(all(r.site, "ssl_certificate")).toEqual([]);
        expect(args(main, "server_name")).toEqual([model.siteNames.join(" ")]);
        expect(args(main, "set_real_ip_from")).toEqual([lb.address]);
        expect(args(main, "real_ip_header")).toEqual(["X-Forwarded-For"]);
        // The last address of HAProxy's header, not the first one a client could have chosen.
        expect(all(r.site, "real_ip_recursive")).toEqual([]);
        const proto = args(parseNginx(r.text(r.p.nginxProxyHeaders)), "proxy_set_header").find((a) => a.startsWith("X-Forwarded-Proto "));
        expect(proto).toBe("X-Forwarded-Proto $http_x_forwarded_proto");
        expect(r.files.has(r.p.nginxAcmeSite)).toBe(false);
      });
    } else {
      it("redirects :80 to HTTPS after the ACME location, and serves TLS with the site certificate", () => {
        const http = servers(r.site).find((s) => args(s, "listen").includes(String(model.site.http_port)))!;
        expect(args(http, "listen")).toEqual(model.site.ipv6 ? ["80", "[::]:80"] : ["80"]);
        expect(args(http, "server_name")).toEqual([model.siteNames.join(" ")]);
        const acme = location(http, "/.well-known/acme-challenge/");
        if (model.site.tls.mode === "letsencrypt") expect(args(acme!, "root")).toEqual([r.p.acmeWebroot]);
        else expect(acme).toBeUndefined();
        expect(args(location(http, "/")!, "return")).toEqual(["301 https://$host$request_uri"]);
        const cert = siteCertificate(model);
        expect(args(main, "ssl_certificate")).toEqual([cert.certificate]);
        expect(args(main, "ssl_certificate_key")).toEqual([cert.key]);
        expect(args(main, "ssl_protocols")).toEqual(["TLSv1.2 TLSv1.3"]);
        expect(args(main, "ssl_prefer_server_ciphers")).toEqual(["off"]);
        expect(args(main, "ssl_ciphers")[0]!.split(":")).toContain("ECDHE-RSA-CHACHA20-POLY1305");
        expect(args(main, "server_name")).toEqual([model.siteNames.join(" ")]);
      });

      it("renders the HTTP-only ACME bootstrap site exactly for Let's Encrypt", () => {
        const acme = r.files.get(r.p.nginxAcmeSite);
        if (model.site.tls.mode !== "letsencrypt") {
          expect(acme).toBeUndefined();
          return;
        }
        const site = parseNginx(acme!.content);
        expect(servers(site)).toHaveLength(1);
        const s = servers(site)[0]!;
        expect(args(s, "listen")).toEqual(model.site.ipv6 ? ["80", "[::]:80"] : ["80"]);
        expect(all(site, "ssl_certificate")).toEqual([]);
        expect(args(location(s, "/.well-known/acme-challenge/")!, "root")).toEqual([r.p.acmeWebroot]);
        expect(args(s, "server_name")).toEqual([model.siteNames.join(" ")]);
      });
    }

    it("has runbook steps that enable the site with nginx -t before the reload, and no secret", () => {
      const steps = nginxFamily.steps!(ctx);
      const commands = steps.flatMap(unguardedLines);
      expect(steps.flatMap(stepPackages)).toContain("nginx");
      expect(commands).toContain(`ln -sfn ${r.p.nginxSite} ${r.p.nginxSiteEnabled}`);
      expect(commands).toContain("nginx -t && systemctl reload nginx");
      const text = JSON.stringify(steps);
      for (const secret of Object.values(ctx.secrets)) expect(text).not.toContain(secret);
      const certbot = commands.filter((c) => c.startsWith("certbot "));
      if (lb || model.site.tls.mode === "files") {
        expect(certbot).toEqual([]);
        return;
      }
      // INST-07: acme site on, certbot --webroot, acme site off, then the main site.
      expect(certbot).toHaveLength(1);
      const c = certbot[0]!;
      expect(c).toContain(`certonly --webroot -w ${r.p.acmeWebroot}`);
      for (const n of model.siteNames) expect(c).toContain(`-d ${n}`);
      const email = model.site.tls.mode === "letsencrypt" ? model.site.tls.email : undefined;
      expect(c).toContain(email ? `--email ${email}` : "--register-unsafely-without-email");
      expect(c).toContain("--agree-tos --non-interactive");
      const order = (needle: string) => commands.findIndex((x) => x.includes(needle));
      expect(order(`ln -sfn ${r.p.nginxAcmeSite}`)).toBeLessThan(order("certbot "));
      // Guarded by the certificate: a second run changes nothing.
      const guarded = steps.flatMap((s) => (s.action.kind === "commands" ? s.action.commands : [])).find((x) => x.run.startsWith("certbot "))!;
      expect(guarded.creates).toBe(`/etc/letsencrypt/live/${model.site.domain}/fullchain.pem`);
      expect(order("certbot ")).toBeLessThan(order(`rm -f ${r.p.nginxAcmeSiteEnabled}`));
      expect(order(`rm -f ${r.p.nginxAcmeSiteEnabled}`)).toBeLessThan(order(`ln -sfn ${r.p.nginxSite} `));
    });
  });
});

describe("nginx version gates", () => {
  it("uses `listen ... http2` before 1.25.1 and `http2 on` from 1.25.1 (NGX-02)", () => {
    const old = one(variantContexts("minimal", (m) => setKey(m, "platform.nginx", "1.25.0")));
    const main = mainServer(old.site);
    expect(args(main, "listen")).toEqual(["443 ssl http2", "[::]:443 ssl http2"]);
    expect(args(main, "http2")).toEqual([]);
    const current = one(variantContexts("minimal", (m) => setKey(m, "platform.nginx", "1.25.1")));
    const main2 = mainServer(current.site);
    expect(args(main2, "listen")).toEqual(["443 ssl", "[::]:443 ssl"]);
    expect(args(main2, "http2")).toEqual(["on"]);
  });

  it("adds the ssl_reject_handshake catch-all only from 1.19.4 (NGX-16)", () => {
    const catchAll = (r: Rendered) => servers(r.site).filter((s) => args(s, "ssl_reject_handshake").length > 0);
    const with_ = one(variantContexts("minimal", (m) => setKey(m, "platform.nginx", "1.19.4")));
    const [c] = catchAll(with_);
    expect(args(c!, "listen")).toEqual(["443 ssl http2 default_server", "[::]:443 ssl http2 default_server"]);
    expect(args(c!, "ssl_reject_handshake")).toEqual(["on"]);
    // Only the catch-all claims default_server.
    expect(all(with_.site, "listen").filter((l) => l.args.includes("default_server"))).toHaveLength(2);
    const ubuntu2204 = one(variantContexts("minimal", (m) => setKey(m, "platform.distribution", "ubuntu-22.04")));
    expect(catchAll(ubuntu2204)).toEqual([]);
  });

  it("turns session tickets off only before 1.23.2", () => {
    const tickets = (v: string) => args(mainServer(one(variantContexts("minimal", (m) => setKey(m, "platform.nginx", v))).site), "ssl_session_tickets");
    expect(tickets("1.23.1")).toEqual(["off"]);
    expect(tickets("1.23.2")).toEqual([]);
  });

  it("offers X25519MLKEM768 only with OpenSSL 3.5 (NGX-04)", () => {
    const curves = (v: string) => args(mainServer(one(variantContexts("minimal", (m) => setKey(m, "platform.openssl", v))).site), "ssl_ecdh_curve")[0];
    expect(curves("3.0.13")).toBe("X25519:prime256v1:secp384r1");
    expect(curves("3.5.0")).toBe("X25519MLKEM768:X25519:prime256v1:secp384r1");
  });
});

describe("nginx options", () => {
  it("listens on IPv6 only when site.ipv6 (NGX-12)", () => {
    const r = one(variantContexts("single-node", (m) => setKey(m, "site.ipv6", false)));
    expect(all(r.site, "listen").map((l) => l.args[0])).not.toContain("[::]:80");
    expect(all(r.site, "listen").filter((l) => l.args[0]!.startsWith("["))).toEqual([]);
    expect(all(parseNginx(r.text(r.p.nginxAcmeSite)), "listen").map((l) => l.args.join(" "))).toEqual(["80"]);
  });

  it("uses the model's ports, paths and names, not the defaults", () => {
    const r = one(
      variantContexts("single-node", (m) => {
        setKey(m, "site.http_port", 8081);
        setKey(m, "site.https_port", 8443);
        setKey(m, "site.static_url", "/assets/");
        setKey(m, "site.media_url", "/uploads/");
        setKey(m, "site.websocket_path", "/socket/");
        setKey(m, "gunicorn.port", 9200);
        setKey(m, "daphne.port", 9101);
        setKey(m, "daphne.websocket_timeout", 600);
        setKey(m, "project.name", "nova-cloud");
        setKey(m, "project.root", "/srv/nc");
      }),
    );
    const main = mainServer(r.site);
    expect(args(main, "listen")).toEqual(["8443 ssl http2", "[::]:8443 ssl http2"]);
    const http = servers(r.site).find((s) => args(s, "listen").includes("8081"))!;
    expect(args(location(http, "/")!, "return")).toEqual(["301 https://$host:8443$request_uri"]);
    expect(args(location(main, "/assets/")!, "alias")).toEqual(["/srv/nc/static/"]);
    expect(args(location(main, "/uploads/")!, "alias")).toEqual(["/srv/nc/media/"]);
    expect(args(location(main, "/socket/")!, "proxy_read_timeout")).toEqual(["600s"]);
    expect(location(main, "/ws/")).toBeUndefined();
    const ups = Object.fromEntries(r.site.filter((d) => d.name === "upstream").map((u) => [u.args[0], args(u.block!, "server")]));
    expect(ups).toEqual({ nova_cloud_wsgi: ["127.0.0.1:9200"], nova_cloud_asgi: ["127.0.0.1:9101"] });
    expect(r.p.nginxSite).toBe("/etc/nginx/sites-available/nova-cloud");
    expect(args(parseNginx(r.text(r.p.nginxAcmeSite)).find((d) => d.name === "server")!.block!, "listen")).toEqual(["8081", "[::]:8081"]);
  });

  it("sends HSTS with includeSubDomains and preload only when the model asks", () => {
    const r = one(variantContexts("minimal", (m) => setKey(m, "site.hsts", { max_age: 31536000, include_subdomains: true, preload: true })));
    expect(parseNginx(r.text(r.p.nginxSecurityHeaders))[0]!.args).toEqual([
      "Strict-Transport-Security",
      "max-age=31536000; includeSubDomains; preload",
      "always",
    ]);
  });
});
