/** nginx in tests: a minimal main file standing in for Debian's /etc/nginx/nginx.conf. */
import { join } from "node:path";

/**
 * pid, logs and temp paths under `dir` (which must have logs/ and tmp/), mime types as on
 * Debian, and `include` (a file or a glob) inside http{}, where Debian includes sites-enabled/*.
 */
export function nginxMainConf(dir: string, include: string, options: { daemonOff?: boolean } = {}): string {
  return [
    ...(options.daemonOff ? ["daemon off;"] : []),
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "logs/error.log")};`,
    "events {}",
    "http {",
    "    include /etc/nginx/mime.types;",
    `    access_log ${join(dir, "logs/access.log")};`,
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `    ${t}_temp_path ${join(dir, "tmp", t)};`),
    `    include ${include};`,
    "}",
    "",
  ].join("\n");
}
