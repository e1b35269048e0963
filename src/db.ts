// Connections. Every session dbsync opens pins the settings that change how a
// value is written as text, so that text read on the source parses back to the
// same value on the target, and every connection is watched so that a link that
// hangs (no RST, no FIN: a stuck NAT, a frozen proxy, a dead cable) is noticed in
// bounded time instead of after the kernel's TCP timeouts (minutes to hours).
//
// How a hung link is noticed (DBSYNC_* environment variables, milliseconds unless said):
//  - Connecting: DBSYNC_CONNECT_TIMEOUT_MS (10 s).
//  - A statement in flight on a sidecar connection (DbsyncClient: connect() and
//    pools built from clientConfig) is watched for progress: bytes received,
//    bytes the kernel took, or rows waiting for us to read them. After
//    DBSYNC_QUERY_TIMEOUT_MS (30 s) without any, dbsync looks at the server on a
//    separate short connection (pg_stat_activity of that backend). If the server
//    cannot be reached, or the backend is gone, idle, or blocked sending to us,
//    the link is dead: the connection is closed and the statement fails with
//    SQLSTATE 08006 (transient: the sidecar records it and retries). If the
//    backend is still working (a long sort, a lock wait, a 1,000,000-row batch,
//    a COPY waiting for the other side of a pipeline), it is left alone and
//    checked again later. So no legitimate statement or COPY is ever killed by
//    this watchdog, however long it runs; statement_timeout stays the tool for that.
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
import type { Socket } from "node:net";
import { Client, ClientConfig } from "pg";
import { DbsyncError, isSqlstate, LinkLostError, sqlstateOf } from "./errors";
import { connSettings } from "./conninfo";

/**
 * The settings every session dbsync opens runs with, whatever the server, the
 * database or the role says: they decide how a value is written as text, and
 * (array_nulls, xmloption) how text is read back. Sent at connection start-up
 * (clientConfig's `options` with `pinned`: connect() and the apply pools of
 * links.ts), so that pooled connections have them from their first statement, and
 * a SET by later DDL shows as a change (links.ts). After the conninfo's own
 * options: these win.
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
];

/** The same as SET statements, for sessions dbsync did not open. */
export const PINNED_SETTINGS = PINNED.map(([name, value]) => `set ${name} = '${value}'`).join("; ");

/** `-c name=value` for the start-up packet's options: spaces and backslashes escaped. */
const PINNED_OPTIONS = PINNED.map(([name, value]) => `-c ${name}=${value.replace(/[\\ ]/g, (c) => "\\" + c)}`).join(" ");

export interface ConnectOptions {
  applicationName: string;
  /**
   * Start the session with dbsync's pinned settings (PINNED): for sessions that read
   * or write replicated values as text (readers, targets, verification), and the
   * CLI's (what it prints, e.g. `dbsync schema`'s dates, must not depend on the
   * database's or the role's DateStyle). Not for the
   * job queue, LISTEN or control sessions: graphile-worker's tables have row
   * security policies that row_security = off would turn into errors.
   */
  pinned?: boolean;
  /**
   * search_path = pg_catalog, pg_temp: for sessions that name every object of their
   * own (the job queue, control): a function or aggregate another role made in a
   * schema of the role's search_path (public.jsonb_object_agg(text, boolean)) would
   * otherwise be picked by graphile-worker's SECURITY INVOKER functions, unpinned,
   * and run as the sidecar's role.
   */
  catalogPath?: boolean;
  /** Abort a statement that runs longer (ms, server side); 0 = no limit. */
  statementTimeoutMs?: number;
  /**
   * Silence on a busy connection before its liveness is checked (ms); 0 = never.
   * Default DBSYNC_QUERY_TIMEOUT_MS, or 0 for interactive CLI connections.
   */
  queryTimeoutMs?: number;
}

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

/** Connections a person waits on: their statements may legitimately wait for long. */
const INTERACTIVE = /^dbsync (cli|verify)$/;

/** Extra settings DbsyncClient reads from its config (pg ignores unknown keys). */
interface GuardConfig {
  linkTimeoutMs: number;
  clientCheckIntervalMs: number;
  /** libpq's target_session_attrs, checked once connected. */
  targetSessionAttrs?: string;
}
const GUARD = "dbsyncGuard";

export type DbsyncClientConfig = ClientConfig & { Client: typeof DbsyncClient; [GUARD]: GuardConfig };

/**
 * Settings for a pg Client or Pool. Spread into `new Pool({...})` it also makes the
 * pool use DbsyncClient (the `Client` key); `new Client(config)` ignores that key
 * and gets node-postgres' plain query_timeout instead.
 */
export function clientConfig(conninfo: string | undefined, opts: ConnectOptions): DbsyncClientConfig {
  const s = linkSettings();
  // The conninfo as libpq reads it (src/conninfo.ts), environment and files included.
  const conn = connSettings(conninfo);
  const queryTimeoutMs = opts.queryTimeoutMs ?? (INTERACTIVE.test(opts.applicationName) ? 0 : s.queryTimeoutMs);
  const ka = s.serverKeepalives;
  // Startup `options` reach every kind of client (pg-listen's too). The conninfo's
  // own options (or PGOPTIONS) win over the keepalives; the pinned settings win over both.
  const options = [
    ka && `-c tcp_keepalives_idle=${ka.idle} -c tcp_keepalives_interval=${ka.interval} -c tcp_keepalives_count=${ka.count}`,
    conn.config.options,
    opts.pinned && PINNED_OPTIONS,
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
    [GUARD]: { linkTimeoutMs: queryTimeoutMs, clientCheckIntervalMs: s.clientCheckIntervalMs, targetSessionAttrs: conn.targetSessionAttrs },
  };
}

const END_GRACE_MS = 2000;

/**
 * A pg Client that (1) declares its link dead when a statement makes no progress
 * and the server is not working on it, (2) never hangs in end(), (3) sets the
 * server-side detection settings on connect, and (4) never throws an unhandled
 * "error" event (a failure surfaces in the statement that meets it).
 */
export class DbsyncClient extends Client {
  /** The backend's pid as the server itself reports it (not a pooler's). */
  backendPid?: number;

  constructor(config?: string | ClientConfig) {
    super(config);
    const guard: GuardConfig | undefined = typeof config === "object" ? (config as Partial<DbsyncClientConfig>)[GUARD] : undefined;
    // The watchdog below replaces node-postgres' query_timeout, which would also end
    // a COPY stream after that time, however well it was going.
    (this as unknown as { connectionParameters: { query_timeout: unknown } }).connectionParameters.query_timeout = false;
    this.on("error", () => undefined);
    instrument(this, typeof config === "object" ? config : {}, guard ?? { linkTimeoutMs: linkSettings().queryTimeoutMs, clientCheckIntervalMs: 0 });
  }
}

interface Internals {
  connection?: { stream?: Socket };
  processID?: number | null;
  _ended?: boolean;
}

function socketOf(c: Client): Socket | undefined {
  return (c as unknown as Internals).connection?.stream;
}

function where(config: ClientConfig, c: Client): string {
  const host = c.host || config.host || "?";
  return `${host}${c.port ? ":" + c.port : ""}`;
}

function instrument(client: DbsyncClient, config: ClientConfig, guard: GuardConfig) {
  const origQuery = client.query.bind(client) as (...args: unknown[]) => unknown;
  const origConnect = client.connect.bind(client) as () => Promise<unknown>;
  const origEnd = client.end.bind(client) as () => Promise<void>;
  const timeoutMs = guard.linkTimeoutMs;

  let busy = false;
  let lastMark = "";
  let lastProgress = 0;
  let probing = false;
  let timer: NodeJS.Timeout | undefined;
  /** The last stream-like statement (COPY): to tell "we sent it all" from "we wait for our upstream". */
  let submittable: { writableEnded?: boolean } | undefined;

  const mark = () => {
    const s = socketOf(client);
    if (!s) return "";
    return `${s.bytesRead}/${(s.bytesWritten ?? 0) - s.writableLength}`;
  };
  const idle = () => {
    busy = false;
    submittable = undefined;
    if (timer) clearInterval(timer);
    timer = undefined;
  };
  const begin = () => {
    if (busy || timeoutMs <= 0) return;
    busy = true;
    lastMark = mark();
    lastProgress = Date.now();
    timer = setInterval(() => void check(), Math.max(50, Math.min(1000, Math.floor(timeoutMs / 4))));
    timer.unref();
  };
  client.on("drain", idle);
  client.on("end", idle);

  const kill = (err: Error) => {
    idle();
    const s = socketOf(client);
    if (s && !s.destroyed) s.destroy(err);
  };

  async function check() {
    if (!busy || probing) return;
    const s = socketOf(client);
    if (!s || s.destroyed) return idle();
    const m = mark();
    // Data waiting in the socket for us to read means the link delivers and we are the slow side.
    if (m !== lastMark || s.readableLength > 0) {
      lastMark = m;
      lastProgress = Date.now();
      return;
    }
    const silentMs = Date.now() - lastProgress;
    if (silentMs < timeoutMs) return;
    probing = true;
    try {
      const verdict = await probe(config, client, timeoutMs, submittable?.writableEnded === true, s.writableLength > 0);
      if (!busy || socketOf(client) !== s || s.destroyed) return;
      if (mark() !== lastMark || verdict.alive) {
        lastMark = mark();
        lastProgress = Date.now();
        return;
      }
      kill(
        new LinkLostError(
          `connection to ${where(config, client)} lost: no reply for ${Math.round((Date.now() - lastProgress) / 1000)} s and ${verdict.why}`,
        ),
      );
    } finally {
      probing = false;
    }
  }

  // node-postgres' own words for a statement on a link it lost ("Client has
  // encountered a connection error and is not queryable", "Connection terminated")
  // name no server: dbsync.status must say which link is down.
  const named = (err: unknown): unknown => {
    if (sqlstateOf(err) !== "08006" || err instanceof LinkLostError || !(err instanceof Error)) return err;
    const lost = new LinkLostError(`connection to ${where(config, client)} lost: ${err.message}`);
    return Object.assign(lost, { cause: err });
  };
  (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
    const first = args[0] as { submit?: unknown; writableEnded?: boolean } | undefined;
    if (first && typeof first.submit === "function") submittable = first;
    begin();
    const last = args.length - 1;
    if (typeof args[last] === "function") {
      const callback = args[last] as (err: unknown, res?: unknown) => void;
      args[last] = (err: unknown, res?: unknown) => callback(err ? named(err) : err, res);
      return origQuery(...args);
    }
    const result = origQuery(...args);
    return result instanceof Promise ? result.catch((err: unknown) => Promise.reject(named(err))) : result;
  };

  (client as unknown as { connect: unknown }).connect = (callback?: (err: Error | null, c?: Client) => void) => {
    const p = (async () => {
      try {
        await origConnect();
      } catch (err) {
        throw connectError(config, client, err);
      }
      try {
        await prepareSession(client, guard);
      } catch (err) {
        kill(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
      return client;
    })();
    if (callback) {
      p.then(
        (c) => callback(null, c),
        (e) => callback(e as Error),
      );
      return undefined;
    }
    return p;
  };

  (client as unknown as { end: unknown }).end = (callback?: (err?: Error) => void) => {
    const p = new Promise<void>((resolve) => {
      // Ending sends Terminate and waits for the server to close: on a hung link
      // it never does. Give it a moment, then drop the socket.
      const t = setTimeout(() => socketOf(client)?.destroy(), END_GRACE_MS);
      t.unref();
      const done = () => {
        clearTimeout(t);
        idle();
        resolve();
      };
      origEnd().then(done, done);
    });
    if (callback) {
      void p.then(() => callback());
      return undefined;
    }
    return p;
  };
}

/**
 * A failure to connect that the server did not explain (refused, reset, timed out)
 * names the server, so that dbsync.status says which link is down; SQLSTATE 08001.
 * Errors the server sent (bad password, no such database) pass as they are.
 */
function connectError(config: ClientConfig, client: Client, err: unknown): unknown {
  const e = err as { code?: unknown; message?: string };
  if (isSqlstate(e.code)) return err;
  const reason = e.message ?? String(err);
  // node-postgres' words when the server asks for a password and there is none: a
  // configuration error, not a link that is down (invalid_authorization_specification).
  if (/client password must be a string/.test(reason)) {
    return new DbsyncError(`could not connect to ${where(config, client)}: no password supplied`, {
      sqlstate: "28000",
      hint: "Put it in the password file (~/.pgpass, or PGPASSFILE, or passfile=), or PGPASSWORD, or the conninfo.",
    });
  }
  const wrapped = new LinkLostError(
    `could not connect to ${where(config, client)}: ${reason === "timeout expired" ? `no answer within ${config.connectionTimeoutMillis} ms` : reason}`,
  );
  (wrapped as { code: string }).code = "08001";
  return wrapped;
}

/**
 * Server-side detection of a vanished sidecar, the backend's real pid, and the
 * conninfo's target_session_attrs (one host: libpq then refuses a server that does
 * not match).
 */
async function prepareSession(client: DbsyncClient, guard: GuardConfig) {
  const check = guard.clientCheckIntervalMs;
  const { rows } = await client.query(
    `select pg_backend_pid() as pid,
            case when $1::int > 0 and current_setting('server_version_num')::int >= 140000
                 then set_config('client_connection_check_interval', $1::int::text, false) end as check,
            pg_is_in_recovery() as standby,
            current_setting('default_transaction_read_only')::bool or pg_is_in_recovery() as read_only`,
    [check],
  );
  client.backendPid = rows[0].pid;
  const want = guard.targetSessionAttrs ?? "any";
  const { standby, read_only: readOnly } = rows[0];
  const refused =
    (want === "read-write" && readOnly) ||
    (want === "read-only" && !readOnly) ||
    (want === "primary" && standby) ||
    (want === "standby" && !standby);
  if (refused) {
    throw new DbsyncError(`the server is ${standby ? "a standby" : "a primary"}${readOnly ? " in read-only mode" : ""}, but the conninfo asks for target_session_attrs=${want}`, {
      sqlstate: "08000",
      hint: "Point the conninfo at a server of the kind asked for, or change target_session_attrs.",
    });
  }
}

interface Verdict {
  alive: boolean;
  why: string;
}

/**
 * Is the server still working on this connection's statement? Asked on a new, short
 * connection with the same settings. Unreachable server, missing backend, a backend
 * idle (it answered and we got nothing) or blocked sending to us: dead.
 */
async function probe(config: ClientConfig, client: DbsyncClient, timeoutMs: number, sentAll: boolean, unsent: boolean): Promise<Verdict> {
  const pid = client.backendPid ?? (client as unknown as Internals).processID;
  const limit = Math.max(1000, Math.min(timeoutMs, config.connectionTimeoutMillis || 10_000));
  const p = new Client({
    ...config,
    application_name: "dbsync probe",
    connectionTimeoutMillis: limit,
    query_timeout: limit,
    statement_timeout: limit,
    idle_in_transaction_session_timeout: undefined,
  });
  p.on("error", () => undefined);
  const hardStop = setTimeout(() => socketOf(p)?.destroy(), limit * 2 + 1000);
  hardStop.unref();
  try {
    await p.connect();
    const { rows } = await p.query<{ state: string | null; wait_event_type: string | null; wait_event: string | null }>(
      "select state, wait_event_type, wait_event from pg_stat_activity where pid = $1",
      [pid],
    );
    if (!rows.length) return { alive: false, why: `its server process ${pid} is gone` };
    const { state, wait_event: ev } = rows[0];
    if (state === null || state === "disabled") return { alive: true, why: "the server does not say" };
    if (state !== "active") return { alive: false, why: `its server process ${pid} is ${state}: the reply was lost` };
    if (ev === "ClientWrite") return { alive: false, why: `its server process ${pid} is blocked sending to us` };
    if (ev === "ClientRead" && (sentAll || unsent)) {
      return { alive: false, why: `its server process ${pid} waits for data we sent` };
    }
    return { alive: true, why: "the server is still working" };
  } catch (err) {
    const e = err as { code?: unknown; message?: string };
    // The server answered with an SQL error (too many connections, a permission...):
    // the link works; this check cannot tell more.
    if (isSqlstate(e.code) && e.code.slice(0, 2) !== "08") {
      return { alive: true, why: "the check was refused" };
    }
    return { alive: false, why: `the server cannot be reached (${e.message ?? String(err)})` };
  } finally {
    clearTimeout(hardStop);
    // A probe on a hung link cannot end politely.
    const s = socketOf(p);
    const ended = p.end().catch(() => undefined);
    const t = setTimeout(() => s?.destroy(), END_GRACE_MS);
    t.unref();
    void ended.then(() => clearTimeout(t));
  }
}

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

export { escapeIdentifier as quoteIdent, escapeLiteral as quoteLiteral } from "pg";
