/**
 * HAProxy on the "lb" host (errata section 8, HAP-01..10; TLS-01): terminates TLS for the
 * site and forwards to each app node's nginx on its private address (topology (a) of HAP-05),
 * WebSockets to the asgi nodes, ACME challenges to certbot on loopback, and a stats page on
 * loopback only.
 */
import { addressFrom, mqttTlsEnd, type FlowTable } from "../model/flows.js";
import type { Host } from "../model/normalize.js";
import type { Role } from "../model/schema.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { exporterListen, monitored } from "./monitoring.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import { asgiHealthCheckPath, urlOf } from "./paths.js";
import { reloadUnit } from "./effects.js";
import { directory, type Step } from "./steps.js";
import { acmePortNote, certbotAccount, mozillaIntermediate } from "./tls.js";

/** Backend and frontend names, for the config and for anyone reading its logs or stats. */
export const HAPROXY_NAMES = {
  http: "fe_http",
  https: "fe_https",
  web: "be_web",
  ws: "be_ws",
  acme: "be_acme",
  mqtt: "fe_mqtt",
  mqttBackend: "be_mqtt",
  stats: "stats",
  metrics: "prometheus",
} as const;

/** fe_https terminates TLS: every request it forwards was HTTPS. */
const FORWARDED_PROTO = "https";

/**
 * An MQTT 3.1.1 CONNECT without credentials (clean session, keep-alive 60 s), as hex for
 * `tcp-check send-binary`. A broker that requires a login answers CONNACK with return code 5,
 * "not authorized": 20 02 00 05 (MQTT 3.1.1, sections 3.1 and 3.2).
 */
export function mqttAnonymousConnect(clientId: string): { send: string; expect: string } {
  const utf8 = (text: string) => {
    const bytes = [...new TextEncoder().encode(text)];
    return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
  };
  // Protocol name and level 4, flags: clean session only, keep-alive 60; payload: the client id.
  const body = [...utf8("MQTT"), 4, 0x02, 0, 60, ...utf8(clientId)];
  // Fixed header: CONNECT (0x10) and the remaining length (one byte: the body is short).
  const packet = [0x10, body.length, ...body];
  return { send: packet.map((b) => b.toString(16).padStart(2, "0")).join(""), expect: "20020005" };
}

/** The brokers' device listeners: the lb's flows to them, and a broker on the lb itself on loopback. */
function mqttServers(ctx: HostContext) {
  const { model, host } = ctx;
  const remote = ctx.flows.flows
    .filter((f) => f.from.name === host.name && f.service === "mqtt-devices")
    .map((f) => ({ name: f.to.name, address: `${f.to.address}:${f.port}` }));
  const local = has(ctx, "mqtt") ? [{ name: host.name, address: `${addressFrom(host, host)}:${model.mqtt.device_port}` }] : [];
  return [...remote, ...local].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The backends' servers: the lb's flows to the nginx of the web hosts that play `role`. */
function servers(flows: FlowTable, lb: Host, role: Role) {
  return flows.flows
    .filter((f) => f.from.name === lb.name && f.service === "nginx-backend" && f.to.roles.has(role))
    .map((f) => ({ name: f.to.name, address: `${f.to.address}:${f.port}` }));
}

function haproxyView(ctx: HostContext) {
  const { model, secrets } = ctx;
  const h = model.haproxy;
  const paths = ctx.paths;
  const password = secrets.statsPassword;
  return {
    domain: model.site.domain,
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
    pem: paths.haproxyPem,
    acme: model.site.tls.mode === "letsencrypt" ? { port: h.acme_port } : undefined,
    websocketPath: model.site.websocket_path,
    balance: h.balance,
    // What fe_https tells the nodes about every request it forwards (and so the health checks).
    forwardedProto: FORWARDED_PROTO,
    healthCheck: {
      // The app's health check, and for be_ws the same answer from daphne: nginx behind the lb
      // proxies asgiHealthCheckPath to it, so a dead daphne takes its server out of be_ws.
      web: model.site.health_check_path,
      ws: asgiHealthCheckPath(model),
      // A check is a user's request as the node sees it: the site's Host (Django's
      // ALLOWED_HOSTS, HAP-03) and the X-Forwarded-Proto fe_https sets; without it Django with
      // SECURE_SSL_REDIRECT answers 301 and every server goes DOWN.
      headers: [
        { name: "Host", value: model.site.domain },
        { name: "X-Forwarded-Proto", value: FORWARDED_PROTO },
      ],
      // `http-check send` (2.2+); before, the headers ride after the version.
      send: model.caps.haproxy.httpCheckSend,
    },
    web: servers(ctx.flows, ctx.host, "app"),
    ws: servers(ctx.flows, ctx.host, "asgi"),
    // Devices' MQTT over TLS ends here (flows.mqttTlsEnd), with the site's certificate.
    mqtt:
      mqttTlsEnd(model) === "lb"
        ? { port: model.mqtt.tls_port!, domain: model.mqtt.domain, servers: mqttServers(ctx), check: mqttAnonymousConnect("haproxy-check") }
        : undefined,
    // HAProxy's own Prometheus endpoint, for the monitor host (monitoring.ts decides the address).
    metrics: monitored(model) ? { bind: exporterListen(ctx.flows, ctx.host, "haproxy-metrics") } : undefined,
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
      ...(withPassword ? { mode: MODE.groupSecret, owner: "root", group: "haproxy", secret: true } : {}),
    }),
  ];
}

function haproxySteps(ctx: HostContext): Step[] {
  if (!has(ctx, "lb")) return [];
  const { model } = ctx;
  const paths = ctx.paths;
  const tls = model.site.tls;
  const pem = shell(paths.haproxyPem);
  const certDir = paths.haproxyPem.replace(/\/[^/]+$/, "");
  const check = `haproxy -c -f ${shell(paths.haproxyConfig)}`;
  const steps: Step[] = [{ id: "haproxy.package", phase: "packages", title: "HAProxy", action: { kind: "packages", packages: ["haproxy"] } }];
  // Devices' MQTT over TLS ends here too, with the same certificate (tls.siteCertificateNames).
  const mqtt = mqttTlsEnd(model) === "lb" ? { domain: model.mqtt.domain, port: model.mqtt.tls_port! } : undefined;
  const extraName = mqtt && !model.siteNames.includes(mqtt.domain) ? mqtt.domain : undefined;

  if (tls.mode === "letsencrypt") {
    const tmpKey = shell(`${paths.haproxyPem}.selfsigned.key`);
    const tmpCrt = shell(`${paths.haproxyPem}.selfsigned.crt`);
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
            creates: paths.haproxyPem,
          },
          { run: `${check} && systemctl reload-or-restart haproxy`, creates: live },
          { run: ["certbot certonly --standalone --http-01-address 127.0.0.1 --http-01-port", String(model.haproxy.acme_port), ...certbotAccount(model)].join(" "), creates: live },
        ],
      },
      why:
        `A throw-away self-signed certificate lets HAProxy start before the real one exists. HAProxy forwards /.well-known/acme-challenge/ to 127.0.0.1:${model.haproxy.acme_port}, where certbot answers for ` +
        `the first certificate and every renewal. The deploy hook (${paths.certbotDeployHook}) writes fullchain and key into ` +
        `${paths.haproxyPem} (0600) and reloads HAProxy after each renewal, and once by hand for the first certificate.` +
        (extraName
          ? ` The certificate also names ${extraName}, where devices reach MQTT over TLS: it must resolve to this host. To add the name to an existing certificate, run the certbot line again with --expand.`
          : "") +
        acmePortNote(model),
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
      why:
        `HAProxy reads the chain and the key from one file. Repeat this step when the certificate at ${tls.certificate} is replaced.` +
        (extraName ? ` Devices reach MQTT over TLS here as ${extraName}: the certificate must name it too.` : ""),
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
        ...(mqtt
          ? [`openssl s_client -connect 127.0.0.1:${mqtt.port} -servername ${shell(mqtt.domain)} </dev/null 2>/dev/null | openssl x509 -noout -subject -ext subjectAltName`]
          : []),
      ],
    },
    // curl asks for the stats password: it never goes on the command line.
    ...(hasAuth ? { interactive: true } : {}),
    why:
      "Expect 200 over HTTPS with Strict-Transport-Security from nginx, a 301 on HTTP, and every server UP on the stats page (only reachable from the lb host itself)" +
      (mqtt ? `, be_mqtt's brokers included; openssl shows the certificate devices get on port ${mqtt.port}, which must name ${mqtt.domain}.` : "."),
  });
  return steps;
}

export const haproxyFamily: HostFamily = { name: "haproxy", files: haproxyFiles, steps: haproxySteps };
