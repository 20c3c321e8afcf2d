/**
 * Uploaded media have one home every host that serves or writes them sees (issue #9 item 7):
 * the rule that rejects local media on several hosts, the NFS export and mounts placed by the
 * flow table, the app units that require the mount, the account's uid, and S3 (the .env for
 * django-storages, no /media/ in nginx). The real programs read these files in
 * test/lint/media.test.ts; the backups of the media are in test/lint/backup.test.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { appFamily } from "../../src/artifacts/app.js";
import type { HostContext } from "../../src/artifacts/context.js";
import { mediaFamily } from "../../src/artifacts/media.js";
import { nginxFamily } from "../../src/artifacts/nginx.js";
import { pathsOf } from "../../src/artifacts/paths.js";
import { hostSteps } from "../../src/artifacts/runbook.js";
import { stepLines, type Step } from "../../src/artifacts/steps.js";
import { systemdFamily } from "../../src/artifacts/systemd.js";
import { flowsTo } from "../../src/model/flows.js";
import { parseModel } from "../../src/model/parse.js";
import { HOST_FAMILIES } from "../../src/render.js";
import { FIXTURES } from "../helpers/fixtures.js";
import { contextOf, contextsWith, hostContexts, parseUnit, values } from "./systemd-scripts-support.js";

/** The ha-cluster model as written, with `edit` applied, parsed. */
function haCluster(edit: (raw: Record<string, any>) => void) {
  const raw = parseToml(readFileSync(join(FIXTURES, "ha-cluster", "novacloud.toml"), "utf8")) as Record<string, any>;
  edit(raw);
  return parseModel(raw);
}

const issues = (r: ReturnType<typeof parseModel>) => (r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`));

describe("the model: media need one home", () => {
  it("rejects local media on several web hosts, naming media (the issue's ha-cluster without [media])", () => {
    const r = haCluster((raw) => delete raw.media);
    expect(issues(r)).toEqual([
      'media: storage = "local" (the default) would give each of app1, app2, app3, worker1 its own uploads (they serve or write them): set storage = "nfs" with a server that exports them to the others, or storage = "s3"',
    ]);
  });

  it("rejects local media on one web host and a separate worker host (Celery's files would never be served)", () => {
    const r = haCluster((raw) => {
      delete raw.media;
      for (const name of ["app2", "app3"]) delete raw.hosts[name];
    });
    expect(issues(r)).toEqual([expect.stringMatching(/^media: storage = "local" \(the default\) would give each of app1, worker1 its own uploads/)]);
  });

  it("accepts local media when one host serves and writes them, whatever else is elsewhere", () => {
    const r = haCluster((raw) => {
      delete raw.media;
      for (const name of ["app2", "app3"]) delete raw.hosts[name];
      raw.hosts.app1.roles = ["web", "app", "asgi", "worker"];
      raw.hosts.worker1.roles = ["scheduler"];
    });
    expect(issues(r)).toEqual([]);
  });

  it("names media.server when it is not a host", () => {
    const r = haCluster((raw) => (raw.media.server = "files9"));
    expect(issues(r)).toEqual(['media.server: "files9" is not a host of this model (app1, app2, app3, cache1, db1, db2, db3, lb1, mqtt1, worker1)']);
  });
});

describe("NFS: worker1 exports, the app hosts mount (ha-cluster)", () => {
  const contexts = hostContexts("ha-cluster");
  const ctx = (name: string) => contextOf(contexts, name);
  const p = pathsOf(ctx("app1").model);
  const paths = (c: HostContext) => mediaFamily.files(c).map((f) => f.path);

  it("the flow table has exactly the app hosts reach worker1 on 2049, and nothing else on 2049", () => {
    const nfs = ctx("worker1").flows.flows.filter((f) => f.service === "nfs");
    expect(nfs.map((f) => `${f.from.name} -> ${f.to.name}:${f.port}`)).toEqual(["app1 -> worker1:2049", "app2 -> worker1:2049", "app3 -> worker1:2049"]);
    for (const c of contexts) if (c.host.name !== "worker1") expect(flowsTo(c.flows, c.host, "nfs")).toEqual([]);
  });

  it("the server has the export and its NFSv4-only settings, the app hosts the mount unit, the others nothing", () => {
    expect(paths(ctx("worker1"))).toEqual([p.nfsExports, p.nfsConf]);
    for (const name of ["app1", "app2", "app3"]) expect(paths(ctx(name))).toEqual([`${p.unitDir}/${p.mediaMountUnit}`]);
    for (const name of ["lb1", "db1", "db2", "cache1", "mqtt1"]) expect(paths(ctx(name))).toEqual([]);
  });

  it("the mount unit mounts the server's address, NFS 4.2 only, hard, nothing on it runnable", () => {
    const unit = parseUnit(mediaFamily.files(ctx("app2"))[0]!.content);
    expect(values(unit, "Mount", "What")).toEqual(["10.0.0.21:/opt/novacloud/media"]);
    expect(values(unit, "Mount", "Where")).toEqual(["/opt/novacloud/media"]);
    expect(values(unit, "Mount", "Options")[0]!.split(",")).toEqual(["vers=4.2", "proto=tcp", "hard", "nosuid", "nodev", "noexec"]);
    expect(values(unit, "Unit", "After")).toEqual(["network-online.target"]);
    expect(values(unit, "Install", "WantedBy")).toEqual(["remote-fs.target"]);
  });

  it("every app unit on a mounting host requires the mount; none does where the directory is local", () => {
    for (const name of ["app1", "app2", "app3"]) {
      const units = systemdFamily.files(ctx(name));
      expect(units.length).toBeGreaterThan(0);
      for (const f of units) expect(values(parseUnit(f.content), "Unit", "RequiresMountsFor"), `${name}${f.path}`).toEqual(["/opt/novacloud/media"]);
    }
    for (const f of systemdFamily.files(ctx("worker1"))) expect(values(parseUnit(f.content), "Unit", "RequiresMountsFor")).toEqual([]);
    for (const f of systemdFamily.files(contextOf(hostContexts("single-node"), "node1"))) expect(values(parseUnit(f.content), "Unit", "RequiresMountsFor")).toEqual([]);
  });

  function steps(c: HostContext): Step[] {
    return hostSteps(c, HOST_FAMILIES.flatMap((f) => f.steps?.(c) ?? []));
  }
  const step = (c: HostContext, id: string) => {
    const s = steps(c).find((x) => x.id === id);
    if (!s) throw new Error(`${c.host.name} has no step ${id}`);
    return s;
  };

  it("the runbook: the server makes the directory and exports it; a client makes a root-owned mount point and mounts after the export", () => {
    expect(stepLines(step(ctx("worker1"), "media.directory"))).toEqual(["install -d -o novacloud -g www-data -m 2750 /opt/novacloud/media"]);
    expect(stepLines(step(ctx("worker1"), "media.export"))).toEqual([
      "systemctl enable nfs-server",
      "systemctl is-active -q nfs-server && grep -qw -- -3 /proc/fs/nfsd/versions || systemctl restart nfs-server",
      "exportfs -ra",
    ]);
    const point = step(ctx("app1"), "media.mount-point");
    expect(stepLines(point)).toEqual(["mountpoint -q /opt/novacloud/media || install -d -o root -g root -m 0755 /opt/novacloud/media"]);
    const mount = step(ctx("app1"), "media.mount");
    expect(stepLines(mount)).toEqual(["systemctl daemon-reload", "systemctl enable --now opt-novacloud-media.mount"]);
    expect(mount.after).toEqual([{ host: "worker1", id: "media.export" }]);
    // The mount is up before the app units start (the runbook's order; the units also require it).
    const order = steps(ctx("app1")).map((s) => s.id);
    expect(order.indexOf("media.mount")).toBeLessThan(order.indexOf("systemd.start"));
    // Nobody else makes the media directory: app.directories makes STATIC_ROOT only.
    for (const c of contexts) {
      for (const s of steps(c)) if (!s.id.startsWith("media.")) expect(stepLines(s).join("\n"), `${c.host.name} ${s.id}`).not.toMatch(/install -d .*\/opt\/novacloud\/media/);
    }
  });

  it("the account has media.uid on every host that has it, and the runbook says so if an old account differs", () => {
    for (const c of contexts) {
      const account = steps(c).find((s) => s.id === "host.account");
      if (!account) continue;
      const lines = stepLines(account);
      expect(lines[0]).toContain("useradd --system --user-group --uid 2001 ");
      expect(lines[1]).toBe('test "$(id -u novacloud)" = 2001 || { echo "novacloud has uid $(id -u novacloud), not 2001: change it (usermod --uid) before sharing files" >&2; false; }');
    }
    const withAccount = contexts.filter((c) => steps(c).some((s) => s.id === "host.account")).map((c) => c.host.name);
    expect(withAccount).toEqual(["app1", "app2", "app3", "db1", "db2", "db3", "worker1"]);
    // Without NFS no uid is forced.
    const single = steps(contextOf(hostContexts("single-node"), "node1")).find((s) => s.id === "host.account")!;
    expect(stepLines(single)).toEqual(["id -u novacloud >/dev/null 2>&1 || useradd --system --user-group --home-dir /opt/novacloud --no-create-home --shell /usr/sbin/nologin novacloud"]);
  });

  it("an NFS server that runs nothing else of the app still gets the account and the directory", () => {
    const variant = contextsWith("ha-cluster", { media: { server: "cache1" } });
    const cache1 = contextOf(variant, "cache1");
    const ids = steps(cache1).map((s) => s.id);
    expect(ids).toEqual(expect.arrayContaining(["host.account", "media.directory", "media.export"]));
    expect(flowsTo(cache1.flows, cache1.host, "nfs").map((f) => f.from.name)).toEqual(["app1", "app2", "app3", "worker1"]);
    expect(mediaFamily.files(contextOf(variant, "worker1")).map((f) => f.path)).toEqual([`${p.unitDir}/${p.mediaMountUnit}`]);
  });
});

describe("S3: django-storages and no local media (ha-sentinel)", () => {
  const contexts = hostContexts("ha-sentinel");
  const env = (c: HostContext) => appFamily.files(c).find((f) => f.path === c.model.project.envFile)!.content;

  it("the .env of every Django host names the bucket and keys, and no MEDIA_ROOT", () => {
    for (const c of contexts.filter((x) => x.model.topology.django.some((d) => d.name === x.host.name))) {
      const lines = env(c).split("\n");
      expect(lines).toEqual(
        expect.arrayContaining([
          "AWS_STORAGE_BUCKET_NAME=novacloud-media",
          "AWS_S3_ENDPOINT_URL=https://objects.example.net",
          "AWS_S3_REGION_NAME=eu-central-1",
          `AWS_ACCESS_KEY_ID=${c.secrets.mediaAccessKeyId}`,
          `AWS_SECRET_ACCESS_KEY=${c.secrets.mediaSecretAccessKey}`,
        ]),
      );
      expect(lines.filter((l) => l.startsWith("MEDIA_ROOT="))).toEqual([]);
    }
    const local = env(contextOf(hostContexts("single-node"), "node1")).split("\n");
    expect(local).toContain("MEDIA_ROOT=/opt/novacloud/media");
    expect(local.filter((l) => l.startsWith("AWS_"))).toEqual([]);
  });

  it("nginx serves no /media/ and no host makes a media directory or mount", () => {
    for (const c of contexts) {
      for (const f of nginxFamily.files(c)) expect(f.content).not.toContain("location /media/");
      expect(mediaFamily.files(c)).toEqual([]);
      expect((mediaFamily.steps?.(c) ?? []).map((s) => s.id)).toEqual([]);
    }
    const site = nginxFamily.files(contextOf(hostContexts("single-node"), "node1")).find((f) => f.path.endsWith("/sites-available/novacloud"))!;
    expect(site.content).toContain("location /media/ {");
  });
});
