// Applying one batch to a target, set-wise, in one transaction that also moves the
// target's position (exactly once: see progress.ts). The rows come from the
// source's reader transaction at the batch's snapshot, so order inside the batch
// does not matter:
//  1. the batch's DDL (execute_ddl) first, so the target has the shape the rows are
//     read in; a DDL statement that fails there (a constraint that the rows of this
//     batch will satisfy) runs again after the rows;
//  2. tables to copy, and tables truncated in the batch, are emptied;
//  3. the refreshed tables' rows and gone keys arrive in one stream from the reader
//     (stream.ts), cut into pieces that the target merges while the reader reads
//     the next ones (merge.ts): the keys that are gone are deleted, the rows written
//     over the target's rows of the same key by an UPDATE (less WAL than a DELETE
//     and an INSERT, no dead row, and HOT where the pages have room) and the rest
//     inserted. Where that cannot work (a unique value that moved between rows of
//     the batch, keys of several shapes), every row of a changed key is deleted and
//     the rows inserted: the result is the same;
//  4. each copy streams every row straight into its table (a chunk of a big
//     table's copy only its key range: the first chunk empties the table in step 2,
//     later ones add to it after the table's refresh in step 3, see
//     sql/functions/_copy_chunks.sql); tables differ from step 3's, so the order
//     does not matter, and the reader is free once the stream is read;
//  5. sequences, then the position; the commit does not wait for its WAL flush
//     (the caller flushes before the position reaches the source: commitStatements).
//     A small batch's merge of step 3 waits for it, and goes in its round trip.
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Client, escapeIdentifier as ident } from "pg";
import { to as copyTo } from "pg-copy-streams";
import { copyFrom } from "../db/copy-from";
import { undoSavepoint } from "../db/savepoint";
import { PINNED_RESET } from "../db/settings";
import { DbsyncError, PositionMoved, messageOf, sqlstateOf, targetColumnsNotGenerated } from "../errors";
import { Batch, DdlEvent, Plan, PlanTable } from "../source/batches";
import { Phases } from "./phases";
import { beginApply, commitApply, commitStatements, enterReplicaMode, recordCopies } from "./progress";
import { SequenceSync } from "./sequences";
import { INLINE_LINES, StagedTable, StreamMerge } from "./merge";
import { StageTables, TargetTable } from "./stage";
import { StraightCopies } from "./straight-copies";
import { withTable } from "./tables";
import { Helpers, readStreams } from "./readers";
import { Piece, PieceSink, SinkItem } from "./stream";

export interface ApplyResult {
  events: number;
  /** [table_id, copy_request, rows] of the tables copied. */
  copied: [number, number, number][];
  /** [seq_id, value]: the target's sequences are at least there. */
  sequences: [number, string][];
}

/** What a subscription's target connection keeps between batches. */
export interface TargetState {
  stages: StageTables;
  sequences: SequenceSync;
  /** Shared by the connections to one target database. */
  straight: StraightCopies;
}

export interface ApplyHooks {
  /** A copy inside the batch has streamed `rows` rows so far (about every 250 ms). */
  copyProgress?: (t: PlanTable, rows: number) => void;
  /** Where the batch's time goes (the "batch applied" debug line). */
  phases?: Phases;
  /** Called once the batch has read all it reads on the source (before the target commits). */
  sourceRead?: () => Promise<unknown>;
  /**
   * The commit of the batch's tick on the source (see OpenedReader): awaited
   * before sourceRead and the target's commit.
   */
  tickCommitted?: Promise<void>;
  /** More source readers for a big batch's streams (readers.ts); without, one reader. */
  helpers?: Helpers;
}

export async function applyBatch(
  reader: Client,
  target: Client,
  subUuid: string,
  batch: Batch,
  plan: Plan,
  state: TargetState,
  hooks: ApplyHooks = {},
): Promise<ApplyResult> {
  const copied: ApplyResult["copied"] = [];
  const phases = hooks.phases ?? new Phases();
  let sequences: ApplyResult["sequences"] = [];
  let deferred: DdlEvent[] = [];
  let sourceDone: Promise<unknown> | undefined;
  let now = new Map<string, TargetTable>();
  const only = (t: PlanTable) => ((now.get(t.target)?.partitioned ?? t.partitioned) ? t.target : `only ${t.target}`);
  /** The target's side up to the refreshed tables' rows: their stages by table_id. */
  const prepare = async (): Promise<Map<number, StagedTable>> => {
    const refreshed = plan.tables.filter((t) => t.action === "refresh").map((t) => t.target);
    const names = plan.tables.map((t) => t.target);
    // Without DDL in the batch, the tables are locked and described (see below) in
    // the transaction's first round trip; when that fails (a table missing on the
    // target), as below.
    const first = !plan.ddl.length && refreshed.length > 0 && (await beginApply(
      target, subUuid, batch.from, `${lockTables(refreshed)};\n${await state.stages.describing(target, names)}`,
    ).catch(async (err) => {
      if (err instanceof PositionMoved) throw err;
      await target.query("rollback");
      return undefined;
    }));
    const locked = !!first;
    if (!locked) await beginApply(target, subUuid, batch.from);
    deferred = await phases.time("DDL", () => runDdl(target, plan.ddl, () => state.stages.dropAll(target)));
    if (plan.ddl.length) state.stages.forget();
    // The target's tables as they are after the DDL: their columns' types, and
    // whether they are partitioned there. DELETE, UPDATE and TRUNCATE say ONLY for a
    // plain table (its inheritance children are tables of their own), never for a
    // partitioned one (ONLY would touch no row of its partitions).
    // Locked first: the unique indexes described cannot be dropped until the batch
    // commits (merge.ts copies new rows straight into a table whose unique index
    // refuses duplicates; without that index, rows of keys it has would be copied
    // in beside the old ones).
    if (!locked) await lockExisting(target, refreshed);
    now = first ? state.stages.described(first[1].rows) : await state.stages.describe(target, names);
    for (const t of plan.tables) {
      const plain = t.generated?.filter((c) => now.get(t.target)?.plainColumns.includes(c));
      if (plain?.length) throw targetColumnsNotGenerated(t.target, plain);
    }
    await emptyTables(target, plan.tables.filter((t) => (t.action === "copy" && !addsChunk(t)) || t.truncate), only);
    const staged = new Map<number, StagedTable>();
    for (const t of plan.tables.filter((t) => t.action === "refresh")) {
      const desc = now.get(t.target);
      const stage = await withTable(t.target, () => state.stages.ensure(target, t.target, t.columns, desc, !!plan.shared?.includes(t.table_id)));
      const key = t.upsert_key;
      const refusesDuplicates = !!key && !!desc?.uniqueKeys.some((u) => u.every((c) => key.includes(c)));
      staged.set(t.table_id, { t, stage, table: only(t), refusesDuplicates });
    }
    return staged;
  };
  // The target's preparation (its transaction, the DDL, locks, stages) runs while
  // the source already reads the stream (its keys are hashed before the first line
  // comes: a backlog's first piece took about 0.4 s); the pieces wait for it.
  let prepared: Promise<Map<number, StagedTable>> | undefined;
  let merge: StreamMerge | undefined;
  let tickDone = !hooks.tickCommitted;
  hooks.tickCommitted?.then(
    () => (tickDone = true),
    () => undefined,
  );
  try {
    if (plan.stream) {
      // Hash joins of each table with its many keys (see batch_plan).
      if (plan.stream_hash_joins) await reader.query("set local enable_nestloop = off");
      prepared = prepare();
      // Without DDL or a truncated table, a small batch's tables are merged in one
      // round trip (StreamMerge.items), once its whole stream is there.
      const combine = !plan.ddl.length && !plan.tables.some((t) => t.truncate);
      const events = plan.tables.reduce((n, t) => n + (t.action === "refresh" ? Number(t.events) : 0), 0);
      const whole = combine && events <= INLINE_LINES;
      // Such a stream is merged with the commit (mergeAndCommit) where nothing comes between: no copy.
      const holds = whole && plan.tables.every((t) => t.action === "refresh");
      const ready = prepared.then((staged) => (merge = new StreamMerge(target, staged, phases, withTable, state.stages, state.straight, combine, holds)));
      // (Awaited by the pieces, after the stream and before any rollback: a failure
      // before the first piece is not an unhandled rejection.)
      ready.catch(() => undefined);
      const sink: PieceSink = {
        ready,
        whole,
        piece: async (p: Piece) => (await ready).piece(p),
        end: async (id: number) => (await ready).end(id),
        items: async (items: SinkItem[]) => (await ready).items(items),
      };
      const width = plan.stream_width ?? 0;
      const refreshed = new Map(plan.tables.filter((t) => t.action === "refresh").map((t) => [t.table_id, t]));
      const waits = await phases.time("stream", () =>
        readStreams(reader, plan, (id) => {
          const t = refreshed.get(id);
          return t && width - t.columns.length;
        }, sink, phases, hooks.helpers),
      );
      phases.mark("streamed");
      phases.add("target waited for the source", waits.targetWaitedMs);
      phases.add("source waited for the target", waits.sourceWaitedMs);
      if (plan.stream_hash_joins) await reader.query("set local enable_nestloop = default");
    }
    await (prepared ??= prepare());

    const records: [number, number][] = [];
    const copy = (t: PlanTable) =>
      withTable(t.target, async () => {
        const rows = await copyInto(reader, target, t, hooks);
        records.push([t.table_id, rows + (t.chunk?.rows_before ?? 0)]);
        copied.push([t.table_id, t.copy_request, rows]);
      });
    for (const t of plan.tables.filter((t) => t.action === "copy" && !addsChunk(t))) await phases.time("table copies", () => copy(t));
    // A later chunk of a chunked copy after its table's refresh: the rows at or
    // below the boundary are then the source's at this snapshot, and the chunk's
    // rows (above it) join a consistent set (a unique value that moved from a row
    // below the boundary to one in the chunk is off the first before the second comes).
    for (const t of plan.tables.filter(addsChunk)) await phases.time("table copies", () => copy(t));
    await recordCopies(target, subUuid, batch.to, records);
    if (deferred.length) await phases.time("DDL", () => runDdl(target, deferred));
    const pushed = await phases.time("sequences", () => state.sequences.push(plan.sequences, target));
    sequences = pushed.at;
    // Held rows wait for no slow commit of the tick: merged while it goes on.
    if (!tickDone) await merge?.release();
    if (hooks.tickCommitted) await phases.time("tick commit", () => hooks.tickCommitted!);
    // Visible without waiting for the flush: the caller flushes before it reports (see commitStatements).
    const to = { tick: batch.to, key: batch.key };
    phases.mark("committing");
    // A small batch's rows, held since its stream ended, go with the commit (nothing
    // to trim: StageTables.trims, asked once the merge's statements are made).
    const committed = await merge?.mergeAndCommit(() => (state.stages.trims() ? undefined : commitStatements(subUuid, to, pushed.atCommit, true)));
    // Nothing more is read on the source: its transaction ends (while the target
    // commits, where the merge did not commit with it).
    sourceDone = hooks.sourceRead?.();
    sourceDone?.catch(() => undefined);
    if (!committed) {
      await state.stages.trim(target);
      await phases.time("commit", () => commitApply(target, subUuid, to, pushed.atCommit, true));
    }
  } catch (err) {
    // A target statement still running would be followed by the rollback, and its
    // next statement would then run outside the batch's transaction.
    await prepared?.catch(() => undefined);
    await target.query("rollback").catch(() => undefined);
    state.stages.rolledBack();
    state.sequences.forget();
    throw err;
  }
  state.stages.committed();
  await sourceDone;
  const events = plan.ddl.length + plan.tables.reduce((n, t) => n + Number(t.events), 0);
  return { events, copied, sequences };
}

/**
 * ROW EXCLUSIVE locks (those of the writes to come) on the tables of `names` that
 * exist; one that is missing fails later, with its own error. ONLY: a partitioned
 * table's unique index is its own, and inheritance children are not written.
 */
async function lockExisting(target: Client, names: string[]) {
  if (!names.length) return;
  const { rows } = await target.query<{ name: string }>(
    "select x as name from pg_catalog.unnest($1::pg_catalog.text[]) x where pg_catalog.to_regclass(x) is not null",
    [names],
  );
  if (rows.length) await target.query(lockTables(rows.map((r) => r.name)));
}

function lockTables(names: string[]): string {
  return `lock table ${names.map((t) => `only ${t}`).join(", ")} in row exclusive mode`;
}

/** A chunk of a chunked copy after its first: it adds rows to the table, which is not emptied. */
function addsChunk(t: PlanTable): boolean {
  return t.action === "copy" && !!t.chunk && !t.chunk.first;
}

/** Streams a copy's rows straight into the (emptied) target table; returns how many. */
async function copyInto(reader: Client, target: Client, t: PlanTable, hooks: ApplyHooks): Promise<number> {
  let rows = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
      cb(null, chunk);
    },
  });
  hooks.copyProgress?.(t, 0);
  const timer = hooks.copyProgress && setInterval(() => hooks.copyProgress!(t, rows), 250);
  // Which side failed first (the other is then destroyed with the same error): an
  // error the source raised while its rows were read (a permission, a row security
  // policy) must not get the advice for the target's errors on the table.
  let failed: "source" | "target" | undefined;
  try {
    const cols = t.columns.map((c) => ident(c)).join(", ");
    const from = reader.query(copyTo(t.sql!)).once("error", () => (failed ??= "source"));
    const to = target.query(copyFrom(`copy ${t.target} (${cols}) from stdin`)).once("error", () => (failed ??= "target"));
    await pipeline(from, counter, to);
  } catch (err) {
    const sqlstate = sqlstateOf(err);
    if (failed !== "source" || !sqlstate || /^(08|57)/.test(sqlstate)) throw err;
    throw new DbsyncError(messageOf(err), {
      table: t.target,
      sqlstate,
      cause: err,
      hint: `The source raised it while the sidecar read the rows of ${t.target} there, as its source role (see README, Security: sidecar, source side).`,
    });
  } finally {
    if (timer) clearInterval(timer);
  }
  return rows;
}

/**
 * Empties the tables a batch copies or truncates: one TRUNCATE for all of them in
 * one round trip (with many small tables, a round trip per table was most of their
 * copy's time), or table by table when that fails (a table referenced by a foreign
 * key needs DELETE; an error then names its table).
 */
async function emptyTables(target: Client, tables: PlanTable[], only: (t: PlanTable) => string) {
  if (tables.length > 1) {
    try {
      await target.query(`savepoint empty_tables; truncate ${tables.map(only).join(", ")}; release savepoint empty_tables`);
      return;
    } catch {
      await target.query(undoSavepoint("empty_tables"));
    }
  }
  for (const t of tables) await withTable(t.target, () => emptyTable(target, only(t)));
}

/**
 * TRUNCATE is fast and leaves no dead rows; a table referenced by a foreign key needs
 * DELETE. (The savepoint released either way: undoSavepoint.)
 */
async function emptyTable(target: Client, table: string) {
  try {
    await target.query(`savepoint empty_table; truncate ${table}; release savepoint empty_table`);
  } catch (err) {
    if (sqlstateOf(err) !== "0A000") throw err;
    await target.query(`${undoSavepoint("empty_table")}; delete from ${table}`);
  }
}

/**
 * Runs DDL from execute_ddl, each statement with the search_path and the settings it
 * ran with on the source (its literals read, and its values written as text, as
 * there), set locally and put back after it. With `dropStages` (before the batch's
 * rows), a statement that fails is rolled back to its savepoint and returned, to
 * run again after the batch's rows (a constraint or index that the rows of this
 * batch make valid); otherwise a failure is the batch's error. A statement that
 * fails on objects depending on what it drops runs again once the session's
 * stages are dropped: they outlive DDL (stage.ts), and one with a column of a type
 * the DDL drops made DROP TYPE fail.
 */
async function runDdl(target: Client, ddl: DdlEvent[], dropStages?: () => Promise<void>): Promise<DdlEvent[]> {
  const deferred: DdlEvent[] = [];
  if (!ddl.length) return deferred;
  const names = [...new Set(ddl.flatMap((d) => ["search_path", ...Object.keys(d.settings ?? {})]))];
  const { rows } = await target.query<{ before: Record<string, string> }>(
    "select pg_catalog.jsonb_object_agg(n, pg_catalog.current_setting(n)) as before from pg_catalog.unnest($1::text[]) n",
    [names],
  );
  const setLocally = (settings: Record<string, string>) =>
    target.query("select pg_catalog.set_config(s.key, s.value, true) from pg_catalog.jsonb_each_text($1::jsonb) s", [settings]);
  try {
    for (const d of ddl) {
      for (let stagesDropped = false; ; ) {
        if (dropStages) await target.query("savepoint dbsync_ddl");
        try {
          await setLocally({ ...rows[0].before, ...d.settings, search_path: d.search_path });
          await target.query(d.ddl);
          if (dropStages) await target.query("release savepoint dbsync_ddl");
          break;
        } catch (err) {
          if (!dropStages) throw ddlFailed(d, err);
          await target.query(undoSavepoint("dbsync_ddl"));
          if (sqlstateOf(err) === "2BP01" && !stagesDropped) {
            stagesDropped = true;
            await dropStages();
            continue;
          }
          deferred.push(d);
          break;
        }
      }
    }
  } finally {
    await setLocally(rows[0].before).catch(() => undefined);
  }
  await restoreSession(target);
  return deferred;
}

function ddlFailed(d: DdlEvent, err: unknown): DbsyncError {
  return new DbsyncError(`DDL queued by execute_ddl (event ${d.ev_id}) failed on the target: ${messageOf(err)}: ${d.ddl}`, {
    sqlstate: sqlstateOf(err),
    cause: err,
    hint: `Fix the target so that this DDL succeeds (the subscription retries it), or make the change there by hand and skip it: select dbsync.skip_ddl('<subscription>', ${d.ev_id}).`,
  });
}

/**
 * DDL from execute_ddl runs in the apply session and may change it (SET, SET LOCAL,
 * SET ROLE, set_config): a session_replication_role of origin would fire the
 * target's own triggers on the batch's rows, a client_encoding would change how
 * they are read, a datestyle how they are parsed. Put back as dbsync set it up:
 * RESET, to the values of the session's start (a SET would show as the session's
 * own to links.ts, which then closed the connection, its stages with it, after
 * every batch with DDL). Other session-level SETs: links.ts closes the connection
 * when it is given back, instead of leasing it to another subscription.
 */
async function restoreSession(target: Client) {
  await target.query(`reset role; ${PINNED_RESET}; reset client_encoding`);
  await enterReplicaMode(target);
}
