/**
 * Uploaded media (MEDIA_ROOT): one home that every host serving or writing them sees
 * (src/model/media.ts decides which host that is).
 * - local: the directory on the one host that handles uploads;
 * - nfs: the server keeps the directory and exports it over NFSv4 only (exports.d, nfs.conf.d)
 *   to exactly the clients of its flows (flows.ts, so the firewall agrees); the other hosts
 *   mount it with a systemd mount unit, and their app units require that mount
 *   (RequiresMountsFor=, see mediaMountPoint), so nothing is ever written to the empty mount
 *   point where no other host would see it;
 * - s3: no directory: django-storages keeps the files in the bucket (the .env has the bucket
 *   and keys, app family) and nginx serves no /media/ (nginx family).
 * The backup family archives the media where they live.
 */
import { flowsTo } from "../model/flows.js";
import { mediaHome, mountsMedia, nfsServer } from "../model/media.js";
import { shell } from "../quote.js";
import { templateFile } from "../templates.js";
import { MODE, type FileSpec } from "../tree.js";
import type { Model } from "../model/normalize.js";
import type { Secrets } from "../model/secrets.js";
import { required, type HostContext, type HostFamily } from "./context.js";
import { addressFrom } from "../model/flows.js";
import { directory, type Step } from "./steps.js";

/**
 * Export options of every client: read-write, writes on disk before the server answers (sync),
 * root on a client is nobody here (root_squash), AUTH_SYS (numeric ids, hence media.uid).
 */
const EXPORT_OPTIONS = "rw,sync,no_subtree_check,root_squash,sec=sys";

/**
 * Mount options: NFS 4.2 only (never a fallback to v3, which needs rpcbind and mountd ports the
 * firewall does not open), over TCP, `hard` (a server that is away makes I/O wait, never fail
 * half-way through an upload), and nothing on the share is ever a device, set-uid or runnable.
 */
const MOUNT_OPTIONS = "vers=4.2,proto=tcp,hard,nosuid,nodev,noexec";

/** The S3 settings the app's .env carries (django-storages), or undefined when media are not in S3. */
export function s3Settings(model: Model, secrets: Secrets) {
  const media = model.media;
  if (media.storage !== "s3") return undefined;
  return {
    bucket: media.bucket,
    endpoint: media.endpoint,
    region: media.region,
    accessKeyId: required(secrets, "mediaAccessKeyId"),
    secretAccessKey: required(secrets, "mediaSecretAccessKey"),
  };
}

/** The media directory this host mounts from the NFS server (for RequiresMountsFor= in its units), if any. */
export function mediaMountPoint(ctx: HostContext): string | undefined {
  return mountsMedia(ctx.model.media, ctx.model.topology, ctx.host) ? ctx.model.project.mediaDir : undefined;
}

/** True when this host keeps the media directory on its own disk. */
function keepsMedia(ctx: HostContext): boolean {
  return mediaHome(ctx.model.media, ctx.model.topology)?.name === ctx.host.name;
}

function exportsView(ctx: HostContext) {
  const clients = flowsTo(ctx.flows, ctx.host, "nfs").map((f) => ({ host: f.from.name, address: f.from.address }));
  return { project: ctx.model.project.name, dir: ctx.model.project.mediaDir, clients, options: EXPORT_OPTIONS };
}

function mountView(ctx: HostContext) {
  const { model } = ctx;
  const server = nfsServer(model.media, model.topology)!;
  return {
    project: model.project.name,
    server: server.name,
    what: `${addressFrom(server, ctx.host)}:${model.project.mediaDir}`,
    where: model.project.mediaDir,
    options: MOUNT_OPTIONS,
  };
}

function mediaFiles(ctx: HostContext): FileSpec[] {
  const paths = ctx.paths;
  if (keepsMedia(ctx) && ctx.model.media.storage === "nfs") {
    const view = exportsView(ctx);
    if (view.clients.length === 0) return [];
    return [
      templateFile(paths.nfsExports, "media/exports.njk", view, { comment: "#", mode: MODE.config }),
      templateFile(paths.nfsConf, "media/nfs.conf.njk", { project: ctx.model.project.name }, { comment: "#", mode: MODE.config }),
    ];
  }
  if (mediaMountPoint(ctx) !== undefined) {
    return [templateFile(`${paths.unitDir}/${paths.mediaMountUnit}`, "media/media.mount.njk", mountView(ctx), { comment: "#", mode: MODE.config })];
  }
  return [];
}

function mediaSteps(ctx: HostContext): Step[] {
  const { model } = ctx;
  const project = model.project;
  const dir = project.mediaDir;
  const steps: Step[] = [];
  if (keepsMedia(ctx)) {
    steps.push({
      id: "media.directory",
      phase: "code",
      title: "Create the media directory",
      action: { kind: "commands", commands: [directory(dir, 0o2750, project.user, "www-data")] },
      why:
        "MEDIA_ROOT belongs to the service account with group www-data and the setgid bit, so uploads (0640 under the units' UMask=0027) are readable by nginx and nobody else; " +
        "www-data is not added to the project's group, which can read the .env." +
        (model.media.storage === "nfs" ? " The hosts that mount it see the same owner because the account has the same uid everywhere (media.uid)." : ""),
    });
  }
  const server = nfsServer(model.media, model.topology);
  if (server === undefined) return steps;
  const uid = model.media.storage === "nfs" ? model.media.uid : undefined;
  if (keepsMedia(ctx) && flowsTo(ctx.flows, ctx.host, "nfs").length > 0) {
    const clients = flowsTo(ctx.flows, ctx.host, "nfs").map((f) => f.from.name);
    steps.push(
      {
        id: "media.export",
        phase: "services",
        title: "Export the media directory over NFSv4",
        packages: ["nfs-kernel-server"],
        action: {
          kind: "commands",
          commands: [
            // systemctl says "Created symlink" exactly when it enabled the unit.
            { run: "systemctl enable nfs-server", changes: { ifOutput: "Created symlink" } },
            // The package starts the server before nfs.conf.d/ is installed; restart it once so
            // it drops NFSv3 (a later run, with the server up and v3 off, leaves the clients alone).
            { run: "systemctl restart nfs-server", unless: "systemctl is-active -q nfs-server && grep -qw -- -3 /proc/fs/nfsd/versions" },
            // Idempotent: it makes the kernel's export table what the files say.
            { run: "exportfs -ra", changes: { never: true } },
          ],
        },
        why: `${clients.join(", ")} mount ${dir} from here (port 2049 only; the firewall admits exactly them). exportfs -ra applies a changed export list without disturbing the clients.`,
      },
      {
        id: "media.export-check",
        phase: "verify",
        title: "Check the media export",
        action: { kind: "check", commands: ["exportfs -v", "cat /proc/fs/nfsd/versions"] },
        why: `Each client with rw,sync,root_squash; the versions read -3 (NFSv3 off).`,
      },
    );
  }
  if (mediaMountPoint(ctx) !== undefined) {
    const unit = ctx.paths.mediaMountUnit;
    steps.push(
      {
        id: "media.mount-point",
        phase: "code",
        title: "Create the mount point for the media",
        // Never touch it once the share is mounted: root is nobody on the share (root_squash).
        action: { kind: "commands", commands: [{ ...directory(dir, 0o755, "root", "root"), unless: `mountpoint -q ${shell(dir)}` }] },
        why:
          `Owned by root: nothing but the mount writes here. The app units require the mount (RequiresMountsFor=), so they never start on the empty directory. ` +
          `Uploads this host kept locally before are hidden by the mount: copy them to ${server.name} first.`,
      },
      {
        id: "media.mount",
        phase: "services",
        title: `Mount the media from ${server.name}`,
        packages: ["nfs-common"],
        action: { kind: "service", units: [unit], enable: true, state: "started", daemonReload: true },
        after: [{ host: server.name, id: "media.export" }],
        why:
          `Once ${server.name} exports it ("Export the media directory over NFSv4" in its runbook). ` +
          `${unit} mounts ${server.name}:${dir} at boot once the network is online. If ${server.name} is down then, the mount and the app units fail (systemctl --failed); ` +
          `start them again once it is back: systemctl start ${unit}, then the app units.`,
      },
      {
        id: "media.mount-check",
        phase: "verify",
        title: "Check the media mount",
        action: { kind: "check", commands: [`findmnt ${shell(dir)}`, `runuser -u ${shell(project.user)} -- test -w ${shell(dir)} && echo writable`] },
        why: `The account writes as uid ${uid} on ${server.name} too; "writable" means the ids agree.`,
      },
    );
  }
  return steps;
}

export const mediaFamily: HostFamily = { name: "media", files: mediaFiles, steps: mediaSteps };
