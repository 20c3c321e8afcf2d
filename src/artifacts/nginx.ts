/**
 * nginx on every "web" host: the site, a security-header snippet and a proxy-header snippet
 * (errata section 5, NGX-01..18), and for a public Let's Encrypt host an HTTP-only bootstrap
 * site that answers ACME challenges before the certificate exists (INST-07, TLS-02).
 *
 * Two shapes, decided by the topology:
 * - public (no lb): :80 answers ACME and redirects, :443 terminates TLS;
 * - behind the lb: plain HTTP on <host address>:<haproxy.backend_port>, real client addresses
 *   from HAProxy's X-Forwarded-For, X-Forwarded-Proto passed on as HAProxy set it.
 * In both, nginx serves static and media files and proxies to gunicorn and daphne on loopback.
 */
import type { Capabilities } from "../model/capabilities.js";
import { behindLb, flowsTo } from "../model/flows.js";
import { identifierFrom, type Model } from "../model/normalize.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import type { FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import { asgiHealthCheckPath, siteCertificate, urlOf, type Paths } from "./paths.js";
import { reloadUnit } from "./effects.js";
import { absent, attributes, directory, link, type Step } from "./steps.js";
import { acmePortNote, certbotAccount, hstsValue, mozillaIntermediate, siteCertificateNames } from "./tls.js";

/** Names that live in nginx's shared http{} context, so prefixed with the project (NGX-09). */
export function nginxNames(model: Model) {
  const id = identifierFrom(model.project.name);
  return {
    wsgiUpstream: `${id}_wsgi`,
    asgiUpstream: `${id}_asgi`,
    /** `map $http_upgrade` result: "upgrade" for WebSocket requests, "close" otherwise (NGX-07). */
    connectionUpgrade: `${id}_connection_upgrade`,
    /** ssl_session_cache zone: a generic `SSL` collides with other sites and certbot (NGX-10). */
    sessionCache: `${id}_tls`,
  };
}

/** The headers every response of the site carries (NGX-03, NGX-05, NGX-13). */
export function securityHeaders(model: Model): { name: string; value: string }[] {
  return [
    { name: "Strict-Transport-Security", value: hstsValue(model) },
    { name: "X-Content-Type-Options", value: "nosniff" },
    { name: "X-Frame-Options", value: "DENY" },
    { name: "Referrer-Policy", value: "strict-origin-when-cross-origin" },
  ];
}

/** Only public Let's Encrypt hosts need the HTTP-only bootstrap site. */
function needsAcmeSite(ctx: HostContext): boolean {
  return !behindLb(ctx.model) && ctx.model.site.tls.mode === "letsencrypt";
}


/** What differs between the site on a host and the one in the Compose bundle. */
export interface SiteSetting {
  /** Where gunicorn and daphne answer (loopback on hosts, service names in Compose); undefined when absent. */
  readonly wsgiHost: string | undefined;
  readonly asgiHost: string | undefined;
  readonly snippets: { readonly security: string; readonly proxy: string };
  readonly logs: { readonly access: string; readonly error: string };
  /** Behind the lb: the private listen address and the lb's address (trusted for X-Forwarded-For). */
  readonly private?: { readonly listen: string; readonly lbAddress: string };
  /** Terminating TLS: ports, IPv6 and the version gates of the nginx that runs it. */
  readonly public?: {
    /** The ACME challenge webroot, with Let's Encrypt. */
    readonly acmeWebroot: string | undefined;
    readonly httpPort: number;
    readonly httpsPort: number;
    /** The HTTPS port clients reach, when it is not the one nginx listens on (a published container port). */
    readonly publishedHttpsPort?: number;
    readonly ipv6: boolean;
    readonly caps: Capabilities;
  };
}

/** The view of templates/nginx/site.conf.njk. */
export function siteView(model: Model, setting: SiteSetting) {
  const names = nginxNames(model);
  const ws = model.daphne.websocket_timeout;
  const cert = siteCertificate(model);
  const pub = setting.public;
  return {
    serverNames: model.siteNames,
    names,
    securityHeadersSnippet: setting.snippets.security,
    proxyHeadersSnippet: setting.snippets.proxy,
    maxBody: model.site.max_body,
    accessLog: setting.logs.access,
    errorLog: setting.logs.error,
    // NGX-11: location and alias both end in '/', so /static../ cannot escape the directory.
    static: { url: model.site.static_url, dir: `${model.project.staticDir}/` },
    // Uploads in S3 are served from the bucket (django-storages' URLs), not by nginx.
    media: model.media.storage === "s3" ? undefined : { url: model.site.media_url, dir: `${model.project.mediaDir}/` },
    wsgi: setting.wsgiHost === undefined ? undefined : { host: setting.wsgiHost, port: model.gunicorn.port },
    asgi:
      setting.asgiHost === undefined
        ? undefined
        : {
            host: setting.asgiHost,
            port: model.daphne.port,
            path: model.site.websocket_path,
            // Daphne closes a socket after websocket_timeout and pings every 20 s; nginx must not
            // give up sooner on an idle one (default proxy_read_timeout is 60 s; NGX-07).
            timeout: ws > 0 ? `${ws}s` : undefined,
            // Behind the lb, the path HAProxy checks daphne through, and daphne's health check.
            healthCheck: setting.private ? { path: asgiHealthCheckPath(model), upstreamPath: model.site.health_check_path } : undefined,
          },
    // The Django admin, limited to site.admin_allow (errata 10.1.4); without a list nothing
    // changes. Checked against $remote_addr: the peer, or behind the lb the address realip took
    // from HAProxy's X-Forwarded-For (trusted from the lb only), the one answer for both.
    admin: model.site.admin_allow.length === 0 ? undefined : { path: model.site.admin_path, allow: model.site.admin_allow },
    // An asgi-only web host serves HTTP through daphne too (Django's ASGI application does both).
    rootUpstream: setting.wsgiHost !== undefined ? names.wsgiUpstream : names.asgiUpstream,
    private: setting.private,
    public: pub && {
      // Port 80 answers ACME challenges for every name on the certificate, mqtt.domain included
      // when the broker on this host uses it (an HTTPS request for that name has no site here).
      httpServerNames: siteCertificateNames(model),
      httpPort: pub.httpPort,
      httpsPort: pub.httpsPort,
      ipv6: pub.ipv6,
      http2Directive: pub.caps.nginx.http2Directive,
      rejectHandshake: pub.caps.nginx.rejectHandshake,
      sessionTicketsOff: pub.caps.nginx.sessionTicketsOff,
      certificate: cert.certificate,
      key: cert.key,
      tls: mozillaIntermediate(pub.caps),
      acmeWebroot: pub.acmeWebroot,
      // nginx variables, not model values: the request's own host and path.
      redirect: urlOf("https", "$host", pub.publishedHttpsPort ?? pub.httpsPort, "$request_uri"),
    },
  };
}

/** The ACME webroot when the site's certificate comes from Let's Encrypt. */
export function acmeWebroot(model: Model, paths: Paths): string | undefined {
  return model.site.tls.mode === "letsencrypt" ? paths.acmeWebroot : undefined;
}

/** The site on a web host: upstreams on loopback; private behind the lb, public otherwise. */
function hostSiteSetting(ctx: HostContext): SiteSetting {
  const { model, host } = ctx;
  const paths = ctx.paths;
  // The load balancer is the one client of the private listener (its flow to this host).
  const lb = flowsTo(ctx.flows, host, "nginx-backend")[0]?.from;
  return {
    wsgiHost: has(ctx, "app") ? "127.0.0.1" : undefined,
    asgiHost: has(ctx, "asgi") ? "127.0.0.1" : undefined,
    snippets: { security: paths.nginxSecurityHeaders, proxy: paths.nginxProxyHeaders },
    logs: { access: paths.nginxAccessLog, error: paths.nginxErrorLog },
    ...(lb
      ? { private: { listen: `${host.address}:${model.haproxy.backend_port}`, lbAddress: lb.address } }
      : {
          public: {
            acmeWebroot: acmeWebroot(model, paths),
            httpPort: model.site.http_port,
            httpsPort: model.site.https_port,
            ipv6: model.site.ipv6,
            caps: model.caps,
          },
        }),
  };
}

/** The view of templates/nginx/proxy-headers.conf.njk. */
export function proxyHeadersView(model: Model, lb: boolean) {
  return {
    behindLb: lb,
    // Behind HAProxy, nginx's own $scheme is always http: pass on what HAProxy set (it overwrites
    // any client value, HAP-04). X-Forwarded-For is always the one address nginx takes for the
    // client ($remote_addr: the peer, or behind the lb what realip took from HAProxy's header),
    // never the client's own chain: daphne and Django code read its first entry.
    forwardedProto: lb ? "$http_x_forwarded_proto" : "$scheme",
    // NGX-15: Django sends its own X-Frame-Options, X-Content-Type-Options and Referrer-Policy;
    // nginx owns these headers, so the upstream's copies are hidden instead of duplicated.
    hidden: securityHeaders(model).map((h) => h.name),
  };
}

function acmeSiteView(ctx: HostContext) {
  const { model } = ctx;
  return {
    // Every name the first certificate is asked for (mqtt.domain too when the broker here uses it).
    serverNames: siteCertificateNames(model),
    httpPort: model.site.http_port,
    ipv6: model.site.ipv6,
    acmeWebroot: ctx.paths.acmeWebroot,
  };
}

function nginxFiles(ctx: HostContext): FileSpec[] {
  if (!has(ctx, "web")) return [];
  const { model } = ctx;
  const paths = ctx.paths;
  const files = [
    templateFile(paths.nginxSite, "nginx/site.conf.njk", siteView(model, hostSiteSetting(ctx)), { comment: "#" }),
    templateFile(paths.nginxSecurityHeaders, "nginx/security-headers.conf.njk", { headers: securityHeaders(model) }, { comment: "#" }),
    templateFile(paths.nginxProxyHeaders, "nginx/proxy-headers.conf.njk", proxyHeadersView(model, behindLb(model)), { comment: "#" }),
  ];
  if (needsAcmeSite(ctx)) files.push(templateFile(paths.nginxAcmeSite, "nginx/acme-site.conf.njk", acmeSiteView(ctx), { comment: "#" }));
  return files;
}

/** nginx refuses a broken configuration before it reloads. */
const NGINX_TEST = "nginx -t";

function nginxSteps(ctx: HostContext): Step[] {
  if (!has(ctx, "web")) return [];
  const { model } = ctx;
  const paths = ctx.paths;
  const lb = behindLb(model);
  const tls = model.site.tls;
  const steps: Step[] = [{ id: "nginx.package", phase: "packages", title: "nginx", action: { kind: "packages", packages: ["nginx"] } }];

  if (!lb && tls.mode === "letsencrypt") {
    steps.push({
      id: "nginx.certificate",
      phase: "certificates",
      title: "Obtain the site certificate from Let's Encrypt",
      packages: ["certbot"],
      action: {
        kind: "commands",
        commands: [
          directory(paths.acmeWebroot, 0o755),
          absent(paths.nginxDefaultSiteEnabled),
          { ...link(paths.nginxAcmeSite, paths.nginxAcmeSiteEnabled), creates: siteCertificate(model).certificate },
          { run: `${NGINX_TEST} && systemctl reload-or-restart nginx`, creates: siteCertificate(model).certificate },
          { run: ["certbot certonly --webroot -w", shell(paths.acmeWebroot), ...certbotAccount(model)].join(" "), creates: siteCertificate(model).certificate },
          absent(paths.nginxAcmeSiteEnabled),
        ],
      },
      effects: [reloadUnit("nginx", NGINX_TEST)],
      why:
        "The TLS site names certificate files that do not exist before certbot runs, and nginx refuses to load it without them. " +
        `The HTTP-only ${paths.nginxAcmeSite} answers the challenge first; renewals later use the ACME location of the ` +
        `main site on the same webroot, and the deploy hook (${paths.certbotDeployHook}) reloads what uses the certificate.` +
        acmePortNote(model),
    });
  } else if (!lb && tls.mode === "files") {
    steps.push({
      id: "nginx.certificate",
      phase: "certificates",
      title: "Install the site certificate",
      action: {
        kind: "commands",
        commands: [{ run: `test -s ${shell(tls.certificate)} && test -s ${shell(tls.key)}`, changes: { never: true } }, attributes(tls.key, "root", "root", 0o600)],
      },
      why: `Put the certificate chain at ${tls.certificate} and its key at ${tls.key} before enabling the site: nginx refuses to load a site whose certificate is missing. The master process reads the key as root.`,
    });
  }

  steps.push(
    {
      id: "nginx.site",
      phase: "services",
      title: "Enable the nginx site",
      action: {
        kind: "commands",
        commands: [link(paths.nginxSite, paths.nginxSiteEnabled), absent(paths.nginxDefaultSiteEnabled)],
      },
      effects: [reloadUnit("nginx", NGINX_TEST)],
      why: `Debian's default site is removed: it claims default_server on port 80. The nginx user (www-data) needs +x on every directory above ${model.project.staticDir} and ${model.project.mediaDir}.`,
    },
    {
      id: "nginx.reload",
      phase: "services",
      title: "Reload nginx",
      action: { kind: "service", units: ["nginx"], enable: true, state: "reloaded", test: NGINX_TEST },
      why: "`nginx -t` refuses a broken configuration before the reload.",
    },
  );

  const health = model.site.health_check_path;
  // Behind the lb: the requests HAProxy's checks send (the site's Host, X-Forwarded-Proto https),
  // to the app and, on an asgi host, to daphne.
  const checked = [health, ...(has(ctx, "asgi") ? [asgiHealthCheckPath(model)] : [])];
  const verify = lb
    ? checked.map(
        (path) =>
          `curl -sS -o /dev/null -w '%{http_code}\\n' -H ${shell(`Host: ${model.site.domain}`)} -H 'X-Forwarded-Proto: https' ${shell(`http://${ctx.host.address}:${model.haproxy.backend_port}${path}`)}`,
      )
    : [`curl -sSI ${shell(urlOf("https", model.site.domain, model.site.https_port, health))}`, `curl -sSI ${shell(urlOf("http", model.site.domain, model.site.http_port, "/"))}`];
  steps.push({
    id: "nginx.check",
    phase: "verify",
    title: "Check nginx",
    action: { kind: "check", commands: verify },
    why: lb
      ? `The load balancer checks ${checked.join(" (gunicorn) and ")}${checked.length > 1 ? " (daphne)" : ""} the same way; expect 200 for each. Without X-Forwarded-Proto the app redirects to HTTPS (301).`
      : "Expect 200 with Strict-Transport-Security on HTTPS, and a 301 to HTTPS on HTTP.",
  });
  return steps;
}

export const nginxFamily: HostFamily = { name: "nginx", files: nginxFiles, steps: nginxSteps };
