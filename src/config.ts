import { DbsyncError } from "./errors";

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
 * A positive whole number from environment variable `name` (tests set such limits
 * smaller than a run's), `fallback` when it is unset or empty; `unit` and `hint`
 * for the error when it is anything else.
 */
export function positiveEnv(env: NodeJS.ProcessEnv, name: string, unit: string, fallback: number, hint: string): number {
  const v = env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new DbsyncError(`${name} must be a positive whole number of ${unit}, got "${v}"`, { hint });
  return n;
}
