/**
 * The application's own files on hosts that run Django code: the .env it reads and, on app
 * hosts, gunicorn_config.py (both in /etc/<name>, outside every release); and the steps of the
 * first deploy: the interpreter where the system's is too old, the repository mirror and the
 * first release.
 */
import { PYTHON } from "../model/capabilities.js";
import { readReplicasFor, serverFor } from "../model/flows.js";
import { runsDjango, type Model } from "../model/normalize.js";
import type { Secrets } from "../model/secrets.js";
import { shell, type EnvDialect } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, required, type HostContext, type HostFamily } from "./context.js";
import { addressFrom } from "../model/flows.js";
import { s3Settings } from "./media.js";
import { urlOf, type Paths } from "./paths.js";
import { postgresClientTls } from "./postgres.js";
import { directory, type ChangeRule, type Step } from "./steps.js";

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
  readonly db: { readonly host: string; readonly port: number; readonly sslmode: string | undefined; readonly sslrootcert?: string | undefined };
  /** The read replicas (the standbys), host:port each, with the client TLS settings for them; none in Compose. */
  readonly replicas?: { readonly hosts: readonly string[]; readonly sslmode: string | undefined; readonly sslrootcert: string | undefined } | undefined;
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
    const sentinels = t.sentinels.map((s) => ({ host: addressFrom(s, ctx.host), port: model.redis.sentinel_port }));
    return {
      url: sentinels.map((s) => redisUrl("sentinel", s.host, s.port, model.redis.database, password)).join(";"),
      sentinels: sentinels.map((s) => `${s.host}:${s.port}`).join(","),
      master: model.redis.master_name,
      password,
    };
  }
  const primary = serverFor(t, ctx.host, "redis")!;
  return { url: redisUrl("redis", addressFrom(primary, ctx.host), model.redis.port, model.redis.database, password), sentinels: undefined, master: undefined, password };
}

/** The app's services as seen from this host: the servers of its flows, loopback if on this host. */
function hostEndpoints(ctx: HostContext): AppEndpoints {
  const { model } = ctx;
  const dbAddress = addressFrom(serverFor(model.topology, ctx.host, "postgres")!, ctx.host);
  // Connections from another host go over hostssl lines in pg_hba.conf.
  const tls = dbAddress !== "127.0.0.1" ? postgresClientTls(model) : undefined;
  // The standbys answer reads (hot standby); their addresses come from the same function as
  // their flows from this host, so pg_hba.conf and the firewall admit exactly these.
  const replicas = readReplicasFor(model.topology, ctx.host).map((r) => addressFrom(r, ctx.host));
  const replicaTls = replicas.some((a) => a !== "127.0.0.1") ? postgresClientTls(model) : undefined;
  return {
    db: { host: dbAddress, port: model.postgres.port, sslmode: tls?.sslmode, sslrootcert: tls?.sslrootcert },
    replicas:
      replicas.length === 0
        ? undefined
        : { hosts: replicas.map((a) => `${a}:${model.postgres.port}`), sslmode: replicaTls?.sslmode, sslrootcert: replicaTls?.sslrootcert },
    redis: redisSettings(ctx),
    mqttHost: addressFrom(serverFor(model.topology, ctx.host, "mqtt")!, ctx.host),
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
    // With S3 there is no media directory: the bucket settings below instead.
    mediaRoot: model.media.storage === "s3" ? undefined : model.project.mediaDir,
    s3: s3Settings(model, secrets),
    db: {
      name: model.postgres.database,
      user: model.postgres.user,
      password: required(secrets, "dbPassword"),
      ...at.db,
    },
    replicas: at.replicas && { hosts: at.replicas.hosts.join(","), sslmode: at.replicas.sslmode, sslrootcert: at.replicas.sslrootcert },
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
 * logrotate rotates and changes into the running release's link (`chdir`); in a container
 * (`inContainer`) it logs to stdout/stderr and stays in the image's working directory.
 */
export function gunicornConfigView(model: Model, bind: string, forwardedAllowIps: string, inContainer = false) {
  const g = model.gunicorn;
  return {
    inContainer,
    chdir: inContainer ? undefined : model.project.current,
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
        secret: true,
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

/**
 * uv, pinned, where the system Python is older than NovaCloud needs. It comes from PyPI (the
 * `uv` package: a wheel holding the prebuilt binary), installed by pip into a virtualenv of
 * its own made by Debian's python3 (Debian 12 packages no uv, and PEP 668 keeps pip out of the
 * system Python).
 */
export const UV_VERSION = "0.13.8";

/**
 * `uv <args>` with the shared interpreter directory. UV_PYTHON_DOWNLOADS=manual: only
 * `uv python install` downloads; a venv whose interpreter is missing fails instead of fetching
 * one into the invoking user's home, the layout that kept every unit from starting.
 */
export function uvCommand(paths: Paths, args: string): string {
  return `UV_PYTHON_INSTALL_DIR=${shell(paths.pythonInstallDir)} UV_PYTHON_DOWNLOADS=manual ${shell(paths.uv)} ${args}`;
}

/** `manage.py <args>` as the service account, in the running release, with the units' environment. */
export function manageCommand(model: Model, args: string): string {
  const project = model.project;
  return `(set -a; . ${shell(project.envFile)}; set +a; cd ${shell(project.current)} && runuser -u ${shell(project.user)} -- ${shell(`${project.venv}/bin/python`)} manage.py ${args})`;
}

/** Where the system Python is too old: uv, then the interpreter it manages (errata INST-01/02). */
function managedPythonSteps(ctx: HostContext): Step[] {
  const { model, paths: pth } = ctx;
  return [
    {
      id: "app.uv",
      phase: "code",
      title: `Install uv ${UV_VERSION}`,
      packages: ["python3-venv"],
      action: {
        kind: "commands",
        commands: [
          { run: `python3 -m venv ${shell(pth.uvEnv)}`, creates: `${pth.uvEnv}/bin/pip` },
          // pip leaves an installed pinned version alone, and says "Successfully installed" only
          // when it installed something.
          { run: `${shell(`${pth.uvEnv}/bin/pip`)} install --disable-pip-version-check ${shell(`uv==${UV_VERSION}`)}`, changes: PIP_CHANGES },
        ],
      },
      why:
        `${model.platform.distribution} ships Python ${model.versions.python} and no uv. uv comes from PyPI (the uv package, a wheel with its prebuilt binary, pinned to ${UV_VERSION}), ` +
        `installed with Debian's python3 into its own virtualenv ${pth.uvEnv}; it is not put on PATH. deadsnakes is Ubuntu-only and python3.12-distutils no longer exists.`,
    },
    {
      id: "app.python",
      phase: "code",
      title: `Install Python ${PYTHON.managed} where the service account can run it`,
      action: {
        kind: "commands",
        commands: [
          directory(pth.pythonInstallDir, 0o755),
          // --no-bin: no python3.12 link in root's ~/.local/bin either. uv names each
          // interpreter's directory cpython-<version>-<platform> (its python install docs).
          {
            run: `(umask 022 && ${uvCommand(pth, `python install --no-bin ${PYTHON.managed}`)})`,
            unless: `ls -d ${shell(pth.pythonInstallDir)}/cpython-${PYTHON.managed}.* >/dev/null 2>&1`,
          },
        ],
      },
      why:
        `NovaCloud needs Python ${PYTHON.required} or newer; uv downloads a standalone CPython build. UV_PYTHON_INSTALL_DIR keeps it in ${pth.pythonInstallDir}, root's and world-readable: ` +
        "uv's default, /root/.local/share/uv/python, is in root's home (mode 0700, and hidden from the units by ProtectHome=yes), where every unit failed with 203/EXEC.",
    },
  ];
}

/** pip says "Successfully installed ..." exactly when it installed something. */
const PIP_CHANGES: ChangeRule = { ifOutput: "^Successfully installed" };
/** uv pip reports "Installed N packages" only when it installed some ("Audited" otherwise). */
const UV_PIP_CHANGES: ChangeRule = { ifOutput: "^Installed " };

/** The first release, laid out the way update.sh lays out every later one. */
function releaseSteps(ctx: HostContext): Step[] {
  const { model, paths: pth } = ctx;
  const project = model.project;
  const fits = model.caps.python.systemPythonFits;
  const git = `git --git-dir=${shell(pth.repositoryMirror)}`;
  const release = `$(readlink -f ${shell(project.current)})`;
  // The service account reads what root writes here, whatever root's own umask.
  const readable = (run: string) => `(umask 022 && ${run})`;
  const venv = fits
    ? [
        {
          run: readable(`python3 -m venv "${release}/venv"`),
          creates: `${project.venv}/bin/python`,
          switched: { by: "systemSitePackages", run: readable(`python3 -m venv --system-site-packages "${release}/venv"`) },
        },
        // With the distribution's packages there is nothing to install (and no index to ask).
        { run: readable(`r=${release} && "$r/venv/bin/pip" install --requirement "$r/requirements.txt"`), changes: PIP_CHANGES, switched: { by: "systemSitePackages" } },
      ]
    : [
        { run: readable(uvCommand(pth, `venv --python ${PYTHON.managed} "${release}/venv"`)), creates: `${project.venv}/bin/python` },
        { run: readable(`r=${release} && ${uvCommand(pth, `pip install --python "$r/venv/bin/python" --compile-bytecode --requirement "$r/requirements.txt"`)}`), changes: UV_PIP_CHANGES },
      ];
  return [
    {
      id: "app.repository",
      phase: "code",
      title: "Mirror the application's repository",
      packages: ["git"],
      action: project.repository
        ? { kind: "commands", commands: [{ run: `git clone --mirror ${shell(project.repository)} ${shell(pth.repositoryMirror)}`, creates: pth.repositoryMirror }] }
        : { kind: "manual", lines: [`git clone --mirror <the application's git repository> ${pth.repositoryMirror}`, "(or set project.repository and render again: this step then runs it)"] },
      why: "Releases are exported from this mirror, never checked out in place: no release is a work tree a `git checkout --force` could overwrite, and the settings (.env, gunicorn_config.py) live in " + `${project.etcDir}.`,
    },
    {
      id: "app.release",
      phase: "code",
      title: `Build the first release (${project.branch})`,
      packages: fits ? ["python3-venv"] : [],
      action: {
        kind: "commands",
        commands: [
          directory(project.releases, 0o755),
          {
            run: readable(
              `c=$(${git} rev-parse --verify ${shell(`${project.branch}^{commit}`)}) && install -d -m 0755 ${shell(project.releases)}/"$c" && ${git} archive "$c" | tar -x -C ${shell(project.releases)}/"$c" && ln -sfn ${shell(project.releases)}/"$c" ${shell(project.current)}`,
            ),
            creates: project.current,
          },
          ...venv,
        ],
      },
      why:
        `${project.releases}/<commit> holds the commit's files (git archive: no .git) and a virtualenv of its own; ${project.current} links to it, and the units, gunicorn's chdir and manage.py go through that link. ` +
        "update.sh builds every later release beside it and switches the link in one rename. Root owns the releases; the service account only reads them. requirements.txt must pin gunicorn>=23 (older releases have request-smuggling CVEs) and include daphne and celery.",
    },
  ];
}

function appSteps(ctx: HostContext): Step[] {
  const { model } = ctx;
  const project = model.project;
  const t = model.topology;
  if (!runsDjango(ctx.host)) return [];
  const steps: Step[] = [
    ...(model.caps.python.systemPythonFits ? [] : managedPythonSteps(ctx)),
    ...releaseSteps(ctx),
    {
      id: "app.directories",
      phase: "code",
      title: "Create the static directory",
      // MEDIA_ROOT is the media family's: a directory, an NFS mount point, or nothing (S3).
      action: { kind: "commands", commands: [directory(project.staticDir, 0o755, project.user, project.group)] },
      why: "It is shared by every release. collectstatic writes STATIC_ROOT as the service account and nginx reads it.",
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
