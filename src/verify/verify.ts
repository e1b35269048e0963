// The "verify" job: compares one table on the source with its copy on one
// subscription's target, both exactly as of one tick of the stream, while writes
// and replication go on, and optionally repairs the target.
//
// One consistent point on both sides, without touching the applier:
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
//
// Columns: every stored column of the table as of T (dbsync.table_layout); each
// must exist on the target (one that does not, such as a column added on the source
// by a plain ALTER TABLE, fails the verification with its name). Columns that only
// the target has are not replicated and not compared.
//
// No code a table owner wrote runs here (the sidecar's role may be privileged): a
// value becomes text only through its (base) type's output function, called by its
// qualified name (as dbsync._text_of does), never through a cast; keys compare with
// OPERATOR(pg_catalog.=) / ordering only when both sides' types are pg_catalog's,
// else as output text (ordered in the "C" collation); text becomes a value only by
// a cast to a pg_catalog type, or by COPY into the target table (input functions
// run as the target role, as the applier's do); every function and operator is
// qualified.
//
// Background verification (dbsync._verify_schedule) asks for a bounded range: keys
// after key_after, row_limit source rows at most. The job reports the last key it
// compared (key_reached), or reached_end when the source ran out first: that last
// range is open at the top, so target rows past the source's last key are compared
// too, as the first range (key_after NULL) is open at the bottom. Then
// dbsync._verify_record books it.
//
// Comparison, in key-range chunks taken from the source in key order (keyset
// pagination, CHUNK_ROWS rows each): per chunk, each side returns count(*) and the
// sum of a 64-bit prefix of the md5 of the row's column texts (as one text[]) under
// dbsync's pinned settings. The sum does not depend on row order (so neither on
// collation inside a chunk) and needs no big string in memory. A chunk whose count
// or sum differs is compared row by row (key and md5 per row, the target's side
// paged). A key seen in that range on one side only is looked up by key equality on
// the other side before it is reported, so two collations that order a boundary key
// differently cause no false difference. Repair deletes the differing keys on the
// target and COPYs the source's rows in, in the target's REPEATABLE READ
// transaction at T, with session_replication_role = replica.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Client, Pool, escapeIdentifier as ident } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { forServer } from "../compat";
import { closeQuietly, connect } from "../db/connect";
import { DbsyncError, messageOf, sqlstateOf, withHint } from "../errors";
import { Log } from "../log";
import {
  VerifyCounts as Counts,
  VerifyJob as Job,
  beginVerification,
  loadSubscription,
  loadVerification,
  recordBackgroundVerification,
  tryLock,
  releaseVerification,
  verifyComparing,
  verifyCounts,
  verifyDone,
  verifyFailed,
  verifyRequeue,
  verifySnapshot,
} from "../source/protocol";
import { readAtSnapshot } from "../source/snapshot";
import { ensureTargetSchema, enterReplicaMode } from "../target/progress";
import { unreadyTargetTables, withTable } from "../target/tables";

/** How many differing keys dbsync.verifications keeps. */
export const DIFF_KEYS_CAP = 1000;
/** Fresh ticks taken when an applier's batch ended past the verification's tick. */
const TICK_ATTEMPTS = 3;

export interface VerifyOptions {
  /** Source rows per chunk. */
  chunkRows?: number;
  /** Give up if the target has not reached the verification's tick by then. */
  waitTimeoutMs?: number;
  /** The sidecar is stopping: give the verification back (queued) for a later run. */
  signal?: AbortSignal;
  /**
   * Verifications this process runs at once; beyond, the job returns "busy" at once
   * and the sidecar's next scan offers it again. A verify job waits for the applier
   * to reach its tick, so it must never take every worker slot: the sidecar passes
   * its concurrency - 1. Default: no limit.
   */
  maxConcurrent?: number;
  /**
   * Background verifications this process runs at once (default 1): they are a
   * safety net, never a reason for appliers to wait on verifications.
   */
  maxBackground?: number;
  /** Told when a verification ends, done or failed (for metrics). */
  onFinished?: (r: Finished) => void;
}

export interface Finished {
  subscription: string;
  /** As dbsync.table_status names it. */
  table: string;
  background: boolean;
  ok: boolean;
  rowsCompared: number;
  differing: number;
}

export type VerifyOutcome = "done" | "error" | "busy" | "nothing" | "stopped";

class Stopped extends Error {}
/** The target went past the tick before the hold stopped it (see step 2). */
class MovedPast extends DbsyncError {}

let active = 0;
let activeBackground = 0;
let warnedNoSlot = false;

/** A column on one side, and how its values become text there. */
interface Col {
  name: string;
  /** Its base type (under domains) is one of pg_catalog's. */
  builtin: boolean;
  /** The base type is pg_catalog.text: the value is its text. */
  isText: boolean;
  /** The base type's name (in pg_catalog when builtin). */
  typname: string;
  /** The base type's output function, qualified and quoted. */
  outfn: string;
  /** The base type, qualified and quoted, when the column's type is a domain over it. */
  domainBase: string | null;
  generated: boolean;
}

/** A key column on one side; byValue: compared and ordered as values (both sides' types are pg_catalog's). */
interface KeyCol {
  col: Col;
  byValue: boolean;
}

interface SideLayout {
  cols: Col[];
  keys: KeyCol[];
}

interface Layout {
  source: SideLayout;
  target: SideLayout;
}

interface SourceTable {
  /** The table's current name on the source (from its oid), for reading it. */
  name: string;
  /** Its name as of T, always quoted (as the applier names it): the name on the target at T. */
  targetName: string;
  relid: number;
  columns: string[];
  keyCols: string[];
  cols: Map<string, Col>;
}

type Key = string[];
interface RowSig {
  k: Key;
  d: string;
  h: string;
}

export async function runVerify(
  sourceUrl: string | undefined,
  control: Pool,
  verificationId: number,
  log: Log,
  opts: VerifyOptions = {},
): Promise<VerifyOutcome> {
  const max = opts.maxConcurrent ?? Infinity;
  if (active >= max) {
    if (max <= 0 && !warnedNoSlot) {
      warnedNoSlot = true;
      log.warn("verifications need a worker slot besides the appliers': run the sidecar with --concurrency 2 or more");
    }
    return "busy";
  }
  active++;
  try {
    return await verifyOnce(sourceUrl, control, verificationId, log, opts);
  } finally {
    active--;
  }
}

async function verifyOnce(
  sourceUrl: string | undefined,
  control: Pool,
  verificationId: number,
  log: Log,
  opts: VerifyOptions,
): Promise<VerifyOutcome> {
  const load = () => loadVerification(control, verificationId);
  const job = await load();
  if (!job || (job.state !== "queued" && job.state !== "running")) return "nothing";
  if (!job.background) return verifyJob(sourceUrl, control, job, load, log, opts);
  if (activeBackground >= (opts.maxBackground ?? 1)) return "busy";
  activeBackground++;
  try {
    return await verifyJob(sourceUrl, control, job, load, log, opts);
  } finally {
    activeBackground--;
  }
}

async function verifyJob(
  sourceUrl: string | undefined,
  control: Pool,
  first: Job,
  load: () => Promise<Job | undefined>,
  log: Log,
  opts: VerifyOptions,
): Promise<VerifyOutcome> {
  const verificationId = first.verification_id;
  const chunkRows = opts.chunkRows ?? 10_000;
  // One background verification at a time per source: one stuck behind a slow
  // stream must not hold up every other subscription's for long.
  const waitTimeoutMs = opts.waitTimeoutMs ?? (first.background ? 120_000 : 600_000);
  let job: Job | undefined = first;
  const appName = `dbsync verify ${verificationId}`.slice(0, 63);
  const table = `${ident(job.schema_name)}.${ident(job.table_name)}`;
  const vlog = log.child({ verification: verificationId, subscription: job.subscription, table, background: job.background });
  // Every interval, for every subscription: not news unless it found something.
  const info = job.background ? vlog.debug.bind(vlog) : vlog.info.bind(vlog);
  const finished = (ok: boolean) =>
    opts.onFinished?.({
      subscription: first.subscription,
      table: first.verified_name,
      background: first.background,
      ok,
      rowsCompared: counts.rowsCompared,
      differing: counts.missing + counts.extra + counts.different,
    });

  let holder: Client | undefined, reader: Client | undefined, target: Client | undefined;
  let begun = false;
  const counts: Counts = { rowsCompared: 0, chunks: 0, chunksDiffering: 0, missing: 0, extra: 0, different: 0, repaired: 0, keys: [] };
  try {
    holder = await connect(sourceUrl, { applicationName: appName });
    if (!(await tryLock(holder, "verify", verificationId))) return "busy";
    job = await load(); // another process may have finished it meanwhile
    if (!job || (job.state !== "queued" && job.state !== "running")) return "nothing";

    target = await connect(job.target_conninfo, { applicationName: appName });
    await ensureTargetSchema(target);
    // A repair writes as the applier does; outside any transaction, as the
    // fallback for roles that may not set the parameter needs it.
    if (job.repair) await enterReplicaMode(target);
    reader = await connect(sourceUrl, { applicationName: appName });
    // Idle while the target catches up to T; bounded by the wait's own timeout.
    await reader.query(`set idle_in_transaction_session_timeout = ${Math.ceil(waitTimeoutMs + 600_000)}`);
    await target.query("set idle_in_transaction_session_timeout = 600000");

    let tick = 0;
    let src: SourceTable | undefined;
    for (let attempt = 1; ; attempt++) {
      // 1. The source at tick T, held.
      begun = true;
      tick = await holdTick(holder, reader, verificationId);
      info({ tick, repair: job.repair }, "verification started");
      try {
        src = await sourceTable(reader, job.table_id, job.relid, table);
        // 2 + 3. The target at exactly T.
        await waitForTarget(control, target, job, tick, waitTimeoutMs, src.targetName, opts.signal);
        break;
      } catch (err) {
        if (!(err instanceof MovedPast) || attempt >= TICK_ATTEMPTS) throw err;
        info({ tick }, `${err.message}; starting over at a new tick`);
        await reader.query("rollback");
        await releaseVerification(control, verificationId);
      }
    }
    const layout = await targetLayout(target, src);
    await checkNotRewritten(target, "pg_catalog.to_regclass($1)", src.targetName, "the target");

    // 4. Without repair, let the stream go on.
    if (!job.repair) await releaseVerification(control, verificationId);
    await verifyComparing(control, verificationId);
    vlog.debug({ tick }, "both sides at the verification tick; comparing");

    const cmp = new Comparer(reader, target, src, job.partitioned, layout, job.repair, counts, opts.signal);
    let lastReport = 0;
    const report = async (force = false) => {
      if (!force && Date.now() - lastReport < 250) return;
      lastReport = Date.now();
      await verifyCounts(control, verificationId, counts);
    };
    // A start key of another shape (the table's key changed since it was stored)
    // means nothing here: the range starts at the first key.
    const after = job.key_after && job.key_after.length === src.keyCols.length ? job.key_after : null;
    const range = await cmp.run(chunkRows, () => report(), after, job.row_limit ?? Infinity);
    await target.query("commit");
    await reader.query("commit");
    await report(true);
    await verifyDone(control, verificationId, range.reached, range.end);
    const differing = counts.missing + counts.extra + counts.different;
    const outcome = { tick, rows: counts.rowsCompared, chunks: counts.chunks, differing, repaired: counts.repaired };
    if (job.background) {
      // The verification is done whatever happens here; _verify_schedule books it later.
      await recordBackgroundVerification(control, verificationId).catch((e) =>
        vlog.warn({ err: messageOf(e) }, "could not book the background verification yet"),
      );
      if (differing > 0) {
        vlog.warn(
          { ...outcome, keys: counts.keys.slice(0, 10) },
          `background verification found ${differing} row(s) of ${table} that differ on the target; ` +
            `see dbsync.table_status, and copy it again with select dbsync.resync_table('${job.subscription}', '${table}')`,
        );
      } else info(outcome, "verification done");
    } else vlog.info(outcome, "verification done");
    finished(true);
    return "done";
  } catch (err) {
    if (err instanceof Stopped) {
      vlog.info("verification interrupted: the sidecar is stopping; it will start over");
      await verifyRequeue(control, verificationId).catch(() => undefined);
      return "stopped";
    }
    const ctx = err instanceof DbsyncError ? err.context : {};
    const message = withHint(messageOf(err), ctx.hint);
    vlog.error({ sqlstate: ctx.sqlstate ?? sqlstateOf(err) }, `verification failed: ${message}`);
    await verifyFailed(control, verificationId, message, counts.rowsCompared, counts.chunks).catch((e) =>
      vlog.warn({ err: messageOf(e) }, "could not record the verification's error"),
    );
    if (first.background) {
      await recordBackgroundVerification(control, verificationId).catch((e) =>
        vlog.warn({ err: messageOf(e) }, "could not book the background verification's error"),
      );
    }
    finished(false);
    return "error";
  } finally {
    // The hold goes before the reader whose snapshot it names.
    if (begun) await releaseVerification(control, verificationId).catch(() => undefined);
    // Closing the holder also releases the advisory lock (and with it any hold).
    await Promise.all([closeQuietly(reader), closeQuietly(target), closeQuietly(holder)]);
  }
}

/**
 * Steps 1 and 2: takes tick T with its hold, leaves `reader` in a REPEATABLE READ
 * transaction at T whose export the hold names, and returns T.
 */
async function holdTick(holder: Client, reader: Client, verificationId: number): Promise<number> {
  await holder.query("begin isolation level read committed");
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
 * Columns of a relation and how to turn each one's values into text: the base type
 * under any domain, its output function, whether it is one of pg_catalog's.
 */
async function columnsOf(client: Client, relExpr: string, rel: unknown): Promise<Map<string, Col>> {
  // forServer: before PostgreSQL 12 there is no attgenerated (and no generated column).
  const { rows } = await client.query<Col>(
    await forServer(client, `with recursive base(attnum, typ, basetype, domain) as (
         select a.attnum, a.atttypid, ty.typbasetype, false
           from pg_catalog.pg_attribute a join pg_catalog.pg_type ty on ty.oid OPERATOR(pg_catalog.=) a.atttypid
          where a.attrelid OPERATOR(pg_catalog.=) ${relExpr} and a.attnum OPERATOR(pg_catalog.>) 0 and not a.attisdropped
         union all
         select b.attnum, ty.oid, ty.typbasetype, true
           from base b join pg_catalog.pg_type ty on ty.oid OPERATOR(pg_catalog.=) b.basetype
          where b.basetype OPERATOR(pg_catalog.<>) 0::pg_catalog.oid)
     select a.attname::pg_catalog.text as name, a.attgenerated OPERATOR(pg_catalog.<>) ''::pg_catalog."char" as generated,
            ty.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid as builtin,
            ty.oid OPERATOR(pg_catalog.=) 'pg_catalog.text'::pg_catalog.regtype::pg_catalog.oid as "isText",
            ty.typname::pg_catalog.text as typname,
            pg_catalog.format('%I.%I', n.nspname, p.proname) as outfn,
            case when b.domain then pg_catalog.format('%I.%I', tn.nspname, ty.typname) end as "domainBase"
       from base b
       join pg_catalog.pg_attribute a on a.attrelid OPERATOR(pg_catalog.=) ${relExpr} and a.attnum OPERATOR(pg_catalog.=) b.attnum
       join pg_catalog.pg_type ty on ty.oid OPERATOR(pg_catalog.=) b.typ
       join pg_catalog.pg_namespace tn on tn.oid OPERATOR(pg_catalog.=) ty.typnamespace
       join pg_catalog.pg_proc p on p.oid OPERATOR(pg_catalog.=) ty.typoutput
       join pg_catalog.pg_namespace n on n.oid OPERATOR(pg_catalog.=) p.pronamespace
      where b.basetype OPERATOR(pg_catalog.=) 0::pg_catalog.oid
      order by b.attnum`),
    [rel],
  );
  return new Map(rows.map((r) => [r.name, r]));
}

/**
 * The table on the reader, as of T: its stored columns and key (dbsync.table_layout),
 * its names, its column types. Locks it and checks that it was not truncated or
 * rewritten since T.
 */
async function sourceTable(reader: Client, tableId: number, relid: number, table: string): Promise<SourceTable> {
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
  await reader.query(`lock table ${r.name} in access share mode`);
  await checkNotRewritten(reader, "$1::pg_catalog.oid", r.relid, "the source");
  const cols = await columnsOf(reader, "$1::pg_catalog.oid", r.relid);
  return { name: r.name, targetName: r.target_name, relid: r.relid, columns, keyCols, cols };
}

/**
 * TRUNCATE and rewriting ALTER TABLE are not MVCC-safe: a table rewritten after a
 * snapshot looks empty in it. The caller holds a lock on the table (so no rewrite
 * can follow); this checks that none came between its snapshot and the lock.
 */
async function checkNotRewritten(client: Client, relExpr: string, rel: unknown, side: string) {
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
async function waitForTarget(
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

/**
 * The target table at T (the caller's snapshot): every column the source has must
 * be there. Locks it, as reading it would, until the end of the transaction.
 */
async function targetLayout(target: Client, src: SourceTable): Promise<Layout> {
  const table = src.targetName;
  await withTable(table, () => target.query(`lock table ${table} in access share mode`));
  // After the lock: no column can go before columnsOf reads them.
  const unready = (await unreadyTargetTables(target, [{ target: table, columns: src.columns }])).get(table);
  if (unready) throw unready;
  const cols = await columnsOf(target, "pg_catalog.to_regclass($1)", table);
  const side = (m: Map<string, Col>): SideLayout => ({ cols: src.columns.map((c) => m.get(c)!), keys: [] });
  const source = side(src.cols);
  const dest = side(cols);
  for (const k of src.keyCols) {
    const s = src.cols.get(k)!;
    const t = cols.get(k)!;
    // Values only when both sides' types are pg_catalog's: else both order and
    // compare by output text, so that the two sides agree on the order.
    const byValue = s.builtin && t.builtin;
    source.keys.push({ col: s, byValue });
    dest.keys.push({ col: t, byValue });
  }
  return { source, target: dest };
}

/**
 * A column's value, as a value of its base type: a domain's is cast to it first
 * (casts from a domain are built in: PostgreSQL ignores CREATE CAST for domains),
 * since polymorphic output functions and operators (enum_out, array_out, array
 * comparison...) do not take domains.
 */
function baseValue(c: Col): string {
  const v = `t.${ident(c.name)}`;
  return c.domainBase ? `(${v})::${c.domainBase}` : v;
}

/** The text of a column's value by its base type's output function (dbsync._text_of's rule). */
function textOf(c: Col): string {
  const v = baseValue(c);
  return c.isText ? `(${v})::pg_catalog.text` : `pg_catalog.textin(${c.outfn}(${v}))`;
}

/** A COPY text-format field. */
function copyField(v: string | null): string {
  if (v === null) return "\\N";
  return v.replace(/[\\\n\r\t]/g, (ch) => (ch === "\\" ? "\\\\" : ch === "\n" ? "\\n" : ch === "\r" ? "\\r" : "\\t"));
}

/** One side of the comparison: SQL text for one connection, with that side's column types. */
class Side {
  private readonly cols: Col[];
  private readonly keys: KeyCol[];

  constructor(
    readonly client: Client,
    private readonly rel: string,
    layout: SideLayout,
  ) {
    this.cols = layout.cols;
    this.keys = layout.keys;
  }

  /** The key column as it is ordered and compared. */
  private ord(k: KeyCol) {
    return k.byValue ? baseValue(k.col) : `${textOf(k.col)} COLLATE pg_catalog."C"`;
  }
  private get order() {
    return this.keys.map((k) => this.ord(k)).join(", ");
  }
  /** Key value i of bound parameter $n (a text[] of key texts), typed as the key column is compared. */
  private boundValue(n: number, i: number, k: KeyCol) {
    const v = `($${n}::pg_catalog.text[])[${i + 1}]`;
    return k.byValue ? `(${v})::pg_catalog.${ident(k.col.typname)}` : v;
  }
  /** The row's key compared with `op` to the key in parameter $n. */
  private cmp(op: ">" | "<=", n: number) {
    const bounds = this.keys.map((k, i) => this.boundValue(n, i, k));
    return this.keys.length === 1
      ? `${this.ord(this.keys[0])} OPERATOR(pg_catalog.${op}) ${bounds[0]}`
      : `ROW(${this.order}) OPERATOR(pg_catalog.${op}) ROW(${bounds.join(", ")})`;
  }
  private get keyText() {
    return `ARRAY[${this.keys.map((k) => textOf(k.col)).join(", ")}]::pg_catalog.text[]`;
  }
  /** The key as it is shown in differing_keys: the text of a one-column key, else a record's. */
  private get display() {
    return this.keys.length === 1
      ? textOf(this.keys[0].col)
      : `pg_catalog.textin(pg_catalog.record_out(ROW(${this.keys.map((k) => textOf(k.col)).join(", ")})))`;
  }
  private get rowText() {
    return `pg_catalog.textin(pg_catalog.array_out(ARRAY[${this.cols.map(textOf).join(", ")}]::pg_catalog.text[]))`;
  }
  private get rowMd5() {
    return `pg_catalog.md5(${this.rowText})`;
  }
  private get rowHash() {
    return `(pg_catalog.concat('x', pg_catalog."left"(${this.rowMd5}, 16))::pg_catalog."bit"(64))::pg_catalog.int8::pg_catalog.numeric`;
  }
  /** Key range (lo, hi]: $1 = lo or null, $2 = hi or null. */
  private get range() {
    return `($1::pg_catalog.text[] is null or ${this.cmp(">", 1)})
        and ($2::pg_catalog.text[] is null or ${this.cmp("<=", 2)})`;
  }
  /** The row's key is one of the keys in parameters $first.. (one text[] per key column). */
  private byKeys(first: number) {
    const match = this.keys.map((k, i) => {
      const x = `dbsync_x.k${i}`;
      return k.byValue
        ? `${baseValue(k.col)} OPERATOR(pg_catalog.=) (${x})::pg_catalog.${ident(k.col.typname)}`
        : `${textOf(k.col)} COLLATE pg_catalog."C" OPERATOR(pg_catalog.=) ${x}`;
    });
    // ROWS FROM: a qualified unnest takes one array only.
    return `exists (select from rows from (${this.keys.map((_, i) => `pg_catalog.unnest($${first + i}::pg_catalog.text[])`).join(", ")})
                           as dbsync_x(${this.keys.map((_, i) => `k${i}`).join(", ")})
                     where ${match.join(" and ")})`;
  }
  /** Keys as parameters for byKeys: one array per key column. */
  private keyParams(keys: Key[]): string[][] {
    return this.keys.map((_, i) => keys.map((k) => k[i]));
  }

  /** The next `limit` rows after `lo` in key order: count, hash sum, last key. */
  async nextChunk(lo: Key | null, limit: number): Promise<{ n: number; sum: string; last: Key | null }> {
    const { rows } = await this.client.query(
      // The CTE's columns are expressions with their own names, never the table's
      // columns, so no column name of the table can clash with them.
      `with c as (
         select ${this.keyText} as k, ${this.rowHash} as h, pg_catalog.row_number() over (order by ${this.order}) as i
           from ${this.rel} t
          where $1::pg_catalog.text[] is null or ${this.cmp(">", 1)}
          order by ${this.order}
          limit ${Number(limit)})
       select pg_catalog.count(*)::pg_catalog.int4 as n, coalesce(pg_catalog.sum(c.h), 0) as sum,
              (select l.k from c l order by l.i desc limit 1) as last
         from c`,
      [lo],
    );
    return rows[0];
  }

  /** Count and hash sum of the rows in (lo, hi]. */
  async rangeSum(lo: Key | null, hi: Key | null): Promise<{ n: number; sum: string }> {
    const { rows } = await this.client.query(
      `select pg_catalog.count(*)::pg_catalog.int4 as n, coalesce(pg_catalog.sum(${this.rowHash}), 0) as sum
         from ${this.rel} t where ${this.range}`,
      [lo, hi],
    );
    return rows[0];
  }

  /** Rows of (lo, hi] after `after` in key order, `limit` at most: key, display key, md5. */
  async rangeRows(lo: Key | null, hi: Key | null, after: Key | null, limit: number): Promise<RowSig[]> {
    const { rows } = await this.client.query<RowSig>(
      `select ${this.keyText} as k, ${this.display} as d, ${this.rowMd5} as h
         from ${this.rel} t
        where ${this.range} and ($3::pg_catalog.text[] is null or ${this.cmp(">", 3)})
        order by ${this.order}
        limit ${Number(limit)}`,
      [lo, hi, after],
    );
    return rows;
  }

  /** The rows with these keys (by key equality: collation-independent). */
  async byKey(keys: Key[]): Promise<RowSig[]> {
    if (!keys.length) return [];
    const { rows } = await this.client.query<RowSig>(
      `select ${this.keyText} as k, ${this.display} as d, ${this.rowMd5} as h from ${this.rel} t where ${this.byKeys(1)}`,
      this.keyParams(keys),
    );
    return rows;
  }

  /** Every compared column as text, for the rows with these keys. */
  async fullRows(keys: Key[]): Promise<(string | null)[][]> {
    if (!keys.length) return [];
    const { rows } = await this.client.query(
      `select ARRAY[${this.cols.map(textOf).join(", ")}]::pg_catalog.text[] as r from ${this.rel} t where ${this.byKeys(1)}`,
      this.keyParams(keys),
    );
    return rows.map((r) => r.r);
  }

  async deleteKeys(keys: Key[]): Promise<number> {
    if (!keys.length) return 0;
    const r = await this.client.query(`delete from ${this.rel} t where ${this.byKeys(1)}`, this.keyParams(keys));
    return r.rowCount ?? 0;
  }

  /**
   * Inserts rows given as column texts by COPY: the target's input functions parse
   * them (as the applier's COPY does), never a cast to a type a table owner made.
   * `rel` must be the table's plain name (COPY has no ONLY; a partitioned table routes the rows).
   */
  async copyRows(rows: (string | null)[][]): Promise<void> {
    if (!rows.length) return;
    const cols = this.cols.map((c) => ident(c.name)).join(", ");
    const data = rows.map((r) => r.map(copyField).join("\t") + "\n").join("");
    await pipeline(Readable.from([Buffer.from(data, "utf8")]), this.client.query(copyFrom(`copy ${this.rel} (${cols}) from stdin`)));
  }
}

const keyId = (k: Key) => JSON.stringify(k);

class Comparer {
  private src: Side;
  private dst: Side;
  /** Target rows are inserted by the table's own name (no "only": a partitioned target routes them). */
  private dstInsert: Side;

  constructor(
    reader: Client,
    target: Client,
    table: SourceTable,
    partitioned: boolean,
    layout: Layout,
    private readonly repair: boolean,
    private readonly counts: Counts,
    private readonly signal: AbortSignal | undefined,
  ) {
    const only = partitioned ? "" : "only ";
    this.src = new Side(reader, `${only}${table.name}`, layout.source);
    this.dst = new Side(target, `${only}${table.targetName}`, layout.target);
    this.dstInsert = new Side(target, table.targetName, layout.target);
  }

  /**
   * Compares the keys after `from` (all keys when null), `limit` source rows at
   * most. Returns the last key compared, or end: the source ran out first, and the
   * last range was compared open at the top (target rows past the source's last key).
   */
  async run(
    chunkRows: number,
    progress: () => Promise<void>,
    from: Key | null = null,
    limit = Infinity,
  ): Promise<{ reached: Key | null; end: boolean }> {
    let lo: Key | null = from;
    let left = limit;
    let asked = Math.min(chunkRows, left);
    let next = this.src.nextChunk(lo, asked);
    for (;;) {
      if (this.signal?.aborted) throw new Stopped();
      const s = await next;
      const end = s.n < asked;
      const hi = end ? null : s.last;
      left -= s.n;
      const final = end || left <= 0;
      // Hash the next source chunk while the target hashes this one.
      if (!final) {
        asked = Math.min(chunkRows, left);
        next = this.src.nextChunk(hi, asked);
        next.catch(() => undefined); // awaited below; an early failure must not go unhandled
      }
      const t = await this.dst.rangeSum(lo, hi);
      if (s.n > 0 || t.n > 0) {
        this.counts.chunks++;
        this.counts.rowsCompared += s.n;
        if (s.n !== t.n || s.sum !== t.sum) {
          this.counts.chunksDiffering++;
          await this.drillDown(lo, hi, chunkRows);
        }
        await progress();
      }
      if (final) return { reached: hi, end };
      lo = hi;
    }
  }

  private record(kind: "missing" | "extra" | "different", d: string) {
    this.counts[kind]++;
    if (this.counts.keys.length < DIFF_KEYS_CAP) this.counts.keys.push(d);
  }

  /** Row-level comparison of (lo, hi]; repairs what differs when asked to. */
  private async drillDown(lo: Key | null, hi: Key | null, pageRows: number) {
    const src = new Map<string, RowSig>();
    for (const r of await this.src.rangeRows(lo, hi, null, Number.MAX_SAFE_INTEGER)) src.set(keyId(r.k), r);
    const different: RowSig[] = [];
    const onlyTarget: RowSig[] = [];
    let after: Key | null = null;
    for (;;) {
      const page = await this.dst.rangeRows(lo, hi, after, pageRows);
      for (const r of page) {
        const id = keyId(r.k);
        const s = src.get(id);
        if (!s) onlyTarget.push(r);
        else {
          src.delete(id);
          if (s.h !== r.h) different.push(s);
        }
      }
      if (page.length < pageRows) break;
      after = page[page.length - 1].k;
    }
    const onlySource = [...src.values()];
    // Rows seen in this range on one side only: look them up by key on the other.
    const missing: RowSig[] = [];
    for (const part of slices(onlySource, 1000)) {
      const found = new Map((await this.dst.byKey(part.map((r) => r.k))).map((r) => [keyId(r.k), r]));
      for (const r of part) {
        const t = found.get(keyId(r.k));
        if (!t) missing.push(r);
        else if (t.h !== r.h) different.push(r);
      }
    }
    const extra: RowSig[] = [];
    for (const part of slices(onlyTarget, 1000)) {
      // Present on the source: its own chunk compares it.
      const found = new Set((await this.src.byKey(part.map((r) => r.k))).map((r) => keyId(r.k)));
      for (const r of part) if (!found.has(keyId(r.k))) extra.push(r);
    }
    for (const r of missing) this.record("missing", r.d);
    for (const r of extra) this.record("extra", r.d);
    for (const r of different) this.record("different", r.d);
    if (!this.repair) return;
    const fix = [...different, ...extra];
    const copy = [...missing, ...different];
    for (const part of slices(fix, 1000)) await this.dst.deleteKeys(part.map((r) => r.k));
    for (const part of slices(copy, 1000)) await this.dstInsert.copyRows(await this.src.fullRows(part.map((r) => r.k)));
    this.counts.repaired += missing.length + extra.length + different.length;
  }
}

function* slices<T>(xs: T[], n: number): Generator<T[]> {
  for (let i = 0; i < xs.length; i += n) yield xs.slice(i, i + n);
}
