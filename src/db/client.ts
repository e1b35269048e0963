// The pg Client every sidecar connection is (connect() and pools built from
// clientConfig): watched for a hung link (liveness.ts), its errors naming the
// server, its session prepared on connect, and its end() bounded.
import { Client, ClientConfig } from "pg";
import { DbsyncError, LinkLostError, isSqlstate, sqlstateOf } from "../errors";
import { END_GRACE_MS, socketOf, watchLink, where } from "./liveness";
import { linkSettings } from "./settings";

/** Extra settings DbsyncClient reads from its config (pg ignores unknown keys). */
export interface GuardConfig {
  linkTimeoutMs: number;
  clientCheckIntervalMs: number;
  /** libpq's target_session_attrs, checked once connected. */
  targetSessionAttrs?: string;
  /** Refuse a server that let the client in without asking for its password (src/conninfo.ts, ownPasswordOnly). */
  passwordRequired?: boolean;
}
export const GUARD = "dbsyncGuard";

export type DbsyncClientConfig = ClientConfig & { Client: typeof DbsyncClient; [GUARD]: GuardConfig };

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
    // The watchdog replaces node-postgres' query_timeout, which would also end
    // a COPY stream after that time, however well it was going.
    (this as unknown as { connectionParameters: { query_timeout: unknown } }).connectionParameters.query_timeout = false;
    this.on("error", () => undefined);
    instrument(this, typeof config === "object" ? config : {}, guard ?? { linkTimeoutMs: linkSettings().queryTimeoutMs, clientCheckIntervalMs: 0 });
  }
}

function instrument(client: DbsyncClient, config: ClientConfig, guard: GuardConfig) {
  const origQuery = client.query.bind(client) as (...args: unknown[]) => unknown;
  const origConnect = client.connect.bind(client) as () => Promise<unknown>;
  const origEnd = client.end.bind(client) as () => Promise<void>;
  const watchdog = watchLink(client, config, guard.linkTimeoutMs);
  // node-postgres' Connection emits these when the server asks for a password.
  let passwordAsked = false;
  const connection = (client as unknown as { connection: NodeJS.EventEmitter }).connection;
  for (const m of ["authenticationCleartextPassword", "authenticationMD5Password", "authenticationSASL"]) connection.once(m, () => (passwordAsked = true));

  // node-postgres' own words for a statement on a link it lost ("Client has
  // encountered a connection error and is not queryable", "Connection terminated")
  // name no server: dbsync.status must say which link is down.
  const named = (err: unknown): unknown => {
    if (sqlstateOf(err) !== "08006" || err instanceof LinkLostError || !(err instanceof Error)) return err;
    const lost = new LinkLostError(`connection to ${where(config, client)} lost: ${err.message}`);
    return Object.assign(lost, { cause: err });
  };
  (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
    watchdog.busy(args[0]);
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
        if (guard.passwordRequired && !passwordAsked) {
          throw new DbsyncError(`${where(config, client)} did not ask for the password the conninfo gives`, {
            sqlstate: "28000",
            hint: "A target conninfo given by a role other than the dbsync owner is used only with its own password, on a server that asks for it (not trust, peer or a certificate); or the dbsync owner adds the subscription.",
          });
        }
        await prepareSession(client, guard);
      } catch (err) {
        watchdog.kill(err instanceof Error ? err : new Error(String(err)));
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
        watchdog.idle();
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
 * Server-side detection of a vanished sidecar, the backend's real pid, no
 * idle_session_timeout (PostgreSQL 14; a database's ended the pooled sessions
 * waiting between batches) nor transaction_timeout (17; would end a long copy): a
 * start-up option would be refused by older servers (connect.ts sets the other
 * timeouts), and the conninfo's target_session_attrs (one host: libpq then refuses a
 * server that does not match).
 */
/** The settings prepareSession sets for the session: a pooled connection's check (src/apply/links.ts) does not take them for a change. */
export const SET_AT_CONNECT = ["client_connection_check_interval", "idle_session_timeout", "transaction_timeout"] as const;

async function prepareSession(client: DbsyncClient, guard: GuardConfig) {
  const check = guard.clientCheckIntervalMs;
  const { rows } = await client.query(
    `select pg_backend_pid() as pid,
            case when $1::int > 0 and current_setting('server_version_num')::int >= 140000
                 then set_config('client_connection_check_interval', $1::int::text, false) end as check,
            case when current_setting('server_version_num')::int >= 140000
                 then set_config('idle_session_timeout', '0', false) end as idle_session_timeout,
            case when current_setting('server_version_num')::int >= 170000
                 then set_config('transaction_timeout', '0', false) end as transaction_timeout,
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
