/** `novacloud-render init`: a commented starter model that renders as is, with its secrets. */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { renderTemplate } from "../templates.js";
import { IoError } from "../node/files.js";

const SECRETS = ["postgres_password", "mqtt_password", "django_secret_key"] as const;

interface Printer {
  json: boolean;
  quiet: boolean;
  out(text: string): void;
  err(text: string): void;
}

export function writeStarter(file: string, o: Printer): number {
  const secretsDir = join(dirname(file), "secrets");
  const targets = [file, ...SECRETS.map((s) => join(secretsDir, s))];
  const existing = targets.filter((t) => existsSync(t));
  if (existing.length > 0) throw new IoError(`${existing.join(", ")} already exist${existing.length === 1 ? "s" : ""}; init never overwrites`);
  mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
  for (const name of SECRETS) {
    // URL-safe random values parse the same in every file format they reach.
    writeFileSync(join(secretsDir, name), `${randomBytes(name === "django_secret_key" ? 48 : 24).toString("base64url")}\n`, { mode: 0o600 });
  }
  writeFileSync(file, renderTemplate("init/novacloud.toml.njk", { file: relative(process.cwd(), file) || file }));
  if (o.json) o.out(`${JSON.stringify({ ok: true, model: file, secrets: secretsDir })}\n`);
  else if (!o.quiet) o.err(`wrote ${file} and random secrets in ${secretsDir}/ (mode 0600); render with: novacloud-render ${file} --out out\n`);
  return 0;
}
