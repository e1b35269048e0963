// The settings dbsync's sessions run with: the pinned ones that decide how a value
// is written and read as text (so that text read on the source parses back to the
// same value on the target), and the link timeouts and keepalives the environment
// sets (DBSYNC_*, milliseconds unless said; what each one bounds: connect.ts).

/**
 * The settings every session dbsync opens runs with, whatever the server, the
 * database or the role says: they decide how a value is written as text, and
 * (array_nulls, xmloption) how text is read back; and the default isolation. Sent
 * at connection start-up (clientConfig's `options`: all of them with `pinned`, for connect() and the apply
 * pools of links.ts; all but row_security otherwise, VALUE_OPTIONS), so that pooled
 * connections have them from their first statement, and a SET by later DDL shows as
 * a change (links.ts). After the conninfo's own options: these win.
 */
export const PINNED: readonly (readonly [string, string])[] = [
  ["datestyle", "ISO, YMD"],
  ["intervalstyle", "postgres"],
  ["timezone", "UTC"],
  ["extra_float_digits", "3"],
  ["bytea_output", "hex"],
  ["lc_monetary", "C"],
  // Read side: array_nulls = off would make a NULL array element the string 'NULL';
  // xmloption = document would refuse XML content that is not a document.
  ["array_nulls", "on"],
  ["xmloption", "content"],
  // A row security policy is a table owner's code: never run it as the sidecar's
  // role, and never let it hide rows silently (an error says what is wrong).
  ["row_security", "off"],
  // The isolation dbsync's statements are written for, where they do not name one:
  // a database's default_transaction_isolation = repeatable read stopped the poll
  // and the queue upkeep (they need READ COMMITTED) and `dbsync wait`, with nothing
  // in dbsync.status.
  ["default_transaction_isolation", "read committed"],
];

/**
 * Back to the values of the session's start-up, in a session opened with them
 * (PINNED_OPTIONS): a SET would leave them set by the session, which the check of a
 * pooled connection given back (links.ts) takes for a change.
 */
export const PINNED_RESET = PINNED.map(([name]) => `reset ${name}`).join("; ");

/** The same as SET statements, for sessions dbsync did not open. */
export const PINNED_SETTINGS = PINNED.map(([name, value]) => `set ${name} = '${value}'`).join("; ");

/** `-c name=value` for the start-up packet's options: spaces and backslashes escaped. */
const startupOptions = (settings: readonly (readonly [string, string])[]) =>
  settings.map(([name, value]) => `-c ${name}=${value.replace(/[\\ ]/g, (c) => "\\" + c)}`).join(" ");

/** PINNED, as start-up options: sessions that read or write replicated values. */
export const PINNED_OPTIONS = startupOptions(PINNED);

/**
 * PINNED but row_security, as start-up options: every other session (the job queue,
 * LISTEN, control, migrate), whose values are dbsync's own. Those read tick keys
 * too (begin_batch, on a control session), and a number's text must not follow the
 * database's or the role's settings: the source's extra_float_digits = 0 rounded a
 * 16-digit key read as float8 there. row_security stays the server's: graphile-worker's
 * tables have policies that row_security = off would turn into errors.
 */
export const VALUE_OPTIONS = startupOptions(PINNED.filter(([name]) => name !== "row_security"));

/**
 * The search_path of pinned sessions that do not print replicated values (the target
 * sessions; readers and verification have pg_catalog, pg_temp: connect.ts
 * catalogPath), unless the conninfo's own options give one: PostgreSQL's default with pg_catalog named
 * first. The path a database or role sets otherwise applies, and a database's owner
 * may set one with public before pg_catalog: a public.now() or an operator
 * public.= (uuid, uuid) of theirs would then be picked, as the sidecar's role, by
 * every statement of dbsync's that names a built-in without its schema (and by
 * dbsync.applied's defaults, bound when the target's first connect creates it).
 */
export const CATALOG_FIRST_OPTIONS = '-c search_path=pg_catalog,"$user",public';

/**
 * In a transaction: its commit waits for its WAL flush, also where the server, the
 * database or the role runs with synchronous_commit = off (a DBA's choice for the
 * application's writes). A stricter setting (a synchronous standby's) is left as is.
 */
export const DURABLE_COMMIT =
  "select pg_catalog.set_config('synchronous_commit', 'local', true) where pg_catalog.current_setting('synchronous_commit') = 'off'";

/** Connection timeouts and keepalives, from the environment (read on each call). */
export interface LinkSettings {
  connectTimeoutMs: number;
  queryTimeoutMs: number;
  keepAliveIdleMs: number;
  idleInTransactionTimeoutMs: number;
  /** Server-side TCP keepalives in seconds, or null to leave the server's defaults. */
  serverKeepalives: { idle: number; interval: number; count: number } | null;
  clientCheckIntervalMs: number;
}

export function linkSettings(env: NodeJS.ProcessEnv = process.env): LinkSettings {
  const ms = (name: string, dflt: number) => {
    const v = env[name];
    if (v === undefined || v === "") return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number of milliseconds >= 0, got "${v}"`);
    return Math.floor(n);
  };
  let serverKeepalives: LinkSettings["serverKeepalives"] = { idle: 30, interval: 10, count: 3 };
  const ka = env.DBSYNC_SERVER_KEEPALIVES;
  if (ka !== undefined && ka !== "") {
    if (/^(off|0|false|no)$/i.test(ka)) serverKeepalives = null;
    else {
      const parts = ka.split(",").map((p) => Number(p.trim()));
      if (parts.length !== 3 || parts.some((p) => !Number.isInteger(p) || p <= 0)) {
        throw new Error(`DBSYNC_SERVER_KEEPALIVES must be "idle,interval,count" in seconds or "off", got "${ka}"`);
      }
      serverKeepalives = { idle: parts[0], interval: parts[1], count: parts[2] };
    }
  }
  return {
    connectTimeoutMs: ms("DBSYNC_CONNECT_TIMEOUT_MS", 10_000),
    queryTimeoutMs: ms("DBSYNC_QUERY_TIMEOUT_MS", 30_000),
    keepAliveIdleMs: ms("DBSYNC_KEEPALIVE_IDLE_MS", 10_000),
    idleInTransactionTimeoutMs: ms("DBSYNC_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000),
    serverKeepalives,
    clientCheckIntervalMs: ms("DBSYNC_CLIENT_CHECK_INTERVAL_MS", 10_000),
  };
}
