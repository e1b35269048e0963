// Reading batches on the source. A batch is everything committed between the
// subscription's position and a fresh tick; the sidecar reads it in a reader
// transaction that imports the tick's snapshot, so every row it sends is the
// source's row at the batch's end (dbsync.begin_batch, dbsync.batch_plan).
import { Client, ClientBase, QueryResult, escapeLiteral } from "pg";
import { positiveEnv } from "../config";
import { KeptPlan, KeptPlans } from "./kept-plans";
import { DURABLE_TICK, GroupSequence, tickKey } from "./protocol";
import { readAtSnapshot } from "./snapshot";

export interface Batch {
  subId: number;
  groupId: number;
  from: number;
  to: number;
  /**
   * The exported snapshot of tick `to`, for the reader to import; null when the
   * batch holds nothing to read (dbsync.begin_batch: the position only moves).
   */
  snapshot: string | null;
  /**
   * The key of tick `to` (dbsync._tick_key), recorded on the target with it: null
   * for a tick made before migration 0024.
   */
  key: number | null;
}

/** What the previous batch did, reported to the source with the next request. */
export interface Done {
  tick: number;
  events: number;
  seconds: number;
  /** [table_id, copy_request, rows] of the tables the batch copied. */
  copied: [number, number, number][];
  /** [seq_id, value] of the sequences the target has at least at value. */
  sequences: [number, string][];
  /**
   * The target's flush of the batch's commit (flushTarget), when that commit did
   * not wait for it: the report waits for it (no position reaches the source
   * before the target has it on disk).
   */
  flushed?: Promise<void>;
}

export interface DdlEvent {
  ev_id: number;
  ddl: string;
  search_path: string;
  /** The settings of the session that ran execute_ddl (sql/functions/_queue_ddl.sql); null if queued before they were recorded. */
  settings: Record<string, string> | null;
}

export interface PlanShape {
  /** The op of the stream lines whose keys the target deletes ('D', or 'K' + shape id). */
  op: string;
  key_columns: string[];
}

export interface PlanTable {
  table_id: number;
  /** The table's name as of the batch's end, quoted: the name on the target. */
  target: string;
  /** Else the target's statements say ONLY: an inheritance child is a table of its own. */
  partitioned: boolean;
  columns: string[];
  /** Its generated columns, which the stream does not carry (absent from a source of before they were listed). */
  generated?: string[];
  events: number;
  action: "copy" | "refresh";
  /** A copy the stream needs (its key changed), not one a table waits for. */
  forced: boolean;
  truncate: boolean;
  copy_request: number;
  rows_estimated: number | null;
  /** A copy's COPY ... TO STDOUT of every row of the table (null for a refresh). */
  sql: string | null;
  shapes: PlanShape[];
  /** The key the stream's 'U' lines may be written over target rows by (one shape), else null. */
  upsert_key: string[] | null;
  /** ... by an UPDATE in place: equal keys are identical (else deleted and inserted). */
  in_place?: boolean;
  /**
   * A copy in key-range chunks (sql/functions/_copy_chunks.sql): this batch's chunk.
   * `sql` then reads only the chunk's rows. The first chunk empties the target
   * table; a later one adds its rows after the batch's refresh of the same table.
   */
  chunk: PlanChunk | null;
}

export interface PlanChunk {
  first: boolean;
  last: boolean;
  /** The new boundary (key columns' text), null for the last chunk. */
  key: string[] | null;
  /** The key order the boundary is in (opaque to the sidecar: recorded as is). */
  order: unknown;
  /** Rows and chunks the copy's earlier batches copied. */
  rows_before: number;
  chunks_before: number;
}

export interface Plan {
  ddl: DdlEvent[];
  tables: PlanTable[];
  /**
   * One COPY ... TO STDOUT for every refreshed table: lines of table_id, op, the
   * table's columns, NULLs up to the widest table's; tables in table_id order.
   */
  stream: string | null;
  /** The columns of the stream's widest table: every line carries that many after its op. */
  stream_width: number | null;
  /** Read the stream with nested loops off: its tables' keys are many against their rows. */
  stream_hash_joins?: boolean;
  /**
   * A big batch's stream cut for several readers at its snapshot, each its own
   * tables (`tables`, in table_id order): read together, the same lines as `stream`.
   */
  streams?: PlanStream[] | null;
  /**
   * Tables in several of `streams`, each stream with its share of the table's keys
   * (batch_plan's p_split_tables): merged in any order, ended once every stream has
   * ended (src/target/readers.ts), each in a stage of its own (stage.ts).
   */
  shared?: number[] | null;
  /**
   * The group's carried sequences and their values (dbsync.sidecar_sequences), read
   * with the plan: at least the values of the batch's rows, which were taken before
   * its snapshot.
   */
  sequences: GroupSequence[];
  /** The streaming tables' SQL this plan built, for later batches (src/source/kept-plans.ts). */
  kept?: Record<string, KeptPlan>;
}

export interface PlanStream {
  sql: string;
  tables: number[];
}

/** How a batch is read: copies and chunks (see openReader), and by how many readers. */
export interface ReadLimits {
  copyRows: number;
  chunkRows?: number;
  /** Readers the batch may use (its own and the spare ones, see Links.spareReaders). */
  readers: number;
  /** Each reader of a big batch gets at least this many of its events (batch_plan's p_split_events). */
  splitEvents: number;
}

/**
 * Events of a batch's stream that are worth a reader of their own: 50,000 (a
 * stream of that size takes the source about 0.3 s, of which the keys' hashing and
 * the reads of the rows split among readers; each reader costs a round trip more
 * and a scan of the batch's events). DBSYNC_SPLIT_EVENTS sets another for tests,
 * which read small batches with several readers with it.
 */
export function splitEvents(env: NodeJS.ProcessEnv = process.env): number {
  return positiveEnv(env, "DBSYNC_SPLIT_EVENTS", "events", 50_000, "Unset it (50,000 events a reader) or set a number such as 1000.");
}

/**
 * The reader's sessions settings for a batch. The stream's tables must come one
 * after another, which a parallel plan would not keep; the batch's keys are hashed
 * (distinct keys, semi- and anti-joins), and a few hundred thousand keys spill to
 * disk at the default work_mem (4MB): one connection may use more. (current_setting,
 * not the pg_settings view: that builds a row for every setting, 0.6 ms of the
 * reader's CPU a batch.)
 */
const READER_SETTINGS = `set local max_parallel_workers_per_gather = 0;
  select pg_catalog.set_config('work_mem',
    greatest(pg_catalog.pg_size_bytes(pg_catalog.current_setting('work_mem')) / 1024, 65536)::text || 'kB', true)`;

/**
 * Reports the batch just committed on the target (its own transaction: the next
 * batch's reader must see it) and opens the control transaction of the next batch,
 * which takes an exported tick; one round trip. `from`: the batch starts there, not
 * at the recorded position (dbsync.begin_batch's p_from: the batch before it is
 * being committed on the target, and `done` is the one before that). Undefined:
 * nothing to apply (the transaction is committed then). Otherwise the caller must
 * import the snapshot on its reader and then commit the control transaction (see
 * openReader).
 * The report's commit does not wait for its WAL flush: the tick's commit that
 * follows flushes it, and a report lost with the source's last WAL is a report
 * lost as when the sidecar dies before sending it (the target is the truth: the
 * next session takes its position from there). At initdb's durability that is
 * one disk flush less between two batches.
 */
export async function beginBatch(control: Client, subscription: string, subId: number, done: Done | undefined, from?: number): Promise<Batch | undefined> {
  const report = done
    ? `begin; set local synchronous_commit = off;
       select dbsync.record_progress(${subId}, ${int(done.tick)}, ${int(done.events)}, ${Number(done.seconds)}, ` +
      `${escapeLiteral(JSON.stringify(done.copied))}, ${escapeLiteral(JSON.stringify(done.sequences))});\n commit;\n`
    : "";
  try {
    // Literals, not parameters: several statements in one round trip.
    const results = (await control.query(
      `${report}begin isolation level read committed; ${DURABLE_TICK};
       select sub_id, group_id, tick_from::float8 as f, tick_to::float8 as t, snapshot_name, tick_key::text as k
         from dbsync.begin_batch(${escapeLiteral(subscription)}, ${from === undefined ? "null" : int(from)})`,
    )) as unknown as QueryResult[];
    const r = results[results.length - 1].rows[0];
    if (!r) {
      await control.query("commit");
      return undefined;
    }
    return { subId: r.sub_id, groupId: r.group_id, from: r.f, to: r.t, snapshot: r.snapshot_name, key: tickKey(r.k) };
  } catch (err) {
    await control.query("rollback").catch(() => undefined);
    throw err;
  }
}

function int(n: number): string {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return String(n);
}

/** A batch's reader at its snapshot (see openReader). */
export interface OpenedReader {
  plan: Plan;
  /**
   * The commit of the control transaction that exported the tick, rejected with
   * its error. Awaited before anything of the batch is committed on the target,
   * and before the next begin_batch (which may start from that tick).
   */
  tickCommitted: Promise<void>;
}

/**
 * Starts the reader's REPEATABLE READ transaction on the batch's snapshot, then
 * commits the control transaction that exported it (which also releases the
 * group's tick lock) while the reader reads the batch's plan: copies of about
 * `copyRows` estimated rows at most, a bigger table in key-range chunks of
 * `chunkRows`. Returns with the plan: the commit, which waits for its WAL flush
 * (as long as the plan at initdb's durability), may still be on its way, and goes
 * on beside the stream; the caller must await `tickCommitted` before the target
 * commits anything of the batch (a tick lost with the source's last WAL would have
 * its id taken again by another snapshot), and before it gives the control
 * connection back. A plan that fails is thrown once the commit has settled.
 * `kept`: the process's tables' SQL from earlier plans, given to this one and
 * added to from it.
 */
export async function openReader(control: Client, reader: Client, batch: Batch, limits: ReadLimits, kept?: KeptPlans): Promise<OpenedReader> {
  const { copyRows, chunkRows = copyRows, readers, splitEvents } = limits;
  if (batch.snapshot === null) throw new Error(`batch (${batch.from}, ${batch.to}] has no snapshot to read`);
  try {
    await readAtSnapshot(reader, batch.snapshot, READER_SETTINGS);
  } catch (err) {
    await control.query("commit");
    throw err;
  }
  const committed = control.query("commit").then(
    () => undefined,
    (err: unknown) => err,
  );
  // Literals, not parameters: the plan and the sequences in one round trip.
  // (true: a big batch's heaviest table may be shared out among its readers.)
  const given = kept?.given(batch.groupId);
  let results: QueryResult[];
  try {
    results = (await reader.query(
      `select dbsync.batch_plan(${[batch.subId, batch.from, batch.to, copyRows, chunkRows, readers, splitEvents].map(int).join(", ")}, true, ` +
        `${given ? `${escapeLiteral(JSON.stringify(given))}::jsonb` : "null"}) as plan;
       select * from dbsync.sidecar_sequences(${int(batch.groupId)})`,
    )) as unknown as QueryResult[];
  } catch (err) {
    await committed;
    throw err;
  }
  const tickCommitted = committed.then((err) => {
    if (err !== undefined) throw err;
  });
  // (Whoever waits for it gets its error; a batch given up meanwhile does not.)
  tickCommitted.catch(() => undefined);
  const plan: Plan = { ...(results[0].rows[0].plan as Omit<Plan, "sequences">), sequences: results[1].rows };
  kept?.took(
    batch.groupId,
    plan.tables.filter((t) => t.action === "refresh").map((t) => t.table_id),
    plan.kept,
  );
  return { plan, tickCommitted };
}

/**
 * Another reader of the batch that `reader` reads (a big batch's, see
 * src/target/readers.ts): its transaction on exactly `reader`'s snapshot
 * (exported there: `snapshot`), with the reader's settings. Its locks wait at most
 * HELPER_LOCK_TIMEOUT: a lock request queued on one of its tables (an ALTER TABLE
 * waiting for the first reader, which holds its locks until the batch ends) would
 * otherwise hold it, and the batch, for as long as that request waits.
 */
export async function openHelper(helper: ClientBase, snapshot: string, hashJoins: boolean): Promise<void> {
  await readAtSnapshot(
    helper,
    snapshot,
    `${READER_SETTINGS}; set local lock_timeout = ${HELPER_LOCK_TIMEOUT_MS}${hashJoins ? "; set local enable_nestloop = off" : ""}`,
  );
}

/** See openHelper: a lock not granted within this (ms) fails the helper's read (55P03), before it read a line. */
export const HELPER_LOCK_TIMEOUT_MS = 200;

/** The snapshot of `reader`'s transaction, exported for the batch's other readers (openHelper). */
export async function exportSnapshot(reader: ClientBase): Promise<string> {
  return (await reader.query<{ s: string }>("select pg_catalog.pg_export_snapshot() as s")).rows[0].s;
}
