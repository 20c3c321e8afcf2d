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
import { behindLb, flowsTo } from "../model/flows.js";
import { addressOf, has, required, type HostContext, type HostFamily } from "./context.js";
import { mqttLetsEncryptLive, siteCertificate } from "./paths.js";
import { certbotAccountFlags } from "./tls.js";
import { reloadUnit } from "./effects.js";
import { copyOnHost, type Step } from "./steps.js";

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
function passwdView(users: readonly { name: string; password: string; why: string }[], kdf: Pbkdf2) {
  return { users: users.map((u) => ({ name: u.name, hash: mosquittoPasswordHash(u.name, u.password, kdf), why: u.why })) };
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

function hostConfView(ctx: HostContext): MosquittoConfView {
  const { model, host } = ctx;
  const p = ctx.paths;
  const port = model.mqtt.port;
  const listeners: Listener[] = [{ port, address: "127.0.0.1", comment: "Plain MQTT for clients on this host only." }];
  // The private listener exists for the hosts whose flows reach it (the firewall opens it to them).
  const remote = flowsTo(ctx.flows, host, "mqtt").map((f) => f.from.name);
  if (remote.length > 0) {
    listeners.push({
      port,
      address: host.address,
      comment: `Plain MQTT on the private address for ${remote.join(", ")}; the firewall opens it to those hosts only.`,
    });
  }
  const hub = model.topology.mqttHub;
  const bridge: Bridge | undefined =
    bridged(model) && hub && hub.name !== host.name
      ? {
          connection: `${model.project.name}-${host.name}`,
          address: addressOf(ctx, hub),
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
  const p = ctx.paths;
  const view = hostConfView(ctx);
  const users = [{ name: model.mqtt.username, password: required(secrets, "mqttPassword"), why: "the platform (Django, Celery)" }];
  const hub = isHub(model, host);
  if (hub) users.push({ name: model.mqtt.bridge_username, password: required(secrets, "mqttBridgePassword"), why: "the other brokers' bridges" });
  return [
    // With a bridge the file holds remote_password: readable by the broker's group only. The
    // broker reads it as root at start; 0640 root:mosquitto also lets it re-read on SIGHUP.
    templateFile(p.mosquittoConf, "mosquitto/mosquitto.conf.njk", view, {
      comment: "#",
      ...(view.bridge ? { mode: MODE.groupSecret, owner: "root", group: MOSQUITTO_USER } : {}),
    }),
    // The broker drops to the mosquitto user right after reading its configuration and only then
    // opens these files (also on SIGHUP); from 2.0.16 it warns about a file it does not own or
    // that others can read (MQ-09), so both belong to mosquitto and the hashes stay 0600.
    templateFile(p.mosquittoPasswd, "mosquitto/passwd.njk", passwdView(users, ctx.kdf), {
      comment: "#",
      mode: MODE.secret,
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
        comment: "Plain MQTT for the other containers; compose.yaml does not publish it.",
      },
    ],
    tls: model.mqtt.tls_port === undefined ? undefined : { port: model.mqtt.tls_port, certfile: inContainer.cert, keyfile: inContainer.key },
    bridge: undefined,
  };
  const users = [{ name: model.mqtt.username, password: required(secrets, "mqttPassword"), why: "the platform (Django, Celery)" }];
  return [
    templateFile(files.conf, "mosquitto/mosquitto.conf.njk", view, { comment: "#" }),
    templateFile(files.passwd, "mosquitto/passwd.njk", passwdView(users, kdf), { comment: "#", mode: MODE.secret }),
    templateFile(files.acl, "mosquitto/acl.njk", aclView(model, undefined), { comment: "#", mode: MODE.groupSecret }),
  ];
}

/** How this host gets a Let's Encrypt certificate for mqtt.domain (never for a site it does not serve). */
function letsEncryptCommands(ctx: HostContext): { commands: string[]; why: string } {
  const { model } = ctx;
  const p = ctx.paths;
  const domain = model.mqtt.domain;
  const common = [`--cert-name ${shell(domain)} -d ${shell(domain)}`, ...certbotAccountFlags(model)].join(" ");
  const publicWeb = has(ctx, "web") && !behindLb(model);
  // The scripts family's step runs the deploy hook once for this lineage (certbot runs hooks
  // only on renewals): it copies the certificate to the mosquitto user's files (TLS-01, MQ-05).
  const copies = `The deploy hook (${p.certbotDeployHook}, run once below) copies it to ${p.mosquittoCert} and ${p.mosquittoKey} for the mosquitto user, now and after every renewal; the broker reloads certificates on SIGHUP.`;
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

function mosquittoSteps(ctx: HostContext): Step[] {
  if (!has(ctx, "mqtt")) return [];
  const { model, host } = ctx;
  const p = ctx.paths;
  const steps: Step[] = [{ id: "mosquitto.package", phase: "packages", title: "Mosquitto", action: { kind: "packages", packages: ["mosquitto", "mosquitto-clients"] } }];
  const tlsPort = model.mqtt.tls_port;
  if (tlsPort !== undefined) {
    if (model.site.tls.mode === "letsencrypt") {
      const le = letsEncryptCommands(ctx);
      const live = `${mqttLetsEncryptLive(model)}/fullchain.pem`;
      steps.push({
        id: "mosquitto.certificate",
        phase: "certificates",
        title: `Get the MQTT certificate for ${model.mqtt.domain}`,
        packages: ["certbot"],
        action: le.commands.length > 0 ? { kind: "commands", commands: le.commands.map((run) => ({ run, creates: live })) } : { kind: "manual", lines: [] },
        why: le.why,
      });
    } else {
      const cert = siteCertificate(model);
      steps.push({
        id: "mosquitto.certificate",
        phase: "certificates",
        title: "Install the MQTT certificate",
        action: {
          kind: "commands",
          commands: [
            copyOnHost(cert.certificate, p.mosquittoCert, MOSQUITTO_USER, MOSQUITTO_USER, 0o640),
            copyOnHost(cert.key, p.mosquittoKey, MOSQUITTO_USER, MOSQUITTO_USER, 0o600),
          ],
        },
        // The broker re-reads certfile and keyfile on SIGHUP (mosquitto.conf(5)).
        effects: [reloadUnit("mosquitto")],
        why: `Put the certificate chain for ${model.mqtt.domain} at ${cert.certificate} and its key at ${cert.key} on this host first. The broker reads them as the mosquitto user, so it gets its own copies; copy them again and run \`systemctl reload mosquitto\` whenever the certificate is replaced.`,
      });
    }
  }
  steps.push({
    id: "mosquitto.restart",
    phase: "services",
    title: "Start Mosquitto",
    action: { kind: "service", units: ["mosquitto"], enable: true, state: "restarted" },
    why:
      "A restart, not a reload: listeners and bridges are read only at start. Mosquitto 2.0 has no `--test-config` (it came in 2.1); " +
      "a configuration error stops the broker at once, and `journalctl -u mosquitto` and /var/log/mosquitto/mosquitto.log say why.",
  });

  const user = model.mqtt.username;
  const topic = `${model.project.name}/runbook-check`;
  const port = model.mqtt.port;
  const login = [
    `cfg=$(mktemp -d)`,
    `IFS= read -rsp ${shell(`Password of MQTT user ${user}: `)} pw; echo`,
    `(umask 077; printf -- '-P %s\\n' "$pw" > "$cfg/mosquitto_sub"; printf -- '-P %s\\n' "$pw" > "$cfg/mosquitto_pub"); unset pw`,
    `XDG_CONFIG_HOME="$cfg" mosquitto_sub -h 127.0.0.1 -p ${port} -u ${shell(user)} -t ${shell(topic)} -C 1 -W 10 & sleep 1`,
    `XDG_CONFIG_HOME="$cfg" mosquitto_pub -h 127.0.0.1 -p ${port} -u ${shell(user)} -t ${shell(topic)} -m ok; wait`,
    `rm -rf "$cfg"`,
  ];
  const verify = [`XDG_CONFIG_HOME=/nonexistent mosquitto_pub -h 127.0.0.1 -p ${port} -t ${shell(topic)} -m anonymous || echo 'anonymous refused: good'`];
  if (tlsPort !== undefined) {
    verify.push(`openssl s_client -connect 127.0.0.1:${tlsPort} -servername ${shell(model.mqtt.domain)} </dev/null 2>/dev/null | openssl x509 -noout -subject -enddate`);
  }
  steps.push({
    id: "mosquitto.check",
    phase: "verify",
    title: "Check Mosquitto",
    action: { kind: "check", commands: verify },
    why:
      "The anonymous publish must be refused (`not authorised`)." +
      (tlsPort === undefined ? "" : ` openssl shows the certificate the TLS listener on ${tlsPort} serves.`) +
      (bridged(model) && !isHub(model, host) ? ` The bridge to ${model.topology.mqttHub!.name} shows as \`Connecting bridge\` in /var/log/mosquitto/mosquitto.log.` : ""),
  });
  steps.push({
    id: "mosquitto.check-login",
    phase: "verify",
    title: "Check a login",
    action: { kind: "check", commands: login },
    interactive: true,
    why:
      "The subscriber prints `ok` once. The password is typed at a prompt and handed " +
      "to mosquitto_sub/mosquitto_pub through their options file ($XDG_CONFIG_HOME/mosquitto_sub, one `-P password` line, mosquitto_pub(1) " +
      "\"OPTIONS\"): `-P` on the command line would show it in ps and the shell history, and 2.0 clients have no password prompt.",
  });
  return steps;
}

/** mosquitto.conf trims a value's surrounding blanks and has no quoting (see quote.mosquitto). */
function mosquittoSecretIssues(model: Model, secrets: Secrets): ModelIssue[] {
  const password = secrets.mqttBridgePassword;
  if (model.topology.mqtt.length < 2 || password === undefined || password === password.trim()) return [];
  return [{ path: "mqtt.bridge_password", message: "starts or ends with a blank, which mosquitto.conf cannot hold (remote_password is trimmed): remove the blanks" }];
}

export const mosquittoFamily: HostFamily = { name: "mosquitto", files: mosquittoFiles, steps: mosquittoSteps, secretIssues: mosquittoSecretIssues };
