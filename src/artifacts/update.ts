/** update.sh on the hosts that run Django code: a later deploy of one tag or commit (errata 14). */
import { runsDjango } from "../model/normalize.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import type { Step } from "./steps.js";
import { hostUnits } from "./systemd.js";

function updateView(ctx: HostContext) {
  const { model } = ctx;
  const p = model.project;
  const t = model.topology;
  const units = hostUnits(ctx);
  return {
    project: p.name,
    root: p.root,
    user: p.user,
    envFile: p.envFile,
    venv: p.venv,
    systemPip: model.caps.python.systemPythonFits,
    migrator: t.migrator?.name === ctx.host.name,
    migratorHost: t.migrator?.name ?? "",
    collectstatic: has(ctx, "web"),
    backup: has(ctx, "db") ? ctx.paths.backupScript : undefined,
    dbHost: t.db?.name ?? "",
    reload: units.filter((u) => u.reloads).map((u) => u.name),
    restart: units.filter((u) => !u.reloads).map((u) => u.name),
    lock: `/run/lock/${p.name}-update.lock`,
  };
}

function updateFiles(ctx: HostContext): FileSpec[] {
  if (!runsDjango(ctx.host)) return [];
  return [templateFile(ctx.paths.updateScript, "update/update.sh.njk", updateView(ctx), { comment: "#", mode: MODE.script })];
}

function updateSteps(ctx: HostContext): Step[] {
  if (!runsDjango(ctx.host)) return [];
  const { model } = ctx;
  const p = model.project;
  const t = model.topology;
  const pth = ctx.paths;
  const migrator = t.migrator?.name === ctx.host.name;
  const order = migrator
    ? "This host migrates the database: deploy here first, then on the other Django hosts."
    : `Deploy on ${t.migrator?.name} first (it migrates the database), then here.`;
  const backup = has(ctx, "db")
    ? "It backs up the database first."
    : `Back up the database on ${t.db?.name} first: runuser -u ${p.user} -- ${pth.backupScript}.`;
  return [
    {
      id: "update.later",
      phase: "app",
      title: "Later deploys: update.sh",
      action: { kind: "manual", lines: [`${pth.updateScript} <git tag or commit>`] },
      why: `${order} ${backup} Migrations must be backward compatible: the old code serves until the units reload.`,
    },
  ];
}

export const updateFamily: HostFamily = { name: "update", files: updateFiles, steps: updateSteps };
