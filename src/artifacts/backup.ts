/**
 * Backups (errata 11, 12): backup.sh, its password file, and the systemd service and timer that
 * run it, on every host that keeps something worth keeping:
 * - every PostgreSQL cluster member (db and db-standby): the script dumps only where the
 *   database is the primary (pg_is_in_recovery()), so a promoted standby backs up and a
 *   standby does not, without a change to any file;
 * - the host whose disk holds the uploaded media (the one media host, or the NFS server), and
 *   with S3 the migrator host, which copies the bucket with rclone (the app's keys are in its
 *   .env).
 * A timer rather than cron: a failed run is a failed unit, in the journal and in
 * `systemctl --failed`, which works on a stock host; cron's mail needs an MTA it does not have.
 */
import { mediaHome } from "../model/media.js";
import { runsDjango } from "../model/normalize.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { BACKUP_METRIC } from "./alerts.js";
import { onCalendar } from "./calendar.js";
import { has, required, type HostContext, type HostFamily } from "./context.js";
import { absent, directory, type Step } from "./steps.js";

/** The media part of a host's backup: a directory on this host, or the S3 bucket copied into a mirror here. */
type MediaBackup =
  | { readonly kind: "directory"; readonly dir: string; readonly parent: string; readonly name: string }
  | {
      readonly kind: "s3";
      readonly dir: string;
      readonly parent: string;
      readonly name: string;
      readonly bucket: string;
      /** rclone's s3 provider: AWS without an endpoint, "Other" (any S3 API) with one. */
      readonly provider: "AWS" | "Other";
      readonly endpoint: string | undefined;
      readonly region: string | undefined;
    };

/** Splits /opt/novacloud/media into /opt/novacloud and media, for `tar -C parent name`. */
function split(dir: string): { parent: string; name: string } {
  const at = dir.lastIndexOf("/");
  return { parent: dir.slice(0, at) || "/", name: dir.slice(at + 1) };
}

/** What of the media this host backs up, if anything. */
function mediaBackup(ctx: HostContext): MediaBackup | undefined {
  const { model, host } = ctx;
  const media = model.media;
  if (media.storage === "s3") {
    // One copy for the deployment, made where the app's keys already are.
    if (model.topology.migrator?.name !== host.name) return undefined;
    const mirror = `${model.backup.dir}/s3-mirror`;
    return {
      kind: "s3",
      dir: `${mirror}/${split(model.project.mediaDir).name}`,
      parent: mirror,
      name: split(model.project.mediaDir).name,
      bucket: media.bucket,
      provider: media.endpoint === undefined ? "AWS" : "Other",
      endpoint: media.endpoint,
      region: media.region,
    };
  }
  if (mediaHome(media, model.topology)?.name !== host.name) return undefined;
  return { kind: "directory", dir: model.project.mediaDir, ...split(model.project.mediaDir) };
}

/** True on every PostgreSQL cluster member: any of them may be the primary. */
function keepsDatabase(ctx: HostContext): boolean {
  return has(ctx, "db") || has(ctx, "db-standby");
}

/** The host's backup job, or undefined when it keeps nothing to back up. */
function backupJob(ctx: HostContext) {
  const { model } = ctx;
  const project = model.project;
  const database = keepsDatabase(ctx);
  const media = mediaBackup(ctx);
  if (!database && media === undefined) return undefined;
  // The .env (every secret) only encrypted, and only where it exists.
  const age = model.backup.age_recipient !== undefined && runsDjango(ctx.host) ? { recipient: model.backup.age_recipient } : undefined;
  return { database, media, age, envFile: age !== undefined || media?.kind === "s3" ? project.envFile : undefined };
}

type BackupJob = NonNullable<ReturnType<typeof backupJob>>;

/** True when the host has a backup job (monitoring gives its account the textfile directory). */
export function backsUp(ctx: HostContext): boolean {
  return backupJob(ctx) !== undefined;
}

/**
 * Where backup.sh records its last success for node_exporter's textfile collector, when the
 * model is monitored (the BackupTooOld alert reads it).
 */
function successMetric(ctx: HostContext) {
  if (ctx.model.topology.monitor === undefined) return undefined;
  return { dir: ctx.paths.metricsDir, file: `${ctx.paths.metricsDir}/backup.prom`, name: BACKUP_METRIC };
}

function scriptView(ctx: HostContext, job: BackupJob) {
  const { model } = ctx;
  const project = model.project;
  return {
    project: project.name,
    user: project.user,
    dir: model.backup.dir,
    keepDays: model.backup.keep_days,
    service: ctx.paths.backupService,
    timer: ctx.paths.backupTimer,
    database: job.database ? { name: model.postgres.database, user: model.postgres.user, port: model.postgres.port, pgpass: ctx.paths.backupPgpass } : undefined,
    media: job.media,
    age: job.age,
    envFile: job.envFile,
    metric: successMetric(ctx),
  };
}

function serviceView(ctx: HostContext, job: BackupJob) {
  const { model } = ctx;
  const project = model.project;
  return {
    project: project.name,
    user: project.user,
    group: project.group,
    script: ctx.paths.backupScript,
    dir: model.backup.dir,
    timer: ctx.paths.backupTimer,
    service: ctx.paths.backupService,
    database: job.database,
    // Only rclone talks to another host; everything else stays on loopback.
    network: job.media?.kind === "s3",
    metricsDir: successMetric(ctx)?.dir,
    protectClock: model.caps.systemd.protectClock,
  };
}

function timerView(ctx: HostContext) {
  const { model } = ctx;
  return {
    project: model.project.name,
    service: ctx.paths.backupService,
    schedule: model.backup.schedule,
    calendar: onCalendar(model.backup.schedule),
  };
}

function backupFiles(ctx: HostContext): FileSpec[] {
  const job = backupJob(ctx);
  if (job === undefined) return [];
  const { model } = ctx;
  const project = model.project;
  const pth = ctx.paths;
  const files = [
    templateFile(pth.backupScript, "backup/backup.sh.njk", scriptView(ctx, job), { comment: "#", mode: MODE.script }),
    templateFile(`${pth.unitDir}/${pth.backupService}`, "backup/backup.service.njk", serviceView(ctx, job), { comment: "#", mode: MODE.config }),
    templateFile(`${pth.unitDir}/${pth.backupTimer}`, "backup/backup.timer.njk", timerView(ctx), { comment: "#", mode: MODE.config }),
  ];
  if (job.database) {
    const pgpass = {
      host: "127.0.0.1",
      port: String(model.postgres.port),
      database: model.postgres.database,
      user: model.postgres.user,
      password: required(ctx.secrets, "dbPassword"),
      account: project.user,
    };
    // The password lives here, readable by the backup account only (libpq refuses a password
    // file that group or others can read).
    files.push(templateFile(pth.backupPgpass, "backup/backup.pgpass.njk", pgpass, { comment: "#", mode: MODE.secret, owner: project.user, group: project.group, secret: true }));
  }
  return files;
}

function backupSteps(ctx: HostContext): Step[] {
  const job = backupJob(ctx);
  if (job === undefined) return [];
  const { model } = ctx;
  const project = model.project;
  const pth = ctx.paths;
  const dir = model.backup.dir;
  const service = pth.backupService;
  const parts = [
    ...(job.database ? ["the database, where PostgreSQL is the primary"] : []),
    ...(job.media?.kind === "directory" ? [`the media in ${job.media.dir}`] : []),
    ...(job.media?.kind === "s3" ? [`the media in the S3 bucket ${job.media.bucket} (copied with rclone)`] : []),
    ...(job.age ? ["the .env, encrypted with age"] : []),
  ];
  const primaryNow = has(ctx, "db");
  return [
    {
      id: "backup.directory",
      phase: "files",
      title: "Create the backup directory",
      packages: [...(job.database ? ["postgresql-client"] : []), ...(job.age ? ["age"] : []), ...(job.media?.kind === "s3" ? ["rclone"] : [])],
      action: { kind: "commands", commands: [directory(dir, 0o700, project.user, project.group)] },
      why: `Backups are readable by ${project.user} only. They stay on this host: copy ${dir} to another machine (restic, borg, rsync), or a lost host loses its backups too.`,
    },
    {
      id: "backup.no-cron",
      phase: "services",
      title: "Remove the cron entry of earlier versions",
      // Rendered up to 0.1.0; the timer replaces it, and both would run the script.
      action: { kind: "commands", commands: [absent(`/etc/cron.d/${project.name}-backup`)] },
    },
    {
      id: "backup.timer",
      phase: "services",
      title: "Schedule the backup",
      action: { kind: "service", units: [pth.backupTimer], enable: true, state: "started", daemonReload: true },
      why:
        `${pth.backupTimer} starts ${service} at "${model.backup.schedule}" (local time), which backs up ${parts.join("; ")}. ` +
        (job.database && model.topology.standbys.length > 0
          ? "Every member of the PostgreSQL cluster has this job: it dumps only where the database is the primary (pg_is_in_recovery() is false), so a promoted standby takes over and a standby only says it skipped. "
          : "") +
        "A run missed while the host was off happens after the next boot (Persistent=true).",
    },
    {
      id: "backup.check",
      phase: "verify",
      title: "Run one backup now",
      action: {
        kind: "check",
        commands: [
          `systemctl start ${shell(service)}`,
          `systemctl list-timers ${shell(pth.backupTimer)}`,
          `ls -l ${shell(dir)}`,
          ...(job.database && primaryNow ? [`pg_restore --list "$(ls -1 ${shell(`${dir}/${project.name}_db_`)}*.dump | tail -n 1)" | head`] : []),
        ],
      },
      why: `systemctl start waits for the run and fails when it does; journalctl -u ${service} shows its output. Restore a dump with pg_restore --clean --if-exists, media with tar -xzf FILE -C <parent directory>.`,
    },
    {
      id: "backup.watch",
      phase: "verify",
      title: "Watch the backup",
      action: {
        kind: "check",
        commands: [`systemctl is-failed ${shell(service)}`, `journalctl -u ${shell(service)} -n 20 --no-pager`, `find ${shell(dir)} -maxdepth 1 -type f -newermt '26 hours ago' -name ${shell(`${project.name}_*`)}`],
      },
      why:
        `A run that fails in any part (a dump, the media archive, the .env) leaves ${service} failed: \`systemctl --failed\` lists it and \`systemctl is-system-running\` says "degraded" until the next good run or \`systemctl reset-failed\`; its journal says which part and why. ` +
        "Nothing is mailed (a stock host has no MTA): have your monitoring alert on failed units, and on the newest backup being older than a day, which also catches a timer that no longer runs. " +
        "A media archive taken while files were being written is kept with a warning in the journal.",
    },
  ];
}

export const backupFamily: HostFamily = { name: "backup", files: backupFiles, steps: backupSteps };
