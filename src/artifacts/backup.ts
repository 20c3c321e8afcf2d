/**
 * The nightly database backup on the db host: backup.sh, its password file and its cron entry
 * (errata 11, 12), and the steps that create the backup directory and try one run.
 */
import { runsDjango } from "../model/normalize.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, required, type HostContext, type HostFamily } from "./context.js";
import { directory, type Step } from "./steps.js";

function backupTag(ctx: HostContext): string {
  return `${ctx.model.project.name}-backup`;
}

function backupView(ctx: HostContext) {
  const { model } = ctx;
  const p = model.project;
  const mediaParent = p.mediaDir.slice(0, p.mediaDir.lastIndexOf("/")) || "/";
  return {
    project: p.name,
    user: p.user,
    dir: model.backup.dir,
    dbName: model.postgres.database,
    dbUser: model.postgres.user,
    dbPort: model.postgres.port,
    keepDays: model.backup.keep_days,
    pgpass: ctx.paths.backupPgpass,
    // BK-10: uploads live on the app hosts; they are archived where the database is only when
    // this host serves them too.
    media: has(ctx, "app") ? { parent: mediaParent, name: p.mediaDir.slice(mediaParent.length).replace(/^\//, ""), dir: p.mediaDir } : undefined,
    // BK-04: the .env (every secret) only encrypted, and only where it exists.
    age:
      model.backup.age_recipient !== undefined && runsDjango(ctx.host)
        ? { recipient: model.backup.age_recipient, envFile: p.envFile }
        : undefined,
  };
}

function backupFiles(ctx: HostContext): FileSpec[] {
  if (!has(ctx, "db")) return [];
  const { model } = ctx;
  const p = model.project;
  const pth = ctx.paths;
  const pgpass = {
    host: "127.0.0.1",
    port: String(model.postgres.port),
    database: model.postgres.database,
    user: model.postgres.user,
    password: required(ctx.secrets, "dbPassword"),
    account: p.user,
  };
  const cron = {
    project: p.name,
    schedule: model.backup.schedule,
    user: p.user,
    tag: backupTag(ctx),
    script: pth.backupScript,
  };
  return [
    templateFile(pth.backupScript, "backup/backup.sh.njk", backupView(ctx), { comment: "#", mode: MODE.script }),
    // BK-02: the password lives here, readable by the backup account only (libpq refuses a
    // password file that group or others can read).
    templateFile(pth.backupPgpass, "backup/backup.pgpass.njk", pgpass, { comment: "#", mode: MODE.secret, owner: p.user, group: p.group }),
    templateFile(pth.backupCron, "backup/backup.cron.njk", cron, { comment: "#", mode: MODE.config }),
  ];
}

function backupSteps(ctx: HostContext): Step[] {
  if (!has(ctx, "db")) return [];
  const { model } = ctx;
  const p = model.project;
  const pth = ctx.paths;
  const age = backupView(ctx).age !== undefined;
  return [
    {
      id: "backup.directory",
      phase: "database",
      title: "Create the backup directory",
      packages: ["cron", "postgresql-client", ...(age ? ["age"] : [])],
      action: { kind: "commands", commands: [directory(model.backup.dir, 0o700, p.user, p.group)] },
      why: `Dumps are readable by ${p.user} only. They stay on this host: copy ${model.backup.dir} to another machine (restic, borg, rsync), or a lost host loses its backups too.`,
    },
    {
      id: "backup.check",
      phase: "verify",
      title: "Run one backup now",
      action: {
        kind: "check",
        commands: [
          `runuser -u ${shell(p.user)} -- ${shell(pth.backupScript)}`,
          `ls -l ${shell(model.backup.dir)}`,
          `pg_restore --list "$(ls -1 ${shell(`${model.backup.dir}/${p.name}_db_`)}*.dump | tail -n 1)" | head`,
        ],
      },
      why: `cron runs it as ${p.user} at "${model.backup.schedule}" (UTC names, keep ${model.backup.keep_days} days); its output is in \`journalctl -t ${backupTag(ctx)}\`. Restore with pg_restore --clean --if-exists.`,
    },
  ];
}

export const backupFamily: HostFamily = { name: "backup", files: backupFiles, steps: backupSteps };
