/**
 * What the target software can do, in one table: distribution defaults and named gates.
 * Templates and artifact code ask a gate (`caps.nginx.http2Directive`), never compare versions
 * themselves (the Mozilla ssl-config-generator pattern, whose bugs #152/#210 were exactly
 * wrong output for a server version).
 */

export type Distribution = "debian-12" | "debian-13" | "ubuntu-22.04" | "ubuntu-24.04";

export interface SoftwareVersions {
  nginx: string;
  haproxy: string;
  postgres: number;
  mosquitto: string;
  redis: string;
  python: string;
  openssl: string;
  systemd: string;
}

/** What each distribution ships (apt-cache policy / packages.debian.org / packages.ubuntu.com). */
export const DISTRIBUTIONS: Readonly<Record<Distribution, SoftwareVersions>> = {
  "debian-12": { nginx: "1.22.1", haproxy: "2.6.12", postgres: 15, mosquitto: "2.0.11", redis: "7.0.15", python: "3.11.2", openssl: "3.0.22", systemd: "252" },
  "debian-13": { nginx: "1.26.3", haproxy: "3.0.11", postgres: 17, mosquitto: "2.0.21", redis: "8.0.2", python: "3.13.5", openssl: "3.5.1", systemd: "257" },
  "ubuntu-22.04": { nginx: "1.18.0", haproxy: "2.4.24", postgres: 14, mosquitto: "2.0.11", redis: "6.0.16", python: "3.10.12", openssl: "3.0.2", systemd: "249" },
  "ubuntu-24.04": { nginx: "1.24.0", haproxy: "2.8.5", postgres: 16, mosquitto: "2.0.18", redis: "7.0.15", python: "3.12.3", openssl: "3.0.13", systemd: "255" },
};

export const DISTRIBUTION_NAMES = Object.keys(DISTRIBUTIONS) as Distribution[];

/**
 * The Python NovaCloud needs, and the interpreter uv installs where the system's is older (a
 * minor version: uv takes its newest patch release).
 */
export const PYTHON = { required: "3.12.3", managed: "3.12" } as const;

/** Compares dotted versions numerically: atLeast("1.22.1", "1.19.4") === true. */
export function atLeast(actual: string | number, wanted: string): boolean {
  const a = String(actual).split(".").map(Number);
  const b = wanted.split(".").map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

/** The named gates. Each comment says where the boundary comes from. */
export function capabilities(v: SoftwareVersions) {
  return {
    nginx: {
      // `http2 on;` appeared in 1.25.1, which deprecated `listen ... http2` (ngx_http_v2_module).
      http2Directive: atLeast(v.nginx, "1.25.1"),
      // `ssl_reject_handshake` for the catch-all TLS server appeared in 1.19.4.
      rejectHandshake: atLeast(v.nginx, "1.19.4"),
      // Before 1.23.2 session tickets used a never-rotated key: Mozilla turns them off there.
      sessionTicketsOff: !atLeast(v.nginx, "1.23.2"),
    },
    haproxy: {
      // `http-check send ... hdr Host` exists since 2.2; the header-after-version trick is
      // deprecated in 2.2-2.6 and a fatal error from 2.7 (src/tcpcheck.c).
      httpCheckSend: atLeast(v.haproxy, "2.2"),
    },
    postgres: {
      // wal_keep_segments became wal_keep_size (MB) in 13; 13+ refuses to start with the old one.
      walKeepSize: v.postgres >= 13,
      // max_slot_wal_keep_size caps WAL pinned by replication slots, since 13.
      maxSlotWalKeepSize: v.postgres >= 13,
      // scram-sha-256 became the default password_encryption in 14; set it explicitly before.
      scramDefault: v.postgres >= 14,
      // Since 15 PUBLIC has no CREATE on schema public; the owning role still migrates fine.
      publicSchemaLocked: v.postgres >= 15,
    },
    redis: {
      // A "-" before a bind address (skip it when no interface has it, e.g. IPv6 off) arrived in
      // 6.2 (redis PR #7936); older releases do not know the prefix (Ubuntu 22.04 ships 6.0).
      optionalBind: atLeast(v.redis, "6.2"),
      // `sentinel resolve-hostnames` / `announce-hostnames` exist since 6.2; older Sentinels
      // reject them as unknown options.
      sentinelHostnames: atLeast(v.redis, "6.2"),
    },
    mosquitto: {
      // `mosquitto --test-config` exists only from 2.1.0; before, a config is tested by starting it.
      testConfig: atLeast(v.mosquitto, "2.1.0"),
    },
    openssl: {
      // The hybrid post-quantum group X25519MLKEM768 needs OpenSSL 3.5.
      mlkem: atLeast(v.openssl, "3.5.0"),
    },
    python: {
      // NovaCloud needs Python 3.12.3 or newer; older systems (Debian 12: 3.11) get a
      // uv-managed interpreter in a shared directory (app family).
      systemPythonFits: atLeast(v.python, PYTHON.required),
    },
    systemd: {
      // Type=exec reports exec failures (240+); ProtectClock= and friends need 247+.
      typeExec: atLeast(v.systemd, "240"),
      protectClock: atLeast(v.systemd, "247"),
      // `systemctl kill --kill-whom=` is the spelling of 252 (Debian 12's `systemctl --help` lists
      // only it); 247 rejects it (systemd#29793) and older releases spell it --kill-who=, which
      // getopt_long also accepts as an abbreviation of --kill-whom= where that exists.
      killWhom: atLeast(v.systemd, "252"),
    },
  };
}

export type Capabilities = ReturnType<typeof capabilities>;
