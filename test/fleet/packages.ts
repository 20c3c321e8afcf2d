/**
 * What the fleet's image holds: every Debian package the playbook would install on any host
 * (the containers reach no mirror, so the playbook runs with novacloud_install_packages=false),
 * what a booted Debian machine reachable over SSH needs, and the reference app's dependencies,
 * all from Debian 13 itself (the machines reach no Python package index).
 */
import type { Model } from "../../src/model/normalize.js";
import { renderHosts, type RenderOptions } from "../../src/render.js";
import { stepPackages } from "../../src/artifacts/steps.js";

/** A machine booted with systemd and managed by Ansible over SSH. */
export const MACHINE_PACKAGES = [
  "systemd",
  "systemd-sysv",
  "dbus",
  "openssh-server",
  "python3", // Ansible's modules
  "python3-apt", // Ansible's apt module, even when it has nothing to install
  "ca-certificates", // the test's CA (repository and S3 endpoint over HTTPS)
  "curl",
  "iproute2",
  "procps",
  "ssl-cert", // PostgreSQL's default certificate (snakeoil)
  "sudo",
] as const;

/**
 * The reference app's dependencies (test/fleet/app/requirements.txt names the same), installed
 * system-wide: the app's virtualenv sees them with --system-site-packages.
 */
export const APP_PACKAGES = [
  "python3-django", // 4.2 in Debian 13
  "python3-django-channels",
  "daphne",
  "python3-channels-redis",
  "python3-django-redis",
  "python3-celery",
  "python3-redis",
  "python3-psycopg",
  "python3-paho-mqtt",
  "gunicorn", // 23 in Debian 13
] as const;

/** Every package the model's steps install on some host. */
export function playbookPackages(model: Model, options: RenderOptions): string[] {
  const packages = new Set<string>();
  for (const { steps } of renderHosts(model, options)) for (const step of steps) for (const p of stepPackages(step)) packages.add(p);
  return [...packages];
}

/** The image's package list, sorted and without repeats (the image cache is keyed by it). */
export function imagePackages(model: Model, options: RenderOptions): string[] {
  return [...new Set([...MACHINE_PACKAGES, ...APP_PACKAGES, ...playbookPackages(model, options)])].sort();
}
