/**
 * HAProxy on the "lb" host (errata section 8, HAP-01..10; TLS-01): terminates TLS for the
 * site and forwards to each app node's nginx on its private address (topology (a) of HAP-05),
 * WebSockets to the asgi nodes, ACME challenges to certbot on loopback, and a stats page on
 * loopback only.
 */
import type { FlowTable } from "../model/flows.js";
import type { Host } from "../model/normalize.js";
import type { Role } from "../model/schema.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import { urlOf } from "./paths.js";
import { reloadUnit } from "./effects.js";
import { directory, type Step } from "./steps.js";
import { certbotAccount, mozillaIntermediate } from "./tls.js";

/** Backend and frontend names, for the config and for anyone reading its logs or stats. */
export const HAPROXY_NAMES = {
  http: "fe_http",
  https: "fe_https",
  web: "be_web",
  ws: "be_ws",
  acme: "be_acme",
  stats: "stats",
} as const;

/** The backends' servers: the lb's flows to the nginx of the web hosts that play `role`. */
function servers(flows: FlowTable, lb: Host, role: Role) {
  return flows.flows
    .filter((f) => f.from.name === lb.name && f.service === "nginx-backend" && f.to.roles.has(role))
    .map((f) => ({ name: f.to.name, address: `${f.to.address}:${f.port}` }));
}

function haproxyView(ctx: HostContext) {
  const { model, secrets } = ctx;
  const h = model.haproxy;
  const p = ctx.paths;
  const password = secrets.statsPassword;
  return {
    names: HAPROXY_NAMES,
    tls: mozillaIntermediate(model.caps),
    timeouts: {
      connect: h.timeout_connect,
      client: h.timeout_client,
      server: h.timeout_server,
      httpRequest: h.timeout_http_request,
      httpKeepAlive: h.timeout_http_keep_alive,
      clientFin: h.timeout_client_fin,
      tunnel: h.timeout_tunnel,
    },
    httpPort: model.site.http_port,
    // The HTTPS URL for the redirect when a port is not the default (the path and query follow).
    redirectPrefix:
      model.site.http_port === 80 && model.site.https_port === 443 ? undefined : `https://%[req.hdr(host),field(1,:)]:${model.site.https_port}`,
    httpsPort: model.site.https_port,
    ipv6: model.site.ipv6,
    pem: p.haproxyPem,
    acme: model.site.tls.mode === "letsencrypt" ? { port: h.acme_port } : undefined,
    websocketPath: model.site.websocket_path,
    balance: h.balance,
    healthCheck: {
      path: model.site.health_check_path,
      host: model.site.domain,
      // HAP-03: `http-check send` (2.2+) sends HTTP/1.1 with a Host header Django accepts.
      send: model.caps.haproxy.httpCheckSend,
    },
    web: servers(ctx.flows, ctx.host, "app"),
    ws: servers(ctx.flows, ctx.host, "asgi"),
    stats: {
      port: h.stats_port,
      // `stats auth` takes one argument, user:password, quoted as a whole.
      auth: password === undefined ? undefined : `${h.stats_user}:${password}`,
    },
  };
}

function haproxyFiles(ctx: HostContext): FileSpec[] {
  if (!has(ctx, "lb")) return [];
  const withPassword = ctx.secrets.statsPassword !== undefined;
  return [
    templateFile(ctx.paths.haproxyConfig, "haproxy/haproxy.cfg.njk", haproxyView(ctx), {
      comment: "#",
      // The stats password makes the file a secret: readable by root and the haproxy group only.
      ...(withPassword ? { mode: MODE.groupSecret, owner: "root", group: "haproxy" } : {}),
    }),
  ];
}

function haproxySteps(ctx: HostContext): Step[] {
  if (!has(ctx, "lb")) return [];
  const { model } = ctx;
  const p = ctx.paths;
  const tls = model.site.tls;
  const pem = shell(p.haproxyPem);
  const certDir = p.haproxyPem.replace(/\/[^/]+$/, "");
  const check = `haproxy -c -f ${shell(p.haproxyConfig)}`;
  const steps: Step[] = [{ id: "haproxy.package", phase: "packages", title: "HAProxy", action: { kind: "packages", packages: ["haproxy"] } }];

  if (tls.mode === "letsencrypt") {
    const tmpKey = shell(`${p.haproxyPem}.selfsigned.key`);
    const tmpCrt = shell(`${p.haproxyPem}.selfsigned.crt`);
    const live = `/etc/letsencrypt/live/${model.site.domain}/fullchain.pem`;
    steps.push({
      id: "haproxy.certificate",
      phase: "certificates",
      title: "Obtain the site certificate from Let's Encrypt behind HAProxy",
      packages: ["certbot", "openssl"],
      action: {
        kind: "commands",
        commands: [
          directory(certDir, 0o700),
          // A throw-away self-signed certificate, only so that HAProxy can start before the real one exists.
          {
            run: `( umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj ${shell(`/CN=${model.site.domain}`)} -keyout ${tmpKey} -out ${tmpCrt} && cat ${tmpCrt} ${tmpKey} > ${pem} && rm -f ${tmpCrt} ${tmpKey} )`,
            creates: p.haproxyPem,
          },
          { run: `${check} && systemctl reload-or-restart haproxy`, creates: live },
          { run: ["certbot certonly --standalone --http-01-address 127.0.0.1 --http-01-port", String(model.haproxy.acme_port), ...certbotAccount(model)].join(" "), creates: live },
        ],
      },
      why:
        `A throw-away self-signed certificate lets HAProxy start before the real one exists. HAProxy forwards /.well-known/acme-challenge/ to 127.0.0.1:${model.haproxy.acme_port}, where certbot answers for ` +
        `the first certificate and every renewal. The deploy hook (${p.certbotDeployHook}) writes fullchain and key into ` +
        `${p.haproxyPem} (0600) and reloads HAProxy after each renewal, and once by hand for the first certificate.` +
        (model.site.http_port === 80 ? "" : ` Let's Encrypt validates on port 80: forward it to ${model.site.http_port}.`),
    });
  } else {
    steps.push({
      id: "haproxy.certificate",
      phase: "certificates",
      title: "Install the site certificate for HAProxy",
      action: {
        kind: "commands",
        commands: [
          directory(certDir, 0o700),
          { run: `cat ${shell(tls.certificate)} ${shell(tls.key)} | install -m 0600 -o root -g root /dev/stdin ${pem}`, unless: `cat ${shell(tls.certificate)} ${shell(tls.key)} | cmp -s - ${pem}` },
        ],
      },
      effects: [reloadUnit("haproxy", check)],
      why: `HAProxy reads the chain and the key from one file. Repeat this step when the certificate at ${tls.certificate} is replaced.`,
    });
  }

  steps.push({
    id: "haproxy.reload",
    phase: "services",
    title: "Check and reload HAProxy",
    action: { kind: "service", units: ["haproxy"], enable: true, state: "reloaded", test: check },
  });

  const hasAuth = ctx.secrets.statsPassword !== undefined;
  steps.push({
    id: "haproxy.check",
    phase: "verify",
    title: "Check the load balancer",
    action: {
      kind: "check",
      commands: [
        `curl -sSI ${shell(urlOf("https", model.site.domain, model.site.https_port, model.site.health_check_path))}`,
        `curl -sS -o /dev/null -w '%{http_code}\\n' ${shell(urlOf("http", model.site.domain, model.site.http_port, "/"))}`,
        // -u USER without ":password" makes curl prompt for it: no secret on the command line.
        `curl -sS${hasAuth ? ` -u ${shell(model.haproxy.stats_user)}` : ""} ${shell(`http://127.0.0.1:${model.haproxy.stats_port}/;csv`)} | cut -d, -f1,2,18`,
      ],
    },
    // curl asks for the stats password: it never goes on the command line.
    ...(hasAuth ? { interactive: true } : {}),
    why: "Expect 200 over HTTPS with Strict-Transport-Security from nginx, a 301 on HTTP, and every server UP on the stats page (only reachable from the lb host itself).",
  });
  return steps;
}

export const haproxyFamily: HostFamily = { name: "haproxy", files: haproxyFiles, steps: haproxySteps };
