/**
 * Mosquitto 2.x on every "mqtt" host (errata section 7, MQ-01..11, TLS-01), in Debian's layout:
 * the packaged /etc/mosquitto/mosquitto.conf sets pid_file, persistence and `log_dest file` and
 * includes conf.d/, where our one file adds authentication, the ACL, the listeners and, with
 * several brokers, the bridge. The password file holds PBKDF2-SHA512 hashes (never a password),
 * and the runbook copies the TLS certificate, restarts the broker and checks it without putting a
 * password on a command line.
 *
 * Several brokers form a star of bridges: every other broker bridges `#` both ways to the first
 * one (the hub). Mosquitto has no clustering; a bridge is its own way of joining brokers, and a
 * star (not a mesh) is loop-free with one bridge per broker: a message crosses at most two
 * bridges (leaf -> hub -> other leaves), and `try_private` lets the hub recognise a bridge so it
 * never sends a message back where it came from. The alternative, an EMQX cluster, is not
 * packaged by Debian or Ubuntu (vendor repository or container only), brings an Erlang
 * distribution layer with its own ports and shared cookie to secure, and replaces the broker the
 * guide and the model are written for; for one platform and its devices a hub is enough, and if
 * the hub is down each broker keeps serving its own clients and queues QoS 1 messages for the hub
 * (cleansession false) until the bridge reconnects.
 *
 * The compose bundle renders the same templates in their standalone form (standaloneMosquitto).
 */
import { mosquittoPasswordHash, type Pbkdf2 } from "../crypto.js";
import type { ModelIssue } from "../model/errors.js";
import type { Host, Model } from "../model/normalize.js";
import type { Secrets } from "../model/secrets.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { behindLb, has, nearest, reach, required, type HostContext, type HostFamily, type RunbookStep } from "./context.js";
import { paths, siteCertificate } from "./paths.js";

/** The broker's own account (Debian package and the eclipse-mosquitto image alike). */
export const MOSQUITTO_USER = "mosquitto";

interface Listener {
  readonly port: number;
  /** Bind address; undefined listens on every address. */
  readonly address: string | undefined;
  readonly comment: string;
}

interface Bridge {
  readonly connection: string;
  readonly address: string;
  readonly port: number;
  readonly clientId: string;
  readonly username: string;
  readonly password: string;
  readonly hub: string;
}

export interface MosquittoConfView {
  readonly project: string;
  /** Set for the standalone (container) form, which has no distribution main file. */
  readonly standalone: { readonly persistenceLocation: string } | undefined;
  readonly passwordFile: string;
  readonly aclFile: string;
  readonly listeners: readonly Listener[];
  readonly tls: { readonly port: number; readonly certfile: string; readonly keyfile: string } | undefined;
  readonly bridge: Bridge | undefined;
}

/** Users in the password file, with the hash mosquitto_passwd would write (never the password). */
function passwdView(model: Model, users: readonly { name: string; password: string; why: string }[], kdf: Pbkdf2) {
  return { users: users.map((u) => ({ name: u.name, hash: mosquittoPasswordHash(u.name, u.password, model, kdf), why: u.why })) };
}

function aclView(model: Model, bridgeUser: string | undefined) {
  return { platformUser: model.mqtt.username, bridgeUser, devicePrefix: model.mqtt.device_prefix };
}

/** True when there are several brokers: they bridge to the hub. */
function bridged(model: Model): boolean {
  return model.topology.mqtt.length > 1;
}

function isHub(model: Model, host: Host): boolean {
  return bridged(model) && model.topology.mqttHub?.name === host.name;
}

/**
 * The hosts that connect to `host`'s plaintext listener over the private network: Django hosts
 * without a broker of their own whose nearest broker it is, and, on the hub, the other brokers'
 * bridges. The listener binds the private address only for them, and the firewall opens
 * mqtt.port to exactly these (everyone else reaches only tls_port).
 */
export function mqttPlainClients(model: Model, host: Host): { django: Host[]; bridges: Host[] } {
  if (!host.roles.has("mqtt")) return { django: [], bridges: [] };
  const t = model.topology;
  return {
    django: t.django.filter((d) => d.name !== host.name && !d.roles.has("mqtt") && nearest(d, t.mqtt)?.name === host.name),
    bridges: isHub(model, host) ? t.mqtt.filter((m) => m.name !== host.name) : [],
  };
}

function hostConfView(ctx: HostContext): MosquittoConfView {
  const { model, host } = ctx;
  const p = paths(model);
  const port = model.mqtt.port;
  const listeners: Listener[] = [{ port, address: "127.0.0.1", comment: "Plain MQTT for clients on this host only (MQ-03)." }];
  const clients = mqttPlainClients(model, host);
  const remote = [...clients.django, ...clients.bridges];
  if (remote.length > 0) {
    listeners.push({
      port,
      address: host.address,
      comment: `Plain MQTT on the private address for ${remote.map((h) => h.name).join(", ")}; the firewall opens it to those hosts only.`,
    });
  }
  const hub = model.topology.mqttHub;
  const bridge: Bridge | undefined =
    bridged(model) && hub && hub.name !== host.name
      ? {
          connection: `${model.project.name}-${host.name}`,
          address: reach(ctx, hub),
          port,
          clientId: `${model.project.name}-bridge-${host.name}`,
          username: model.mqtt.bridge_username,
          password: required(ctx.secrets, "mqttBridgePassword"),
          hub: hub.name,
        }
      : undefined;
  return {
    project: model.project.name,
    standalone: undefined,
    passwordFile: p.mosquittoPasswd,
    aclFile: p.mosquittoAcl,
    listeners,
    tls: model.mqtt.tls_port === undefined ? undefined : { port: model.mqtt.tls_port, certfile: p.mosquittoCert, keyfile: p.mosquittoKey },
    bridge,
  };
}

function mosquittoFiles(ctx: HostContext): FileSpec[] {
  if (!has(ctx, "mqtt")) return [];
  const { model, secrets, host } = ctx;
  const p = paths(model);
  const view = hostConfView(ctx);
  const users = [{ name: model.mqtt.username, password: required(secrets, "mqttPassword"), why: "the platform (Django, Celery)" }];
  const hub = isHub(model, host);
  if (hub) users.push({ name: model.mqtt.bridge_username, password: required(secrets, "mqttBridgePassword"), why: "the other brokers' bridges" });
  return [
    // With a bridge the file holds remote_password: readable by the broker's group only. The
    // broker reads it as root at start; 0640 root:mosquitto also lets it re-read on SIGHUP.
    templateFile(p.mosquittoConf, "mosquitto/mosquitto.conf.njk", view, {
      comment: "#",
      ...(view.bridge ? { mode: MODE.groupSecret, owner: "root", group: MOSQUITTO_USER, secret: true } : {}),
    }),
    // The broker drops to the mosquitto user right after reading its configuration and only then
    // opens these files (also on SIGHUP); from 2.0.16 it warns about a file it does not own or
    // that others can read (MQ-09), so both belong to mosquitto and the hashes stay 0600.
    templateFile(p.mosquittoPasswd, "mosquitto/passwd.njk", passwdView(model, users, ctx.kdf), {
      comment: "#",
      mode: MODE.secret,
      secret: true,
      owner: MOSQUITTO_USER,
      group: MOSQUITTO_USER,
    }),
    templateFile(p.mosquittoAcl, "mosquitto/acl.njk", aclView(model, hub ? model.mqtt.bridge_username : undefined), {
      comment: "#",
      mode: MODE.groupSecret,
      owner: MOSQUITTO_USER,
      group: MOSQUITTO_USER,
    }),
  ];
}

/** Where the compose bundle mounts the broker's files in the eclipse-mosquitto container. */
export interface StandalonePaths {
  readonly conf: string;
  readonly passwd: string;
  readonly acl: string;
  readonly data: string;
  readonly cert: string;
  readonly key: string;
}

/**
 * The broker's files in the standalone form (one broker, no distribution main file): the same
 * templates, with persistence and logging set here (MQ-11) and the plain listener on every
 * container address, since the other containers reach it over the compose network (container
 * loopback is not theirs). `files` maps each file to its path in the bundle.
 */
export function standaloneMosquitto(model: Model, secrets: Secrets, inContainer: StandalonePaths, files: { conf: string; passwd: string; acl: string }, kdf: Pbkdf2): FileSpec[] {
  const view: MosquittoConfView = {
    project: model.project.name,
    standalone: { persistenceLocation: `${inContainer.data.replace(/\/+$/, "")}/` },
    passwordFile: inContainer.passwd,
    aclFile: inContainer.acl,
    listeners: [
      {
        port: model.mqtt.port,
        address: undefined,
        comment: "Plain MQTT for the other containers; compose.yaml does not publish it (DC-06).",
      },
    ],
    tls: model.mqtt.tls_port === undefined ? undefined : { port: model.mqtt.tls_port, certfile: inContainer.cert, keyfile: inContainer.key },
    bridge: undefined,
  };
  const users = [{ name: model.mqtt.username, password: required(secrets, "mqttPassword"), why: "the platform (Django, Celery)" }];
  return [
    templateFile(files.conf, "mosquitto/mosquitto.conf.njk", view, { comment: "#" }),
    templateFile(files.passwd, "mosquitto/passwd.njk", passwdView(model, users, kdf), { comment: "#", mode: MODE.secret, secret: true }),
    templateFile(files.acl, "mosquitto/acl.njk", aclView(model, undefined), { comment: "#", mode: MODE.groupSecret }),
  ];
}

/** How this host gets a Let's Encrypt certificate for mqtt.domain (never for a site it does not serve). */
function letsEncryptCommands(ctx: HostContext): { commands: string[]; why: string } {
  const { model } = ctx;
  const p = paths(model);
  const domain = model.mqtt.domain;
  const tls = model.site.tls;
  const account = tls.mode === "letsencrypt" && tls.email ? `--email ${shell(tls.email)}` : "--register-unsafely-without-email";
  const common = `--cert-name ${shell(domain)} -d ${shell(domain)} ${account} --agree-tos --non-interactive`;
  const publicWeb = has(ctx, "web") && !behindLb(model);
  // The scripts family's step runs the deploy hook once for this lineage (certbot runs hooks
  // only on renewals): it copies the certificate to the mosquitto user's files (TLS-01, MQ-05).
  const copies = `The deploy hook (${p.certbotDeployHook}, run once below) copies it to ${p.mosquittoCert} and ${p.mosquittoKey} for the mosquitto user, now and after every renewal (TLS-01, MQ-05); the broker reloads certificates on SIGHUP.`;
  if (publicWeb && domain === model.site.domain) {
    return { commands: [], why: `${domain} is the site's own name: the site certificate obtained for nginx above is the MQTT one too. ${copies}` };
  }
  if (publicWeb && model.siteNames.includes(domain)) {
    return {
      commands: [`certbot certonly --webroot -w ${shell(p.acmeWebroot)} ${common}`],
      why: `nginx on this host answers ACME challenges for ${domain} from ${p.acmeWebroot}. ${copies}`,
    };
  }
  if (has(ctx, "lb")) {
    return {
      commands: [`certbot certonly --standalone --http-01-address 127.0.0.1 --http-01-port ${model.haproxy.acme_port} ${common}`],
      why: `HAProxy on this host forwards ACME challenges to certbot on 127.0.0.1:${model.haproxy.acme_port}; ${domain} must resolve to this host. ${copies}`,
    };
  }
  return {
    commands: [`certbot certonly --standalone ${common}`],
    why: `certbot answers the challenge itself on port 80, so ${domain} must resolve to this host and port 80 must be reachable from the Internet when the certificate is obtained and renewed. ${copies}`,
  };
}

function mosquittoSteps(ctx: HostContext): RunbookStep[] {
  if (!has(ctx, "mqtt")) return [];
  const { model, host } = ctx;
  const p = paths(model);
  const steps: RunbookStep[] = [{ phase: "packages", title: "Mosquitto", packages: ["mosquitto", "mosquitto-clients"] }];
  const tlsPort = model.mqtt.tls_port;
  if (tlsPort !== undefined) {
    if (model.site.tls.mode === "letsencrypt") {
      const le = letsEncryptCommands(ctx);
      steps.push({ phase: "certificates", title: `Get the MQTT certificate for ${model.mqtt.domain}`, packages: ["certbot"], ...le });
    } else {
      const cert = siteCertificate(model);
      steps.push({
        phase: "certificates",
        title: "Install the MQTT certificate",
        commands: [
          `install -D -o ${MOSQUITTO_USER} -g ${MOSQUITTO_USER} -m 0640 ${shell(cert.certificate)} ${shell(p.mosquittoCert)}`,
          `install -D -o ${MOSQUITTO_USER} -g ${MOSQUITTO_USER} -m 0600 ${shell(cert.key)} ${shell(p.mosquittoKey)}`,
        ],
        why: `Put the certificate chain for ${model.mqtt.domain} at ${cert.certificate} and its key at ${cert.key} on this host first. The broker reads them as the mosquitto user, so it gets its own copies (MQ-05); copy them again and run \`systemctl reload mosquitto\` whenever the certificate is replaced.`,
      });
    }
  }
  steps.push({
    phase: "services",
    title: "Start Mosquitto",
    commands: ["systemctl enable mosquitto", "systemctl restart mosquitto", "systemctl is-active mosquitto"],
    why:
      "A restart, not a reload: listeners and bridges are read only at start. Mosquitto 2.0 has no `--test-config` (it came in 2.1, MQ-10); " +
      "a configuration error stops the broker at once, and `journalctl -u mosquitto` and /var/log/mosquitto/mosquitto.log say why.",
  });

  const user = model.mqtt.username;
  const topic = `${model.project.name}/runbook-check`;
  const port = model.mqtt.port;
  const verify = [
    `cfg=$(mktemp -d)`,
    `IFS= read -rsp ${shell(`Password of MQTT user ${user}: `)} pw; echo`,
    `(umask 077; printf -- '-P %s\\n' "$pw" > "$cfg/mosquitto_sub"; printf -- '-P %s\\n' "$pw" > "$cfg/mosquitto_pub"); unset pw`,
    `XDG_CONFIG_HOME="$cfg" mosquitto_sub -h 127.0.0.1 -p ${port} -u ${shell(user)} -t ${shell(topic)} -C 1 -W 10 & sleep 1`,
    `XDG_CONFIG_HOME="$cfg" mosquitto_pub -h 127.0.0.1 -p ${port} -u ${shell(user)} -t ${shell(topic)} -m ok; wait`,
    `rm -rf "$cfg"`,
    `XDG_CONFIG_HOME=/nonexistent mosquitto_pub -h 127.0.0.1 -p ${port} -t ${shell(topic)} -m anonymous || echo 'anonymous refused: good'`,
  ];
  if (tlsPort !== undefined) {
    verify.push(`openssl s_client -connect 127.0.0.1:${tlsPort} -servername ${shell(model.mqtt.domain)} </dev/null 2>/dev/null | openssl x509 -noout -subject -enddate`);
  }
  steps.push({
    phase: "verify",
    title: "Check Mosquitto",
    commands: verify,
    why:
      "The subscriber prints `ok` once; the anonymous publish must be refused (`not authorised`). The password is typed at a prompt and handed " +
      "to mosquitto_sub/mosquitto_pub through their options file ($XDG_CONFIG_HOME/mosquitto_sub, one `-P password` line, mosquitto_pub(1) " +
      "\"OPTIONS\"): `-P` on the command line would show it in ps and the shell history, and 2.0 clients have no password prompt." +
      (tlsPort === undefined ? "" : ` openssl shows the certificate the TLS listener on ${tlsPort} serves.`) +
      (bridged(model) && !isHub(model, host) ? ` The bridge to ${model.topology.mqttHub!.name} shows as \`Connecting bridge\` in /var/log/mosquitto/mosquitto.log.` : ""),
  });
  return steps;
}

/** mosquitto.conf trims a value's surrounding blanks and has no quoting (see quote.mosquitto). */
function mosquittoSecretIssues(model: Model, secrets: Secrets): ModelIssue[] {
  const password = secrets.mqttBridgePassword;
  if (model.topology.mqtt.length < 2 || password === undefined || password === password.trim()) return [];
  return [{ path: "mqtt.bridge_password", message: "starts or ends with a blank, which mosquitto.conf cannot hold (remote_password is trimmed): remove the blanks" }];
}

export const mosquittoFamily: HostFamily = { files: mosquittoFiles, steps: mosquittoSteps, secretIssues: mosquittoSecretIssues };
