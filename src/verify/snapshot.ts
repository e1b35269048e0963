// The snapshot protocol of a verification: one consistent point on both sides,
// tick T of the stream, without touching the applier:
//  1. Source. In READ COMMITTED, dbsync._verify_begin takes an exported tick T of
//     the group (dbsync._export_tick) and, in the same transaction, sets this
//     verification's hold_tick = T. A reader transaction (REPEATABLE READ, READ
//     ONLY) imports the snapshot and exports it again (pg_export_snapshot()); the
//     holder stores that name in hold_snapshot, still in the same transaction, and
//     commits: tick, hold and snapshot become visible together. The reader sees the
//     table exactly as of T and stays open while the hold is needed: the applier
//     reads the batch that ends at T through its export (it does not see T's own
//     tick row, whose transaction was running in that snapshot, so
//     nothing here reads it there).
//  2. Hold. dbsync.begin_batch ends the applier's batch at a held tick, read through
//     hold_snapshot, and never moves the subscription past it (dbsync._verify_hold),
//     so the target lands exactly on T and stops there. A hold counts only while
//     this job holds its session advisory lock ('verify', dbsync._lock_class): if
//     the process dies, the stream moves on. begin_batch looks for holds before it
//     takes its own tick; a group lock (dbsync._verify_hold shared, _verify_begin
//     exclusive) keeps T from falling between the two. Should the target still be
//     found past T, the job starts over at a new tick (a few times), then fails.
//  3. Target. Poll: begin REPEATABLE READ and read dbsync.applied. Every batch
//     commits its rows and its tick there in one transaction, so when that first
//     statement sees tick T, the transaction's snapshot holds the table exactly as
//     of T (dbsync.copied, read in the same snapshot, proves the table was not
//     re-copied after T). Otherwise roll back and poll again.
//     Both sides then lock the table (ACCESS SHARE, as any read does, until the
//     end) and check that it was not truncated or rewritten since their snapshot:
//     those are not MVCC-safe and would make it look empty.
//  4. Without repair the hold is released right there: the applier resumes and
//     the comparison runs between two fixed snapshots, however long it takes.
//     With repair the hold stays until the repair is committed: the fix must land
//     at T, before any later batch (a later batch's delete of a row the repair
//     inserts would otherwise be lost), so repair delays that subscription (only)
//     for the duration of the verification.
import { Client, Pool } from "pg";
import { DbsyncError } from "../errors";
import { DURABLE_TICK, VerifyJob as Job, beginVerification, loadSubscription, verifySnapshot } from "../source/protocol";
import { readAtSnapshot } from "../source/snapshot";
import { SourceTable, columnsOf, lockForRead } from "./layout";

/** The sidecar is stopping: the verification is given back, queued. */
export class Stopped extends Error {}
/** The target went past the tick before the hold stopped it (see step 2). */
export class MovedPast extends DbsyncError {}

/**
 * Steps 1 and 2: takes tick T with its hold, leaves `reader` in a REPEATABLE READ
 * transaction at T whose export the hold names, and returns T.
 */
export async function holdTick(holder: Client, reader: Client, verificationId: number): Promise<number> {
  await holder.query(`begin isolation level read committed; ${DURABLE_TICK}`);
  try {
    const b = await beginVerification(holder, verificationId);
    await readAtSnapshot(reader, b.snapshot_name);
    const { rows } = await reader.query("select pg_catalog.pg_export_snapshot() as s");
    await verifySnapshot(holder, verificationId, rows[0].s);
    await holder.query("commit");
    return b.tick;
  } catch (err) {
    await holder.query("rollback").catch(() => undefined);
    await reader.query("rollback").catch(() => undefined);
    throw err;
  }
}

/**
 * The table on the reader, as of T: its stored columns and key (dbsync.table_layout),
 * its names, its column types. Locks it and checks that it was not truncated or
 * rewritten since T.
 */
export async function sourceTable(reader: Client, tableId: number, relid: number, table: string): Promise<SourceTable> {
  const { rows } = await reader.query<{
    columns: string[] | null;
    key_positions: number[];
    relid: number;
    name: string | null;
    target_name: string | null;
  }>(
    // The name to read it by comes from the current catalog, schema-qualified
    // whatever the search_path (pg_identify_object, not regclass's output); the
    // target's is the name at T (this snapshot's pg_class).
    `select l.columns, l.key_positions, t.relid::pg_catalog.int8::pg_catalog.float8 as relid,
            (pg_catalog.pg_identify_object('pg_catalog.pg_class'::pg_catalog.regclass, t.relid, 0)).identity as name,
            (select pg_catalog.concat('"', pg_catalog.replace(n.nspname, '"', '""'), '"."', pg_catalog.replace(c.relname, '"', '""'), '"')
               from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid OPERATOR(pg_catalog.=) c.relnamespace
              where c.oid OPERATOR(pg_catalog.=) t.relid) as target_name
       from dbsync.table_layout($1) l, (select $2::pg_catalog.int8::pg_catalog.oid as relid) t`,
    [tableId, relid],
  );
  const r = rows[0];
  if (!r || !r.columns || !r.target_name || !r.name) {
    throw new DbsyncError(`source table ${table} no longer exists`, { table, sqlstate: "42P01" });
  }
  const columns = r.columns;
  const keyCols = r.key_positions.map((p) => columns[p - 1]);
  if (keyCols.some((k) => k === undefined)) {
    throw new DbsyncError(`the key of ${table} is not among its stored columns at the verification's tick`, { table });
  }
  await lockForRead(reader, r.name);
  await checkNotRewritten(reader, "$1::pg_catalog.oid", r.relid, "the source");
  const cols = await columnsOf(reader, "$1::pg_catalog.oid", r.relid);
  return { name: r.name, targetName: r.target_name, relid: r.relid, columns, keyCols, cols };
}

/**
 * TRUNCATE and rewriting ALTER TABLE are not MVCC-safe: a table rewritten after a
 * snapshot looks empty in it. The caller holds a lock on the table (so no rewrite
 * can follow); this checks that none came between its snapshot and the lock.
 */
export async function checkNotRewritten(client: Client, relExpr: string, rel: unknown, side: string) {
  // The table and its partitions, from pg_inherits: the same on every major (a target
  // may be older than pg_partition_tree, PostgreSQL 12).
  const { rows } = await client.query<{ stale: string | null }>(
    `with recursive tree(relid) as (
         select (${relExpr})::pg_catalog.regclass::pg_catalog.oid
         union all
         select i.inhrelid from tree t
           join pg_catalog.pg_inherits i on i.inhparent OPERATOR(pg_catalog.=) t.relid
           join pg_catalog.pg_class p on p.oid OPERATOR(pg_catalog.=) i.inhrelid and p.relispartition)
     select pg_catalog.string_agg(c.oid::pg_catalog.regclass::pg_catalog.text, ', ') as stale
       from pg_catalog.pg_class c
      where c.oid OPERATOR(pg_catalog.=) any (array(select t.relid from tree t))
        and c.relkind OPERATOR(pg_catalog.=) 'r'::pg_catalog."char"
        and c.relfilenode OPERATOR(pg_catalog.<>) pg_catalog.pg_relation_filenode(c.oid)`,
    [rel],
  );
  if (rows[0].stale) {
    throw new DbsyncError(`${rows[0].stale} was truncated or rewritten on ${side} after the verification's tick`, {
      hint: "Verify again: the next verification takes a new tick.",
    });
  }
}

/**
 * Leaves `target` in a REPEATABLE READ transaction whose snapshot shows the
 * subscription's position at exactly `tick`, with the table locked (ACCESS SHARE).
 */
export async function waitForTarget(
  control: Pool,
  target: Client,
  job: Job,
  tick: number,
  timeoutMs: number,
  table: string,
  signal: AbortSignal | undefined,
) {
  const deadline = Date.now() + timeoutMs;
  let lastCheck = 0;
  for (;;) {
    if (signal?.aborted) throw new Stopped();
    await target.query(`begin isolation level repeatable read${job.repair ? "" : " read only"}`);
    const { rows } = await target.query<{ tick: number | null; copy_tick: number | null }>(
      `select (select tick_id::pg_catalog.float8 from dbsync.applied where sub_uuid OPERATOR(pg_catalog.=) $1::pg_catalog.uuid) as tick,
              (select copy_tick::pg_catalog.float8 from dbsync.copied
                where sub_uuid OPERATOR(pg_catalog.=) $1::pg_catalog.uuid and table_id OPERATOR(pg_catalog.=) $2::pg_catalog.int4) as copy_tick`,
      [job.sub_uuid, job.table_id],
    );
    const at = rows[0].tick;
    if (at === tick) {
      const copyTick = rows[0].copy_tick;
      if (copyTick !== null && copyTick > tick) {
        throw new DbsyncError(`${table} was copied again (at tick ${copyTick}) during the verification at tick ${tick}`, {
          table,
          hint: "Run the verification again once the copy has caught up.",
        });
      }
      if (copyTick === null && job.copy_data) {
        throw new DbsyncError(`${table} is not copied to the target yet`, {
          table,
          hint: "Wait until dbsync.table_status shows it streaming, then verify.",
        });
      }
      return;
    }
    await target.query("rollback");
    if (at !== null && at > tick) {
      throw new MovedPast(`the target moved past the verification tick ${tick} (it is at ${at})`, {
        table,
        hint: "dbsync.begin_batch must end batches at the tick dbsync._verify_hold returns, and take its own ticks only after that call; run `dbsync migrate` with a dbsync that does.",
      });
    }
    if (Date.now() - lastCheck > 1000) {
      lastCheck = Date.now();
      const sub = await loadSubscription(control, job.subscription);
      if (!sub || sub.sub_id !== job.sub_id) throw new DbsyncError(`subscription "${job.subscription}" was dropped`, {});
      if (sub.paused) {
        throw new DbsyncError(`subscription "${job.subscription}" was paused before its target reached tick ${tick}`, {
          hint: `Resume it (select dbsync.resume('${job.subscription}')) and verify again.`,
        });
      }
      if (Date.now() > deadline) {
        throw new DbsyncError(
          `the target did not reach tick ${tick} within ${Math.round(timeoutMs / 1000)} s (it is at ${at ?? "none"})` +
            (sub.last_error ? `; the subscription's last error: ${sub.last_error}` : ""),
          { hint: "See dbsync.status: the subscription must be applying for a verification to run." },
        );
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
