/**
 * Mosquitto 2.x on every "mqtt" host (errata section 7, MQ-01..11, TLS-01), in Debian's layout:
 * the packaged /etc/mosquitto/mosquitto.conf sets pid_file, persistence and `log_dest file` and
 * includes conf.d/, where our one file adds the listeners, each with its own authentication and
 * ACL, and, with several brokers, the bridge. The password file holds PBKDF2-SHA512 hashes (never
 * a password) and no comment, since mosquitto_passwd calls a file with one corrupt and rewrites
 * it without the users it could not read. The runbook copies the TLS certificate, restarts the
 * broker and checks it without putting a password on a command line.
 *
 * Device accounts live apart from the platform's (per_listener_settings true): the platform's
 * listeners (loopback, and the private address for the other hosts and bridges) read the rendered
 * password file and ACL; the device listener reads a device password file that nothing renders.
 * The runbook creates it empty once and adds devices with mosquitto_passwd, so re-rendering and
 * re-installing the files never undoes an account, and a device is confined by its listener's
 * ACL to <device_prefix>/<its name>/#. Mosquitto's dynamic security plugin would keep accounts
 * apart as well, but it replaces the password file and ACL for every client of its listeners
 * (the platform's included), is administered through its own MQTT API with an admin account of
 * its own (mosquitto_ctrl), and keeps its state in a JSON file the broker rewrites; two plain
 * files edited with the packaged mosquitto_passwd, and a SIGHUP, are enough here
 * (mosquitto.conf(5) of 2.0.11: password_file and acl_file are reloaded on SIGHUP, and are
 * per listener with per_listener_settings).
 *
 * Where the device listener is: HAProxy on the lb terminates MQTT over TLS and passes plain MQTT
 * to every broker's device listener on the private network (flows.mqttTlsEnd); without an lb the
 * device listener is the broker's own TLS listener.
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
import { addressFrom, flowsTo, mqttTlsEnd, siteTlsHost } from "../model/flows.js";
import { has, required, type HostContext, type HostFamily } from "./context.js";
import { mqttLetsEncryptLive, siteCertificate } from "./paths.js";
import { certbotAccountFlags } from "./tls.js";
import { type Step } from "./steps.js";

/** The broker's own account (Debian package and the eclipse-mosquitto image alike). */
export const MOSQUITTO_USER = "mosquitto";

/** Who may log in on a listener, and what they may do. */
interface Auth {
  readonly passwordFile: string;
  readonly aclFile: string;
}

interface Listener {
  readonly port: number;
  /** Bind address; undefined listens on every address. */
  readonly address: string | undefined;
  /** What it is for, as comment lines. */
  readonly comment: readonly string[];
  /** The server certificate, for a TLS listener. */
  readonly tls?: { readonly certfile: string; readonly keyfile: string };
  /** This listener's own authentication (per_listener_settings true); unset with global auth. */
  readonly auth?: Auth;
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
  /** One authentication for every listener (per_listener_settings false); unset when each listener has its own. */
  readonly auth: Auth | undefined;
  /** True when one of the listeners is the device listener. */
  readonly devices: boolean;
  readonly listeners: readonly Listener[];
  readonly bridge: Bridge | undefined;
}

/** Users in the password file, with the hash mosquitto_passwd would write (never the password). */
function passwdView(model: Model, users: readonly { name: string; password: string }[], kdf: Pbkdf2) {
  return { users: users.map((u) => ({ name: u.name, hash: mosquittoPasswordHash(u.name, u.password, model, kdf) })) };
}

/**
 * The ACL of the platform's password file: the platform (and the hub's bridge user) everything;
 * with `devicePrefix`, also the devices of a file shared with them (the standalone form).
 */
function aclView(model: Model, bridgeUser: string | undefined, devices: boolean) {
  return { platformUser: model.mqtt.username, bridgeUser, devicePrefix: devices ? model.mqtt.device_prefix : undefined };
}

/** `text` as comment lines of at most `width` characters (words are never split). */
function commentLines(text: string, width = 88): string[] {
  const lines: string[] = [];
  for (const word of text.split(" ")) {
    const last = lines.length - 1;
    if (last >= 0 && lines[last]!.length + 1 + word.length <= width) lines[last] = `${lines[last]} ${word}`;
    else lines.push(word);
  }
  return lines;
}

/** True when this broker's device listener speaks TLS itself (no lb terminates it). */
export function mosquittoTerminatesTls(ctx: HostContext): boolean {
  return has(ctx, "mqtt") && mqttTlsEnd(ctx.model) === "broker";
}

/** True when this broker has a device listener (mqtt.tls_port is set). */
function hasDeviceListener(ctx: HostContext): boolean {
  return has(ctx, "mqtt") && mqttTlsEnd(ctx.model) !== undefined;
}

/** The device listener: the broker's TLS listener, or the plain one HAProxy forwards devices to. */
function deviceListener(ctx: HostContext): Listener | undefined {
  const { model, host } = ctx;
  const paths = ctx.paths;
  const auth: Auth = { passwordFile: paths.mosquittoDevicePasswd, aclFile: paths.mosquittoDeviceAcl };
  const accounts = `Device accounts only (${paths.mosquittoDevicePasswd}), each confined to ${model.mqtt.device_prefix}/<its name>/#.`;
  const end = mqttTlsEnd(model);
  if (end === "broker") {
    return {
      port: model.mqtt.tls_port!,
      address: undefined,
      comment: commentLines(
        `MQTT over TLS for devices, on every address. ${accounts} The server certificate is certfile + keyfile; ` +
          "cafile would only name the CA that client certificates are checked against.",
      ),
      tls: { certfile: paths.mosquittoCert, keyfile: paths.mosquittoKey },
      auth,
    };
  }
  const lb = model.topology.lb;
  if (end !== "lb" || lb === undefined) return undefined;
  return {
    port: model.mqtt.device_port,
    // Where HAProxy reaches this broker: the private address (loopback on the lb itself).
    address: addressFrom(host, lb),
    comment: commentLines(
      `Devices through the load balancer: HAProxy on ${lb.name} terminates their MQTT over TLS (port ${model.mqtt.tls_port}) and passes plain MQTT here; ` +
        `the firewall opens this port to ${lb.name} only. ${accounts}`,
    ),
    auth,
  };
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
  const paths = ctx.paths;
  const port = model.mqtt.port;
  const platform: Auth = { passwordFile: paths.mosquittoPasswd, aclFile: paths.mosquittoAcl };
  const listeners: Listener[] = [{ port, address: "127.0.0.1", comment: ["Plain MQTT for the platform on this host only."], auth: platform }];
  // The private listener exists for the hosts whose flows reach it (the firewall opens it to them).
  const remote = [...new Set(flowsTo(ctx.flows, host, "mqtt").map((f) => f.from.name))];
  if (remote.length > 0) {
    listeners.push({
      port,
      address: host.address,
      comment: commentLines(`Plain MQTT on the private address for ${remote.join(", ")}; the firewall opens it to those hosts only.`),
      auth: platform,
    });
  }
  const devices = deviceListener(ctx);
  if (devices) listeners.push(devices);
  const hub = model.topology.mqttHub;
  const bridge: Bridge | undefined =
    bridged(model) && hub && hub.name !== host.name
      ? {
          connection: `${model.project.name}-${host.name}`,
          address: addressFrom(hub, ctx.host),
          port,
          clientId: `${model.project.name}-bridge-${host.name}`,
          username: model.mqtt.bridge_username,
          password: required(ctx.secrets, "mqttBridgePassword"),
          hub: hub.name,
        }
      : undefined;
  return { project: model.project.name, standalone: undefined, auth: undefined, devices: devices !== undefined, listeners, bridge };
}

function mosquittoFiles(ctx: HostContext): FileSpec[] {
  if (!has(ctx, "mqtt")) return [];
  const { model, secrets, host } = ctx;
  const paths = ctx.paths;
  const view = hostConfView(ctx);
  // The platform (Django, Celery) and, on the hub, the other brokers' bridges.
  const users = [{ name: model.mqtt.username, password: required(secrets, "mqttPassword") }];
  const hub = isHub(model, host);
  if (hub) users.push({ name: model.mqtt.bridge_username, password: required(secrets, "mqttBridgePassword") });
  const files = [
    // With a bridge the file holds remote_password: readable by the broker's group only. The
    // broker reads it as root at start; 0640 root:mosquitto also lets it re-read on SIGHUP.
    templateFile(paths.mosquittoConf, "mosquitto/mosquitto.conf.njk", view, {
      comment: "#",
      ...(view.bridge ? { mode: MODE.groupSecret, owner: "root", group: MOSQUITTO_USER, secret: true } : {}),
    }),
    // The broker drops to the mosquitto user right after reading its configuration and only then
    // opens these files (also on SIGHUP); from 2.0.16 it warns about a file it does not own or
    // that others can read (MQ-09), so both belong to mosquitto and the hashes stay 0600. No
    // generated-file marker: mosquitto_passwd takes a comment line for corruption.
    templateFile(paths.mosquittoPasswd, "mosquitto/passwd.njk", passwdView(model, users, ctx.kdf), {
      comment: null,
      mode: MODE.secret,
      secret: true,
      owner: MOSQUITTO_USER,
      group: MOSQUITTO_USER,
    }),
    templateFile(paths.mosquittoAcl, "mosquitto/acl.njk", aclView(model, hub ? model.mqtt.bridge_username : undefined, false), {
      comment: "#",
      mode: MODE.groupSecret,
      owner: MOSQUITTO_USER,
      group: MOSQUITTO_USER,
    }),
  ];
  // The device listener's ACL; its password file is the operator's (mosquitto.devices-file).
  if (hasDeviceListener(ctx)) {
    files.push(
      templateFile(paths.mosquittoDeviceAcl, "mosquitto/devices-acl.njk", { devicePrefix: model.mqtt.device_prefix, passwordFile: paths.mosquittoDevicePasswd }, {
        comment: "#",
        mode: MODE.groupSecret,
        owner: MOSQUITTO_USER,
        group: MOSQUITTO_USER,
      }),
    );
  }
  return files;
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
  const tlsPort = model.mqtt.tls_port;
  const view: MosquittoConfView = {
    project: model.project.name,
    standalone: { persistenceLocation: `${inContainer.data.replace(/\/+$/, "")}/` },
    // One password file and ACL for every listener, devices included.
    auth: { passwordFile: inContainer.passwd, aclFile: inContainer.acl },
    devices: tlsPort !== undefined,
    listeners: [
      {
        port: model.mqtt.port,
        address: undefined,
        comment: ["Plain MQTT for the other containers; compose.yaml does not publish it."],
      },
      ...(tlsPort === undefined
        ? []
        : [
            {
              port: tlsPort,
              address: undefined,
              comment: commentLines(
                "MQTT over TLS for devices, on every address. The server certificate is certfile + keyfile; cafile would only name the CA that client certificates are checked against.",
              ),
              tls: { certfile: inContainer.cert, keyfile: inContainer.key },
            },
          ]),
    ],
    bridge: undefined,
  };
  const users = [{ name: model.mqtt.username, password: required(secrets, "mqttPassword") }];
  return [
    templateFile(files.conf, "mosquitto/mosquitto.conf.njk", view, { comment: "#" }),
    templateFile(files.passwd, "mosquitto/passwd.njk", passwdView(model, users, kdf), { comment: null, mode: MODE.secret, secret: true }),
    templateFile(files.acl, "mosquitto/acl.njk", aclView(model, undefined, true), { comment: "#", mode: MODE.groupSecret }),
  ];
}

/**
 * How a broker that terminates TLS itself gets its Let's Encrypt certificate for mqtt.domain.
 * On the site's own host the site certificate names mqtt.domain too (tls.siteCertificateNames):
 * nginx there holds port 80 and answers the challenge for it. Elsewhere certbot answers on port
 * 80 itself; the rules see to it that mqtt.domain is then not a name of the site's host.
 */
function letsEncryptCommands(ctx: HostContext): { commands: string[]; why: string } {
  const { model } = ctx;
  const paths = ctx.paths;
  const domain = model.mqtt.domain;
  // The certbot family's step runs the deploy hook once for this lineage (certbot runs hooks
  // only on renewals): it copies the certificate to the mosquitto user's files (TLS-01, MQ-05).
  const copies = `The deploy hook (${paths.certbotDeployHook}, run once below) copies it to ${paths.mosquittoCert} and ${paths.mosquittoKey} for the mosquitto user, now and after every renewal; the broker reloads certificates on SIGHUP.`;
  if (siteTlsHost(model)?.name === ctx.host.name) {
    const named = model.siteNames.includes(domain) ? `${domain} is one of the site's names: the site certificate obtained for nginx above is the MQTT one too.` : `The site certificate obtained for nginx above also names ${domain}.`;
    return { commands: [], why: `${named} ${copies}` };
  }
  return {
    commands: [[`certbot certonly --standalone --cert-name ${shell(domain)} -d ${shell(domain)}`, ...certbotAccountFlags(model)].join(" ")],
    why: `certbot answers the challenge itself on port 80, so ${domain} must resolve to this host and port 80 must be reachable from the Internet when the certificate is obtained and renewed. ${copies}`,
  };
}

/** The TLS certificate of a broker that terminates TLS itself. */
function certificateStep(ctx: HostContext): Step {
  const { model } = ctx;
  const paths = ctx.paths;
  if (model.site.tls.mode === "letsencrypt") {
    const le = letsEncryptCommands(ctx);
    const live = `${mqttLetsEncryptLive(model)}/fullchain.pem`;
    return {
      id: "mosquitto.certificate",
      phase: "certificates",
      title: `Get the MQTT certificate for ${model.mqtt.domain}`,
      packages: ["certbot"],
      action: le.commands.length > 0 ? { kind: "commands", commands: le.commands.map((run) => ({ run, creates: live })) } : { kind: "manual", lines: [] },
      why: le.why,
    };
  }
  const cert = siteCertificate(model);
  return {
    id: "mosquitto.certificate",
    phase: "certificates",
    title: "Install the MQTT certificate",
    action: {
      kind: "commands",
      commands: [
        { run: `install -D -o ${MOSQUITTO_USER} -g ${MOSQUITTO_USER} -m 0640 ${shell(cert.certificate)} ${shell(paths.mosquittoCert)}` },
        { run: `install -D -o ${MOSQUITTO_USER} -g ${MOSQUITTO_USER} -m 0600 ${shell(cert.key)} ${shell(paths.mosquittoKey)}` },
      ],
    },
    why: `Put the certificate chain for ${model.mqtt.domain} at ${cert.certificate} and its key at ${cert.key} on this host first. The broker reads them as the mosquitto user, so it gets its own copies; copy them again and run \`systemctl reload mosquitto\` whenever the certificate is replaced.`,
  };
}

/** The device password file, created once and empty; never rendered, so never overwritten. */
function deviceFileStep(ctx: HostContext): Step {
  const file = ctx.paths.mosquittoDevicePasswd;
  return {
    id: "mosquitto.devices-file",
    phase: "files",
    title: "Create the device password file",
    action: {
      kind: "commands",
      commands: [{ run: `install -m 0600 -o ${MOSQUITTO_USER} -g ${MOSQUITTO_USER} /dev/null ${shell(file)}`, creates: file }],
    },
    why:
      `Device accounts live in ${file}, apart from the platform's rendered ${ctx.paths.mosquittoPasswd}: it is not part of this host's files, so rendering ` +
      "and installing them again leaves every device account in place. It starts empty (the broker refuses to start without it) and belongs to the broker's user.",
  };
}

/** Adding a device later: the operator's command, with the device name to fill in. */
export const DEVICE_PLACEHOLDER = "<device>";

function addDeviceStep(ctx: HostContext): Step {
  const { model, host } = ctx;
  const paths = ctx.paths;
  const others = model.topology.mqtt.filter((h) => h.name !== host.name).map((h) => h.name);
  const where = mqttTlsEnd(model) === "lb" ? `${model.mqtt.domain}:${model.mqtt.tls_port} (HAProxy on ${model.topology.lb!.name})` : `${model.mqtt.domain}:${model.mqtt.tls_port}`;
  return {
    id: "mosquitto.add-device",
    phase: "verify",
    title: "Add a device account (whenever a device is added)",
    action: { kind: "manual", lines: [`mosquitto_passwd ${shell(paths.mosquittoDevicePasswd)} ${DEVICE_PLACEHOLDER}`, "systemctl reload mosquitto"] },
    interactive: true,
    why:
      "mosquitto_passwd asks for the device's password twice (`-b` would put it on the command line, in ps and the shell history) and keeps the file's owner and mode. " +
      "The reload (SIGHUP) makes the broker read the file again; connected clients stay connected. " +
      `The device then logs in with that name over TLS at ${where} and may only use ${model.mqtt.device_prefix}/<device>/#. ` +
      "Device names: letters, digits, '-', '_' and '.' ('+', '#' and '/' cannot work in the topic pattern). " +
      `\`mosquitto_passwd -D ${paths.mosquittoDevicePasswd} <device>\` and a reload remove one.` +
      (others.length > 0 ? ` Do the same on ${others.join(", ")}: every broker must know the device, since the load balancer may send it to any of them.` : ""),
  };
}

function mosquittoSteps(ctx: HostContext): Step[] {
  if (!has(ctx, "mqtt")) return [];
  const { model, host } = ctx;
  const steps: Step[] = [{ id: "mosquitto.package", phase: "packages", title: "Mosquitto", action: { kind: "packages", packages: ["mosquitto", "mosquitto-clients"] } }];
  const tlsPort = model.mqtt.tls_port;
  if (mosquittoTerminatesTls(ctx)) steps.push(certificateStep(ctx));
  if (hasDeviceListener(ctx)) steps.push(deviceFileStep(ctx));
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
  const anonymous = (address: string, listener: number) =>
    `XDG_CONFIG_HOME=/nonexistent mosquitto_pub -h ${address} -p ${listener} -t ${shell(topic)} -m anonymous || echo 'anonymous refused: good'`;
  const verify = [anonymous("127.0.0.1", port)];
  const devices = deviceListener(ctx);
  if (devices?.tls) {
    verify.push(`openssl s_client -connect 127.0.0.1:${tlsPort} -servername ${shell(model.mqtt.domain)} </dev/null 2>/dev/null | openssl x509 -noout -subject -enddate`);
  } else if (devices) verify.push(anonymous(devices.address!, devices.port));
  steps.push({
    id: "mosquitto.check",
    phase: "verify",
    title: "Check Mosquitto",
    action: { kind: "check", commands: verify },
    why:
      `The anonymous publish${devices && !devices.tls ? "es" : ""} must be refused (\`not authorised\`).` +
      (devices?.tls ? ` openssl shows the certificate the TLS listener on ${tlsPort} serves.` : "") +
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
  if (hasDeviceListener(ctx)) steps.push(addDeviceStep(ctx));
  return steps;
}

/** mosquitto.conf trims a value's surrounding blanks and has no quoting (see quote.mosquitto). */
function mosquittoSecretIssues(model: Model, secrets: Secrets): ModelIssue[] {
  const password = secrets.mqttBridgePassword;
  if (model.topology.mqtt.length < 2 || password === undefined || password === password.trim()) return [];
  return [{ path: "mqtt.bridge_password", message: "starts or ends with a blank, which mosquitto.conf cannot hold (remote_password is trimmed): remove the blanks" }];
}

export const mosquittoFamily: HostFamily = { name: "mosquitto", files: mosquittoFiles, steps: mosquittoSteps, secretIssues: mosquittoSecretIssues };
