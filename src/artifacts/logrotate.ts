/** logrotate for gunicorn's log files on app hosts (errata 13); nginx's logs are Debian's. */
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { has, type HostContext, type HostFamily } from "./context.js";
import { unitNames } from "./paths.js";
import type { Step } from "./steps.js";

function logrotateView(ctx: HostContext) {
  const { model } = ctx;
  return {
    logDir: model.project.logDir,
    user: model.project.user,
    group: model.project.group,
    keepDays: model.logs.keep_days,
    unit: unitNames(model).wsgi,
    killWhom: model.caps.systemd.killWhom ? "--kill-whom" : "--kill-who",
  };
}

function logrotateFiles(ctx: HostContext): FileSpec[] {
  if (!has(ctx, "app")) return [];
  return [templateFile(ctx.paths.logrotate, "logrotate/logrotate.njk", logrotateView(ctx), { comment: "#", mode: MODE.config })];
}

function logrotateSteps(ctx: HostContext): Step[] {
  if (!has(ctx, "app")) return [];
  return [
    {
      id: "logrotate.check",
      phase: "verify",
      title: "Check the log rotation",
      packages: ["logrotate"],
      action: { kind: "check", commands: [`logrotate --debug ${shell(ctx.paths.logrotate)}`] },
      why: "Debug mode changes nothing; it shows what the daily run would rotate and that gunicorn gets USR1 instead of a restart.",
    },
  ];
}

export const logrotateFamily: HostFamily = { name: "logrotate", files: logrotateFiles, steps: logrotateSteps };
