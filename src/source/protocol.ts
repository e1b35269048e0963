// The sidecar's side of the sidecar <-> source protocol: one typed call for each SQL
// function of the protocol section of sql/manifest.ts (their headers say what they
// read and write). Nothing else in src/ names a dbsync table; opening a batch
// (begin_batch, batch_plan) lives beside this in batches.ts, and the verify job's
// calls in src/verify/job-state.ts.
import type { Client, Pool, PoolClient } from "pg";

/** A source connection: a pool, one of its clients, or a client of its own. */
export type Source = Pool | PoolClient | Client;

export interface Subscription {
  sub_id: number;
  name: string;
  sub_uuid: string;
  group_id: number;
  target_conninfo: string;
  paused: boolean;
  position_tick: number;
  /** resync_subscription asked to accept the source's position over the target's. */
  reset_target: boolean;
  last_error: string | null;
  last_error_at: Date | null;
}

/** The subscription, or undefined if there is none of that name (dbsync.sidecar_subscription). */
export async function loadSubscription(source: Source, name: string): Promise<Subscription | undefined> {
  const { rows } = await source.query<Subscription>("select * from dbsync.sidecar_subscription($1)", [name]);
  return rows[0];
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

/** Subscriptions not paused, oldest first; with groupId, that group's only. */
export async function activeSubscriptions(source: Source, groupId?: number): Promise<{ name: string; group_id: number; target_conninfo: string }[]> {
  return (await source.query("select * from dbsync.sidecar_subscriptions($1)", [groupId ?? null])).rows;
}

/** Subscriptions with something to apply now (dbsync.has_work). */
export async function subscriptionsWithWork(source: Source): Promise<{ name: string; group_id: number }[]> {
  return (await source.query("select * from dbsync.sidecar_work()")).rows;
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

/** Whether writers of the group must NOTIFY (the sidecar sleeps for it). */
export async function setSleeping(source: Source, groupId: number, sleeping: boolean): Promise<void> {
  await source.query("select dbsync.set_sleeping($1, $2)", [groupId, sleeping]);
}

/** A stopping sidecar: writers of every group stop notifying. */
export async function sidecarStopped(source: Source): Promise<void> {
  await source.query("select dbsync.sidecar_stop()");
}

/** Every group's id. */
export async function groupIds(source: Source): Promise<number[]> {
  const { rows } = await source.query<{ id: number }>("select id from dbsync.sidecar_groups() id");
  return rows.map((r) => r.id);
}

/** The group's queue upkeep (dbsync.maintain); true when the group wants a tick. */
export async function maintain(source: Source, groupId: number, rotateAfterSeconds: number): Promise<boolean> {
  const { rows } = await source.query<{ wants_tick: boolean }>(
    "select dbsync.maintain($1, make_interval(secs => $2)) as wants_tick",
    [groupId, rotateAfterSeconds],
  );
  return rows[0].wants_tick;
}

/** A tick of the group (dbsync.tick). */
export async function tick(source: Source, groupId: number, force: boolean): Promise<void> {
  await source.query("select dbsync.tick($1, $2)", [groupId, force]);
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

/** The target's position, told to the source; the position to continue from (dbsync.target_position). */
export async function targetPosition(source: Source, subId: number, at: number): Promise<number> {
  const { rows } = await source.query<{ t: number }>("select dbsync.target_position($1, $2)::float8 as t", [subId, at]);
  return rows[0].t;
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

/** The group's carried sequences with their value on the source (null: never used). */
export async function groupSequences(source: Source, groupId: number): Promise<{ seq_id: number; name: string; value: string | null }[]> {
  return (await source.query("select * from dbsync.sidecar_sequences($1)", [groupId])).rows;
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
