/**
 * The TLS policy every server we configure offers, in one place: Mozilla's "intermediate"
 * configuration (server-side TLS guidelines 6.0, https://ssl-config.mozilla.org/guidelines/6.0.json),
 * and the Strict-Transport-Security value the site sends. nginx and HAProxy read the same lists,
 * so the public endpoints agree whichever host terminates TLS. Also the certbot arguments for
 * the site certificate, shared by the nginx (webroot) and HAProxy (standalone) runbook steps.
 */
import type { Capabilities } from "../model/capabilities.js";
import { mqttTlsHosts, siteTlsHost } from "../model/flows.js";
import type { Model } from "../model/normalize.js";
import { shell } from "../quote.js";

export interface TlsPolicy {
  /** Lowest protocol version offered (nginx: TLSv1.2 TLSv1.3; HAProxy: ssl-min-ver). */
  readonly minVersion: "TLSv1.2";
  readonly protocols: readonly string[];
  /** TLS 1.2 cipher list (OpenSSL names), ECDHE only: the DHE suites left intermediate in 5.8/6.0. */
  readonly ciphers: string;
  /** TLS 1.3 cipher suites. */
  readonly ciphersuites: string;
  /** Key exchange groups: the hybrid post-quantum group first where OpenSSL knows it (3.5+). */
  readonly curves: string;
}

export function mozillaIntermediate(caps: Capabilities): TlsPolicy {
  const curves = ["X25519", "prime256v1", "secp384r1"];
  return {
    minVersion: "TLSv1.2",
    protocols: ["TLSv1.2", "TLSv1.3"],
    ciphers: [
      "ECDHE-ECDSA-AES128-GCM-SHA256",
      "ECDHE-RSA-AES128-GCM-SHA256",
      "ECDHE-ECDSA-AES256-GCM-SHA384",
      "ECDHE-RSA-AES256-GCM-SHA384",
      "ECDHE-ECDSA-CHACHA20-POLY1305",
      "ECDHE-RSA-CHACHA20-POLY1305",
    ].join(":"),
    ciphersuites: ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"].join(":"),
    // NGX-04: X25519MLKEM768 is an unknown group before OpenSSL 3.5 (Debian 12 has 3.0).
    curves: (caps.openssl.mlkem ? ["X25519MLKEM768", ...curves] : curves).join(":"),
  };
}

/** The Strict-Transport-Security header value from model.site.hsts (NGX-04, NGX-13). */
export function hstsValue(model: Model): string {
  const h = model.site.hsts;
  return [`max-age=${h.max_age}`, ...(h.include_subdomains ? ["includeSubDomains"] : []), ...(h.preload ? ["preload"] : [])].join("; ");
}

/** What the operator must forward when the site's HTTP port is not 80 (ACME HTTP-01 validates on port 80), or "". */
export function acmePortNote(model: Model): string {
  return model.site.http_port === 80 ? "" : ` Let's Encrypt validates on port 80: forward it to ${model.site.http_port}.`;
}

/** certbot's account arguments, shared by every certificate the model asks for (never a secret). */
export function certbotAccountFlags(model: Model): string[] {
  const tls = model.site.tls;
  const account = tls.mode === "letsencrypt" && tls.email ? ["--email", shell(tls.email)] : ["--register-unsafely-without-email"];
  return [...account, "--agree-tos", "--non-interactive"];
}

/**
 * The names on the certificate of the host that terminates the site's TLS (the lb, or the one
 * web host): the site's, and mqtt.domain when devices' MQTT over TLS ends on that host too, so
 * one certificate (one lineage, one deploy hook) serves both.
 */
export function siteCertificateNames(model: Model): string[] {
  const tlsHost = siteTlsHost(model);
  const mqttHere = tlsHost !== undefined && mqttTlsHosts(model).some((h) => h.name === tlsHost.name);
  return mqttHere && !model.siteNames.includes(model.mqtt.domain) ? [...model.siteNames, model.mqtt.domain] : [...model.siteNames];
}

/** certbot's arguments for the site certificate's names and the account. */
export function certbotAccount(model: Model): string[] {
  return [...siteCertificateNames(model).flatMap((n) => ["-d", shell(n)]), ...certbotAccountFlags(model)];
}
