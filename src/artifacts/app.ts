/**
 * The application's own files on hosts that run Django code: the .env it reads and, on app
 * hosts, gunicorn_config.py.
 */
import type { Model } from "../model/normalize.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, nearest, reach, required, type HostContext } from "./context.js";

/** redis://[:password@]host:port/db, with the password percent-encoded as URLs require. */
export function redisUrl(scheme: "redis" | "sentinel", host: string, port: number, database: number, password: string | undefined): string {
  const auth = password === undefined ? "" : `:${encodeURIComponent(password)}@`;
  return `${scheme}://${auth}${host}:${port}/${database}`;
}

function redisSettings(ctx: HostContext) {
  const { model, secrets } = ctx;
  const password = secrets.redisPassword;
  const t = model.topology;
  if (t.redis.length > 1) {
    // With Sentinel the app asks the sentinels for the current primary: REDIS_URL lists them in
    // the form Celery and kombu read (sentinel://...;sentinel://...).
    const sentinels = t.sentinels.map((s) => ({ host: reach(ctx, s), port: model.redis.sentinel_port }));
    return {
      url: sentinels.map((s) => redisUrl("sentinel", s.host, s.port, model.redis.database, password)).join(";"),
      sentinels: sentinels.map((s) => `${s.host}:${s.port}`).join(","),
      master: model.redis.master_name,
      password,
    };
  }
  const primary = t.redisPrimary!;
  return { url: redisUrl("redis", reach(ctx, primary), model.redis.port, model.redis.database, password), sentinels: undefined, master: undefined, password };
}

function envView(ctx: HostContext) {
  const { model, secrets } = ctx;
  const t = model.topology;
  const dbHost = t.db!;
  const dbAddress = reach(ctx, dbHost);
  const mqttHost = nearest(ctx, t.mqtt)!;
  return {
    settingsModule: model.project.settingsModule,
    debug: model.django.debug,
    secretKey: required(secrets, "secretKey"),
    allowedHosts: [...model.siteNames, ...model.django.allowed_hosts].join(","),
    csrfTrustedOrigins: model.siteNames.map((n) => `https://${n}`).join(","),
    staticRoot: model.project.staticDir,
    mediaRoot: model.project.mediaDir,
    db: {
      name: model.postgres.database,
      user: model.postgres.user,
      password: required(secrets, "dbPassword"),
      host: dbAddress,
      port: model.postgres.port,
      // Connections from another host go over hostssl lines in pg_hba.conf.
      sslmode: dbAddress !== "127.0.0.1" && model.postgres.ssl ? "require" : undefined,
    },
    redis: redisSettings(ctx),
    mqtt: {
      host: reach(ctx, mqttHost),
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

export function gunicornView(model: Model, bind: string, forwardedAllowIps: string) {
  const g = model.gunicorn;
  return {
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
    accessLog: `${model.project.logDir}/gunicorn-access.log`,
    errorLog: `${model.project.logDir}/gunicorn-error.log`,
  };
}

export function appFiles(ctx: HostContext): FileSpec[] {
  const { model } = ctx;
  const files: FileSpec[] = [];
  if (model.topology.django.some((h) => h.name === ctx.host.name)) {
    files.push(
      templateFile(model.project.envFile, "app/env.njk", envView(ctx), {
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
    const view = gunicornView(model, `127.0.0.1:${model.gunicorn.port}`, "127.0.0.1");
    files.push(templateFile(`${model.project.root}/gunicorn_config.py`, "app/gunicorn_config.py.njk", view, { comment: "#" }));
  }
  return files;
}
