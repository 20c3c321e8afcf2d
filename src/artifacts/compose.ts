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
import { MODE, withMarker, type FileSpec } from "../tree.js";
import { toYaml, type YamlComments, type YamlValue } from "../yaml.js";
import { envView, gunicornConfigView, redisUrl, type AppEndpoints } from "./app.js";
import { required } from "./context.js";
import { standaloneMosquitto, type StandalonePaths } from "./mosquitto.js";
import { acmeWebroot, proxyHeadersView, securityHeaders, siteView } from "./nginx.js";
import { pathsOf, siteCertificate, type Paths } from "./paths.js";

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
export function composePaths(model: Model, paths: Paths = pathsOf(model)) {
  const n = model.project.name;
  const base = (path: string) => path.slice(path.lastIndexOf("/") + 1);
  return {
    compose: "compose.yaml",
    env: "compose.env",
    dbEnv: ".env.db",
    gunicorn: "gunicorn_config.py",
    nginxSite: `nginx/conf.d/${n}.conf`,
    nginxSecurityHeaders: `nginx/snippets/${base(paths.nginxSecurityHeaders)}`,
    nginxProxyHeaders: `nginx/snippets/${base(paths.nginxProxyHeaders)}`,
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

function nginxViews(model: Model, paths: Paths) {
  const files = composePaths(model, paths);
  const inContainer = (bundlePath: string) => `/etc/nginx/${bundlePath.slice("nginx/".length)}`;
  const site = siteView(model, {
    wsgiHost: SERVICES.web,
    asgiHost: SERVICES.asgi,
    snippets: { security: inContainer(files.nginxSecurityHeaders), proxy: inContainer(files.nginxProxyHeaders) },
    // The image sends /dev/stdout and /dev/stderr to `docker compose logs`.
    logs: { access: "/dev/stdout", error: "/dev/stderr" },
    public: {
      acmeWebroot: acmeWebroot(model, paths),
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

/** A service of compose.yaml (Compose Specification), with the keys this bundle uses. */
interface ComposeService {
  readonly image?: string;
  readonly build?: string;
  readonly command?: readonly string[];
  readonly env_file?: readonly string[];
  readonly volumes?: readonly string[];
  readonly ports?: readonly string[];
  readonly healthcheck?: {
    readonly test: readonly string[];
    readonly interval: string;
    readonly timeout: string;
    readonly retries: number;
    readonly start_period?: string;
  };
  readonly depends_on?: Readonly<Record<string, { readonly condition: "service_healthy" | "service_completed_successfully" }>>;
  readonly stop_grace_period?: string;
  readonly restart: "unless-stopped" | "no";
}

interface ComposeDocument {
  readonly services: Readonly<Record<string, ComposeService>>;
  readonly volumes: Readonly<Record<string, Record<string, never>>>;
}

/** Compose interpolates `$` in every value: a literal dollar is `$$` (compose-spec interpolation.md). */
function literal<T extends YamlValue>(value: T): T {
  if (typeof value === "string") return value.replace(/\$/g, "$$$$") as T;
  if (Array.isArray(value)) return value.map((v: YamlValue) => literal(v)) as unknown as T;
  if (typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, v === undefined ? v : literal(v as YamlValue)])) as T;
  }
  return value;
}

const healthy = { condition: "service_healthy" } as const;

/** compose.yaml as a typed object, and the comments a reader of it needs. */
function composeDocument(model: Model, pth: Paths): ComposeYaml {
  const c = model.compose!;
  const files = composePaths(model, pth);
  const project = model.project;
  const s = SERVICES;
  const cert = siteCertificate(model);
  const app = c.app_image ? { image: c.app_image } : { build: c.build, image: `${project.name}-app` };
  const gunicornInContainer = `/etc/${project.name}/gunicorn_config.py`;
  const module = project.djangoModule;
  const celery = model.celery;
  const tlsPort = model.mqtt.tls_port;
  const tlsFiles = model.site.tls.mode === "files";
  const mq = MOSQUITTO_CONTAINER;
  const appDependencies = { [s.db]: healthy, [s.redis]: healthy, [s.mqtt]: healthy, [s.migrate]: { condition: "service_completed_successfully" } } as const;
  const python = (code: string) => ["CMD", "python", "-c", code];
  const document: ComposeDocument = {
    services: {
      [s.db]: {
        image: c.postgres_image ?? `postgres:${model.postgres.version}`,
        env_file: [files.dbEnv],
        volumes: ["postgres_data:/var/lib/postgresql/data"],
        healthcheck: { test: ["CMD-SHELL", 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB"'], interval: "5s", timeout: "5s", retries: 12, start_period: "30s" },
        restart: "unless-stopped",
      },
      [s.redis]: {
        image: c.redis_image,
        command: ["redis-server", "--appendonly", "yes"],
        volumes: ["redis_data:/data"],
        healthcheck: { test: ["CMD", "redis-cli", "ping"], interval: "5s", timeout: "3s", retries: 12 },
        restart: "unless-stopped",
      },
      [s.mqtt]: {
        image: c.mosquitto_image,
        volumes: [
          "./mosquitto/config:/mosquitto/config",
          `mosquitto_data:${mq.data}`,
          ...(tlsPort === undefined ? [] : [`${cert.certificate}:${mq.cert}:ro`, `${cert.key}:${mq.key}:ro`]),
        ],
        ...(tlsPort === undefined ? {} : { ports: [`${tlsPort}:${tlsPort}`] }),
        healthcheck: {
          test: ["CMD-SHELL", `mosquitto_pub -h 127.0.0.1 -p ${model.mqtt.port} -t healthcheck -n 2>&1 | grep -q 'not authorised'`],
          interval: "10s",
          timeout: "5s",
          retries: 6,
        },
        restart: "unless-stopped",
      },
      [s.migrate]: {
        ...app,
        command: ["sh", "-c", "python manage.py migrate --noinput && python manage.py collectstatic --noinput"],
        env_file: [files.env],
        volumes: [`static:${project.staticDir}`],
        depends_on: { [s.db]: healthy },
        restart: "no",
      },
      [s.web]: {
        ...app,
        command: ["gunicorn", "-c", gunicornInContainer],
        env_file: [files.env],
        volumes: [`./${files.gunicorn}:${gunicornInContainer}:ro`, `media:${project.mediaDir}`],
        depends_on: appDependencies,
        healthcheck: {
          test: python(
            `import urllib.request as r; r.urlopen(r.Request('http://127.0.0.1:${model.gunicorn.port}${model.site.health_check_path}', headers={'Host': '${model.site.domain}', 'X-Forwarded-Proto': 'https'}), timeout=5)`,
          ),
          interval: "10s",
          timeout: "10s",
          retries: 6,
          start_period: "30s",
        },
        restart: "unless-stopped",
      },
      [s.asgi]: {
        ...app,
        command: ["daphne", "--bind", "0.0.0.0", "--port", String(model.daphne.port), "--proxy-headers", "--websocket_timeout", String(model.daphne.websocket_timeout), `${module}.asgi:application`],
        env_file: [files.env],
        volumes: [`media:${project.mediaDir}`],
        depends_on: appDependencies,
        healthcheck: {
          test: python(`import socket; socket.create_connection(('127.0.0.1', ${model.daphne.port}), 5).close()`),
          interval: "10s",
          timeout: "10s",
          retries: 6,
          start_period: "30s",
        },
        restart: "unless-stopped",
      },
      [s.worker]: {
        ...app,
        command: ["celery", "-A", module, "worker", `--loglevel=${celery.loglevel}`, ...(celery.concurrency === "auto" ? [] : [`--concurrency=${celery.concurrency}`])],
        env_file: [files.env],
        volumes: [`media:${project.mediaDir}`],
        depends_on: appDependencies,
        stop_grace_period: `${celery.stop_timeout}s`,
        restart: "unless-stopped",
      },
      [s.beat]: {
        ...app,
        command: ["celery", "-A", module, "beat", `--loglevel=${celery.loglevel}`, `--schedule=${project.stateDir}/celerybeat-schedule`],
        env_file: [files.env],
        volumes: [`beat:${project.stateDir}`],
        depends_on: { [s.redis]: healthy, [s.migrate]: { condition: "service_completed_successfully" } },
        restart: "unless-stopped",
      },
      [s.nginx]: {
        image: c.nginx_image,
        ports: [`${c.http_port}:80`, `${c.https_port}:443`],
        volumes: [
          "./nginx/conf.d:/etc/nginx/conf.d:ro",
          "./nginx/snippets:/etc/nginx/snippets:ro",
          `static:${project.staticDir}:ro`,
          `media:${project.mediaDir}:ro`,
          // The site certificate from this machine where the site config names it; with Let's
          // Encrypt, certbot's tree on this machine and its webroot.
          ...(tlsFiles
            ? [`${cert.certificate}:${cert.certificate}:ro`, `${cert.key}:${cert.key}:ro`]
            : ["/etc/letsencrypt:/etc/letsencrypt:ro", `${pth.acmeWebroot}:${pth.acmeWebroot}:ro`]),
        ],
        depends_on: { [s.web]: healthy, [s.asgi]: healthy },
        restart: "unless-stopped",
      },
    },
    volumes: { postgres_data: {}, redis_data: {}, mosquitto_data: {}, static: {}, media: {}, beat: {} },
  };
  const header = [
      `Compose bundle for ${project.name}: \`docker compose up -d\` in this directory. Compose`,
      "Specification form, so no `version:` key; docker-compose 1.29 reads it too.",
      "",
      "Docker's published ports bypass ufw (it inserts its own iptables rules first),",
      `so only HTTP, HTTPS${tlsPort === undefined ? "" : " and MQTT over TLS"} are published. PostgreSQL,`,
      "Redis, plain MQTT, gunicorn and daphne are reachable on the compose network only.",
      "Nothing here bind-mounts the application's source: the app image holds the code.",
  ];
  const comments: YamlComments = {
    [`services.${s.mqtt}.volumes`]: [
      "The image's entrypoint hands /mosquitto to its mosquitto user (uid 1883) before the broker",
      "starts, and the broker reads its password file and ACL only after dropping to that user:",
      `so the config directory is mounted writable. Its listener on ${model.mqtt.port} is not published.`,
    ],
    ...(tlsPort === undefined
      ? {}
      : {
          [`services.${s.mqtt}.volumes[2]`]: [
            "The certificate for devices; its key must be readable by uid 1883",
            "(e.g. `setfacl -m u:1883:r KEY`): the broker loads it after dropping privileges.",
          ],
        }),
    [`services.${s.mqtt}.healthcheck`]: ["Up and refusing anonymous clients: the answer proves both without a password here."],
    [`services.${s.migrate}`]: ["One-shot: migrations and collectstatic before the app starts."],
    [`services.${s.web}.command`]: [
      `gunicorn_config.py binds 0.0.0.0:${model.gunicorn.port} and trusts X-Forwarded-* from any`,
      "address: only the nginx container reaches it, on the compose network.",
    ],
    [`services.${s.asgi}.command`]: ["--proxy-headers: only the nginx container reaches daphne, on the compose network."],
    [`services.${s.worker}.stop_grace_period`]: ["Running tasks get this long to finish after SIGTERM (warm shutdown)."],
    [`services.${s.beat}`]: ["Exactly one beat; its schedule lives in a volume, not in the code. The", `image's user must own ${project.stateDir}.`],
    [`services.${s.nginx}.volumes[0]`]: ["Replaces the image's default.conf: only this site answers."],
    [`services.${s.nginx}.volumes[4]`]: tlsFiles
      ? ["The site certificate from this machine, where the site config names it."]
      : [
          `Let's Encrypt on this machine: \`certbot certonly --webroot -w ${pth.acmeWebroot}\``,
          "answers through this nginx; reload it after a renewal (`docker compose exec nginx nginx -s reload`).",
        ],
  };
  return { document: literal(document as unknown as YamlValue) as unknown as ComposeDocument, comments, header };
}

interface ComposeYaml {
  readonly document: ComposeDocument;
  readonly comments: YamlComments;
  readonly header: readonly string[];
}

/** compose.yaml: the typed document serialized once, under the generated-file marker. */
function composeYamlFile(path: string, { document, comments, header }: ComposeYaml): FileSpec {
  return { path, content: withMarker(toYaml(document as unknown as Record<string, YamlValue>, comments, header), "#"), mode: MODE.config };
}

export function composeFiles(model: Model, secrets: Secrets, kdf: Pbkdf2 = pbkdf2Js): FileSpec[] {
  if (!model.compose) return [];
  const pth = pathsOf(model);
  const files = composePaths(model, pth);
  const nginx = nginxViews(model, pth);
  // Only nginx reaches gunicorn on the compose network, so it may trust any proxy address.
  const gunicorn = gunicornConfigView(model, `0.0.0.0:${model.gunicorn.port}`, "*", true);
  return [
    composeYamlFile(files.compose, composeDocument(model, pth)),
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
