// Applying one batch to a target, set-wise, in one transaction that also moves the
// target's position (exactly once: see progress.ts). Per table: TRUNCATE if the
// batch truncated it, then the table's changes reduced on the source to the last
// state of each key are streamed by COPY into a temp stage table, then two
// statements apply them: delete every staged key, insert every staged new state.
// Deleting first means unique constraints never see a transient duplicate
// (swapped keys, swapped unique values) whatever the order inside the batch.
import { pipeline } from "node:stream/promises";
import { Client, escapeIdentifier as ident } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { DbsyncError, sqlstateOf, messageOf } from "../errors";
import { Batch, copyOutSql, summarize } from "../source/batches";
import { Shape, ShapeCache, qualifiedName } from "../source/catalog";
import { lockApplied, setAppliedTick } from "./progress";

export interface ApplyResult {
  events: number;
}

export async function applyBatch(
  source: Client,
  target: Client,
  subUuid: string,
  batch: Batch,
  shapeCache: ShapeCache,
): Promise<ApplyResult> {
  const wanted = new Set(batch.tableIds);
  const summary = await summarize(source, batch);
  const shapes = await shapeCache.get(source, summary.map((s) => s.shape_id));
  const parts = summary
    .map((s) => ({ ...s, shape: shapes.get(s.shape_id)! }))
    .filter((p) => wanted.has(p.shape.table_id));

  const lastTruncate = new Map<number, number>();
  for (const p of parts) {
    if (p.last_truncate !== null) {
      lastTruncate.set(p.shape.table_id, Math.max(lastTruncate.get(p.shape.table_id) ?? 0, p.last_truncate));
    }
  }

  await target.query("begin");
  try {
    await target.query("set local session_replication_role = replica");
    await lockApplied(target, subUuid, batch.from);
    const truncated = parts.filter((p) => lastTruncate.has(p.shape.table_id));
    if (truncated.length) {
      const names = [...new Set(truncated.map((p) => qualifiedName(p.shape)))];
      await withTable(names.join(", "), () => target.query(`truncate ${names.join(", ")}`));
    }
    for (const p of parts) {
      await withTable(qualifiedName(p.shape), () =>
        applyShape(source, target, batch, p.shape, lastTruncate.get(p.shape.table_id) ?? null),
      );
    }
    await setAppliedTick(target, subUuid, batch.to);
    await target.query("commit");
  } catch (err) {
    await target.query("rollback").catch(() => undefined);
    throw err;
  }
  return { events: parts.reduce((n, p) => n + Number(p.events), 0) };
}

async function applyShape(source: Client, target: Client, batch: Batch, shape: Shape, afterTruncate: number | null) {
  const table = qualifiedName(shape);
  const stage = ident(`dbsync_stage_${shape.shape_id}`);
  const cols = shape.columns.map((c) => ident(c));
  // The stage takes the target's column types: text from the source parses into them.
  await target.query(
    `create temp table if not exists ${stage} on commit delete rows as
       select null::"char" as dbsync_op, ${cols.map((c) => `t.${c}`).join(", ")} from ${table} t with no data`,
  );
  const out = source.query(copyTo(copyOutSql(batch, shape, afterTruncate)));
  const into = target.query(copyFrom(`copy ${stage} (dbsync_op, ${cols.join(", ")}) from stdin`));
  await pipeline(out, into);
  const keyMatch = shape.key_columns.map((k) => `t.${ident(k)} = s.${ident(k)}`).join(" and ");
  await target.query(`delete from ${table} t using ${stage} s where ${keyMatch}`);
  await target.query(
    `insert into ${table} (${cols.join(", ")}) overriding system value
     select ${cols.join(", ")} from ${stage} where dbsync_op = 'U'`,
  );
}

/** Re-raise with the table named and a hint for the errors a DBA fixes on the target. */
async function withTable<T>(table: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const sqlstate = sqlstateOf(err);
    let message = messageOf(err);
    let hint: string | undefined;
    if (sqlstate === "42P01") {
      message = `target table ${table} does not exist (${message})`;
      hint = `Create ${table} on the target with the source's columns; dbsync does not create tables.`;
    } else if (sqlstate === "42703") {
      message = `target table ${table} lacks a column the source captures (${message})`;
      hint = `Add the column to ${table} on the target; replication resumes by itself.`;
    }
    throw new DbsyncError(message, { table, sqlstate, hint });
  }
}
