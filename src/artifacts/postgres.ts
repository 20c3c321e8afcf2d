/**
 * PostgreSQL on the db host and its streaming standbys (errata section 9, INST-03/04): a conf.d
 * file next to Debian's postgresql.conf, the whole pg_hba.conf, the role/database SQL on the
 * primary, the replication password file on standbys, and the hand steps (install, restart,
 * roles, pg_basebackup) in the order the errata gives them.
 */
import { runsDjango, type Host, type Model } from "../model/normalize.js";
import { DISTRIBUTIONS } from "../model/capabilities.js";
import { scramSha256Verifier, type Pbkdf2 } from "../crypto.js";
import { flowsTo } from "../model/flows.js";
import { pgHba, shell, sqlLiteral } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, required, type HostContext, type HostFamily } from "./context.js";
import { aptInstall, unitState, type Step } from "./steps.js";

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
        };
  return {
    version: model.postgres.version,
    caps: model.caps.postgres,
    standby: has(ctx, "db-standby"),
    listenAddresses: remote ? `localhost,${host.address}` : "localhost",
    port: pg.port,
    ssl: pg.ssl ? { certificate: pg.ssl_certificate, key: pg.ssl_key } : undefined,
    replication,
  };
}

interface HbaRule {
  readonly comment: string;
  readonly line: string;
}

function hbaLine(fields: readonly string[]): string {
  const widths = [8, 16, 16, 20];
  return fields.map((f, i) => (i < widths.length ? f.padEnd(widths[i]!) : f)).join(" ").trimEnd();
}

function hbaView(ctx: HostContext) {
  const { model, host } = ctx;
  const pg = model.postgres;
  const db = pgHba(pg.database);
  const user = pgHba(pg.user);
  const hostType = pg.ssl ? "hostssl" : "host";
  const rules: HbaRule[] = [];
  const local = runsDjango(host);
  const backup = host.roles.has("db")
    ? "the nightly backup (pg_dump -h 127.0.0.1 as the project user, with its .pgpass)"
    : "the nightly backup once this standby is promoted";
  rules.push({
    comment: local ? `The app on this host (DB_HOST=127.0.0.1) and ${backup}.` : `${backup[0]!.toUpperCase()}${backup.slice(1)}.`,
    line: hbaLine(["host", db, user, "127.0.0.1/32", "scram-sha-256"]),
  });
  // Every client of the flow table, and only those: the app's hosts, then the other members.
  const flows = flowsTo(ctx.flows, host, "postgres");
  for (const f of flows.filter((f) => f.client === "django")) {
    rules.push({ comment: `The app on ${f.from.name}.`, line: hbaLine([hostType, db, user, `${f.from.address}/32`, "scram-sha-256"]) });
  }
  const replicationUser = pgHba(pg.replication.user);
  for (const f of flows.filter((f) => f.client === "replication")) {
    const why = f.from.roles.has("db")
      ? `${f.from.name}, the primary now, once it is rewound into a standby of this host after a failover.`
      : `Standby ${f.from.name} streams WAL (pg_basebackup, walreceiver).`;
    rules.push({ comment: why, line: hbaLine([hostType, "replication", replicationUser, `${f.from.address}/32`, "scram-sha-256"]) });
  }
  return {
    version: pg.version,
    header: hbaLine(["# TYPE", "DATABASE", "USER", "ADDRESS", "METHOD"]),
    localPostgres: hbaLine(["local", "all", "postgres", "", "peer"]),
    localAll: hbaLine(["local", "all", "all", "", "peer"]),
    primary: model.topology.db?.name,
    rules,
  };
}

/** The password as PostgreSQL should store it: a SCRAM verifier, or the cleartext when SASLprep could change it. */
function storedPassword(role: string, password: string, kdf: Pbkdf2) {
  return scramSafe(password)
    ? { verifier: scramSha256Verifier(role, password, kdf), cleartext: undefined }
    : { verifier: undefined, cleartext: password };
}

function initSqlView(ctx: HostContext) {
  const { model } = ctx;
  const pg = model.postgres;
  const p = ctx.paths;
  const standbys = model.topology.standbys;
  return {
    version: pg.version,
    caps: model.caps.postgres,
    file: p.pgInitSql,
    port: pg.port,
    database: pg.database,
    user: pg.user,
    password: storedPassword(pg.user, required(ctx.secrets, "dbPassword"), ctx.kdf),
    replication:
      standbys.length === 0
        ? undefined
        : { user: pg.replication.user, password: storedPassword(pg.replication.user, required(ctx.secrets, "replicationPassword"), ctx.kdf) },
  };
}

function pgpassView(ctx: HostContext) {
  const { model, host } = ctx;
  const pg = model.postgres;
  return {
    user: pg.replication.user,
    password: required(ctx.secrets, "replicationPassword"),
    port: String(pg.port),
    // The members this one replicates from (its replication flows): the primary now, the others after a failover.
    hosts: ctx.flows.flows
      .filter((f) => f.from.name === host.name && f.client === "replication")
      .map((f) => ({ name: f.to.name, address: f.to.address, primary: f.to.roles.has("db") })),
  };
}

function postgresFiles(ctx: HostContext): FileSpec[] {
  if (!isClusterHost(ctx)) return [];
  const p = ctx.paths;
  const files: FileSpec[] = [
    // Debian ships postgresql.conf and pg_hba.conf as postgres:postgres, pg_hba.conf 0640.
    templateFile(p.pgConfD, "postgres/conf.d.conf.njk", confView(ctx), { comment: "#", owner: "postgres", group: "postgres" }),
    templateFile(p.pgHba, "postgres/pg_hba.conf.njk", hbaView(ctx), { comment: "#", mode: 0o640, owner: "postgres", group: "postgres" }),
  ];
  if (has(ctx, "db")) {
    // Root opens it (the runbook redirects it into psql), so postgres needs no access to it.
    files.push(templateFile(p.pgInitSql, "postgres/init.sql.njk", initSqlView(ctx), { comment: "--", mode: MODE.secret, owner: "root", group: "root" }));
  }
  if (has(ctx, "db-standby")) {
    files.push(templateFile(p.standbyPgpass, "postgres/pgpass.njk", pgpassView(ctx), { comment: "#", mode: MODE.secret, owner: "postgres", group: "postgres" }));
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

function postgresSteps(ctx: HostContext): Step[] {
  if (!isClusterHost(ctx)) return [];
  const { model } = ctx;
  const pg = model.postgres;
  const p = ctx.paths;
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
      why: `${model.platform.distribution} ships PostgreSQL ${DISTRIBUTIONS[distribution].postgres}; other versions come from the PostgreSQL project's apt repository (PGDG), which postgresql-common's script adds with its signing key. Installing the package creates the cluster ${p.pgCluster}.`,
    });
  } else {
    steps.push({
      id: "postgres.package",
      phase: "packages",
      title: `PostgreSQL ${pg.version}`,
      action: { kind: "packages", packages: [pkg] },
      why: `PostgreSQL ${pg.version} is ${model.platform.distribution}'s own (other versions would come from apt.postgresql.org). Installing it creates the cluster ${p.pgCluster}, whose configuration lives in ${p.pgConfigDir}.`,
    });
  }
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
      action: { kind: "commands", commands: [{ run: `${psql(model, "-v", "ON_ERROR_STOP=1", "-d", "postgres")} < ${shell(p.pgInitSql)}` }] },
      why: `The SQL is idempotent (run it again after changing a password). It sets passwords as SCRAM verifiers, so no password is typed on a command line or kept in shell history; root opens the 0600 file and psql reads it from standard input. The database is owned by ${pg.user}, which is all migrations need.`,
    });
  }
  if (has(ctx, "db-standby")) {
    const primary = model.topology.db!;
    const basebackup = [
      `${p.pgBinDir}/pg_basebackup`,
      "-h", primary.address,
      "-p", String(pg.port),
      "-U", shell(pg.replication.user),
      "-D", shell(p.pgDataDir),
      "-X", "stream",
      // Start now instead of waiting up to checkpoint_timeout for the next checkpoint.
      "--checkpoint=fast",
      "-R",
      ...(pg.replication.slots ? ["-C", "-S", slotName(ctx.host)] : []),
      "-P",
    ];
    const signal = `${p.pgDataDir}/standby.signal`;
    steps.push({
      id: "postgres.clone",
      phase: "database",
      title: `Clone ${primary.name} into this standby`,
      action: {
        kind: "commands",
        commands: [
          { ...unitState(p.pgService, "stopped"), creates: signal },
          { run: asPostgres("find", shell(p.pgDataDir), "-mindepth", "1", "-delete"), creates: signal },
          { run: asPostgres(...basebackup), creates: signal },
          unitState(p.pgService, "started"),
        ],
      },
      // pg_basebackup needs the replication role the primary's init SQL creates.
      after: [{ host: primary.name, id: "postgres.init-sql" }],
      why:
        `Only once: standby.signal marks a clone. The cluster is stopped and its data directory emptied as postgres, then pg_basebackup (as postgres, so the files are postgres's) copies ${primary.name} and -R writes primary_conninfo to postgresql.auto.conf and creates standby.signal; recovery.conf no longer exists since PostgreSQL 12 and must not be created. The password comes from ${p.standbyPgpass}, never the command line.` +
        (pg.replication.slots
          ? ` -C -S creates the physical slot ${slotName(ctx.host)} on ${primary.name}, so WAL this standby still needs is kept; to clone again, first drop it there: SELECT pg_drop_replication_slot('${slotName(ctx.host)}');`
          : "") +
        ` Debian's configuration in ${p.pgConfigDir} is not touched by the copy.`,
    });
  }
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
  if (has(ctx, "db-standby")) verify.push(psql(model, "-Atc", shell("SELECT pg_is_in_recovery()")));
  steps.push({
    id: "postgres.check",
    phase: "verify",
    title: "Check PostgreSQL",
    action: { kind: "check", commands: verify },
    why: has(ctx, "db-standby")
      ? "No configuration errors (empty first result); pg_is_in_recovery() is t on a standby. On the primary, pg_stat_replication lists this host as streaming."
      : "No configuration errors (empty first result), the app's database belongs to its role" +
        (model.topology.standbys.length > 0 ? ", and every standby streams (state streaming)." : "."),
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
    steps.push({
      id: "postgres.failover",
      phase: "verify",
      title: "Failover, by hand",
      action: {
        kind: "manual",
        lines: [
          `promote this standby when ${model.topology.db!.name} is lost for good:`,
          `  ${psql(model, "-c", shell("SELECT pg_promote()"))}`,
          'then point DB_HOST in the app hosts\' .env at this host (change the model: make this host "db") and restart the app;',
          "bring the old primary back as a standby of this one with pg_rewind (wal_log_hints = on makes it possible):",
          `  systemctl stop ${shell(p.pgService)}   # on the old primary`,
          `  ${asPostgres(`${p.pgBinDir}/pg_rewind`, "-D", shell(p.pgDataDir), "--source-server", shell(`host=${ctx.host.address} port=${pg.port} user=postgres dbname=postgres`), ...(model.caps.postgres.rewindWritesRecoveryConf ? ["-R"] : []))}`,
          ...(model.caps.postgres.rewindWritesRecoveryConf
            ? []
            : [`  # PostgreSQL ${pg.version}'s pg_rewind has no -R: create standby.signal in the data directory and set primary_conninfo by hand`]),
        ],
      },
      why: "Promotion is a command (pg_promote(), or pg_ctlcluster promote), never a trigger file: promote_trigger_file is gone in PostgreSQL 16 and a file in /tmp let any local user promote. pg_rewind needs a superuser (or a role granted its functions) that pg_hba.conf admits from the old primary: add that line for the occasion.",
    });
  }
  return steps;
}

export const postgresFamily: HostFamily = { name: "postgres", files: postgresFiles, steps: postgresSteps };
