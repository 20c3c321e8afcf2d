/**
 * Password hashes the rendered files need, computed in pure JavaScript (@noble/hashes) so the
 * core stays free of Node APIs.
 *
 * Salts are derived, not drawn at random: the same model must give the same bytes. Threat
 * model of a derived salt:
 *
 * - The attacker holds a verifier: a copy of pg_authid or of the init SQL, or the Mosquitto
 *   password file. Each publishes the salt next to the hash, and the salt is a function of the
 *   password, so recomputing the salt from a guess and comparing it with the published one
 *   tests the guess as well as the hash does. The salt must therefore cost at least as much
 *   as the hash: it is PBKDF2 with the hash's own digest and iteration count, over the password
 *   (the salt was one HMAC-SHA256 before, which made a guess 4096 times cheaper for SCRAM).
 * - The public input names the deployment (project name, site domain) and the user, so the
 *   same password gives another verifier for another user or deployment: a table of guesses
 *   computed for one deployment is useless for the next, and equal passwords do not show as
 *   equal verifiers.
 * - What stays weaker than a random salt: knowing the project name, domain and user, an
 *   attacker can compute guesses for that one deployment before stealing its verifier, and an
 *   unchanged password keeps its verifier across renders (which is what keeps --check and the
 *   goldens stable). Both matter only for guessable passwords: `novacloud-render init` writes
 *   random ones.
 *
 * No plaintext outlives a render: hashes are remembered only in a cache reachable from the
 * render() options object the caller passed (see kdfOwnedBy), never in module state.
 */
import { hmac } from "@noble/hashes/hmac";
import { pbkdf2 } from "@noble/hashes/pbkdf2";
import { sha256 } from "@noble/hashes/sha256";
import { sha512 } from "@noble/hashes/sha512";

const utf8 = (text: string) => new TextEncoder().encode(text);

/**
 * PBKDF2-HMAC (RFC 8018). The pure-JavaScript one is the default; the CLI passes Node's native
 * pbkdf2Sync through render()'s options, which is ~50 times faster on a cold start (the hashes
 * dominated a cold render: bench/run.mjs). Both give the same bytes.
 */
export type Pbkdf2 = (digest: "sha256" | "sha512", password: Uint8Array, salt: Uint8Array, iterations: number, length: number) => Uint8Array;

export const pbkdf2Js: Pbkdf2 = (digest, password, salt, iterations, length) =>
  pbkdf2(digest === "sha256" ? sha256 : sha512, password, salt, { c: iterations, dkLen: length });

/** What tells one deployment's salts from another's: the model's project name and site domain. */
export interface Deployment {
  readonly project: { readonly name: string };
  readonly site: { readonly domain: string };
}

/**
 * PostgreSQL's own SCRAM parameters (scram_build_secret: SCRAM_DEFAULT_ITERATIONS 4096,
 * SCRAM_DEFAULT_SALT_LEN 16), so the verifier is what `ALTER ROLE ... PASSWORD` would store.
 */
export const SCRAM = { digest: "sha256", iterations: 4096, saltLength: 16 } as const;

/**
 * Mosquitto's $7$ hash. mosquitto_passwd 2.0 writes 101 iterations, its format's default, but
 * the broker reads the count from each hash (2.0's security_default.c: `u->iterations =
 * atoi(token)`), so a higher count works with every 2.0.x in the capability table (2.0.11 logs
 * in with it in test/lint/mosquitto.test.ts and test/e2e). Every CONNECT with a password pays
 * the count on the broker's single thread; measured with 2.0.11 on the development machine,
 * broker CPU per CONNECT: 0.25 ms at 101, 0.8 ms at 1000, 5.9 ms at 10000. 1000 makes a guess
 * ten times dearer than 101, is the default of Mosquitto's newer sources (PW_DEFAULT_ITERATIONS
 * in libcommon/password_common.c), and keeps a flood of CONNECTs with a wrong password under a
 * millisecond of broker time each.
 */
export const MOSQUITTO = { digest: "sha512", iterations: 1000, saltLength: 12 } as const;

type HashParameters = { readonly digest: "sha256" | "sha512"; readonly iterations: number; readonly saltLength: number };

/**
 * PBKDF2(password, "novacloud-render <purpose> salt" NUL project NUL domain NUL user) with the
 * hash's own digest and iteration count: as costly to recompute from a guess as the hash.
 */
function derivedSalt(kdf: Pbkdf2, hash: HashParameters, purpose: string, deployment: Deployment, user: string, password: string): Uint8Array {
  const info = `novacloud-render ${purpose} salt\u0000${deployment.project.name}\u0000${deployment.site.domain}\u0000${user}`;
  return kdf(hash.digest, utf8(password), utf8(info), hash.iterations, hash.saltLength);
}

function base64(bytes: Uint8Array): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const [a, b, c] = [bytes[i]!, bytes[i + 1], bytes[i + 2]];
    const n = (a << 16) | ((b ?? 0) << 8) | (c ?? 0);
    out += alphabet[(n >> 18) & 63]! + alphabet[(n >> 12) & 63]!;
    out += b === undefined ? "=" : alphabet[(n >> 6) & 63]!;
    out += c === undefined ? "=" : alphabet[n & 63]!;
  }
  return out;
}

/**
 * Hashes remembered per caller. A hash costs milliseconds in pure JavaScript and a warm
 * re-render of the same model would pay them every time, so a PBKDF2 made by kdfOwnedBy
 * remembers what it computed: one entry per (hash, deployment, user), holding the password it
 * was computed for (a new password replaces the entry) and reachable only through that PBKDF2,
 * which only the caller's options object keeps alive. When the caller drops the options
 * object (and with it the passwords it passed), the cache goes too.
 */
type HashCache = Map<string, { readonly password: string; readonly value: string }>;

const caches = new WeakMap<Pbkdf2, HashCache>();
const owned = new WeakMap<object, { readonly base: Pbkdf2; readonly kdf: Pbkdf2 }>();

/** More entries than any one model needs; a caller cycling through models clears it. */
const CACHE_LIMIT = 64;

/**
 * `base`, remembering the hashes computed with it for as long as `owner` (render()'s options
 * object) is alive: renders that pass the same options object share them, others start empty.
 */
export function kdfOwnedBy(owner: object, base: Pbkdf2): Pbkdf2 {
  const known = owned.get(owner);
  if (known !== undefined && known.base === base) return known.kdf;
  const kdf: Pbkdf2 = (...args) => base(...args);
  caches.set(kdf, new Map());
  owned.set(owner, { base, kdf });
  return kdf;
}

function remembered(kdf: Pbkdf2, key: string, password: string, compute: () => string): string {
  const cache = caches.get(kdf);
  const hit = cache?.get(key);
  if (hit !== undefined && hit.password === password) return hit.value;
  const value = compute();
  if (cache !== undefined) {
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(key, { password, value });
  }
  return value;
}

const cacheKey = (kind: string, deployment: Deployment, user: string) =>
  `${kind}\u0000${deployment.project.name}\u0000${deployment.site.domain}\u0000${user}`;

/**
 * A Mosquitto 2.x password file entry hash: `$7$<iterations>$<salt>$<hash>`, PBKDF2-SHA512 with
 * a 12-byte salt, in mosquitto_passwd's format (with MOSQUITTO.iterations, see there).
 */
export function mosquittoPasswordHash(user: string, password: string, deployment: Deployment, kdf: Pbkdf2 = pbkdf2Js): string {
  return remembered(kdf, cacheKey("mosquitto", deployment, user), password, () => {
    const salt = derivedSalt(kdf, MOSQUITTO, "mosquitto", deployment, user, password);
    const hash = kdf(MOSQUITTO.digest, utf8(password), salt, MOSQUITTO.iterations, 64);
    return `$7$${MOSQUITTO.iterations}$${base64(salt)}$${base64(hash)}`;
  });
}

/**
 * A PostgreSQL SCRAM-SHA-256 verifier (what `password_encryption = scram-sha-256` stores), so the
 * role SQL never holds the password itself: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
 * (RFC 5802 / RFC 7677; PostgreSQL's scram_build_secret).
 */
export function scramSha256Verifier(role: string, password: string, deployment: Deployment, kdf: Pbkdf2 = pbkdf2Js): string {
  return remembered(kdf, cacheKey("scram", deployment, role), password, () => {
    const salt = derivedSalt(kdf, SCRAM, "scram", deployment, role, password);
    const salted = kdf(SCRAM.digest, utf8(password), salt, SCRAM.iterations, 32);
    const clientKey = hmac(sha256, salted, utf8("Client Key"));
    const storedKey = sha256(clientKey);
    const serverKey = hmac(sha256, salted, utf8("Server Key"));
    return `SCRAM-SHA-256$${SCRAM.iterations}:${base64(salt)}$${base64(storedKey)}:${base64(serverKey)}`;
  });
}
