/**
 * The NFS files for media, read by the real programs. This machine's kernel has no NFS (no
 * nfsd, no nfs client), so nothing is served or mounted here; what can be checked offline is:
 * - exportfs (nfs-kernel-server) parses the rendered export, inside a private mount namespace
 *   whose /etc/exports is the rendered file and whose /var/lib/nfs is a sandbox: `exportfs -ra`
 *   accepts it, and `exportfs -s` lists exactly the flow table's NFS clients, each with rw,
 *   sync, root_squash and sec=sys (the machine's own files are never touched);
 * - nfsconf reads the rendered nfs.conf.d file the way rpc.nfsd does (over /etc/nfs.conf):
 *   NFSv3 and NFSv4.0 off;
 * - systemd-analyze verify reads the mount unit; it refuses a unit whose name is not its Where=
 *   path escaped, and pathUnitName is compared with `systemd-escape --path` itself.
 */
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import type { HostContext } from "../../src/artifacts/context.js";
import { mediaFamily } from "../../src/artifacts/media.js";
import { pathsOf, pathUnitName } from "../../src/artifacts/paths.js";
import { flowsTo } from "../../src/model/flows.js";
import { fixtureNames, loadFixture, renderedAcrossFixtures } from "../helpers/fixtures.js";
import { IN_CI, programsAvailable, relocate, run, sandbox, type Sandbox } from "../helpers/programs.js";
import { contextOf, contextsWith, hostContexts } from "../artifacts/systemd-scripts-support.js";

const nfsTools = programsAvailable("NFS export lint", { exportfs: "nfs-kernel-server", nfsconf: "nfs-common", unshare: "util-linux", mount: "mount" });
const systemdTools = programsAvailable("media mount unit", { "systemd-analyze": "systemd", "systemd-escape": "systemd" });

function canUnshare(): boolean {
  if (!nfsTools) return false;
  const ok = process.getuid?.() === 0 && run("unshare", ["-m", "true"]).code === 0;
  if (!ok) {
    if (IN_CI) throw new Error("NFS export lint: `unshare -m` as root is needed; CI runs as root");
    console.warn("SKIPPED NFS export lint: needs root and `unshare -m`");
  }
  return ok;
}

const boxes: Sandbox[] = [];
function box(prefix: string): Sandbox {
  const b = sandbox(`ncr-${prefix}-`);
  boxes.push(b);
  return b;
}
afterAll(() => {
  for (const b of boxes) b.cleanup();
});

const contexts = fixtureNames()
  .filter((fixture) => loadFixture(fixture).model.topology.hosts.length > 0)
  .flatMap((fixture) => hostContexts(fixture).map((ctx) => ({ name: `${fixture}/${ctx.host.name}`, ctx })));

function fileOf(ctx: HostContext, path: string): string {
  const f = mediaFamily.files(ctx).find((s) => s.path === path);
  if (!f) throw new Error(`${ctx.host.name} has no ${path}`);
  return f.content;
}

/** Runs `script` in a private mount namespace (sh -c), so bind mounts never reach the machine. */
function inNamespace(script: string) {
  return run("unshare", ["-m", "--propagation", "private", "sh", "-c", script]);
}

describe.skipIf(!canUnshare())("exportfs reads the rendered export", () => {
  const servers = contexts.filter(({ ctx }) => mediaFamily.files(ctx).some((f) => f.path === pathsOf(ctx.model).nfsExports));

  it("covers every export any fixture renders", () => {
    const exports = renderedAcrossFixtures((path) => /\/etc\/exports\.d\/[^/]+\.exports$/.test(path)).map((p) => p.split("/").slice(0, 2).join("/"));
    expect(servers.map((s) => s.name)).toEqual(exports);
    expect(servers.length).toBeGreaterThan(0);
  });

  /**
   * exportfs -ra on the host's export as /etc/exports, then exportfs -s: what the kernel would be
   * told. exportfs checks that the directory exists: it is relocated into the sandbox.
   */
  function exportfs(ctx: HostContext, edit: (content: string) => string = (c) => c) {
    const b = box("exportfs");
    const dir = b.path("media");
    b.write("media/.keep", "");
    const file = b.write("exports", edit(relocate(fileOf(ctx, pathsOf(ctx.model).nfsExports), { [ctx.model.project.mediaDir]: dir })));
    b.write("nfs/etab", "");
    const r = inNamespace(`mount --bind ${file} /etc/exports && mount --bind ${b.path("nfs")} /var/lib/nfs && exportfs -ra && exportfs -s`);
    return { ...r, dir };
  }

  it.each(servers)("$name: accepted, exactly the flow table's clients, each rw, sync, root_squash, sec=sys", ({ ctx }) => {
    const r = exportfs(ctx);
    const dir = r.dir;
    expect(r.code, r.output).toBe(0);
    expect(r.stderr, r.output).toBe("");
    const lines = r.stdout.split("\n").filter(Boolean);
    const clients = lines.map((l) => {
      const m = /^(\S+)\s+(\S+)\((.*)\)$/.exec(l);
      expect(m, l).not.toBeNull();
      expect(m![1]).toBe(dir);
      const options = m![3]!.split(",");
      for (const o of ["rw", "sync", "root_squash", "no_all_squash", "sec=sys", "no_subtree_check"]) expect(options, l).toContain(o);
      return m![2]!;
    });
    expect(clients.sort()).toEqual(flowsTo(ctx.flows, ctx.host, "nfs").map((f) => f.from.address).sort());
  });

  it("the check fails with exportfs's own message on an unknown option", () => {
    const { ctx } = servers[0]!;
    const r = exportfs(ctx, (c) => c.replace("root_squash", "root_sqash"));
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/exportfs: \/etc\/exports:\d+: unknown keyword "root_sqash"/);
  });

  it("nfsconf, as rpc.nfsd reads it: NFSv3 and NFSv4.0 off, 4.1 and 4.2 left on", () => {
    const { ctx } = servers[0]!;
    const b = box("nfsconf");
    b.write("conf.d/x.conf", fileOf(ctx, pathsOf(ctx.model).nfsConf));
    const get = (tag: string) => inNamespace(`mount --bind ${b.path("conf.d")} /etc/nfs.conf.d && nfsconf --get nfsd ${tag}`);
    expect(get("vers3").stdout.trim()).toBe("n");
    expect(get("vers4.0").stdout.trim()).toBe("n");
    for (const tag of ["vers4.1", "vers4.2"]) expect(get(tag).code, `${tag} is not set`).not.toBe(0);
  });
});

describe.skipIf(!systemdTools)("the media mount unit", () => {
  const clients = contexts.filter(({ ctx }) => mediaFamily.files(ctx).some((f) => f.path.endsWith(".mount")));

  it("covers every mount unit any fixture renders", () => {
    const mounts = renderedAcrossFixtures((path) => /\/etc\/systemd\/system\/[^/]+\.mount$/.test(path)).map((p) => p.split("/").slice(0, 2).join("/"));
    expect(clients.map((c) => c.name)).toEqual(mounts);
    expect(clients.length).toBeGreaterThan(0);
  });

  const verify = (path: string) => run("systemd-analyze", ["verify", "--man=no", path], { env: { ...process.env, SYSTEMD_LOG_COLOR: "0", SYSTEMD_PAGER: "" } });

  it.each(clients)("$name: systemd-analyze verify says nothing", ({ ctx }) => {
    const p = pathsOf(ctx.model);
    const b = box("mount");
    const unit = b.write(p.mediaMountUnit, fileOf(ctx, `${p.unitDir}/${p.mediaMountUnit}`));
    const r = verify(unit);
    expect(r.code, r.output).toBe(0);
    expect(r.output.trim(), r.output).toBe("");
  });

  it("the check fails when the unit's name is not its path", () => {
    const { ctx } = clients[0]!;
    const p = pathsOf(ctx.model);
    const b = box("mount");
    const content = fileOf(ctx, `${p.unitDir}/${p.mediaMountUnit}`);
    const unit = b.write(p.mediaMountUnit, relocate(content, { [`Where=${ctx.model.project.mediaDir}`]: `Where=${ctx.model.project.mediaDir}2` }));
    expect(readFileSync(unit, "utf8")).not.toBe(content);
    const r = verify(unit);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/Where= setting doesn't match unit name/);
  });

  it.each(["/opt/novacloud/media", "/srv/nova-cloud/media", "/srv/a+b/@up.loads/.x", "/opt/x_y/m:1/ü"])("pathUnitName(%s) is systemd-escape --path --suffix=mount", (path) => {
    const r = run("systemd-escape", ["--path", "--suffix=mount", path]);
    expect(r.code, r.output).toBe(0);
    expect(pathUnitName(path, "mount")).toBe(r.stdout.trim());
  });

  it("a model whose media directory has a '-' in its path gets the escaped unit name", () => {
    const ctx = contextOf(contextsWith("ha-cluster", { project: { root: "/srv/nova-cloud" } }), "app1");
    const p = pathsOf(ctx.model);
    expect(p.mediaMountUnit).toBe("srv-nova\\x2dcloud-media.mount");
    const b = box("mount");
    const r = verify(b.write(p.mediaMountUnit, fileOf(ctx, `${p.unitDir}/${p.mediaMountUnit}`)));
    expect(r.code, r.output).toBe(0);
  });
});
