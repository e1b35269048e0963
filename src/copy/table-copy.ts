// The consistent initial copy of one table into one subscription's target.
// A tick is taken in a transaction that exports its snapshot; the copy transaction
// imports it, so the rows copied are exactly the table at that tick, and the stream
// applies the table's events only from that tick on (see dbsync.begin_copy and
// dbsync.next_batch). Rows stream from COPY TO STDOUT straight into COPY FROM STDIN:
// no table is ever held in memory. On the target the table is emptied, filled and
// the copy recorded in one transaction, so a crash leaves nothing half-done.
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Client, Pool, escapeIdentifier as ident, escapeLiteral } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { closeQuietly, connect } from "../db";
import { DbsyncError, messageOf, sqlstateOf } from "../errors";
import { Log } from "../log";
import { ensureTargetSchema } from "../target/progress";

export interface CopyJob {
  subscription: string;
  tableId: number;
}

interface CopyTarget {
  sub_id: number;
  sub_uuid: string;
  target_conninfo: string;
  state: string;
  copy_tick: number | null;
  schema_name: string;
  table_name: string;
  partitioned: boolean;
  columns: string[];
}

export type CopyOutcome = "copied" | "recovered" | "nothing" | "busy";

export async function copyTable(
  sourceUrl: string | undefined,
  control: Pool,
  job: CopyJob,
  log: Log,
): Promise<CopyOutcome> {
  const { rows } = await control.query<CopyTarget>(
    `select s.sub_id, s.sub_uuid, s.target_conninfo, st.state, st.copy_tick::float8 as copy_tick,
            t.schema_name, t.table_name, t.partitioned,
            (select sh.columns from dbsync.shapes sh where sh.table_id = t.table_id
              order by sh.shape_id desc limit 1) as columns
       from dbsync.subscriptions s
       join dbsync.subscription_tables st using (sub_id)
       join dbsync.tables t using (table_id)
      where s.name = $1 and st.table_id = $2 and t.removed_at is null and not s.paused`,
    [job.subscription, job.tableId],
  );
  const ct = rows[0];
  if (!ct || ct.state === "streaming" || ct.state === "catching_up") return "nothing";
  const table = `${ident(ct.schema_name)}.${ident(ct.table_name)}`;
  const appName = `dbsync copy ${job.subscription}`.slice(0, 63);

  let exporter: Client | undefined, reader: Client | undefined, target: Client | undefined;
  let tick: number | undefined;
  try {
    exporter = await connect(sourceUrl, { applicationName: appName });
    // One copier per subscription and table, across processes.
    const lock = await exporter.query(
      "select pg_try_advisory_lock(hashtextextended(format('dbsync copy %s %s', $1::int, $2::int), 0)) as ok",
      [ct.sub_id, job.tableId],
    );
    if (!lock.rows[0].ok) return "busy";

    target = await connect(ct.target_conninfo, { applicationName: appName });
    await ensureTargetSchema(target);
    // A copy committed on the target whose report to the source was lost.
    if (ct.state === "copying" && ct.copy_tick !== null) {
      const done = await target.query(
        "select rows::float8 as rows from dbsync.copied where sub_uuid = $1 and table_id = $2 and copy_tick = $3",
        [ct.sub_uuid, job.tableId, ct.copy_tick],
      );
      if (done.rowCount) {
        await control.query("select dbsync.end_copy($1, $2, $3, $4)", [ct.sub_id, job.tableId, ct.copy_tick, done.rows[0].rows]);
        return "recovered";
      }
    }
    await checkTargetColumns(target, table, ct);

    await exporter.query("begin isolation level read committed");
    const begun = await exporter.query("select tick_id::float8 as tick, snapshot_name from dbsync.begin_copy($1, $2)", [
      ct.sub_id,
      job.tableId,
    ]);
    tick = begun.rows[0].tick as number;
    reader = await connect(sourceUrl, { applicationName: appName });
    await reader.query("begin isolation level repeatable read read only");
    await reader.query(`set transaction snapshot ${escapeLiteral(begun.rows[0].snapshot_name)}`);
    await exporter.query("commit");
    log.info({ subscription: job.subscription, table, tick }, "copy started");

    await target.query("begin");
    await target.query("set local session_replication_role = replica");
    await emptyTable(target, table);
    const cols = ct.columns.map(ident).join(", ");
    let rowsCopied = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rowsCopied++;
        cb(null, chunk);
      },
    });
    const progress = setInterval(() => {
      void control
        .query("update dbsync.subscription_tables set rows_copied = $3 where sub_id = $1 and table_id = $2 and copy_tick = $4", [
          ct.sub_id,
          job.tableId,
          rowsCopied,
          tick,
        ])
        .catch(() => undefined);
    }, 250);
    try {
      await pipeline(
        reader.query(copyTo(`copy (select ${cols} from ${ct.partitioned ? "" : "only "}${table}) to stdout`)),
        counter,
        target.query(copyFrom(`copy ${table} (${cols}) from stdin`)),
      );
    } finally {
      clearInterval(progress);
    }
    await target.query(
      `insert into dbsync.copied (sub_uuid, table_id, copy_tick, rows) values ($1, $2, $3, $4)
       on conflict (sub_uuid, table_id) do update set copy_tick = excluded.copy_tick, rows = excluded.rows, copied_at = now()`,
      [ct.sub_uuid, job.tableId, tick, rowsCopied],
    );
    await target.query("commit");
    await reader.query("commit");
    await control.query("select dbsync.end_copy($1, $2, $3, $4)", [ct.sub_id, job.tableId, tick, rowsCopied]);
    log.info({ subscription: job.subscription, table, tick, rows: rowsCopied }, "copy done");
    return "copied";
  } catch (err) {
    const sqlstate = sqlstateOf(err);
    const message =
      err instanceof DbsyncError
        ? err.message + (err.context.hint ? ` (hint: ${err.context.hint})` : "")
        : `copy of ${table} failed: ${messageOf(err)}`;
    log.error({ subscription: job.subscription, table, tick, sqlstate }, message);
    await control
      .query("select dbsync.end_copy($1, $2, $3, null, $4)", [ct.sub_id, job.tableId, tick ?? null, message])
      .catch(() => undefined);
    throw err;
  } finally {
    await Promise.all([closeQuietly(exporter), closeQuietly(reader), closeQuietly(target)]);
  }
}

/** TRUNCATE is fast and leaves no dead rows; a table referenced by a foreign key needs DELETE. */
async function emptyTable(target: Client, table: string) {
  await target.query("savepoint empty_table");
  try {
    await target.query(`truncate ${table}`);
  } catch (err) {
    if (sqlstateOf(err) !== "0A000") throw err;
    await target.query("rollback to savepoint empty_table");
    await target.query(`delete from ${table}`);
  }
}

async function checkTargetColumns(target: Client, table: string, ct: CopyTarget) {
  const { rows } = await target.query<{ exists: boolean; columns: string[] | null }>(
    `select to_regclass($1) is not null as exists,
            (select array_agg(attname::text) from pg_attribute
              where attrelid = to_regclass($1) and attnum > 0 and not attisdropped and attgenerated = '') as columns`,
    [table],
  );
  if (!rows[0].exists) {
    throw new DbsyncError(`target table ${table} does not exist`, {
      table,
      sqlstate: "42P01",
      hint: `Create ${table} on the target with the source's columns; the copy retries by itself.`,
    });
  }
  const have = new Set(rows[0].columns ?? []);
  const missing = ct.columns.filter((c) => !have.has(c));
  if (missing.length) {
    throw new DbsyncError(
      `target table ${table} lacks column(s) ${missing.map((c) => ident(c)).join(", ")} that the source has`,
      { table, sqlstate: "42703", hint: `Add them to ${table} on the target; the copy retries by itself.` },
    );
  }
}
