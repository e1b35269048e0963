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
