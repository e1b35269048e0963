// The connections a process applies with, shared by all its subscriptions, so that
// their number follows --concurrency, not the number of subscriptions. A
// subscription takes a source reader and a target connection when its apply loop
// starts and gives them back when it has caught up (or fails: then they are
// closed); an idle subscription holds neither. Target connections are pooled per
// conninfo: the subscriptions of one target server and database share them, and
// whatever a target session keeps between batches (stage tables, replica mode, the
// sequences pushed: TargetState) stays with its connection. Connections idle for
// IDLE_MS (src/db/pool.ts) are closed. A connection given back is checked first (sessionCheck): one
// left in a transaction, under another role or with a session setting changed (by
// DDL from execute_ddl, say `set session_replication_role = origin` or a
// search_path) is closed, not handed to the next subscription, whose batches would
// run under it without an error. Its settings are looked at only after a lease that
// ran someone else's code (see release). A big batch reads with more than its one reader
// (src/target/readers.ts) only from readers free at that moment (spareReaders): so a
// process holds at most --concurrency source readers in all, and an applier never
// waits for a second one while holding its first (every applier doing so at once
// with the pool full would wait for ever).
import { Pool, PoolClient, escapeLiteral } from "pg";
import { SET_AT_CONNECT } from "../db/client";
import { clientConfig } from "../db/connect";
import { newPool } from "../db/pool";
import { Log } from "../log";
import { TargetState } from "../target/apply";
import { ensureTargetSchema, enterReplicaMode } from "../target/progress";
import { SequenceSync } from "../target/sequences";
import { StageTables } from "../target/stage";
import { StraightCopies } from "../target/straight-copies";

const READER_NAME = "dbsync read";
const TARGET_NAME = "dbsync apply";

export interface LinkOptions {
  sourceUrl: string | undefined;
  /** Subscriptions applying at once: each holds one source reader and one target connection. */
  concurrency: number;
  statementTimeoutMs: number;
  log: Log;
}

/**
 * Names it back to its pool's name (`name`; null: the conninfo's own name) and
 * lists what differs from a fresh connection of the pool: an open transaction, a
 * role set, an advisory lock (a subscription's apply lock) held, replica mode lost
 * on a target, and with `settings` a setting changed for the session (SET LOCAL ends
 * with its transaction; SET_AT_CONNECT are set at connect, src/db/client.ts): the pg_settings view builds a row for every setting, 1.9 ms of
 * the backend's CPU against 0.2 for the rest (bench/HISTORY.md). One simple-protocol
 * statement: its implicit transaction starts with it, so its transaction_timestamp()
 * equals its statement_timestamp() unless a transaction was open before (the
 * extended protocol's messages each move the latter).
 */
function sessionCheck(name: string | null, replica: boolean, settings: boolean): string {
  const appName = name === null ? "pg_catalog.current_setting('application_name')" : escapeLiteral(name);
  return `
  select pg_catalog.set_config('application_name', ${appName}, false),
         pg_catalog.array_remove(array[
           case when pg_catalog.statement_timestamp() <> pg_catalog.transaction_timestamp() then 'a transaction left open' end,
           case when current_user <> session_user then pg_catalog.format('role %s set', current_user) end,
           case when exists (select from pg_catalog.pg_locks l where l.pid = pg_catalog.pg_backend_pid() and l.locktype = 'advisory')
                then 'an advisory lock held' end,
           case when ${replica} and pg_catalog.current_setting('session_replication_role') <> 'replica'
                then 'session_replication_role ' || pg_catalog.current_setting('session_replication_role') end
         ]${settings ? ` || array(select pg_catalog.format('%s = %s', s.name, s.setting) from pg_catalog.pg_settings s
                     where s.source = 'session' and s.name not in ('application_name', ${SET_AT_CONNECT.map((n) => escapeLiteral(n)).join(", ")})
                       and not (${replica} and s.name = 'session_replication_role'))` : ""}, null) as changes`;
}
interface Named {
  pool: Pool;
  /** A target's: replica mode is part of its sessions' state. */
  replica: boolean;
  /** The conninfo names none: the session is named after the subscription it serves. */
  rename: string | null;
  /** A target's: which tables' new rows are worth a straight COPY. */
  straight: StraightCopies;
}

export class Links {
  private readonly source: Named;
  private readonly targets = new Map<string, Named>();
  private readonly states = new WeakMap<PoolClient, TargetState>();
  private readonly owners = new WeakMap<PoolClient, Named>();
  /** Target connections whose session was set up in this lease (ensureTargetSchema's DDL may fire the target's event triggers). */
  private readonly setUp = new WeakSet<PoolClient>();

  constructor(private readonly opts: LinkOptions) {
    this.source = this.pool(opts.sourceUrl, READER_NAME, false);
  }

  private pool(conninfo: string | undefined, name: string, replica: boolean, ownPassword = false): Named {
    // A source reader prints values with only pg_catalog on its search_path: the
    // text of a reg* value names its object's schema then, and a target whose
    // search_path finds another object by that name first reads the same one.
    const config = clientConfig(conninfo, {
      applicationName: name,
      statementTimeoutMs: this.opts.statementTimeoutMs,
      pinned: true,
      catalogPath: !replica,
      ownPassword,
    });
    const pool = newPool({ ...config, max: this.opts.concurrency });
    // A pooled connection that dies while idle is dropped by the pool; the next
    // statement on a leased one fails and the session closes it.
    pool.on("error", () => undefined);
    return { pool, replica, rename: config.application_name === name ? name : null, straight: new StraightCopies() };
  }

  /** A source connection for a subscription's reader, named after it. */
  async reader(subscription: string): Promise<PoolClient> {
    return this.lease(this.source, subscription);
  }

  /** Source readers that could be leased now without waiting: none while a lease waits for one. */
  spareReaders(): number {
    const { pool } = this.source;
    if (pool.waitingCount) return 0;
    return pool.idleCount + this.opts.concurrency - pool.totalCount;
  }

  /**
   * Up to `n` more source readers for a big batch of `subscription`, as many as
   * are free now (spareReaders), never waiting for one; given back by release.
   */
  async spareReader(subscription: string, n: number): Promise<PoolClient[]> {
    const leases = await Promise.allSettled(Array.from({ length: Math.min(n, this.spareReaders()) }, () => this.reader(subscription)));
    const got = leases.flatMap((l) => (l.status === "fulfilled" ? [l.value] : []));
    const failed = leases.find((l) => l.status === "rejected");
    if (!failed) return got;
    for (const c of got) this.release(c);
    throw failed.reason;
  }

  /**
   * A target connection for `conninfo`, with dbsync's tables there and replica mode
   * on, and the state its batches keep on it. `byOwner`: the dbsync owner gave the
   * conninfo (dbsync.subscriptions.conninfo_by_owner), else its own password only.
   */
  async target(conninfo: string, subscription: string, byOwner = true): Promise<{ client: PoolClient; state: TargetState }> {
    const key = `${byOwner}:${conninfo}`;
    let named = this.targets.get(key);
    if (!named) {
      named = this.pool(conninfo, TARGET_NAME, true, !byOwner);
      this.targets.set(key, named);
    }
    const client = await this.lease(named, subscription);
    let state = this.states.get(client);
    if (!state) {
      try {
        await ensureTargetSchema(client);
        await enterReplicaMode(client);
      } catch (err) {
        this.release(client, true);
        throw err;
      }
      state = { stages: new StageTables(), sequences: new SequenceSync(), straight: named.straight };
      this.states.set(client, state);
      this.setUp.add(client);
    }
    return { client, state };
  }

  private async lease(named: Named, subscription: string): Promise<PoolClient> {
    const client = await named.pool.connect();
    this.owners.set(client, named);
    if (named.rename) {
      try {
        await client.query("select pg_catalog.set_config('application_name', $1, false)", [`${named.rename} ${subscription}`.slice(0, 63)]);
      } catch (err) {
        this.release(client, true);
        throw err;
      }
    }
    return client;
  }

  /**
   * Back to its pool, its name back to the pool's, once sessionCheck found it as
   * the pool gave it out; otherwise, or when `broken` (after an error its
   * session's state is unknown), closed. `ownCode`: the lease ran dbsync's own
   * statements only (the subscription and its lock, the target's position, no
   * batch read or applied), which set nothing for the session: its settings are
   * not looked at. A batch runs others' code: a reader's the output functions of
   * the tables' types, a target's execute_ddl's DDL, the columns' defaults and
   * checks, ENABLE ALWAYS triggers. In bench:scale's rounds such leases are more
   * than half (a subscription woken again after its batch, moved to the tick its
   * group's other subscription took).
   */
  release(client: PoolClient, broken = false, ownCode = false): void {
    const named = this.owners.get(client);
    if (broken || !named) {
      client.release(broken || undefined);
      return;
    }
    const settings = !ownCode || this.setUp.has(client);
    this.setUp.delete(client);
    client.query<{ changes: string[] }>(sessionCheck(named.rename, named.replica, settings)).then(
      ({ rows }) => {
        const changes = rows[0].changes;
        if (!changes.length) return client.release();
        this.opts.log.warn(
          { changes, hint: "DDL for execute_ddl must not change the session (SET LOCAL lasts until its batch commits)" },
          "a connection came back with its session changed; closed",
        );
        client.release(new Error(`session changed: ${changes.join(", ")}`));
      },
      (err: Error) => client.release(err),
    );
  }

  async close(): Promise<void> {
    const pools = [this.source, ...this.targets.values()].map((n) => n.pool);
    this.targets.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}
