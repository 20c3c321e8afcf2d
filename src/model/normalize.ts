/**
 * From the validated model to the normalized one the artifact families read: every default that
 * depends on another value is resolved here, once (the one source of truth for names, paths,
 * versions and which host plays which role).
 */
import { capabilities, DISTRIBUTIONS, type Capabilities, type Distribution, type SoftwareVersions } from "./capabilities.js";
import type { ModelInput, ParsedModel, Role } from "./schema.js";

export interface Host {
  readonly name: string;
  readonly address: string;
  readonly roles: ReadonlySet<Role>;
}

export interface Topology {
  /** Every host, sorted by name. */
  readonly hosts: readonly Host[];
  readonly db: Host | undefined;
  readonly standbys: readonly Host[];
  readonly redis: readonly Host[];
  /** The first redis host (by name) starts as the primary; the others replicate it. */
  readonly redisPrimary: Host | undefined;
  readonly sentinels: readonly Host[];
  readonly mqtt: readonly Host[];
  /** With several mqtt hosts, the first is the hub the others bridge to. */
  readonly mqttHub: Host | undefined;
  readonly lb: Host | undefined;
  readonly web: readonly Host[];
  readonly app: readonly Host[];
  readonly asgi: readonly Host[];
  readonly worker: readonly Host[];
  readonly scheduler: Host | undefined;
  /** Hosts that run Django code (app, asgi, worker, scheduler): they get the .env and a venv. */
  readonly django: readonly Host[];
  /** The host that runs Prometheus and Alertmanager (role monitor), if any. */
  readonly monitor: Host | undefined;
  /** The one host whose update.sh runs migrations (first app host, else first Django host). */
  readonly migrator: Host | undefined;
}

/** The project's names and paths, resolved. */
export interface Project {
  readonly name: string;
  readonly djangoModule: string;
  readonly settingsModule: string;
  /**
   * The base directory on Django hosts: the releases, the `current` link, the shared static
   * and media directories, the scripts. Never itself a git checkout.
   */
  readonly root: string;
  /** One directory per deployed commit (its files and its own virtualenv): <root>/releases. */
  readonly releases: string;
  /**
   * The running release: a symbolic link into `releases`, replaced in one rename by update.sh.
   * The units, manage.py and gunicorn's `chdir` all go through it.
   */
  readonly current: string;
  readonly user: string;
  readonly group: string;
  readonly repository: string | undefined;
  readonly branch: string;
  /** The running release's virtualenv (<current>/venv). */
  readonly venv: string;
  /** The settings and secrets the services read: in /etc/<name>, never inside a release. */
  readonly envFile: string;
  readonly staticDir: string;
  readonly mediaDir: string;
  readonly logDir: string;
  /** Config that is not code: the .env, gunicorn_config.py, SQL, pgpass for backups. */
  readonly etcDir: string;
  /** systemd StateDirectory= name, /var/lib/<name>. */
  readonly stateDir: string;
}

export interface Model extends Omit<ParsedModel, "project" | "postgres" | "redis" | "mqtt" | "logs" | "ansible"> {
  readonly project: Project;
  readonly postgres: ParsedModel["postgres"] & { readonly version: number; readonly database: string; readonly user: string };
  readonly redis: ParsedModel["redis"] & { readonly master_name: string };
  readonly mqtt: ParsedModel["mqtt"] & { readonly username: string; readonly domain: string; readonly bridge_username: string };
  readonly logs: { readonly dir: string; readonly keep_days: number };
  readonly ansible: { readonly user: string; readonly become: boolean };
  readonly versions: SoftwareVersions;
  readonly caps: Capabilities;
  readonly topology: Topology;
  /** The site's names: domain first, then aliases. */
  readonly siteNames: readonly string[];
  /**
   * What the model was validated from (a frozen copy). A copy of a model given to render() is
   * validated again from this, never trusted by identity.
   */
  readonly input: ModelInput;
}

export function hostsOf(parsed: Pick<ParsedModel, "hosts">): Host[] {
  return Object.keys(parsed.hosts)
    .sort()
    .map((name) => {
      const h = parsed.hosts[name]!;
      return { name, address: h.address, roles: new Set(h.roles) };
    });
}

const DJANGO_ROLES: readonly Role[] = ["app", "asgi", "worker", "scheduler"];

/** True when the host runs Django code (app, asgi, worker or scheduler): it gets the .env and a venv. */
export function runsDjango(host: Host): boolean {
  return DJANGO_ROLES.some((r) => host.roles.has(r));
}

export function topologyOf(hosts: readonly Host[]): Topology {
  const withRole = (role: Role) => hosts.filter((h) => h.roles.has(role));
  const redis = withRole("redis");
  const mqtt = withRole("mqtt");
  const app = withRole("app");
  const django = hosts.filter(runsDjango);
  return {
    hosts,
    db: withRole("db")[0],
    standbys: withRole("db-standby"),
    redis,
    redisPrimary: redis[0],
    sentinels: withRole("redis-sentinel"),
    mqtt,
    mqttHub: mqtt[0],
    lb: withRole("lb")[0],
    web: withRole("web"),
    app,
    asgi: withRole("asgi"),
    worker: withRole("worker"),
    scheduler: withRole("scheduler")[0],
    django,
    migrator: app[0] ?? django[0],
    monitor: withRole("monitor")[0],
  };
}

/** A name that is valid as a PostgreSQL identifier and a Unix user: `nova-cloud` -> `nova_cloud`. */
export function identifierFrom(name: string): string {
  return name.replace(/-/g, "_");
}

export function versionsOf(parsed: Pick<ParsedModel, "platform" | "postgres">): SoftwareVersions {
  const base = DISTRIBUTIONS[parsed.platform.distribution as Distribution];
  const platform = parsed.platform;
  return {
    nginx: platform.nginx ?? base.nginx,
    haproxy: platform.haproxy ?? base.haproxy,
    postgres: parsed.postgres.version ?? base.postgres,
    mosquitto: platform.mosquitto ?? base.mosquitto,
    redis: platform.redis ?? base.redis,
    python: platform.python ?? base.python,
    openssl: platform.openssl ?? base.openssl,
    systemd: platform.systemd ?? base.systemd,
  };
}

/**
 * The account and role names that default from the project name, defined once: normalize()
 * fills them in and the cross-field rules check them.
 */
export function accountNames(parsed: Pick<ParsedModel, "project" | "postgres" | "mqtt">) {
  const ident = identifierFrom(parsed.project.name);
  return {
    user: parsed.project.user ?? ident,
    pgUser: parsed.postgres.user ?? ident,
    pgDatabase: parsed.postgres.database ?? `${ident}_db`,
    mqttUser: parsed.mqtt.username ?? `${ident}_platform`,
    bridgeUser: parsed.mqtt.bridge_username ?? `${ident}_bridge`,
  };
}

export function projectOf(parsed: ParsedModel): Project {
  const project = parsed.project;
  const root = project.root ?? `/opt/${project.name}`;
  const current = `${root}/current`;
  const etcDir = `/etc/${project.name}`;
  const user = accountNames(parsed).user;
  return {
    name: project.name,
    djangoModule: project.django_module,
    settingsModule: project.settings_module ?? `${project.django_module}.settings`,
    root,
    releases: `${root}/releases`,
    current,
    user,
    group: project.group ?? user,
    repository: project.repository,
    branch: project.branch,
    venv: `${current}/venv`,
    // Outside every release, so no checkout or release switch can touch it (errata ENV-02).
    envFile: `${etcDir}/${project.name}.env`,
    staticDir: `${root}/static`,
    mediaDir: `${root}/media`,
    logDir: parsed.logs.dir ?? `/var/log/${project.name}`,
    etcDir,
    stateDir: `/var/lib/${project.name}`,
  };
}

export function normalize(parsed: ParsedModel): Omit<Model, "input"> {
  const project = projectOf(parsed);
  const versions = versionsOf(parsed);
  const names = accountNames(parsed);
  return {
    ...parsed,
    project,
    postgres: {
      ...parsed.postgres,
      version: versions.postgres,
      database: names.pgDatabase,
      user: names.pgUser,
    },
    redis: { ...parsed.redis, master_name: parsed.redis.master_name ?? project.name },
    mqtt: {
      ...parsed.mqtt,
      username: names.mqttUser,
      domain: parsed.mqtt.domain ?? parsed.site.domain,
      bridge_username: names.bridgeUser,
    },
    logs: { dir: project.logDir, keep_days: parsed.logs.keep_days },
    // Only root can install the files; another SSH user has to become root.
    ansible: { user: parsed.ansible.user, become: parsed.ansible.become ?? parsed.ansible.user !== "root" },
    versions,
    caps: capabilities(versions),
    topology: topologyOf(hostsOf(parsed)),
    siteNames: [parsed.site.domain, ...parsed.site.aliases],
  };
}
