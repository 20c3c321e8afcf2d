/**
 * PostgreSQL on the db host and its streaming standbys (errata section 9, INST-03/04): a conf.d
 * file next to Debian's postgresql.conf, the whole pg_hba.conf, the role/database SQL on the
 * primary, the replication password file on standbys, and the hand steps (install, restart,
 * roles, pg_basebackup) in the order the errata gives them.
 *
 * Any standby can become the primary. The model names the primary, and each standby's conf.d
 * names it in primary_conninfo (not pg_basebackup -R's postgresql.auto.conf, which pg_rewind
 * copies from the new primary and which would override conf.d): after a failover the model
 * names the promoted host, and a new render points every standby at it. The old primary comes
 * back with pg_rewind, connecting as a role that may only call the functions pg_rewind uses.
 */
import { runsDjango, type Host, type Model } from "../model/normalize.js";
import { DISTRIBUTIONS } from "../model/capabilities.js";
import { scramSha256Verifier, type Pbkdf2 } from "../crypto.js";
import { flowsFrom, flowsTo } from "../model/flows.js";
import { conninfoValue, shell, sqlLiteral } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, required, type HostContext, type HostFamily } from "./context.js";
import { aptInstall, unitState, type ChangeRule, type Step } from "./steps.js";

/** WAL segment size of every Debian/PGDG build (initdb --wal-segsize default). */
const WAL_SEGMENT_MB = 16;

function isClusterHost(ctx: HostContext): boolean {
  return has(ctx, "db") || has(ctx, "db-standby");
}

/** Megabytes in a PostgreSQL size (1GB, 512MB, 64kB, 1TB), rounded up. */
export function pgSizeMegabytes(size: string): number {
  const match = /^(\d+)(kB|MB|GB|TB)$/.exec(size);
  if (!match) throw new Error(`internal: ${JSON.stringify(size)} is not a PostgreSQL size`);
  const n = Number(match[1]);
  const factor = { kB: 1 / 1024, MB: 1, GB: 1024, TB: 1024 * 1024 }[match[2] as "kB" | "MB" | "GB" | "TB"];
  return Math.ceil(n * factor);
}

/** A physical replication slot name for a standby: lower-case letters, digits and '_' (max 63). */
export function slotName(host: Host): string {
  return host.name.replace(/[^a-z0-9_]/g, "_").slice(0, 63);
}

/** True when PostgreSQL's SASLprep leaves the password as it is, so our verifier matches its own. */
export function scramSafe(password: string): boolean {
  return /^[\x20-\x7e]*$/.test(password);
}

/** The TLS parameters of libpq clients on other hosts (app hosts, the other members), if TLS is on. */
export interface PostgresClientTls {
  /** verify-full with postgres.ssl_ca (signed by it and naming the address connected to), else require. */
  readonly sslmode: "require" | "verify-full";
  /** The CA file, with verify-full. */
  readonly sslrootcert: string | undefined;
}

export function postgresClientTls(model: Model): PostgresClientTls | undefined {
  const pg = model.postgres;
  if (!pg.ssl) return undefined;
  return pg.ssl_ca === undefined ? { sslmode: "require", sslrootcert: undefined } : { sslmode: "verify-full", sslrootcert: pg.ssl_ca };
}

/**
 * A libpq connection string from this member to `target`: its address and port, `fields`
 * (user, dbname...), the password file of the postgres OS user, and the client TLS settings.
 */
function memberConninfo(ctx: HostContext, target: Host, fields: Readonly<Record<string, string>>): string {
  const tls = postgresClientTls(ctx.model);
  const all: Record<string, string | undefined> = {
    host: target.address,
    port: String(ctx.model.postgres.port),
    ...fields,
    passfile: ctx.paths.standbyPgpass,
    sslmode: tls?.sslmode,
    sslrootcert: tls?.sslrootcert,
  };
  return Object.entries(all)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${conninfoValue(v)}`)
    .join(" ");
}

/** How this standby streams from `primary` (primary_conninfo, pg_basebackup, pg_receivewal). */
function replicationConninfo(ctx: HostContext, primary: Host): string {
  // application_name: pg_stat_replication on the primary then names the standby.
  return memberConninfo(ctx, primary, { user: ctx.model.postgres.replication.user, application_name: slotName(ctx.host) });
}

/** How pg_rewind on this host reads the files of `primary`: a normal connection to the database postgres. */
function rewindConninfo(ctx: HostContext, primary: Host): string {
  return memberConninfo(ctx, primary, { user: ctx.model.postgres.replication.rewind_user, dbname: "postgres" });
}

function confView(ctx: HostContext) {
  const { model, host } = ctx;
  const pg = model.postgres;
  const standbys = model.topology.standbys;
  // PG-02: loopback, plus the private address only when another host connects (a flow reaches it).
  const remote = flowsTo(ctx.flows, host, "postgres").length > 0;
  const replication =
    standbys.length === 0
      ? undefined
      : {
          // Each pg_basebackup -X stream takes two WAL senders for a while: room for all at once.
          maxWalSenders: Math.max(10, 2 * standbys.length + 2),
          maxReplicationSlots: Math.max(10, standbys.length + 2),
          walKeepSize: pg.replication.wal_keep_size,
          walKeepSegments: Math.ceil(pgSizeMegabytes(pg.replication.wal_keep_size) / WAL_SEGMENT_MB),
          maxSlotWalKeepSize: pg.replication.max_slot_wal_keep_size,
          slots: pg.replication.slots,
          hotStandbyFeedback: pg.replication.hot_standby_feedback,
        };
  const primary = model.topology.db!;
  return {
    version: model.postgres.version,
    caps: model.caps.postgres,
    standby: has(ctx, "db-standby"),
    follow: has(ctx, "db-standby")
      ? { primary: primary.name, conninfo: replicationConninfo(ctx, primary), slot: pg.replication.slots ? slotName(host) : undefined }
      : undefined,
    listenAddresses: remote ? `localhost,${host.address}` : "localhost",
    port: pg.port,
    ssl: pg.ssl ? { certificate: pg.ssl_certificate, key: pg.ssl_key } : undefined,
    replication,
  };
}

/**
 * One pg_hba.conf line: names as they are (the template quotes them with | pghba and aligns the
 * columns), or in the database column the keyword `replication`, written bare.
 */
interface HbaLine {
  readonly type: "host" | "hostssl";
  readonly database: string | { readonly keyword: "replication" };
  readonly user: string;
  readonly address: string;
  readonly method: "scram-sha-256";
}

function hbaView(ctx: HostContext) {
  const { model, host } = ctx;
  const pg = model.postgres;
  const hostType = pg.ssl ? "hostssl" : "host";
  const rules: (HbaLine & { readonly comment: string })[] = [];
  const line = (type: HbaLine["type"], database: HbaLine["database"], user: string, address: string): HbaLine => ({ type, database, user, address, method: "scram-sha-256" });
  const local = runsDjango(host);
  const backup = host.roles.has("db")
    ? "the nightly backup (pg_dump -h 127.0.0.1 as the project user, with its .pgpass)"
    : "the nightly backup once this standby is promoted";
  rules.push({
    comment: local ? `The app on this host (DB_HOST=127.0.0.1) and ${backup}.` : `${backup[0]!.toUpperCase()}${backup.slice(1)}.`,
    ...line("host", pg.database, pg.user, "127.0.0.1/32"),
  });
  // Every client of the flow table, and only those: the app's hosts, then the other members.
  const flows = flowsTo(ctx.flows, host, "postgres");
  for (const f of flows.filter((f) => f.client === "django")) {
    const comment = host.roles.has("db") ? `The app on ${f.from.name}.` : `The app on ${f.from.name}: its reads (DB_REPLICA_HOSTS), and all its queries once this standby is promoted.`;
    rules.push({ comment, ...line(hostType, pg.database, pg.user, `${f.from.address}/32`) });
  }
  for (const f of flows.filter((f) => f.client === "replication")) {
    const why = f.from.roles.has("db")
      ? `${f.from.name}, the primary now, once it is rewound into a standby of this host after a failover.`
      : `Standby ${f.from.name} streams WAL (pg_basebackup, walreceiver).`;
    // The keyword for physical replication, not a database of that name (which | pghba quotes).
    rules.push({ comment: why, ...line(hostType, { keyword: "replication" }, pg.replication.user, `${f.from.address}/32`) });
  }
  // pg_rewind reads files over a normal connection to the database postgres, where the init SQL
  // granted the rewind role the functions it calls.
  for (const f of flows.filter((f) => f.client === "rewind")) {
    rules.push({
      comment: `pg_rewind on ${f.from.name}, when it comes back as a standby of this host after a failover.`,
      ...line(hostType, "postgres", pg.replication.rewind_user, `${f.from.address}/32`),
    });
  }
  return { version: pg.version, primary: model.topology.db?.name, rules };
}

/** The password as PostgreSQL should store it: a SCRAM verifier, or the cleartext when SASLprep could change it. */
function storedPassword(model: Model, role: string, password: string, kdf: Pbkdf2) {
  return scramSafe(password)
    ? { verifier: scramSha256Verifier(role, password, model, kdf), cleartext: undefined }
    : { verifier: undefined, cleartext: password };
}

function initSqlView(ctx: HostContext) {
  const { model } = ctx;
  const pg = model.postgres;
  const paths = ctx.paths;
  const standbys = model.topology.standbys;
  return {
    version: pg.version,
    caps: model.caps.postgres,
    file: paths.pgInitSql,
    port: pg.port,
    database: pg.database,
    user: pg.user,
    password: storedPassword(model, pg.user, required(ctx.secrets, "dbPassword"), ctx.kdf),
    replication:
      standbys.length === 0
        ? undefined
        : { user: pg.replication.user, password: storedPassword(model, pg.replication.user, required(ctx.secrets, "replicationPassword"), ctx.kdf) },
    rewind:
      standbys.length === 0
        ? undefined
        : { user: pg.replication.rewind_user, password: storedPassword(model, pg.replication.rewind_user, required(ctx.secrets, "rewindPassword"), ctx.kdf) },
  };
}

function pgpassView(ctx: HostContext) {
  const { model, host } = ctx;
  const pg = model.postgres;
  return {
    replication: { user: pg.replication.user, password: required(ctx.secrets, "replicationPassword") },
    rewind: { user: pg.replication.rewind_user, password: required(ctx.secrets, "rewindPassword") },
    port: String(pg.port),
    // The members this one replicates from (its replication flows): the primary now, the others after a failover.
    hosts: flowsFrom(ctx.flows, host)
      .filter((f) => f.client === "replication")
      .map((f) => ({ name: f.to.name, address: f.to.address, primary: f.to.roles.has("db") })),
  };
}

function postgresFiles(ctx: HostContext): FileSpec[] {
  if (!isClusterHost(ctx)) return [];
  const paths = ctx.paths;
  const files: FileSpec[] = [
    // Debian ships postgresql.conf and pg_hba.conf as postgres:postgres, pg_hba.conf 0640.
    templateFile(paths.pgConfD, "postgres/conf.d.conf.njk", confView(ctx), { comment: "#", owner: "postgres", group: "postgres" }),
    templateFile(paths.pgHba, "postgres/pg_hba.conf.njk", hbaView(ctx), { comment: "#", mode: 0o640, owner: "postgres", group: "postgres" }),
  ];
  if (has(ctx, "db")) {
    // Root opens it (the runbook redirects it into psql), so postgres needs no access to it.
    files.push(templateFile(paths.pgInitSql, "postgres/init.sql.njk", initSqlView(ctx), { comment: "--", mode: MODE.secret, owner: "root", group: "root", secret: true }));
  }
  if (has(ctx, "db-standby")) {
    files.push(templateFile(paths.standbyPgpass, "postgres/pgpass.njk", pgpassView(ctx), { comment: "#", mode: MODE.secret, owner: "postgres", group: "postgres", secret: true }));
  }
  return files;
}

/** `runuser -u postgres -- CMD...`: runuser is in util-linux (always installed), unlike sudo. */
function asPostgres(...words: string[]): string {
  return `runuser -u postgres -- ${words.join(" ")}`;
}

function psql(model: Model, ...args: string[]): string {
  return asPostgres("psql", "-p", String(model.postgres.port), ...args);
}

/**
 * What makes and keeps a standby of the model's primary, in order: rewind it if it is a member
 * that diverged (the old primary after a failover), else clone it if it is not a standby yet;
 * then stream from the primary named in conf.d.
 */
function standbySteps(ctx: HostContext): Step[] {
  const { model } = ctx;
  const pg = model.postgres;
  const paths = ctx.paths;
  const primary = model.topology.db!;
  const slot = slotName(ctx.host);
  const signal = `${paths.pgDataDir}/standby.signal`;
  const autoConf = `${paths.pgDataDir}/postgresql.auto.conf`;
  const service = shell(paths.pgService);
  const replication = replicationConninfo(ctx, primary);
  const afterInit = [{ host: primary.name, id: "postgres.init-sql" }];
  // Rewind only a cluster that is not a standby, is a copy of the primary's (the same system
  // identifier) and is on an older timeline than the primary: the old primary, after the
  // standby was promoted. A fresh cluster is cloned, also one made from the same image as the
  // primary's (the same identifier, the same timeline). An unreachable primary skips nothing:
  // pg_rewind then fails rather than the clone wiping the data directory.
  // dbname=replication: what pg_basebackup and the walreceiver send, so .pgpass's "replication" line matches.
  // IDENTIFY_SYSTEM answers systemid|timeline|xlogpos|dbname.
  const identify = asPostgres("psql", "-XAtc", "IDENTIFY_SYSTEM", shell(`${replication} dbname=replication replication=true`));
  const controldata = asPostgres(`${paths.pgBinDir}/pg_controldata`, shell(paths.pgDataDir));
  const notBehind =
    `{ s=$(${identify}) && test -n "$s" && c=$(${controldata}) && ` +
    `{ ! printf '%s\\n' "$c" | grep -qx "Database system identifier: *\${s%%|*}" || ` +
    `test "$(printf '%s\\n' "$c" | sed -n 's/^Latest checkpoint.s TimeLineID: *//p')" -ge "$(printf '%s' "$s" | cut -d '|' -f 2)"; }; }`;
  const skipRewind = `test -e ${shell(signal)} || ${notBehind}`;
  const basebackup = [
    `${paths.pgBinDir}/pg_basebackup`,
    "-d", shell(replication),
    "-D", shell(paths.pgDataDir),
    "-X", "stream",
    // Start now instead of waiting up to checkpoint_timeout for the next checkpoint.
    "--checkpoint=fast",
    ...(pg.replication.slots ? ["-C", "-S", slot] : []),
    "-P",
  ];
  return [
    {
      id: "postgres.rewind",
      phase: "database",
      title: `After a failover: rewind this host into a standby of ${primary.name}`,
      action: {
        kind: "commands",
        commands: [
          { ...unitState(paths.pgService, "stopped"), unless: skipRewind },
          { run: asPostgres(`${paths.pgBinDir}/pg_rewind`, "-D", shell(paths.pgDataDir), "--source-server", shell(rewindConninfo(ctx, primary))), unless: skipRewind },
          { run: asPostgres("touch", shell(signal)), unless: skipRewind },
        ],
      },
      after: afterInit,
      why:
        `Only on the old primary, when it comes back after ${primary.name} was promoted: this host's cluster is then no standby but a copy of ${primary.name}'s (the same system identifier, which IDENTIFY_SYSTEM reports over a replication connection). ` +
        `pg_rewind copies what changed on ${primary.name} since the two diverged and drops what only this host wrote, then standby.signal makes it a standby. It connects as ${pg.replication.rewind_user} to the database postgres, its password read from ${paths.standbyPgpass}. ` +
        "On a new host and on a standby the step does nothing; if it fails, the host cannot be rewound: remove the data directory's contents and the clone below copies the primary anew.",
    },
    {
      id: "postgres.clone",
      phase: "database",
      title: `Clone ${primary.name} into this standby`,
      action: {
        kind: "commands",
        commands: [
          { ...unitState(paths.pgService, "stopped"), creates: signal },
          // From /: find returns to the directory it started in, which the postgres user may not
          // enter (root's home, where Ansible runs commands).
          { run: `(cd / && ${asPostgres("find", shell(paths.pgDataDir), "-mindepth", "1", "-delete")})`, creates: signal },
          { run: asPostgres(...basebackup), creates: signal },
          { run: asPostgres("touch", shell(signal)), creates: signal },
        ],
      },
      // pg_basebackup needs the replication role the primary's init SQL creates.
      after: afterInit,
      why:
        `Only once: standby.signal marks a standby. The cluster is stopped and its data directory emptied as postgres, then pg_basebackup (as postgres, so the files are postgres's) copies ${primary.name}; recovery.conf no longer exists since PostgreSQL 12 and must not be created. The password comes from ${paths.standbyPgpass}, never the command line.` +
        (pg.replication.slots
          ? ` -C -S creates the physical slot ${slot} on ${primary.name}, so WAL this standby still needs is kept; to clone again, first drop it there: SELECT pg_drop_replication_slot('${slot}');`
          : "") +
        ` Debian's configuration in ${paths.pgConfigDir} is not touched by the copy.`,
    },
    {
      id: "postgres.follow",
      phase: "database",
      title: `Stream from ${primary.name}`,
      action: {
        kind: "commands",
        commands: [
          ...(pg.replication.slots
            ? // Idempotent (--if-not-exists) and silent: a slot it creates is the primary's state.
              [{ run: asPostgres(`${paths.pgBinDir}/pg_receivewal`, "-d", shell(replication), "--create-slot", "--if-not-exists", "-S", slot), changes: { never: true } satisfies ChangeRule }]
            : []),
          {
            run: `systemctl stop ${service} && ${asPostgres("sed", "-i", "-E", shell(`/${STALE_PRIMARY_SETTING}/d`), shell(autoConf))}`,
            unless: `! grep -qE ${shell(STALE_PRIMARY_SETTING)} ${shell(autoConf)}`,
          },
          unitState(paths.pgService, "started"),
        ],
      },
      after: afterInit,
      why:
        `primary_conninfo in ${paths.pgConfD} names ${primary.name}${pg.replication.slots ? ` and primary_slot_name the slot ${slot}, created there if it is missing (after a rewind, or when ${primary.name} was promoted)` : ""}. ` +
        `Copies of these two settings in ${autoConf} would win over conf.d: pg_basebackup -R of earlier releases wrote them there and pg_rewind copies that file from the primary, so they are removed (only when there are any), with the server stopped as the PostgreSQL documentation asks of tools that edit it; then the server runs.`,
    },
  ];
}

const READS_ONLY: ChangeRule = { never: true };

/** A primary_conninfo or primary_slot_name line, which in postgresql.auto.conf would win over conf.d. */
const STALE_PRIMARY_SETTING = "^[[:space:]]*primary_(conninfo|slot_name)[[:space:]]*=";

/**
 * With postgres.ssl_ca, every host that connects to PostgreSQL from another host verifies the
 * server's certificate against that CA (verify-full): the CA must be there, and each member's
 * certificate must be signed by it and name the member's private address (clients connect by
 * address: DB_HOST, primary_conninfo).
 */
function certificateSteps(ctx: HostContext): Step[] {
  const { model, host } = ctx;
  const pg = model.postgres;
  const ca = postgresClientTls(model)?.sslrootcert;
  if (ca === undefined) return [];
  const member = isClusterHost(ctx);
  const connects = member ? model.topology.standbys.length > 0 : flowsFrom(ctx.flows, host).some((f) => f.service === "postgres");
  const commands = [
    // Gates that only read: the step fails, and the deployment stops, when a certificate is wrong.
    ...(connects ? [{ run: `test -s ${shell(ca)}`, changes: READS_ONLY }] : []),
    ...(member ? [{ run: `openssl verify -CAfile ${shell(ca)} -verify_ip ${shell(host.address)} ${shell(pg.ssl_certificate)}`, changes: READS_ONLY }] : []),
  ];
  if (commands.length === 0) return [];
  return [
    {
      id: "postgres.certificates",
      phase: "certificates",
      title: member ? "Check the PostgreSQL certificate and its CA" : "Check the CA of the PostgreSQL certificates",
      packages: member ? ["openssl"] : [],
      action: { kind: "commands", commands },
      why: [
        ...(connects
          ? [`Clients here verify the server (sslmode=verify-full): put the CA certificate that signed the members' certificates at ${ca}, readable by ${member ? "postgres" : `the service account ${model.project.user}`} (it is public).`]
          : []),
        ...(member
          ? [
              `${pg.ssl_certificate} must be this host's own certificate, signed by that CA and naming ${host.address} (an IP address entry of subjectAltName; also as the common name for libpq before 15, which matches only host names), its key at ${pg.ssl_key} readable by postgres. openssl checks both, as a client will.`,
            ]
          : []),
      ].join(" "),
    },
  ];
}

function postgresSteps(ctx: HostContext): Step[] {
  const certificates = certificateSteps(ctx);
  if (!isClusterHost(ctx)) return certificates;
  const { model } = ctx;
  const pg = model.postgres;
  const paths = ctx.paths;
  const pkg = `postgresql-${pg.version}`;
  const distribution = model.platform.distribution as keyof typeof DISTRIBUTIONS;
  const fromPgdg = DISTRIBUTIONS[distribution].postgres !== pg.version;
  const steps: Step[] = [];
  if (fromPgdg) {
    steps.push({
      id: "postgres.package",
      phase: "packages",
      title: `Install PostgreSQL ${pg.version} from apt.postgresql.org`,
      action: {
        kind: "commands",
        commands: [
          aptInstall(["postgresql-common"]),
          { run: "/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y", creates: "/etc/apt/sources.list.d/pgdg.sources" },
          aptInstall([pkg]),
        ],
      },
      why: `${model.platform.distribution} ships PostgreSQL ${DISTRIBUTIONS[distribution].postgres}; other versions come from the PostgreSQL project's apt repository (PGDG), which postgresql-common's script adds with its signing key. Installing the package creates the cluster ${paths.pgCluster}.`,
    });
  } else {
    steps.push({
      id: "postgres.package",
      phase: "packages",
      title: `PostgreSQL ${pg.version}`,
      action: { kind: "packages", packages: [pkg] },
      why: `PostgreSQL ${pg.version} is ${model.platform.distribution}'s own (other versions would come from apt.postgresql.org). Installing it creates the cluster ${paths.pgCluster}, whose configuration lives in ${paths.pgConfigDir}.`,
    });
  }
  steps.push(...certificates);
  const verifyConfig = psql(model, "-Atc", shell("SELECT sourcefile, sourceline, name, error FROM pg_file_settings WHERE error IS NOT NULL UNION ALL SELECT 'pg_hba.conf', line_number, NULL, error FROM pg_hba_file_rules WHERE error IS NOT NULL"));
  if (has(ctx, "db")) {
    steps.push({
      id: "postgres.restart",
      phase: "database",
      title: "Restart PostgreSQL with this configuration",
      // Debian's postgresql.service starts every cluster at boot; its clusters are PartOf= it.
      action: { kind: "service", units: ["postgresql"], enable: true, state: "restarted" },
      why: "listen_addresses, port, ssl and the replication settings take effect only at a restart (a reload is enough for pg_hba.conf alone).",
    });
    steps.push({
      id: "postgres.init-sql",
      phase: "database",
      title: model.topology.standbys.length > 0 ? "Create the app role, its database and the replication role" : "Create the app role and its database",
      action: { kind: "commands", commands: [{ run: `${psql(model, "-v", "ON_ERROR_STOP=1", "-d", "postgres")} < ${shell(paths.pgInitSql)}` }] },
      why: `The SQL is idempotent (run it again after changing a password). It sets passwords as SCRAM verifiers, so no password is typed on a command line or kept in shell history; root opens the 0600 file and psql reads it from standard input. The database is owned by ${pg.user}, which is all migrations need.`,
    });
  }
  if (has(ctx, "db-standby")) steps.push(...standbySteps(ctx));
  const verify: string[] = [verifyConfig];
  if (has(ctx, "db")) {
    verify.push(psql(model, "-Atc", shell(`SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ${sqlLiteral(pg.database)}`)));
    if (model.topology.standbys.length > 0) {
      verify.push(psql(model, "-Atc", shell("SELECT application_name, client_addr, state, sync_state FROM pg_stat_replication")));
      // wal_status (is a slot about to lose WAL it needs?) came with max_slot_wal_keep_size in 13.
      const slotColumns = model.caps.postgres.maxSlotWalKeepSize ? "slot_name, active, wal_status" : "slot_name, active, restart_lsn";
      if (pg.replication.slots) verify.push(psql(model, "-Atc", shell(`SELECT ${slotColumns} FROM pg_replication_slots`)));
    }
  }
  if (has(ctx, "db-standby")) {
    verify.push(psql(model, "-Atc", shell("SELECT pg_is_in_recovery()")));
    verify.push(psql(model, "-Atc", shell("SELECT status, sender_host FROM pg_stat_wal_receiver")));
  }
  // What the hostssl lines give remote clients, said where the operator checks the server.
  const tls = postgresClientTls(model);
  const tlsNote =
    tls?.sslmode === "require"
      ? " Clients on other hosts connect with sslmode=require: encrypted, but the server's certificate is not verified; postgres.ssl_ca (the CA of the members' certificates) makes them verify it (verify-full)."
      : tls?.sslmode === "verify-full"
        ? ` Clients on other hosts connect with sslmode=verify-full: the certificate must be signed by ${tls.sslrootcert} and name the address they connect to.`
        : "";
  steps.push({
    id: "postgres.check",
    phase: "verify",
    title: "Check PostgreSQL",
    action: { kind: "check", commands: verify },
    why:
      (has(ctx, "db-standby")
        ? `No configuration errors (empty first result); pg_is_in_recovery() is t on a standby, and the WAL receiver is streaming from ${model.topology.db!.address}. On the primary, pg_stat_replication lists this host as streaming.`
        : "No configuration errors (empty first result), the app's database belongs to its role" +
          (model.topology.standbys.length > 0 ? ", and every standby streams (state streaming)." : ".")) +
      (flowsTo(ctx.flows, ctx.host, "postgres").length > 0 ? tlsNote : ""),
  });
  if (has(ctx, "db")) {
    steps.push({
      id: "postgres.check-login",
      phase: "verify",
      title: "Check that the app's role can log in",
      action: { kind: "check", commands: [`psql -h 127.0.0.1 -p ${pg.port} -U ${shell(pg.user)} -d ${shell(pg.database)} -Atc ${shell("SELECT current_user, current_database()")}`] },
      interactive: true,
      why: "psql prompts for the app's password (DB_PASSWORD in the .env): it never goes on the command line.",
    });
  }
  if (has(ctx, "db-standby")) {
    const primary = model.topology.db!;
    steps.push({
      id: "postgres.failover",
      phase: "verify",
      title: "Failover, by hand",
      action: {
        kind: "manual",
        lines: [
          `promote this standby when ${primary.name} is lost for good:`,
          `  ${psql(model, "-c", shell("SELECT pg_promote()"))}`,
          `then make this host "db" and ${primary.name} "db-standby" in the model, render it again and install every host's files;`,
          "run this host's runbook, restart the app services on the app hosts (their .env names this host now),",
          "and run the other standbys' runbooks (they stream from this host now);",
          `once ${primary.name} is back, its runbook rewinds it into a standby of this host ("After a failover: rewind ...").`,
          "A standby whose log says the new timeline forked off before its own position: stop it, delete its standby.signal and run its runbook again (it is rewound too).",
        ],
      },
      why: `Promotion is a command (pg_promote(), or pg_ctlcluster promote), never a trigger file: promote_trigger_file is gone in PostgreSQL 16 and a file in /tmp let any local user promote. pg_rewind connects as ${pg.replication.rewind_user}, which may only call the functions it needs (granted in the init SQL), from the members only (pg_hba.conf), its password in .pgpass like the replication role's; wal_log_hints = on makes the rewind possible.`,
    });
  }
  return steps;
}

export const postgresFamily: HostFamily = { name: "postgres", files: postgresFiles, steps: postgresSteps };
