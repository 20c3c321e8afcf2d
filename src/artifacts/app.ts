/**
 * The application's own files on hosts that run Django code: the .env it reads and, on app
 * hosts, gunicorn_config.py.
 */
import { serverFor } from "../model/flows.js";
import { runsDjango, type Model } from "../model/normalize.js";
import type { Secrets } from "../model/secrets.js";
import { shell, type EnvDialect } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { addressOf, has, required, type HostContext, type HostFamily } from "./context.js";
import { urlOf } from "./paths.js";
import { directory, gitCheckout, type Step } from "./steps.js";

/** redis://[:password@]host:port/db, with the password percent-encoded as URLs require. */
export function redisUrl(scheme: "redis" | "sentinel", host: string, port: number, database: number, password: string | undefined): string {
  const auth = password === undefined ? "" : `:${encodeURIComponent(password)}@`;
  return `${scheme}://${auth}${host}:${port}/${database}`;
}

export interface RedisSettings {
  readonly url: string;
  /** host:port list of the sentinels, when Redis replicates. */
  readonly sentinels: string | undefined;
  readonly master: string | undefined;
  readonly password: string | undefined;
}

/** Where the app finds its services: addresses on hosts, service names in Compose. */
export interface AppEndpoints {
  readonly db: { readonly host: string; readonly port: number; readonly sslmode: string | undefined };
  readonly redis: RedisSettings;
  readonly mqttHost: string;
  /** The public HTTPS port, for CSRF_TRUSTED_ORIGINS. */
  readonly httpsPort: number;
  /** Which env-file reader the quoting targets. */
  readonly dialect: EnvDialect;
}

function redisSettings(ctx: HostContext): RedisSettings {
  const { model, secrets } = ctx;
  const password = secrets.redisPassword;
  const t = model.topology;
  if (t.redis.length > 1) {
    // With Sentinel the app asks the sentinels for the current primary: REDIS_URL lists them in
    // the form Celery and kombu read (sentinel://...;sentinel://...).
    const sentinels = t.sentinels.map((s) => ({ host: addressOf(ctx, s), port: model.redis.sentinel_port }));
    return {
      url: sentinels.map((s) => redisUrl("sentinel", s.host, s.port, model.redis.database, password)).join(";"),
      sentinels: sentinels.map((s) => `${s.host}:${s.port}`).join(","),
      master: model.redis.master_name,
      password,
    };
  }
  const primary = serverFor(t, ctx.host, "redis")!;
  return { url: redisUrl("redis", addressOf(ctx, primary), model.redis.port, model.redis.database, password), sentinels: undefined, master: undefined, password };
}

/** The app's services as seen from this host: the servers of its flows, loopback if on this host. */
function hostEndpoints(ctx: HostContext): AppEndpoints {
  const { model } = ctx;
  const dbAddress = addressOf(ctx, serverFor(model.topology, ctx.host, "postgres")!);
  return {
    db: {
      host: dbAddress,
      port: model.postgres.port,
      // Connections from another host go over hostssl lines in pg_hba.conf.
      sslmode: dbAddress !== "127.0.0.1" && model.postgres.ssl ? "require" : undefined,
    },
    redis: redisSettings(ctx),
    mqttHost: addressOf(ctx, serverFor(model.topology, ctx.host, "mqtt")!),
    httpsPort: model.site.https_port,
    dialect: "systemd",
  };
}

/** The view of templates/app/env.njk: the guide's variable names, values from the model. */
export function envView(model: Model, secrets: Secrets, at: AppEndpoints) {
  return {
    dialect: at.dialect,
    settingsModule: model.project.settingsModule,
    debug: model.django.debug,
    secretKey: required(secrets, "secretKey"),
    allowedHosts: [...model.siteNames, ...model.django.allowed_hosts].join(","),
    csrfTrustedOrigins: model.siteNames.map((n) => urlOf("https", n, at.httpsPort)).join(","),
    staticRoot: model.project.staticDir,
    mediaRoot: model.project.mediaDir,
    db: {
      name: model.postgres.database,
      user: model.postgres.user,
      password: required(secrets, "dbPassword"),
      ...at.db,
    },
    redis: at.redis,
    mqtt: {
      host: at.mqttHost,
      port: model.mqtt.port,
      tlsPort: model.mqtt.tls_port,
      username: model.mqtt.username,
      password: required(secrets, "mqttPassword"),
    },
    email: model.email && {
      host: model.email.host,
      port: model.email.port,
      useTls: model.email.use_tls,
      user: model.email.user,
      password: secrets.emailPassword,
      from: model.email.from,
    },
  };
}

/**
 * The view of templates/app/gunicorn_config.py.njk. On hosts gunicorn logs to files that
 * logrotate rotates; in a container (`inContainer`) it logs to stdout/stderr.
 */
export function gunicornConfigView(model: Model, bind: string, forwardedAllowIps: string, inContainer = false) {
  const g = model.gunicorn;
  return {
    inContainer,
    wsgiApp: `${model.project.djangoModule}.wsgi:application`,
    bind,
    workers: g.workers,
    maxWorkers: g.max_workers,
    workerClass: g.worker_class,
    threads: g.threads,
    timeout: g.timeout,
    gracefulTimeout: g.graceful_timeout,
    keepalive: g.keepalive,
    maxRequests: g.max_requests,
    maxRequestsJitter: g.max_requests_jitter,
    forwardedAllowIps,
    accessLog: inContainer ? "-" : `${model.project.logDir}/gunicorn-access.log`,
    errorLog: inContainer ? "-" : `${model.project.logDir}/gunicorn-error.log`,
  };
}

function appFiles(ctx: HostContext): FileSpec[] {
  const { model } = ctx;
  const files: FileSpec[] = [];
  if (runsDjango(ctx.host)) {
    files.push(
      templateFile(model.project.envFile, "app/env.njk", envView(model, ctx.secrets, hostEndpoints(ctx)), {
        comment: "#",
        mode: MODE.groupSecret,
        owner: "root",
        group: model.project.group,
      }),
    );
  }
  if (has(ctx, "app")) {
    // nginx on the same host is the only client, so gunicorn binds loopback and trusts only it
    // for X-Forwarded-* (the load balancer talks to nginx, never to gunicorn).
    const view = gunicornConfigView(model, `127.0.0.1:${model.gunicorn.port}`, "127.0.0.1");
    files.push(templateFile(ctx.paths.gunicornConfig, "app/gunicorn_config.py.njk", view, { comment: "#" }));
  }
  return files;
}

/** `manage.py <args>` as the service account, with the same environment the units get. */
export function manageCommand(model: Model, args: string): string {
  const p = model.project;
  return `(set -a; . ${shell(p.envFile)}; set +a; cd ${shell(p.root)} && runuser -u ${shell(p.user)} -- ${shell(`${p.venv}/bin/python`)} manage.py ${args})`;
}

function appSteps(ctx: HostContext): Step[] {
  const { model } = ctx;
  const p = model.project;
  const t = model.topology;
  if (!runsDjango(ctx.host)) return [];
  const fits = model.caps.python.systemPythonFits;
  const steps: Step[] = [
    {
      id: "app.checkout",
      phase: "code",
      title: "Check out the application",
      packages: fits ? ["git", "python3-venv"] : ["git"],
      action: p.repository
        ? { kind: "commands", commands: [gitCheckout(p.repository, p.branch, p.root)] }
        : { kind: "manual", lines: [`put the application (manage.py, requirements.txt, ${p.djangoModule}/) into ${p.root}`] },
      why: "The code stays owned by root: the service account can read it but not rewrite it.",
    },
    fits
      ? {
          id: "app.venv",
          phase: "code",
          title: "Create the virtualenv",
          action: {
            kind: "commands",
            commands: [
              { run: `python3 -m venv ${shell(p.venv)}`, creates: `${p.venv}/bin/python` },
              // pip says "Successfully installed ..." only when it installed something.
              { run: `${shell(`${p.venv}/bin/pip`)} install -r ${shell(`${p.root}/requirements.txt`)}`, changes: { ifOutput: "^Successfully installed" } },
            ],
          },
          why: "requirements.txt must pin gunicorn>=23 (older releases have request-smuggling CVEs) and include daphne and celery.",
        }
      : {
          id: "app.venv",
          phase: "code",
          title: `Create the virtualenv with Python 3.12 (the system has ${model.versions.python})`,
          action: {
            kind: "commands",
            commands: [
              { run: "uv python install 3.12", unless: "uv python find 3.12 >/dev/null" },
              { run: `uv venv --python 3.12 ${shell(p.venv)}`, creates: `${p.venv}/bin/python` },
              // uv reports "Installed N packages" only when it installed some ("Audited" otherwise).
              { run: `uv pip install --python ${shell(`${p.venv}/bin/python`)} -r ${shell(`${p.root}/requirements.txt`)}`, changes: { ifOutput: "^Installed " } },
            ],
          },
          why: `NovaCloud needs Python 3.12.3 or newer and ${model.platform.distribution} ships ${model.versions.python}; deadsnakes is Ubuntu-only and python3.12-distutils no longer exists. uv (https://docs.astral.sh/uv/) installs a managed interpreter. requirements.txt must pin gunicorn>=23 and include daphne and celery.`,
        },
    {
      id: "app.directories",
      phase: "code",
      title: "Create the static and media directories",
      action: {
        kind: "commands",
        commands: [directory(p.staticDir, 0o755, p.user, p.group), directory(p.mediaDir, 0o2750, p.user, "www-data")],
      },
      why:
        "collectstatic writes STATIC_ROOT as the service account and nginx reads it. MEDIA_ROOT belongs to the account with group www-data and the setgid bit, " +
        "so uploads (0640 under the units' UMask=0027) are readable by nginx and nobody else; www-data is not added to the project's group, which can read the .env.",
    },
  ];
  if (t.migrator?.name === ctx.host.name) {
    steps.push({
      id: "app.migrate",
      phase: "app",
      title: "Check the deployment and migrate the database",
      action: {
        kind: "commands",
        commands: [
          { run: manageCommand(model, "check --deploy"), changes: { never: true } },
          // migrate prints "No migrations to apply." when there is nothing to do.
          { run: manageCommand(model, "migrate --noinput"), changes: { unlessOutput: "No migrations to apply" } },
        ],
      },
      once: true,
      after: t.db ? [{ host: t.db.name, id: "postgres.init-sql" }] : [],
      why: "Migrations run on this host only, so two hosts never migrate at once; update.sh does the same on later deploys.",
    });
    steps.push({
      id: "app.superuser",
      phase: "app",
      title: "Create the first admin",
      action: { kind: "commands", commands: [{ run: manageCommand(model, "createsuperuser") }] },
      once: true,
      interactive: true,
      why: "Once for the whole deployment: the account lives in the database.",
    });
  }
  if (has(ctx, "web")) {
    steps.push({
      id: "app.collectstatic",
      phase: "app",
      title: "Collect the static files",
      // collectstatic's summary starts "0 static files copied" when nothing changed.
      action: { kind: "commands", commands: [{ run: manageCommand(model, "collectstatic --noinput"), changes: { unlessOutput: "^0 static files copied" } }] },
    });
  }
  return steps;
}

export const appFamily: HostFamily = { name: "app", files: appFiles, steps: appSteps };
