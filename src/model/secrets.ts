/**
 * Secrets are references in the model; their values come in through render()'s options (the CLI
 * reads them from the environment and from files). This module lists the references a model
 * uses and resolves them, naming every missing one at once.
 */
import type { ModelIssue } from "./errors.js";
import type { ParsedModel } from "./schema.js";
import type { SecretRef } from "./values.js";

export type SecretName =
  | "dbPassword"
  | "replicationPassword"
  | "rewindPassword"
  | "redisPassword"
  | "mqttPassword"
  | "mqttBridgePassword"
  | "secretKey"
  | "emailPassword"
  | "statsPassword"
  | "mediaAccessKeyId"
  | "mediaSecretAccessKey";

/** Resolved secret values by name; a name is absent when the model does not use it. */
export type Secrets = Readonly<Partial<Record<SecretName, string>>>;

/** The parts of the model that hold secret references. */
export type SecretHolder = Pick<ParsedModel, "postgres" | "redis" | "mqtt" | "django" | "email" | "haproxy" | "media">;

const SLOTS: readonly { name: SecretName; path: string; ref: (m: SecretHolder) => SecretRef | undefined }[] = [
  { name: "dbPassword", path: "postgres.password", ref: (m) => m.postgres.password },
  { name: "replicationPassword", path: "postgres.replication.password", ref: (m) => m.postgres.replication.password },
  { name: "rewindPassword", path: "postgres.replication.rewind_password", ref: (m) => m.postgres.replication.rewind_password },
  { name: "redisPassword", path: "redis.password", ref: (m) => m.redis.password },
  { name: "mqttPassword", path: "mqtt.password", ref: (m) => m.mqtt.password },
  { name: "mqttBridgePassword", path: "mqtt.bridge_password", ref: (m) => m.mqtt.bridge_password },
  { name: "secretKey", path: "django.secret_key", ref: (m) => m.django.secret_key },
  { name: "emailPassword", path: "email.password", ref: (m) => m.email?.password },
  { name: "statsPassword", path: "haproxy.stats_password", ref: (m) => m.haproxy.stats_password },
  { name: "mediaAccessKeyId", path: "media.access_key_id", ref: (m) => (m.media.storage === "s3" ? m.media.access_key_id : undefined) },
  { name: "mediaSecretAccessKey", path: "media.secret_access_key", ref: (m) => (m.media.storage === "s3" ? m.media.secret_access_key : undefined) },
];

export interface SecretUse {
  readonly name: SecretName;
  /** Model path of the reference, e.g. `postgres.password`. */
  readonly path: string;
  readonly ref: SecretRef;
}

/** Every secret reference the model makes, in a stable order. */
export function secretUses(model: SecretHolder): SecretUse[] {
  return SLOTS.flatMap((slot) => {
    const ref = slot.ref(model);
    return ref === undefined ? [] : [{ name: slot.name, path: slot.path, ref }];
  });
}

/** Where secret values come from: environment variables and the contents of referenced files. */
export interface SecretSources {
  /** Values of `{ env = "NAME" }` references, usually `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Contents of `{ file = "/path" }` references by path; one final newline is dropped. */
  readonly files?: Readonly<Record<string, string>>;
}

// Printable means no control characters: any of them could end a line in some output format.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function resolveSecrets(model: SecretHolder, sources: SecretSources): { secrets: Secrets; issues: ModelIssue[] } {
  const secrets: Partial<Record<SecretName, string>> = {};
  const issues: ModelIssue[] = [];
  for (const use of secretUses(model)) {
    let value: string | undefined;
    let origin: string;
    if (typeof use.ref === "string") {
      value = use.ref;
      origin = "the inline value";
    } else if ("env" in use.ref) {
      value = sources.env?.[use.ref.env];
      origin = `environment variable ${use.ref.env}`;
      if (value === undefined || value === "") {
        issues.push({ path: use.path, message: `environment variable ${use.ref.env} is not set (no value for it in the env option)` });
        continue;
      }
    } else {
      const content = sources.files?.[use.ref.file];
      origin = `file ${use.ref.file}`;
      if (content === undefined) {
        issues.push({ path: use.path, message: `file ${use.ref.file} could not be read` });
        continue;
      }
      value = content.replace(/\r?\n$/, "");
      if (value === "") {
        issues.push({ path: use.path, message: `file ${use.ref.file} is empty` });
        continue;
      }
    }
    if (CONTROL.test(value!)) {
      issues.push({ path: use.path, message: `the value from ${origin} contains a control character or line break (secrets must be printable)` });
      continue;
    }
    secrets[use.name] = value!;
  }
  return { secrets, issues };
}

/** Secret values to redact from anything shown to a person (diffs, errors, logs). */
export function secretValues(secrets: Secrets): string[] {
  return Object.values(secrets).filter((v): v is string => typeof v === "string" && v.length > 0);
}
