// Errors that carry what a DBA needs to act on them. The SQLSTATE classification
// decides whether a failure is worth retrying as-is (a connection or serialization
// problem) or needs a person (a missing table, a constraint).

export class DbsyncError extends Error {
  constructor(
    message: string,
    readonly context: {
      subscription?: string;
      table?: string;
      tick?: number | string;
      sqlstate?: string;
      hint?: string;
    } = {},
  ) {
    super(message);
    this.name = "DbsyncError";
  }
}

/** Classes of SQLSTATE that mean "the link or the server", not "the data". */
const TRANSIENT_CLASSES = ["08", "57", "53", "58"];
const TRANSIENT_CODES = new Set(["40001", "40P01", "55P03", "25P03"]);

export function isTransient(sqlstate: string | undefined): boolean {
  if (!sqlstate) return true; // no SQLSTATE: a socket error or a timeout
  return TRANSIENT_CODES.has(sqlstate) || TRANSIENT_CLASSES.includes(sqlstate.slice(0, 2));
}

export function sqlstateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The message a DBA reads in dbsync.status: the error's own text, with PostgreSQL's
 * DETAIL and HINT (or dbsync's hint) kept, since they usually say what to do.
 */
export function reportOf(err: unknown): string {
  const e = err as { detail?: unknown; hint?: unknown; context?: { hint?: string } };
  const hint = err instanceof DbsyncError ? err.context.hint : typeof e?.hint === "string" ? e.hint : undefined;
  const detail = typeof e?.detail === "string" ? e.detail : undefined;
  let message = messageOf(err);
  if (detail) message += ` (detail: ${detail})`;
  if (hint) message += ` (hint: ${hint})`;
  return message;
}
