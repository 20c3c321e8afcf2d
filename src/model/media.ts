/**
 * Where uploaded media live, decided once: which hosts read and write them, which host's disk
 * holds them, and who mounts them over NFS. The rules, the flow table, the media family (export,
 * mount) and the backup family all ask here.
 */
import type { Host, Topology } from "./normalize.js";
import type { ParsedModel, Role } from "./schema.js";

export type MediaStorage = ParsedModel["media"];

/** nginx serves uploads (web), gunicorn and daphne write them (app, asgi), Celery tasks too (worker). */
const MEDIA_ROLES: readonly Role[] = ["web", "app", "asgi", "worker"];

/** True when the host reads or writes uploads. */
export function handlesMedia(host: Host): boolean {
  return MEDIA_ROLES.some((r) => host.roles.has(r));
}

/** The hosts that read or write uploads, in host order. */
export function mediaHosts(hosts: readonly Host[]): Host[] {
  return hosts.filter(handlesMedia);
}

/** The host that exports the media directory, when media are on NFS. */
export function nfsServer(media: MediaStorage, t: Pick<Topology, "hosts">): Host | undefined {
  return media.storage === "nfs" ? t.hosts.find((h) => h.name === media.server) : undefined;
}

/**
 * The host whose own disk holds the uploads: the one host that handles them (local; the rules
 * allow only one), or the NFS server. With S3 no host does.
 */
export function mediaHome(media: MediaStorage, t: Pick<Topology, "hosts">): Host | undefined {
  switch (media.storage) {
    case "local":
      return mediaHosts(t.hosts)[0];
    case "nfs":
      return nfsServer(media, t);
    case "s3":
      return undefined;
  }
}

/** True when `host` mounts the media directory from the NFS server. */
export function mountsMedia(media: MediaStorage, t: Pick<Topology, "hosts">, host: Host): boolean {
  const server = nfsServer(media, t);
  return server !== undefined && server.name !== host.name && handlesMedia(host);
}
