// Connections. Every session dbsync opens can pin the settings that change how a
// value is written as text (settings.ts PINNED), and every connection is bounded
// so that a link that hangs is noticed in bounded time. The DBSYNC_* environment
// variables (milliseconds unless said; settings.ts linkSettings):
//  - Connecting: DBSYNC_CONNECT_TIMEOUT_MS (10 s).
//  - A statement in flight on a sidecar connection (DbsyncClient: connect() and
//    pools built from clientConfig) is watched for progress (liveness.ts): after
//    DBSYNC_QUERY_TIMEOUT_MS (30 s) without any, the server is asked whether it is
//    still working on it.
//  - Plain pg clients built from clientConfig (pg-listen's LISTEN connection and
//    its periodic check, /readyz) get node-postgres' own query_timeout with the
//    same value: they only run short statements. Interactive CLI connections
//    ("dbsync cli", "dbsync verify") get none: `dbsync wait` may wait for long.
//  - Closing never hangs: end() destroys the socket after a short grace.
//  - Server side, each session asks the server to notice a vanished sidecar:
//    TCP keepalives (DBSYNC_SERVER_KEEPALIVES, "idle,interval,count" in seconds,
//    default "30,10,3", "off" to leave the server's) so that a backend holding
//    dbsync's locks dies within about a minute of losing us, and (PostgreSQL 14+)
//    client_connection_check_interval (DBSYNC_CLIENT_CHECK_INTERVAL_MS, 10 s) so that
//    a statement we gave up on is cancelled instead of running on.
//  - idle_in_transaction_session_timeout (DBSYNC_IDLE_IN_TRANSACTION_TIMEOUT_MS,
//    60 s) ends a transaction whose sidecar stopped talking, releasing its locks.
//  - Client TCP keepalives start after DBSYNC_KEEPALIVE_IDLE_MS (10 s).
import { Client } from "pg";
import { connSettings } from "../conninfo";
import { DbsyncClient, DbsyncClientConfig, GUARD } from "./client";
import { END_GRACE_MS, socketOf } from "./liveness";
import { CATALOG_FIRST_OPTIONS, PINNED_OPTIONS, VALUE_OPTIONS, linkSettings } from "./settings";

export interface ConnectOptions {
  applicationName: string;
  /**
   * Start the session with dbsync's pinned settings (PINNED), pg_catalog first in its
   * search_path unless the conninfo gives one (CATALOG_FIRST_OPTIONS): for sessions that read
   * or write replicated values as text (readers, targets, verification), and the
   * CLI's (what it prints, e.g. `dbsync schema`'s dates, must not depend on the
   * database's or the role's DateStyle). Not for the job queue, LISTEN or control
   * sessions: graphile-worker's tables have row security policies that
   * row_security = off would turn into errors. Those get the rest of PINNED
   * (VALUE_OPTIONS): they read dbsync's own numbers and times as text.
   */
  pinned?: boolean;
  /**
   * search_path = pg_catalog, pg_temp: for sessions that name every object of their
   * own (the job queue, control): a function or aggregate another role made in a
   * schema of the role's search_path (public.jsonb_object_agg(text, boolean)) would
   * otherwise be picked by graphile-worker's SECURITY INVOKER functions, unpinned,
   * and run as the sidecar's role. And for sessions that print replicated values
   * (source readers, verification): a reg* value's text then names its schema, so
   * that a target whose search_path finds another object of that name first (a
   * schema named after its role, "$user") reads the source's.
   */
  catalogPath?: boolean;
  /**
   * The conninfo was given by a role other than the dbsync owner
   * (dbsync.subscriptions.conninfo_by_owner): its own password only, to a server that
   * asks for it (src/conninfo.ts, ownPasswordOnly).
   */
  ownPassword?: boolean;
  /** Abort a statement that runs longer (ms, server side); 0 = no limit. */
  statementTimeoutMs?: number;
  /**
   * Silence on a busy connection before its liveness is checked (ms); 0 = never.
   * Default DBSYNC_QUERY_TIMEOUT_MS, or 0 for interactive CLI connections.
   */
  queryTimeoutMs?: number;
}

/** Connections a person waits on: their statements may legitimately wait for long. */
const INTERACTIVE = /^dbsync (cli|verify)$/;

/**
 * Settings for a pg Client or Pool. Spread into `new Pool({...})` it also makes the
 * pool use DbsyncClient (the `Client` key); `new Client(config)` ignores that key
 * and gets node-postgres' plain query_timeout instead.
 */
export function clientConfig(conninfo: string | undefined, opts: ConnectOptions): DbsyncClientConfig {
  const s = linkSettings();
  // The conninfo as libpq reads it (src/conninfo.ts), environment and files included.
  const conn = connSettings(conninfo, process.env, opts.ownPassword);
  const queryTimeoutMs = opts.queryTimeoutMs ?? (INTERACTIVE.test(opts.applicationName) ? 0 : s.queryTimeoutMs);
  const ka = s.serverKeepalives;
  // Startup `options` reach every kind of client (pg-listen's too). The conninfo's
  // own options (or PGOPTIONS) win over the keepalives, the timeouts and the pinned
  // search_path; the other pinned settings win over all of them. The timeouts: a
  // database's statement_timeout or lock_timeout (ALTER DATABASE ... SET) applied to
  // every statement of the sidecar, and a copy longer than it never finished;
  // node-postgres sends no statement_timeout of 0, and its own (statement_timeout
  // below, when not 0) wins over these. (idle_session_timeout and transaction_timeout:
  // src/db/client.ts, prepareSession.)
  const options = [
    ka && `-c tcp_keepalives_idle=${ka.idle} -c tcp_keepalives_interval=${ka.interval} -c tcp_keepalives_count=${ka.count}`,
    "-c statement_timeout=0 -c lock_timeout=0",
    opts.pinned && !opts.catalogPath && CATALOG_FIRST_OPTIONS,
    conn.config.options,
    opts.pinned ? PINNED_OPTIONS : VALUE_OPTIONS,
    opts.catalogPath && "-c search_path=pg_catalog,pg_temp",
  ]
    .filter(Boolean)
    .join(" ");
  return {
    // dbsync's name for the session, unless the conninfo names it (libpq: the
    // program's name is the fallback); connect_timeout too.
    application_name: opts.applicationName,
    connectionTimeoutMillis: s.connectTimeoutMs,
    ...conn.config,
    keepAlive: conn.keepAlive,
    keepAliveInitialDelayMillis: conn.keepAliveIdleMs ?? s.keepAliveIdleMs,
    statement_timeout: opts.statementTimeoutMs ?? 0,
    idle_in_transaction_session_timeout: s.idleInTransactionTimeoutMs,
    ...(options ? { options } : {}),
    ...(queryTimeoutMs > 0 ? { query_timeout: queryTimeoutMs } : {}),
    Client: DbsyncClient,
    [GUARD]: { linkTimeoutMs: queryTimeoutMs, clientCheckIntervalMs: s.clientCheckIntervalMs, targetSessionAttrs: conn.targetSessionAttrs, passwordRequired: conn.passwordRequired },
  };
}

/** A DbsyncClient with the pinned settings, connected. */
export async function connect(conninfo: string | undefined, opts: ConnectOptions): Promise<Client> {
  const client = new DbsyncClient(clientConfig(conninfo, { ...opts, pinned: true }));
  // An error on an idle client (server gone) must not crash the process; the next
  // query on it fails and the caller reconnects. (DbsyncClient also guards this.)
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

export async function closeQuietly(client: Client | undefined) {
  if (!client) return;
  const ending = client.end().catch(() => undefined);
  // Plain pg clients do not bound end(): on a hung link it would wait for ever.
  const t = setTimeout(() => socketOf(client)?.destroy(), END_GRACE_MS + 500);
  t.unref();
  await ending;
  clearTimeout(t);
}
