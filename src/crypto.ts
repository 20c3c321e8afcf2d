/**
 * Password hashes the rendered files need, computed in pure JavaScript (@noble/hashes) so the
 * core stays free of Node APIs. Salts are derived from the secret and the user name instead of
 * drawn at random: the same model must give the same bytes, and a derived salt still makes every
 * user's hash unique and precomputed tables useless.
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

function derivedSalt(purpose: string, user: string, password: string, length: number): Uint8Array {
  return hmac(sha256, utf8(password), utf8(`novacloud-render ${purpose} salt\u0000${user}`)).slice(0, length);
}

// Hashes are deterministic and slow by design, so each is computed once per PBKDF2 implementation.
const memo = new WeakMap<Pbkdf2, Map<string, string>>();

function memoized(kdf: Pbkdf2, key: string, compute: () => string): string {
  let cache = memo.get(kdf);
  if (!cache) memo.set(kdf, (cache = new Map()));
  let value = cache.get(key);
  if (value === undefined) {
    value = compute();
    cache.set(key, value);
  }
  return value;
}

/**
 * A Mosquitto 2.x password file entry hash: `$7$<iterations>$<salt>$<hash>`, PBKDF2-SHA512 with a
 * 12-byte salt and 101 iterations, as `mosquitto_passwd` writes it.
 */
export function mosquittoPasswordHash(user: string, password: string, kdf: Pbkdf2 = pbkdf2Js): string {
  return memoized(kdf, `mq\u0000${user}\u0000${password}`, () => {
    const iterations = 101;
    const salt = derivedSalt("mosquitto", user, password, 12);
    const hash = kdf("sha512", utf8(password), salt, iterations, 64);
    return `$7$${iterations}$${base64(salt)}$${base64(hash)}`;
  });
}

/**
 * A PostgreSQL SCRAM-SHA-256 verifier (what `password_encryption = scram-sha-256` stores), so the
 * role SQL never holds the password itself: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
 * (RFC 5802 / RFC 7677; PostgreSQL's scram_build_secret with 4096 iterations).
 */
export function scramSha256Verifier(role: string, password: string, kdf: Pbkdf2 = pbkdf2Js): string {
  return memoized(kdf, `scram\u0000${role}\u0000${password}`, () => {
    const iterations = 4096;
    const salt = derivedSalt("scram", role, password, 16);
    const salted = kdf("sha256", utf8(password), salt, iterations, 32);
    const clientKey = hmac(sha256, salted, utf8("Client Key"));
    const storedKey = sha256(clientKey);
    const serverKey = hmac(sha256, salted, utf8("Server Key"));
    return `SCRAM-SHA-256$${iterations}:${base64(salt)}$${base64(storedKey)}:${base64(serverKey)}`;
  });
}
