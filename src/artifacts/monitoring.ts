/**
 * Monitoring (issue 13): with a host of the role monitor, every host runs node_exporter and the
 * exporter of each of its roles (src/model/monitoring.ts), configured in the Debian packages'
 * /etc/default/prometheus-* files; the monitor host runs Prometheus, Alertmanager and the
 * blackbox exporter, all on loopback (the runbook shows the SSH tunnel).
 *
 * Who scrapes what is the flow table's: an exporter listens on its host's private address
 * exactly when a flow from the monitor host reaches it (else on loopback: the monitor's own),
 * the firewall admits exactly those flows, and Prometheus' targets are the same flows plus the
 * monitor's own exporters on 127.0.0.1, so the three agree by construction.
 */
import { addressFrom, flowsTo, mqttTlsHosts, type FlowTable } from "../model/flows.js";
import { BLACKBOX_JOBS, EXPORTERS, exportersOf, LOCAL_PORTS, type Exporter } from "../model/monitoring.js";
import type { Host, Model } from "../model/normalize.js";
import { shell, UnsafeValueError } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { alertRules } from "./alerts.js";
import { backsUp } from "./backup.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import { urlOf } from "./paths.js";
import { directory, type Step } from "./steps.js";

/** The PostgreSQL role the exporter logs in as over the local socket (peer: the OS user prometheus). */
export const POSTGRES_EXPORTER_ROLE = "prometheus";

/** True when the model has a monitor host: every host is then monitored. */
export function monitored(model: Model): boolean {
  return model.topology.monitor !== undefined;
}

/**
 * Where an exporter of `host` listens: its private address when a flow from the monitor host
 * reaches it, else loopback (it is the monitor host's own, scraped over 127.0.0.1).
 */
export function exporterListen(flows: FlowTable, host: Host, exporter: Exporter): string {
  return `${reachedByMonitor(flows, host, exporter) ? host.address : "127.0.0.1"}:${EXPORTERS[exporter].port}`;
}

/** True when a flow from the monitor host reaches this exporter (only the monitor's flows go to exporters). */
function reachedByMonitor(flows: FlowTable, host: Host, exporter: Exporter): boolean {
  return flowsTo(flows, host, exporter).length > 0;
}

/** One scrape target: an exporter of a host, as the monitor host reaches it. */
export interface ScrapeTarget {
  readonly job: string;
  readonly host: string;
  readonly target: string;
}

/**
 * Prometheus' targets: every flow from the monitor host to an exporter, and the monitor's own
 * exporters over loopback (addressFrom), grouped by job in the exporters' order.
 */
export function scrapeTargets(model: Model, flows: FlowTable): ScrapeTarget[] {
  const monitor = model.topology.monitor;
  if (monitor === undefined) return [];
  const targets: ScrapeTarget[] = [];
  for (const exporter of Object.keys(EXPORTERS) as Exporter[]) {
    for (const host of model.topology.hosts) {
      if (!exportersOf(host).includes(exporter)) continue;
      if (!reachedByMonitor(flows, host, exporter) && host.name !== monitor.name) throw new Error(`internal: no flow from ${monitor.name} to the ${exporter} of ${host.name}`);
      targets.push({ job: EXPORTERS[exporter].job, host: host.name, target: `${addressFrom(host, monitor)}:${EXPORTERS[exporter].port}` });
    }
  }
  return targets;
}

/** Words of an ARGS= line: systemd splits $ARGS at blanks, so a word may hold none. */
function argsLine(words: readonly string[]): string {
  for (const w of words) if (/\s/.test(w) || w === "") throw new UnsafeValueError("an ARGS= line", `"${w}" would split into several arguments`);
  return words.join(" ");
}

/** A /etc/default/prometheus-* file: what it configures, its environment and its ARGS. */
function defaultsFile(unit: string, view: { readonly about: readonly string[]; readonly env: readonly { name: string; value: string }[]; readonly args: readonly string[] }, secret = false): FileSpec {
  return templateFile(`/etc/default/${unit}`, "monitoring/default.njk", { unit, about: view.about, env: view.env, args: argsLine(view.args) }, {
    comment: "#",
    // A password in the environment: readable by root and the exporter's group only.
    ...(secret ? { mode: MODE.groupSecret, owner: "root", group: "prometheus", secret: true } : {}),
  });
}

function nodeExporterFile(ctx: HostContext): FileSpec {
  const listen = exporterListen(ctx.flows, ctx.host, "node-exporter");
  return defaultsFile("prometheus-node-exporter", {
    about: [
      `node_exporter: this host's CPU, memory, disks and systemd units, on ${listen} for Prometheus on ${ctx.model.topology.monitor!.name}.`,
      "The systemd collector shows failed units (a NovaCloud service, the backup); the textfile",
      `collector reads *.prom files in ${ctx.paths.metricsDir}${backsUp(ctx) ? " (backup.sh writes its last success there)" : ""}.`,
    ],
    env: [],
    args: [`--web.listen-address=${listen}`, "--collector.systemd", `--collector.textfile.directory=${ctx.paths.metricsDir}`],
  });
}

function postgresExporterFiles(ctx: HostContext): FileSpec[] {
  const { model, paths } = ctx;
  const listen = exporterListen(ctx.flows, ctx.host, "postgres-exporter");
  return [
    defaultsFile("prometheus-postgres-exporter", {
      about: [
        `The PostgreSQL exporter, on ${listen}. It logs in over the local socket as the role`,
        `${POSTGRES_EXPORTER_ROLE} (peer authentication: the OS user prometheus), a member of pg_monitor; no password.`,
      ],
      env: [{ name: "DATA_SOURCE_NAME", value: `user=${POSTGRES_EXPORTER_ROLE} host=/run/postgresql port=${model.postgres.port} dbname=postgres sslmode=disable` }],
      args: [`--web.listen-address=${listen}`, `--extend.query-path=${paths.postgresExporterQueries}`],
    }),
    templateFile(paths.postgresExporterQueries, "monitoring/postgres-queries.yml.njk", {}, { comment: "#" }),
  ];
}

function redisExporterFile(ctx: HostContext): FileSpec {
  const { model, secrets } = ctx;
  const listen = exporterListen(ctx.flows, ctx.host, "redis-exporter");
  const password = secrets.redisPassword;
  return defaultsFile(
    "prometheus-redis-exporter",
    {
      about: [
        `The Redis exporter, on ${listen}, reading Redis on 127.0.0.1:${model.redis.port}.`,
        ...(password === undefined ? [] : ["The password is in REDIS_PASSWORD, never on the command line (ps shows that to every user)."]),
      ],
      env: password === undefined ? [] : [{ name: "REDIS_PASSWORD", value: password }],
      args: [`-web.listen-address=${listen}`, `-redis.addr=redis://127.0.0.1:${model.redis.port}`],
    },
    password !== undefined,
  );
}

function nginxExporterFiles(ctx: HostContext): FileSpec[] {
  const listen = exporterListen(ctx.flows, ctx.host, "nginx-exporter");
  const status = `http://127.0.0.1:${LOCAL_PORTS.nginxStatus}/stub_status`;
  return [
    defaultsFile("prometheus-nginx-exporter", {
      about: [`The nginx exporter, on ${listen}, reading nginx's stub_status on loopback (${ctx.paths.nginxStubStatus}).`],
      env: [],
      args: [`-web.listen-address=${listen}`, `-nginx.scrape-uri=${status}`],
    }),
    templateFile(ctx.paths.nginxStubStatus, "monitoring/stub-status.conf.njk", { port: LOCAL_PORTS.nginxStatus }, { comment: "#" }),
  ];
}

/** The blackbox probes: the site's health check over HTTPS, and MQTT over TLS where devices connect. */
function probes(model: Model) {
  return {
    https: [urlOf("https", model.site.domain, model.site.https_port, model.site.health_check_path)],
    mqtt: mqttTlsHosts(model).length > 0 ? [`${model.mqtt.domain}:${model.mqtt.tls_port!}`] : [],
  };
}

function prometheusView(ctx: HostContext) {
  const { model, paths } = ctx;
  const monitor = ctx.host.name;
  const targets = scrapeTargets(model, ctx.flows);
  const jobs = [...new Set(targets.map((t) => t.job))].map((job) => ({ name: job, targets: targets.filter((t) => t.job === job) }));
  const p = probes(model);
  return {
    interval: model.monitoring.scrape_interval,
    rules: paths.prometheusRules,
    alertmanager: `127.0.0.1:${LOCAL_PORTS.alertmanager}`,
    own: [
      { name: "prometheus", target: `127.0.0.1:${LOCAL_PORTS.prometheus}` },
      { name: "alertmanager", target: `127.0.0.1:${LOCAL_PORTS.alertmanager}` },
      { name: "blackbox", target: `127.0.0.1:${LOCAL_PORTS.blackbox}` },
    ],
    monitor,
    jobs,
    blackbox: `127.0.0.1:${LOCAL_PORTS.blackbox}`,
    probes: [
      { job: BLACKBOX_JOBS.https, module: "https_2xx", targets: p.https },
      ...(p.mqtt.length > 0 ? [{ job: BLACKBOX_JOBS.mqtt, module: "mqtt_tls", targets: p.mqtt }] : []),
    ],
  };
}

function alertmanagerView(ctx: HostContext) {
  const { model, secrets } = ctx;
  const email = model.email;
  const to = model.monitoring.alert_email;
  return {
    smtp:
      to === undefined || email === undefined
        ? undefined
        : {
            smarthost: `${email.host}:${email.port}`,
            from: email.from!,
            user: email.user,
            password: secrets.emailPassword,
            requireTls: email.use_tls,
          },
    to,
  };
}

function monitorFiles(ctx: HostContext): FileSpec[] {
  const { model, paths } = ctx;
  const am = alertmanagerView(ctx);
  const secretAm = am.smtp?.password !== undefined;
  return [
    templateFile(paths.prometheusConfig, "monitoring/prometheus.yml.njk", prometheusView(ctx), { comment: "#" }),
    templateFile(paths.prometheusRules, "monitoring/alerts.yml.njk", { rules: alertRules({ backupMaxAge: model.monitoring.backup_max_age }) }, { comment: "#" }),
    // The SMTP password: Alertmanager (user prometheus) reads the file, nobody else.
    templateFile(paths.alertmanagerConfig, "monitoring/alertmanager.yml.njk", am, { comment: "#", ...(secretAm ? { mode: MODE.groupSecret, owner: "root", group: "prometheus", secret: true } : {}) }),
    templateFile(paths.blackboxConfig, "monitoring/blackbox.yml.njk", {}, { comment: "#" }),
    defaultsFile("prometheus", {
      about: [
        `Prometheus, on 127.0.0.1:${LOCAL_PORTS.prometheus} only (reach it through an SSH tunnel: see the runbook).`,
        `It keeps ${model.monitoring.retention} of samples in ${paths.prometheusData}.`,
      ],
      env: [],
      args: [
        `--config.file=${paths.prometheusConfig}`,
        `--storage.tsdb.path=${paths.prometheusData}`,
        `--storage.tsdb.retention.time=${model.monitoring.retention}`,
        `--web.listen-address=127.0.0.1:${LOCAL_PORTS.prometheus}`,
      ],
    }),
    defaultsFile("prometheus-alertmanager", {
      about: [
        `Alertmanager, on 127.0.0.1:${LOCAL_PORTS.alertmanager} only. One instance: its cluster listener (port 9094 on every`,
        "address by default) is switched off.",
      ],
      env: [],
      args: [`--config.file=${paths.alertmanagerConfig}`, `--web.listen-address=127.0.0.1:${LOCAL_PORTS.alertmanager}`, "--cluster.listen-address="],
    }),
    defaultsFile("prometheus-blackbox-exporter", {
      about: [`The blackbox exporter, on 127.0.0.1:${LOCAL_PORTS.blackbox} only: Prometheus on this host asks it to probe the public site and MQTT.`],
      env: [],
      args: [`--config.file=${paths.blackboxConfig}`, `--web.listen-address=127.0.0.1:${LOCAL_PORTS.blackbox}`],
    }),
  ];
}

function monitoringFiles(ctx: HostContext): FileSpec[] {
  if (!monitored(ctx.model)) return [];
  const exporters = exportersOf(ctx.host);
  return [
    nodeExporterFile(ctx),
    ...(exporters.includes("postgres-exporter") ? postgresExporterFiles(ctx) : []),
    ...(exporters.includes("redis-exporter") ? [redisExporterFile(ctx)] : []),
    ...(exporters.includes("nginx-exporter") ? nginxExporterFiles(ctx) : []),
    ...(has(ctx, "monitor") ? monitorFiles(ctx) : []),
  ];
}

/** The systemd units of the exporters on this host (HAProxy serves its own metrics). */
function exporterUnits(host: Host): string[] {
  return exportersOf(host).flatMap((e) => (EXPORTERS[e].unit === undefined ? [] : [EXPORTERS[e].unit!]));
}

function monitoringSteps(ctx: HostContext): Step[] {
  const { model, host, paths } = ctx;
  if (!monitored(model)) return [];
  const t = model.topology;
  const units = exporterUnits(host);
  const monitorUnits = has(ctx, "monitor") ? ["prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"] : [];
  // The backup account writes its success time here; elsewhere only root.
  const writer = backsUp(ctx) ? model.project.user : "root";
  const steps: Step[] = [
    {
      id: "monitoring.packages",
      phase: "packages",
      title: "Exporters",
      action: { kind: "packages", packages: [...units, ...monitorUnits] },
    },
    {
      id: "monitoring.metrics-dir",
      phase: "files",
      title: "Create node_exporter's textfile directory",
      action: { kind: "commands", commands: [directory(paths.metricsDir, 0o755, writer, writer === "root" ? "root" : model.project.group)] },
      why: `node_exporter reads the *.prom files in ${paths.metricsDir}${writer === "root" ? "" : `; backup.sh (as ${writer}) writes its last success there`}.`,
    },
  ];
  if (has(ctx, "db")) {
    const psql = `runuser -u postgres -- psql -X -p ${model.postgres.port} -d postgres`;
    steps.push({
      id: "monitoring.postgres-role",
      phase: "database",
      title: `Create the PostgreSQL role ${POSTGRES_EXPORTER_ROLE} for the exporter`,
      action: {
        kind: "commands",
        commands: [
          {
            run: `${psql} -v ON_ERROR_STOP=1 -c ${shell(`CREATE ROLE ${POSTGRES_EXPORTER_ROLE} LOGIN; GRANT pg_monitor TO ${POSTGRES_EXPORTER_ROLE}`)}`,
            unless: `${psql} -Atc ${shell(`SELECT 1 FROM pg_roles WHERE rolname = '${POSTGRES_EXPORTER_ROLE}'`)} | grep -qx 1`,
          },
        ],
      },
      why:
        "pg_monitor lets it read the statistics views and nothing else; it logs in over the local socket with peer authentication (Debian's `local all all peer`), so it has no password." +
        (t.standbys.length > 0 ? " The standbys get the role by replication." : ""),
    });
  }
  steps.push({
    id: "monitoring.exporters",
    phase: "services",
    title: has(ctx, "monitor") ? "Restart the exporters, Prometheus, Alertmanager and the blackbox exporter" : "Restart the exporters",
    action: { kind: "service", units: [...units, ...monitorUnits], enable: true, state: "restarted" },
    why: "The packages start them with Debian's defaults (listening on every address); they read the rendered /etc/default files only at a restart.",
  });
  if (has(ctx, "monitor")) {
    const ssh = model.firewall.ssh_port === 22 ? "" : `-p ${model.firewall.ssh_port} `;
    steps.push(
      {
        id: "monitoring.check",
        phase: "verify",
        title: "Check Prometheus and Alertmanager",
        action: {
          kind: "check",
          commands: [
            `promtool check config ${shell(paths.prometheusConfig)}`,
            `amtool check-config ${shell(paths.alertmanagerConfig)}`,
            `curl -fsS 'http://127.0.0.1:${LOCAL_PORTS.prometheus}/api/v1/query?query=up%20%3D%3D%200'   # targets that are down: none`,
          ],
        },
      },
      {
        id: "monitoring.tunnel",
        phase: "verify",
        title: "Open Prometheus and Alertmanager through an SSH tunnel",
        action: {
          kind: "manual",
          lines: [
            "On your own machine (they listen on this host's loopback only; use the address you SSH to):",
            `ssh -N ${ssh}-L ${LOCAL_PORTS.prometheus}:127.0.0.1:${LOCAL_PORTS.prometheus} -L ${LOCAL_PORTS.alertmanager}:127.0.0.1:${LOCAL_PORTS.alertmanager} ${model.ansible.user}@${host.address}`,
            `then open http://localhost:${LOCAL_PORTS.prometheus}/alerts and http://localhost:${LOCAL_PORTS.alertmanager}/`,
          ],
        },
      },
    );
  }
  return steps;
}

export const monitoringFamily: HostFamily = { name: "monitoring", files: monitoringFiles, steps: monitoringSteps };

