// Applying one batch to a target, set-wise, in one transaction that also moves the
// target's position (exactly once: see progress.ts). The batch is cut at the DDL
// that execute_ddl queued in it; in each piece, per table: TRUNCATE if the piece
// truncated it, then the table's changes, reduced on the source to the last state
// of each key, are streamed by COPY into a temp stage table and applied by two
// statements: delete every staged key, insert every staged new state. Deleting
// first means unique constraints never see a transient duplicate (swapped keys,
// swapped unique values) whatever the order inside the batch. Then the DDL runs,
// and the next piece follows with the new shapes.
import { pipeline } from "node:stream/promises";
import { Client, escapeIdentifier as ident } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { DbsyncError, messageOf, sqlstateOf } from "../errors";
import { Batch, BatchShape, ShapeSummary, Window, copyOutSql, ddlEvents, summarize } from "../source/batches";
import { Shape, keyColumns, qualifiedName } from "../source/catalog";
import { beginApply, commitApply } from "./progress";
import { SequenceSync } from "./sequences";
import { Stage, StageTables } from "./stage";

export interface ApplyResult {
  events: number;
}

/** What a subscription's target connection keeps between batches. */
export interface TargetState {
  stages: StageTables;
  sequences: SequenceSync;
}

export async function applyBatch(
  source: Client,
  target: Client,
  subUuid: string,
  batch: Batch,
  state: TargetState,
): Promise<ApplyResult> {
  const shapes = new Map(batch.shapes.filter(hasShape).map((s) => [s.shape_id, s]));
  const ddl = batch.shapes.some((s) => s.shape_id === null) ? await ddlEvents(source, batch) : [];
  const bounds = [null, ...ddl.map((d) => d.ev_id), null];
  let events = 0;
  try {
    await beginApply(target, subUuid, batch.from);
    for (let i = 0; i + 1 < bounds.length; i++) {
      const w = { after: bounds[i], before: bounds[i + 1] };
      const summary = ddl.length ? await summarize(source, batch, w) : batch.shapes;
      events += await applyWindow(source, target, batch, w, summary, shapes, state.stages);
      const d = ddl[i];
      if (d) {
        await runDdl(target, d.ddl, d.search_path, d.ev_id);
        events++;
      }
    }
    if (batch.hasSequences) await state.sequences.push(source, target, batch.groupId);
    await commitApply(target, subUuid, batch.to);
  } catch (err) {
    await target.query("rollback").catch(() => undefined);
    state.stages.rolledBack();
    state.sequences.forget();
    throw err;
  }
  state.stages.committed();
  return { events };
}

function hasShape(s: BatchShape): s is ShapeSummary & Shape {
  return s.shape_id !== null;
}

async function applyWindow(
  source: Client,
  target: Client,
  batch: Batch,
  w: Window,
  summary: ShapeSummary[],
  shapes: Map<number, Shape>,
  stages: StageTables,
): Promise<number> {
  const wanted = new Set(batch.tableIds);
  const parts = summary
    .filter((s) => s.shape_id !== null)
    .map((s) => ({ ...s, shape: shapes.get(s.shape_id!)! }))
    .filter((p) => wanted.has(p.shape.table_id));

  const lastTruncate = new Map<number, number>();
  for (const p of parts) {
    if (p.last_truncate !== null) {
      lastTruncate.set(p.shape.table_id, Math.max(lastTruncate.get(p.shape.table_id) ?? 0, p.last_truncate));
    }
  }
  const truncated = [...new Set(parts.filter((p) => lastTruncate.has(p.shape.table_id)).map((p) => qualifiedName(p.shape)))];
  if (truncated.length) {
    await withTable(truncated.join(", "), () => target.query(`truncate ${truncated.join(", ")}`));
  }
  // The next table's COPY starts on the source as soon as this table's is staged:
  // the source reads and sorts it while the target merges this one. Until it is
  // read, the socket holds it back (nothing is buffered here).
  const read = (p: (typeof parts)[number]) => {
    const out = source.query(copyTo(copyOutSql(batch, p.shape, { after: lastTruncate.get(p.shape.table_id) ?? w.after, before: w.before })));
    // An error before the pipeline reads the stream (the link broke meanwhile) would
    // be lost, and the pipeline would wait for ever: destroying the stream keeps it.
    out.on("error", (err) => {
      if (!out.destroyed) out.destroy(err);
    });
    return out;
  };
  let next = parts.length ? read(parts[0]) : undefined;
  try {
    for (let i = 0; i < parts.length; i++) {
      const shape = parts[i].shape;
      const cols = shape.columns.map((c) => ident(c)).join(", ");
      const out = next!;
      await withTable(qualifiedName(shape), async () => {
        const stage = await stages.ensure(target, shape);
        await pipeline(out, target.query(copyFrom(`copy ${stage.name} (${stage.op}, ${cols}) from stdin`)));
        next = i + 1 < parts.length ? read(parts[i + 1]) : undefined;
        await merge(target, shape, cols, stage);
      });
    }
  } finally {
    // After a failure the source connection is mid-COPY; the session drops it.
    if (next && !next.readableEnded) next.destroy();
  }
  return parts.reduce((n, p) => n + Number(p.events), 0);
}

/**
 * Applies a filled stage: delete every staged key, insert every staged new state.
 * `cols`: the shape's columns, quoted, as the stage was filled with them.
 */
async function merge(target: Client, shape: Shape, cols: string, stage: Stage) {
  const table = qualifiedName(shape);
  const keyMatch = keyColumns(shape)
    .map((k) => `t.${ident(k)} = s.${ident(k)}`)
    .join(" and ");
  // Statements in one round trip (no parameters: the simple protocol allows it).
  await target.query(
    `delete from ${table} t using ${stage.name} s where ${keyMatch};
     insert into ${table} (${cols}) overriding system value
     select ${cols} from ${stage.name} where ${stage.op} = 'U'`,
  );
}

/** DDL from execute_ddl, run with the search_path it ran with on the source. */
async function runDdl(target: Client, ddl: string, searchPath: string, evId: number) {
  const { rows } = await target.query("select current_setting('search_path') as sp");
  try {
    await target.query("select set_config('search_path', $1, true)", [searchPath]);
    await target.query(ddl);
  } catch (err) {
    throw new DbsyncError(`DDL queued by execute_ddl (event ${evId}) failed on the target: ${messageOf(err)}: ${ddl}`, {
      sqlstate: sqlstateOf(err),
      hint: "Fix the target so that this DDL succeeds (or make the change by hand and drop what conflicts); the subscription retries it.",
    });
  } finally {
    await target.query("select set_config('search_path', $1, true)", [rows[0].sp]).catch(() => undefined);
  }
}

/** Re-raise with the table named and a hint for the errors a DBA fixes on the target. */
async function withTable<T>(table: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DbsyncError) throw err;
    const sqlstate = sqlstateOf(err);
    let message = messageOf(err);
    let hint: string | undefined;
    if (sqlstate === "42P01") {
      message = `target table ${table} does not exist (${message})`;
      hint = `Create ${table} on the target with the source's columns; dbsync does not create tables.`;
    } else if (sqlstate === "42703") {
      message = `target table ${table} lacks a column the source captures (${message})`;
      hint = `Add the column to ${table} on the target (or use dbsync.execute_ddl for schema changes); replication resumes by itself.`;
    }
    throw new DbsyncError(message, { table, sqlstate, hint });
  }
}
