// The sidecar's side of the sidecar <-> source protocol: one typed call for each SQL
// function the sidecar and the verify job call on the source (their headers in
// sql/functions say what they read and write). Nothing else in src/ names a dbsync
// table; opening a batch (begin_batch, batch_plan, several statements in one round
// trip) lives beside this in batches.ts.
import type { Client, Pool, PoolClient } from "pg";
import { DURABLE_COMMIT } from "../db/settings";

/** A source connection: a pool, one of its clients, or a client of its own. */
export type Source = Pool | PoolClient | Client;

export interface Subscription {
  sub_id: number;
  name: string;
  sub_uuid: string;
  group_id: number;
  target_conninfo: string;
  /** The dbsync owner gave the conninfo; else its own password only (src/conninfo.ts, ownPasswordOnly). */
  conninfo_by_owner: boolean;
  paused: boolean;
  position_tick: number;
  /** resync_subscription asked to accept the source's position over the target's. */
  reset_target: boolean;
  last_error: string | null;
  last_error_at: Date | null;
  /** The key of the position's tick (dbsync._tick_key): null for a tick made before migration 0024. */
  position_key: number | null;
}

/** Where a target stands: a tick, and the key it recorded with it (null: unknown). */
export interface TargetPosition {
  tick: number;
  key: number | null;
}

/**
 * A tick key read as the text of its bigint: a float8's text is rounded to 15 digits
 * in a session whose extra_float_digits is below 1, and a key has up to 16.
 */
export function tickKey(text: string | null): number | null {
  return text === null ? null : Number(text);
}

/** The subscription, or undefined if there is none of that name (dbsync.sidecar_subscription). */
export async function loadSubscription(source: Source, name: string): Promise<Subscription | undefined> {
  // (A bigint reaches node-postgres as its text.)
  const { rows } = await source.query<Omit<Subscription, "position_key"> & { position_key: string | null }>(
    "select * from dbsync.sidecar_subscription($1)",
    [name],
  );
  return rows[0] && { ...rows[0], position_key: tickKey(rows[0].position_key) };
}

/**
 * Whether dbsync is installed: the server's major version and whether the dbsync
 * schema is there. A catalog look-up, not a function call: it must answer on a
 * database where dbsync is not, or no longer, installed.
 */
export async function installation(source: Source): Promise<{ major: number; installed: boolean }> {
  const { rows } = await source.query<{ major: number; installed: boolean }>(
    `select pg_catalog.current_setting('server_version_num')::pg_catalog.int4 / 10000 as major,
            pg_catalog.to_regnamespace('dbsync') is not null as installed`,
  );
  return rows[0];
}

/** An advisory lock of dbsync._lock_class, for this session; false if another holds it. */
export async function tryLock(source: Source, lock: "apply" | "verify", key: number): Promise<boolean> {
  const { rows } = await source.query<{ ok: boolean }>("select dbsync.sidecar_try_lock($1, $2) as ok", [lock, key]);
  return rows[0].ok;
}

/**
 * Of `names`, the subscriptions no session is applying (none holds the apply lock
 * tryLock takes): a wake-up queued for one that another process applies waits for
 * no slot (the poll of each process queues one for every subscription with work).
 * With `idleMs`, only those of them no batch was applied for within that long
 * either: one that another process applies is also found between two of its loops,
 * its lock let go and its next wake-up queued (see Appliers.turnOver).
 */
export async function notApplying(source: Source, names: string[], idleMs?: number): Promise<string[]> {
  const { rows } = await source.query<{ name: string }>(
    `select s.name from dbsync.subscriptions s
      where s.name = any($1::text[])
        and ($2::float8 is null or s.applied_at is null or s.applied_at < pg_catalog.now() - pg_catalog.make_interval(secs => $2::float8 / 1000))
        and not exists (select from pg_catalog.pg_locks l
                         where l.locktype = 'advisory' and l.classid = dbsync._lock_class('apply')::oid and l.objid = s.sub_id
                           and l.objsubid = 2 and l.granted
                           and l.database = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()))`,
    [names, idleMs ?? null],
  );
  return rows.map((r) => r.name);
}

/** Releases a lock tryLock took. */
export async function unlock(source: Source, lock: "apply" | "verify", key: number): Promise<void> {
  await source.query("select dbsync.sidecar_unlock($1, $2)", [lock, key]);
}

/** Subscriptions not paused, oldest first; with groupId, that group's only. */
export async function activeSubscriptions(source: Source, groupId?: number): Promise<{ name: string; group_id: number; target_conninfo: string }[]> {
  return (await source.query("select * from dbsync.sidecar_subscriptions($1)", [groupId ?? null])).rows;
}

/**
 * A group's verdict of the last poll (dbsync._poll_groups), kept by the sidecar and
 * given back at the next: its event sequence then, an xid above every transaction
 * that had numbered those events (as text), and whether they had all ended when its
 * queue was last found without new writers.
 */
export interface GroupVerdict {
  last: string;
  bound: string;
  settled: boolean;
}

/**
 * Subscriptions with something to apply now (dbsync.sidecar_poll), looking into the
 * queue only of groups not known to have no new writers; `verdicts` becomes this
 * poll's (empty if it failed: the next then looks into every group).
 */
export async function pollWork(source: Source, verdicts: Map<number, GroupVerdict>): Promise<{ name: string; group_id: number }[]> {
  const given = [...verdicts];
  verdicts.clear();
  const { rows } = await source.query<{ group_id: number; last_ev: string | null; bound: string | null; settled: boolean | null; names: string[] }>(
    "select * from dbsync.sidecar_poll($1::int[], $2::bigint[], $3::text[], $4::boolean[])",
    [given.map(([g]) => g), given.map(([, v]) => v.last), given.map(([, v]) => v.bound), given.map(([, v]) => v.settled)],
  );
  const out: { name: string; group_id: number }[] = [];
  for (const r of rows) {
    if (r.last_ev !== null && r.bound !== null) verdicts.set(r.group_id, { last: r.last_ev, bound: r.bound, settled: r.settled === true });
    for (const name of r.names) out.push({ name, group_id: r.group_id });
  }
  return out;
}

/** Whether the subscription has something to apply now. */
export async function hasWork(source: Source, name: string): Promise<boolean> {
  const { rows } = await source.query<{ more: boolean }>("select dbsync.has_work($1) as more", [name]);
  return rows[0].more;
}

/** Verifications waiting for a sidecar (dbsync._verify_todo). */
export async function verificationsToDo(source: Source): Promise<number[]> {
  const { rows } = await source.query<{ id: string }>("select id::pg_catalog.text from dbsync._verify_todo() id");
  return rows.map((r) => Number(r.id));
}

/** Background verifications due now (dbsync._verify_schedule), one key range each. */
export async function scheduleVerifications(source: Source, intervalSeconds: number, chunkRows: number): Promise<number[]> {
  const { rows } = await source.query<{ id: string }>(
    "select id::pg_catalog.text from dbsync._verify_schedule(pg_catalog.make_interval(secs => $1), $2) id",
    [intervalSeconds, chunkRows],
  );
  return rows.map((r) => Number(r.id));
}

/**
 * A lingering subscription's first look, in one round trip: whether it has work
 * (dbsync.has_work), and whether captured writes notify a sleeping sidecar
 * (dbsync._capture_notifies, as this session's settings say).
 */
export async function lingerLook(source: Source, name: string): Promise<{ more: boolean; notifies: boolean }> {
  const { rows } = await source.query<{ more: boolean; notifies: boolean }>(
    "select dbsync.has_work($1) as more, dbsync._capture_notifies() as notifies",
    [name],
  );
  return rows[0];
}

/** Whether writers of the group must NOTIFY (the sidecar sleeps for it); true when this call changed it. */
export async function setSleeping(source: Source, groupId: number, sleeping: boolean): Promise<boolean> {
  const { rows } = await source.query<{ changed: boolean }>("select dbsync.set_sleeping($1, $2) as changed", [groupId, sleeping]);
  return rows[0].changed;
}

/** A stopping sidecar: writers of every group stop notifying. */
export async function sidecarStopped(source: Source): Promise<void> {
  await source.query("select dbsync.sidecar_stop()");
}

/** The groups whose upkeep last ran spacingSeconds ago or more (by this process or another). */
export async function upkeepDue(source: Source, spacingSeconds: number): Promise<number[]> {
  const { rows } = await source.query<{ id: number }>("select id from dbsync.sidecar_groups(make_interval(secs => $1)) id", [spacingSeconds]);
  return rows.map((r) => r.id);
}

/**
 * The group's queue upkeep (dbsync.maintain); true when the group wants a tick. Nothing
 * when it ran less than spacingSeconds ago (by this process or another).
 */
export async function maintain(source: Source, groupId: number, rotateAfterSeconds: number, spacingSeconds: number): Promise<boolean> {
  const { rows } = await source.query<{ wants_tick: boolean }>(
    "select dbsync.maintain($1, make_interval(secs => $2), make_interval(secs => $3)) as wants_tick",
    [groupId, rotateAfterSeconds, spacingSeconds],
  );
  return rows[0].wants_tick;
}

/**
 * Run in a transaction that takes a tick (DURABLE_COMMIT): a target may stand at any
 * tick once its commit returns (a batch ends at it, or only moves there: an idle
 * group's upkeep tick, a verification's); one acknowledged from memory, then lost in
 * an immediate stop or a crash, would have its id taken again by another snapshot.
 */
export const DURABLE_TICK = DURABLE_COMMIT;

/** A tick of the group (dbsync.tick). */
export async function tick(source: Source, groupId: number, force: boolean): Promise<void> {
  if (!Number.isSafeInteger(groupId)) throw new Error(`not a group id: ${groupId}`);
  // Two statements in one implicit transaction: literals, not parameters.
  await source.query(`${DURABLE_TICK}; select dbsync.tick(${groupId}, ${force})`);
}

/** A failed batch, on the subscription (dbsync.record_error). */
export async function recordError(
  source: Source,
  name: string,
  e: { message: string; sqlstate?: string; table?: string; tick?: number },
): Promise<void> {
  await source.query("select dbsync.record_error(s.sub_id, $2, $3, $4, $5) from dbsync.sidecar_subscription($1) s", [
    name, e.message, e.sqlstate ?? null, e.table ?? null, e.tick ?? null,
  ]);
}

/** A table's copy that cannot start, on the table (dbsync.table_error). */
export async function tableError(source: Source, subId: number, tableId: number, message: string): Promise<void> {
  await source.query("select dbsync.table_error($1, $2, $3)", [subId, tableId, message]);
}

/**
 * The target's position (null: it has no record of the subscription) and the key it
 * recorded with it (null: unknown), told to the source; the position to continue
 * from (dbsync.target_position, which refuses a key that is not the source's).
 */
export async function targetPosition(source: Source, subId: number, at: TargetPosition | undefined): Promise<number> {
  const { rows } = await source.query<{ t: number }>("select dbsync.target_position($1, $2, $3)::float8 as t", [
    subId,
    at?.tick ?? null,
    at?.key ?? null,
  ]);
  return rows[0].t;
}

/** Tables unlogged on the target, which its crash recovery emptied: copied again (dbsync.copy_lost_unlogged). */
export async function copyLostUnlogged(source: Source, subId: number, tables: { schema: string; name: string }[]): Promise<void> {
  await source.query("select dbsync.copy_lost_unlogged($1, $2, $3)", [subId, tables.map((t) => t.schema), tables.map((t) => t.name)]);
}

/** The chunks a batch copies, recorded before it applies them (dbsync.copy_chunks). */
export async function copyChunks(source: Source, subId: number, tick: number, chunks: unknown[]): Promise<void> {
  await source.query("select dbsync.copy_chunks($1, $2, $3)", [subId, tick, JSON.stringify(chunks)]);
}

/** A copy's progress while it runs (dbsync.copy_progress). */
export async function copyProgress(
  source: Source,
  subId: number,
  tableId: number,
  copyRequest: number,
  rows: number,
  estimated: number | null,
): Promise<void> {
  await source.query("select dbsync.copy_progress($1, $2, $3, $4, $5)", [subId, tableId, copyRequest, rows, estimated]);
}

/** A batch's progress (dbsync.record_progress); batches.ts sends it with the next begin_batch. */
export async function recordProgress(
  source: Source,
  subId: number,
  done: { tick: number; events: number; seconds: number; copied: unknown; sequences: unknown },
): Promise<void> {
  await source.query("select dbsync.record_progress($1, $2, $3, $4, $5, $6)", [
    subId, done.tick, done.events, done.seconds, JSON.stringify(done.copied), JSON.stringify(done.sequences),
  ]);
}

/** The execute_ddl events a DBA chose to skip on this subscription's target (dbsync.skip_ddl). */
export async function skippedDdl(source: Source, subId: number): Promise<Set<number>> {
  const { rows } = await source.query<{ ids: string[] }>("select dbsync._skipped_ddl($1)::text[] as ids", [subId]);
  return new Set(rows[0].ids.map(Number));
}

/** A group's carried sequence with its state on the source: dbsync.sidecar_sequences. */
export interface GroupSequence {
  seq_id: number;
  name: string;
  /** last_value and is_called (a cycling sequence at its end: the value it wraps to, not called). */
  value: string;
  called: boolean;
  /** What the source's next nextval gives; null when it would fail (at the end, no CYCLE). */
  next_value: string | null;
  increment: string;
}

export interface Readiness {
  name: string;
  target_conninfo: string;
  /** dbsync.status says error. */
  failing: boolean;
  last_error: string | null;
  last_error_table: string | null;
}

/** What /readyz reports: the active subscriptions, their targets, and why any fails. */
export async function readiness(source: Source): Promise<Readiness[]> {
  return (await source.query("select * from dbsync.sidecar_readiness()")).rows;
}

/** One verification as a sidecar runs it (dbsync._verify_job). */
export interface VerifyJob {
  verification_id: number;
  state: string;
  repair: boolean;
  sub_id: number;
  table_id: number;
  subscription: string;
  sub_uuid: string;
  target_conninfo: string;
  conninfo_by_owner: boolean;
  copy_data: boolean;
  schema_name: string;
  table_name: string;
  relid: number;
  partitioned: boolean;
  background: boolean;
  key_after: string[] | null;
  row_limit: number | null;
  /** As dbsync.table_status names it. */
  verified_name: string;
}

/** The verification, or undefined if it is gone (its subscription was dropped). */
export async function loadVerification(source: Source, verificationId: number): Promise<VerifyJob | undefined> {
  return (await source.query<VerifyJob>("select * from dbsync._verify_job($1)", [verificationId])).rows[0];
}

/**
 * Step 1 of a verification (dbsync._verify_begin): its tick and that tick's snapshot,
 * held; in the caller's transaction, which must also record the reader's export
 * (verifySnapshot) before it commits.
 */
export async function beginVerification(source: Source, verificationId: number): Promise<{ tick: number; snapshot_name: string }> {
  const { rows } = await source.query("select tick_id::pg_catalog.float8 as tick, snapshot_name from dbsync._verify_begin($1)", [verificationId]);
  return rows[0];
}

/** The snapshot the verification's reader exported at its tick (dbsync._verify_snapshot). */
export async function verifySnapshot(source: Source, verificationId: number, snapshot: string): Promise<void> {
  await source.query("select dbsync._verify_snapshot($1, $2)", [verificationId, snapshot]);
}

/** The stream may go on past the verification's tick (dbsync._verify_release). */
export async function releaseVerification(source: Source, verificationId: number): Promise<void> {
  await source.query("select dbsync._verify_release($1)", [verificationId]);
}

/** Both sides are at the tick; comparing starts (dbsync._verify_comparing). */
export async function verifyComparing(source: Source, verificationId: number): Promise<void> {
  await source.query("select dbsync._verify_comparing($1)", [verificationId]);
}

export interface VerifyCounts {
  rowsCompared: number;
  chunks: number;
  chunksDiffering: number;
  missing: number;
  extra: number;
  different: number;
  repaired: number;
  /** The first keys that differ (capped by the caller). */
  keys: string[];
}

/** A running verification's counts so far (dbsync._verify_counts). */
export async function verifyCounts(source: Source, verificationId: number, c: VerifyCounts): Promise<void> {
  await source.query("select dbsync._verify_counts($1, $2, $3, $4, $5, $6, $7, $8, $9)", [
    verificationId, c.rowsCompared, c.chunks, c.chunksDiffering, c.missing, c.extra, c.different, c.keys, c.repaired,
  ]);
}

/** The verification compared its range (dbsync._verify_done). */
export async function verifyDone(source: Source, verificationId: number, keyReached: string[] | null, reachedEnd: boolean): Promise<void> {
  await source.query("select dbsync._verify_done($1, $2, $3)", [verificationId, keyReached, reachedEnd]);
}

/** The verification was interrupted: queued again (dbsync._verify_requeue). */
export async function verifyRequeue(source: Source, verificationId: number): Promise<void> {
  await source.query("select dbsync._verify_requeue($1)", [verificationId]);
}

/** The verification failed (dbsync._verify_failed). */
export async function verifyFailed(source: Source, verificationId: number, error: string, rowsCompared: number, chunks: number): Promise<void> {
  await source.query("select dbsync._verify_failed($1, $2, $3, $4)", [verificationId, error, rowsCompared, chunks]);
}

/** A finished background verification, booked into its table's walk (dbsync._verify_record). */
export async function recordBackgroundVerification(source: Source, verificationId: number): Promise<void> {
  await source.query("select dbsync._verify_record($1)", [verificationId]);
}

// Not the sidecar's: what `dbsync uninstall` and the demo read. Plain queries, not
// functions: uninstall must read any installed version, a half-removed one too.

/** What `dbsync uninstall` would remove; the lists are empty where their table is gone. */
export async function inventory(
  source: Source,
  workerSchema: string,
  ddlTrigger: string,
): Promise<{
  db: string;
  has_dbsync: boolean;
  has_worker: boolean;
  has_remove: boolean;
  has_ddl_trigger: boolean;
  tables: { relid: number; name: string }[];
  subs: { name: string; target_conninfo: string }[];
}> {
  const { rows: [found] } = await source.query(
    `select pg_catalog.current_database() as db,
            pg_catalog.to_regnamespace('dbsync') is not null as has_dbsync,
            pg_catalog.to_regnamespace($1::text) is not null as has_worker,
            pg_catalog.to_regclass('dbsync.tables') is not null as has_tables,
            pg_catalog.to_regclass('dbsync.subscriptions') is not null as has_subs,
            pg_catalog.to_regprocedure('dbsync.remove_table(regclass)') is not null as has_remove,
            exists (select from pg_catalog.pg_event_trigger where evtname = $2) as has_ddl_trigger`,
    [workerSchema, ddlTrigger],
  );
  const tables = found.has_tables
    ? (await source.query(
        `select t.relid::int as relid, coalesce(cl.oid::regclass::text, pg_catalog.format('%I.%I (dropped)', t.schema_name, t.table_name)) as name
           from dbsync.tables t left join pg_catalog.pg_class cl on cl.oid = t.relid
          where t.removed_at is null order by t.table_id`,
      )).rows
    : [];
  const subs = found.has_subs ? (await source.query("select name, target_conninfo from dbsync.subscriptions order by name")).rows : [];
  return { ...found, tables, subs };
}

/** The tables dbsync replicates from this source: qualified name and key columns. */
export async function replicatedTables(source: Source): Promise<{ name: string; key: string[] }[]> {
  const { rows } = await source.query(
    `select pg_catalog.format('%I.%I', schema_name, table_name) as name, key_columns as key
       from dbsync.tables where removed_at is null order by schema_name, table_name`,
  );
  return rows;
}
