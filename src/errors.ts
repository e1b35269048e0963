// Errors that carry what a DBA needs to act on them. The SQLSTATE classification
// decides whether a failure is worth retrying as-is (a connection or serialization
// problem) or needs a person (a missing table, a constraint). Messages that are one
// line of text (dbsync.status, table_status, verifications, logs) carry their hint
// as "message (hint: ...)": withHint.
import { escapeIdentifier as ident } from "pg";

export class DbsyncError extends Error {
  constructor(
    message: string,
    readonly context: {
      subscription?: string;
      table?: string;
      tick?: number | string;
      sqlstate?: string;
      hint?: string;
      /** The error this one explains (its DETAIL and HINT are kept in reports). */
      cause?: unknown;
    } = {},
  ) {
    super(message);
    this.name = "DbsyncError";
  }
}

/** A connection string dbsync (or libpq) would refuse: invalid_parameter_value, with the keyword meant. */
export class ConninfoError extends DbsyncError {
  constructor(message: string, hint?: string) {
    super(`invalid connection string: ${message}`, { hint, sqlstate: "22023" });
    this.name = "ConninfoError";
  }
}

/** The error of a statement whose link was found dead (src/db/liveness.ts). */
export class LinkLostError extends Error {
  /** connection_failure (08001 when connecting): transient, the sidecar retries. */
  code = "08006";
  constructor(message: string) {
    super(message);
    this.name = "LinkLostError";
  }
}

/** The target's position is not where a batch began: another applier moved it (src/target/progress.ts). */
export class PositionMoved extends Error {}

/** Classes of SQLSTATE that mean "the link or the server", not "the data". */
const TRANSIENT_CLASSES = ["08", "57", "53", "58"];
const TRANSIENT_CODES = new Set(["40001", "40P01", "55P03", "25P03"]);

export function isTransient(sqlstate: string | undefined): boolean {
  if (!sqlstate) return true; // no SQLSTATE: a socket error or a timeout
  return TRANSIENT_CODES.has(sqlstate) || TRANSIENT_CLASSES.includes(sqlstate.slice(0, 2));
}

/**
 * How node-postgres and Node say that a connection broke, when no server was there
 * to send a SQLSTATE: the socket's errno, or pg's own words for a link that ended,
 * timed out or was closed under a query.
 */
const LINK_ERRNOS = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTCONN", "ECONNABORTED"]);
const LINK_MESSAGES = /^(Connection terminated|timeout expired|Query read timeout|Client has encountered a connection error|Client was closed|Connection ended)|socket hang up/;

/**
 * A SQLSTATE, not one of Node's errno names: those are words of capitals, and some
 * are five long (EPIPE), while every SQLSTATE class and subclass has a digit.
 */
export function isSqlstate(code: unknown): code is string {
  return typeof code === "string" && /^(?=.*[0-9])[0-9A-Z]{5}$/.test(code);
}

/**
 * The error's SQLSTATE; a connection that broke without one is connection_failure
 * (08006), so that dbsync.status and the logs say what happened and it is retried.
 */
export function sqlstateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && LINK_ERRNOS.has(code)) return "08006";
  if (isSqlstate(code)) return code;
  return err instanceof Error && LINK_MESSAGES.test(err.message) ? "08006" : undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * dbsync's own advice for target errors whose cause it knows. `table` is the
 * quoted target table when known.
 */
export function knownHint(sqlstate: string | undefined, message: string, table?: string): string | undefined {
  const t = table ?? "the table";
  switch (sqlstate) {
    case "23505":
      return `The target holds a row the source does not have under this unique key, or a unique index the source lacks. ` +
        `Delete or fix the row named in the detail on the target (\`dbsync verify <subscription> ${table ?? "<table>"} --repair\` finds and repairs rows that differ), ` +
        `or drop the extra unique index; the batch is retried by itself.`;
    case "23514":
      if (/no partition of relation/.test(message)) {
        return `The target's partitioned table ${t} has no partition for this row: create it on the target as on the source ` +
          `(dbsync.execute_ddl runs CREATE TABLE ... PARTITION OF on both sides); the batch is retried by itself.`;
      }
      return `A CHECK constraint of the target rejects a row the source accepted: make the target's constraint match the source's.`;
    case "23502":
      return `A column of ${t} is NOT NULL on the target but not on the source (or has no value on the source): make the target's column match the source's.`;
    case "42703":
      return `Add the missing column(s) to ${t} on the target as the source has them (dbsync.execute_ddl makes a schema change on the source and its targets at one point of the stream); ` +
        `a copy or batch that waits for them is retried by itself.`;
    case "42P01":
      return `Create ${t} on the target with the source's columns (\`dbsync schema\` prints the SQL); dbsync does not create tables. ` +
        `A copy or batch that waits for it is retried by itself.`;
    case "22001":
    case "22003":
      return `A column of ${t} is narrower on the target than on the source: give it the source's type.`;
    case "42501":
      return `Grant the sidecar's target role what it needs on ${t} (see README, Security: target).`;
  }
  return undefined;
}

/**
 * The message a DBA reads in dbsync.status: the error's own text, with PostgreSQL's
 * DETAIL and HINT kept (from the error or the error it wraps), and dbsync's hint
 * where it knows the cause, since together they usually say what to do.
 */
export function reportOf(err: unknown): string {
  type PgLike = { detail?: unknown; hint?: unknown };
  const own = err as PgLike;
  const ctx = err instanceof DbsyncError ? err.context : undefined;
  const cause = (ctx?.cause ?? {}) as PgLike;
  const str = (v: unknown) => (typeof v === "string" && v ? v : undefined);
  const detail = str(own?.detail) ?? str(cause.detail);
  const pgHint = err instanceof DbsyncError ? str(cause.hint) : str(own?.hint);
  const message = messageOf(err);
  // dbsync's advice only for errors the target raised on a table (src/target/apply.ts
  // names the table): the same SQLSTATE on the source means something else.
  const ours = ctx?.hint ?? (ctx?.table ? knownHint(ctx.sqlstate ?? sqlstateOf(ctx.cause), message, ctx.table) : undefined);
  const hints = [pgHint, ours].filter((h, i, all) => h && all.indexOf(h) === i);
  return withHint(detail ? `${message} (detail: ${detail})` : message, hints.join(" "));
}

/** The hint an error carries: dbsync's own, else PostgreSQL's. */
export function hintOf(err: unknown): string | undefined {
  const hint = err instanceof DbsyncError ? err.context.hint : (err as { hint?: unknown } | undefined)?.hint;
  return typeof hint === "string" && hint ? hint : undefined;
}

/** A one-line message with its hint, as dbsync writes them everywhere. */
export function withHint(message: string, hint: string | undefined): string {
  return hint ? `${message} (hint: ${hint})` : message;
}

/**
 * The target has no table `table` (quoted) to take the source's rows: the same
 * message, SQLSTATE and hint whether the copy's check (src/target/tables.ts), a
 * batch (PostgreSQL's error, `cause`) or a verification found it.
 */
export function targetTableMissing(table: string, cause?: unknown): DbsyncError {
  const message = `target table ${table} does not exist${cause ? ` (${messageOf(cause)})` : ""}`;
  return new DbsyncError(message, { table, sqlstate: "42P01", hint: knownHint("42P01", message, table), cause });
}

/**
 * Columns the source computes (generated) that the target holds as plain columns:
 * dbsync sends no value for them, so they would stay as the target has them.
 */
export function targetColumnsNotGenerated(table: string, columns: string[]): DbsyncError {
  return new DbsyncError(
    `target table ${table} has column(s) ${columns.map((c) => ident(c)).join(", ")} that the source generates, as plain columns: ` +
      "dbsync does not send generated columns' values (each server computes them), so they would keep the target's",
    {
      table,
      hint: `Make them generated on the target with the source's expression (\`dbsync schema\` prints it), or drop them there; ` +
        "the batch is retried by itself.",
    },
  );
}

/**
 * The target table lacks columns the source has: `columns` names them where dbsync
 * looked (src/target/tables.ts); a batch knows only PostgreSQL's error, `cause`.
 */
export function targetColumnsMissing(table: string, columns: string[] | undefined, cause?: unknown): DbsyncError {
  const which = columns?.length ? `column(s) ${columns.map((c) => ident(c)).join(", ")} that the source has` : "a column the source has";
  const message = `target table ${table} lacks ${which}${cause ? ` (${messageOf(cause)})` : ""}`;
  return new DbsyncError(message, { table, sqlstate: "42703", hint: knownHint("42703", message, table), cause });
}
