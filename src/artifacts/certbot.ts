/**
 * The certbot deploy hook (errata 6, TLS-01): after every renewal it refreshes every copy of the
 * renewed certificate on this host (HAProxy's PEM, Mosquitto's files) and reloads what uses it.
 */
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import { behindLb } from "../model/flows.js";
import { has, terminatesSiteTls, type HostContext, type HostFamily } from "./context.js";
import { mosquittoTerminatesTls } from "./mosquitto.js";
import { mqttLetsEncryptLive, siteCertificate } from "./paths.js";
import type { Step } from "./steps.js";

function needsDeployHook(ctx: HostContext): boolean {
  const { model } = ctx;
  if (model.site.tls.mode !== "letsencrypt") return false;
  return terminatesSiteTls(ctx) || mosquittoTerminatesTls(ctx);
}

function deployHookView(ctx: HostContext) {
  const { model } = ctx;
  const pth = ctx.paths;
  const siteLive = siteCertificate(model).certificate.replace(/\/fullchain\.pem$/, "");
  const dirOf = (path: string) => path.slice(0, path.lastIndexOf("/"));
  return {
    project: model.project.name,
    hook: pth.certbotDeployHook,
    site: terminatesSiteTls(ctx)
      ? {
          live: siteLive,
          nginx: has(ctx, "web") && !behindLb(model),
          // The temporary PEM is written one level up (same file system, so the rename is
          // atomic), where a `crt <directory>` line would never load it.
          haproxy: has(ctx, "lb") ? { pem: pth.haproxyPem, dir: dirOf(pth.haproxyPem), tmpDir: dirOf(dirOf(pth.haproxyPem)) } : undefined,
        }
      : undefined,
    mqtt: mosquittoTerminatesTls(ctx)
      ? { live: mqttLetsEncryptLive(model), cert: pth.mosquittoCert, key: pth.mosquittoKey, dir: dirOf(pth.mosquittoCert) }
      : undefined,
  };
}

/** The certificate lineages whose renewal the hook on this host acts on. */
function deployHookLineages(ctx: HostContext): string[] {
  const v = deployHookView(ctx);
  return [...new Set([v.site?.live, v.mqtt?.live].filter((l): l is string => l !== undefined))];
}

function certbotFiles(ctx: HostContext): FileSpec[] {
  if (!needsDeployHook(ctx)) return [];
  return [templateFile(ctx.paths.certbotDeployHook, "certbot/deploy-hook.sh.njk", deployHookView(ctx), { comment: "#", mode: MODE.script })];
}

function certbotSteps(ctx: HostContext): Step[] {
  if (!needsDeployHook(ctx)) return [];
  const hook = shell(ctx.paths.certbotDeployHook);
  return [
    {
      id: "certbot.deploy-hook",
      phase: "certificates",
      title: "Install the certificate copies and test the renewal",
      packages: ["certbot"],
      action: {
        kind: "commands",
        commands: [...deployHookLineages(ctx).map((l) => ({ run: `RENEWED_LINEAGE=${shell(l)} ${hook}` })), { run: "certbot renew --dry-run" }],
      },
      why: "certbot runs the hooks in renewal-hooks/deploy/ only on renewals, not on the first certonly, so the hook runs once by hand after the certificate exists; --dry-run does not run deploy hooks either.",
    },
  ];
}

export const certbotFamily: HostFamily = { name: "certbot", files: certbotFiles, steps: certbotSteps };
