// Where the source is: --source, else DBSYNC_SOURCE_URL, else DATABASE_URL, else
// libpq's defaults (PGHOST, PGUSER, PGPASSFILE ...), which `pg` reads itself.
export function resolveSourceUrl(flag?: string): string | undefined {
  return flag || process.env.DBSYNC_SOURCE_URL || process.env.DATABASE_URL || undefined;
}

/** A conninfo or URL with any password replaced, fit for logs and errors. */
export function redact(conninfo: string): string {
  return conninfo
    .replace(/(:\/\/[^:/@]*:)[^@]*@/, "$1***@")
    .replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, "$1***");
}

/**
 * libpq accepts `host=h dbname=app sslmode=verify-full` as well as URLs; node-postgres
 * only URLs. A keyword/value conninfo becomes the equivalent URL (values may be
 * single-quoted with backslash escapes, as in libpq). The input is never echoed in
 * errors: it may hold a password.
 */
export function toConnectionString(conninfo: string): string {
  if (/^postgres(ql)?:\/\//i.test(conninfo) || conninfo.startsWith("/") || !conninfo.includes("=")) return conninfo;
  const params = new URLSearchParams();
  let dbname = "";
  const pair = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)*))\s*/y;
  let at = 0;
  for (let m = pair.exec(conninfo); m && m[0].length; m = pair.exec(conninfo)) {
    const value = (m[2] ?? m[3] ?? "").replace(/\\(.)/g, "$1");
    if (m[1] === "dbname") dbname = value;
    else params.append(m[1], value);
    at = pair.lastIndex;
  }
  if (conninfo.slice(at).trim()) {
    throw new Error(`invalid connection string: expected keyword=value pairs at offset ${at}`);
  }
  return `postgres:///${encodeURIComponent(dbname)}?${params}`;
}
