/**
 * The Compose bundle under compose/ (errata section 16, DC-01..13, ENV-06): compose.yaml in the
 * Compose Specification form (no `version:`), the app's environment with service names instead
 * of addresses, the database's own env file, and the nginx, gunicorn and Mosquitto files rendered
 * by the same templates as on hosts, mounted read-only where the image allows it.
 *
 * Paths here are relative to the bundle (render places them under compose/). Inside the
 * containers the application keeps the paths the model gives it on hosts (project.root,
 * STATIC_ROOT, MEDIA_ROOT, the beat schedule under /var/lib/<name>), so the same settings.py and
 * the same nginx aliases work in both.
 */
import { pbkdf2Js, type Pbkdf2 } from "../crypto.js";
import { capabilities } from "../model/capabilities.js";
import type { Model } from "../model/normalize.js";
import { imageTagVersion } from "../model/values.js";
import type { Secrets } from "../model/secrets.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { envView, gunicornView, redisUrl, type AppEndpoints } from "./app.js";
import { required } from "./context.js";
import { standaloneMosquitto, type StandalonePaths } from "./mosquitto.js";
import { proxyHeadersView, securityHeaders, siteView } from "./nginx.js";
import { paths, siteCertificate } from "./paths.js";

/** Service names: the host names the containers reach each other by (DC-03). */
export const SERVICES = {
  db: "db",
  redis: "redis",
  mqtt: "mqtt",
  migrate: "migrate",
  web: "web",
  asgi: "asgi",
  worker: "celery",
  beat: "celery-beat",
  nginx: "nginx",
} as const;

/** Ports inside the containers of the images we do not configure. */
const POSTGRES_PORT = 5432;
const REDIS_PORT = 6379;

/** The files of the bundle, relative to compose/. */
export function composePaths(model: Model) {
  const n = model.project.name;
  const p = paths(model);
  const base = (path: string) => path.slice(path.lastIndexOf("/") + 1);
  return {
    compose: "compose.yaml",
    env: "compose.env",
    dbEnv: ".env.db",
    gunicorn: "gunicorn_config.py",
    nginxSite: `nginx/conf.d/${n}.conf`,
    nginxSecurityHeaders: `nginx/snippets/${base(p.nginxSecurityHeaders)}`,
    nginxProxyHeaders: `nginx/snippets/${base(p.nginxProxyHeaders)}`,
    mosquittoConf: "mosquitto/config/mosquitto.conf",
    mosquittoPasswd: "mosquitto/config/passwd",
    mosquittoAcl: "mosquitto/config/acl",
  };
}

/** Where the eclipse-mosquitto image keeps its files (its documented layout). */
export const MOSQUITTO_CONTAINER: StandalonePaths = {
  conf: "/mosquitto/config/mosquitto.conf",
  passwd: "/mosquitto/config/passwd",
  acl: "/mosquitto/config/acl",
  data: "/mosquitto/data",
  cert: "/mosquitto/certs/fullchain.pem",
  key: "/mosquitto/certs/privkey.pem",
};

/**
 * The nginx version the bundle's image runs: compose.nginx_version, else the image tag
 * (nginx:1.26, nginx:1.26.3-alpine). A tag without a version (nginx:stable, a digest) needs
 * compose.nginx_version; the model rules report that, so reaching the throw is a bug.
 */
export function composeNginxVersion(model: Model): string {
  const c = model.compose;
  if (!c) throw new Error("internal: composeNginxVersion without a [compose] section");
  const version = c.nginx_version ?? imageTagVersion(c.nginx_image);
  if (version === undefined) {
    throw new Error(`internal: compose.nginx_image ${JSON.stringify(c.nginx_image)} has no version tag and compose.nginx_version is not set (the model rules should have said so)`);
  }
  return version;
}

/** The app's services inside the compose network: service names, no TLS, no Redis password. */
function composeEndpoints(model: Model): AppEndpoints {
  return {
    // The compose network stays on this machine: no TLS to the database container.
    db: { host: SERVICES.db, port: POSTGRES_PORT, sslmode: undefined },
    // Redis is reachable only on the compose network (no published port) and runs without a
    // password: a requirepass would have to be on its command line.
    redis: { url: redisUrl("redis", SERVICES.redis, REDIS_PORT, model.redis.database, undefined), sentinels: undefined, master: undefined, password: undefined },
    mqttHost: SERVICES.mqtt,
    httpsPort: model.compose!.https_port,
    dialect: "compose",
  };
}

function nginxViews(model: Model) {
  const files = composePaths(model);
  const inContainer = (bundlePath: string) => `/etc/nginx/${bundlePath.slice("nginx/".length)}`;
  const site = siteView(model, {
    wsgiHost: SERVICES.web,
    asgiHost: SERVICES.asgi,
    snippets: { security: inContainer(files.nginxSecurityHeaders), proxy: inContainer(files.nginxProxyHeaders) },
    // The image sends /dev/stdout and /dev/stderr to `docker compose logs`.
    logs: { access: "/dev/stdout", error: "/dev/stderr" },
    public: {
      // Inside the container; compose.yaml publishes them on compose.http_port/https_port.
      httpPort: 80,
      httpsPort: 443,
      publishedHttpsPort: model.compose!.https_port,
      // Docker publishes the ports on IPv6 too; a container may have no IPv6 address to bind.
      ipv6: false,
      caps: capabilities({ ...model.versions, nginx: composeNginxVersion(model) }),
    },
  });
  return {
    site,
    proxyHeaders: proxyHeadersView(model, false),
    securityHeaders: { headers: securityHeaders(model) },
  };
}

/** The shell's `$VAR` inside a Compose string is written `$$` by the `compose` filter. */
function composeView(model: Model) {
  const c = model.compose!;
  const files = composePaths(model);
  const p = model.project;
  const cert = siteCertificate(model);
  const appImage = c.app_image ? { image: c.app_image } : { build: c.build, image: `${p.name}-app` };
  const gunicornInContainer = `/etc/${p.name}/gunicorn_config.py`;
  const module = p.djangoModule;
  const celery = model.celery;
  const tlsFiles = model.site.tls.mode === "files";
  return {
    project: p.name,
    services: SERVICES,
    files,
    app: appImage,
    envFile: files.env,
    dbEnvFile: files.dbEnv,
    images: {
      postgres: c.postgres_image ?? `postgres:${model.postgres.version}`,
      redis: c.redis_image,
      mosquitto: c.mosquitto_image,
      nginx: c.nginx_image,
    },
    staticDir: p.staticDir,
    mediaDir: p.mediaDir,
    stateDir: p.stateDir,
    health: model.site.health_check_path,
    domain: model.site.domain,
    commands: {
      migrate: ["sh", "-c", "python manage.py migrate --noinput && python manage.py collectstatic --noinput"],
      web: ["gunicorn", "-c", gunicornInContainer],
      asgi: ["daphne", "--bind", "0.0.0.0", "--port", String(model.daphne.port), "--proxy-headers", "--websocket_timeout", String(model.daphne.websocket_timeout), `${module}.asgi:application`],
      worker: ["celery", "-A", module, "worker", `--loglevel=${celery.loglevel}`, ...(celery.concurrency === "auto" ? [] : [`--concurrency=${celery.concurrency}`])],
      beat: ["celery", "-A", module, "beat", `--loglevel=${celery.loglevel}`, `--schedule=${p.stateDir}/celerybeat-schedule`],
    },
    gunicorn: { file: files.gunicorn, inContainer: gunicornInContainer, port: model.gunicorn.port },
    daphnePort: model.daphne.port,
    workerStop: `${celery.stop_timeout}s`,
    mqtt: {
      port: model.mqtt.port,
      tlsPort: model.mqtt.tls_port,
      configDir: "./mosquitto/config",
      container: MOSQUITTO_CONTAINER,
    },
    nginx: {
      httpPort: c.http_port,
      httpsPort: c.https_port,
      confD: "./nginx/conf.d",
      snippets: "./nginx/snippets",
    },
    // The site certificate: files from this machine, mounted where the nginx config names them;
    // with Let's Encrypt, certbot's tree on this machine and its webroot.
    certificate: tlsFiles ? { certificate: cert.certificate, key: cert.key } : undefined,
    letsEncrypt: tlsFiles ? undefined : { dir: "/etc/letsencrypt", webroot: paths(model).acmeWebroot, certificate: cert.certificate, key: cert.key },
  };
}

export function composeFiles(model: Model, secrets: Secrets, kdf: Pbkdf2 = pbkdf2Js): FileSpec[] {
  if (!model.compose) return [];
  const files = composePaths(model);
  const nginx = nginxViews(model);
  // Only nginx reaches gunicorn on the compose network, so it may trust any proxy address.
  const gunicorn = gunicornView(model, `0.0.0.0:${model.gunicorn.port}`, "*", true);
  return [
    templateFile(files.compose, "compose/compose.yaml.njk", composeView(model), { comment: "#" }),
    templateFile(files.env, "app/env.njk", envView(model, secrets, composeEndpoints(model)), { comment: "#", mode: MODE.secret, secret: true }),
    templateFile(
      files.dbEnv,
      "compose/env.db.njk",
      { database: model.postgres.database, user: model.postgres.user, password: required(secrets, "dbPassword") },
      { comment: "#", mode: MODE.secret, secret: true },
    ),
    templateFile(files.gunicorn, "app/gunicorn_config.py.njk", gunicorn, { comment: "#" }),
    templateFile(files.nginxSite, "nginx/site.conf.njk", nginx.site, { comment: "#" }),
    templateFile(files.nginxSecurityHeaders, "nginx/security-headers.conf.njk", nginx.securityHeaders, { comment: "#" }),
    templateFile(files.nginxProxyHeaders, "nginx/proxy-headers.conf.njk", nginx.proxyHeaders, { comment: "#" }),
    ...standaloneMosquitto(model, secrets, MOSQUITTO_CONTAINER, { conf: files.mosquittoConf, passwd: files.mosquittoPasswd, acl: files.mosquittoAcl }, kdf),
  ];
}
