// Reading batches on the source: take a tick, pick the next batch of a
// subscription, summarize it per shape, and build the COPY that streams one
// table's part of it, already reduced to the last state of each key.
import { Client } from "pg";
import { Shape } from "./catalog";

export interface Batch {
  subId: number;
  groupId: number;
  from: number;
  to: number;
  tableIds: number[];
}

/** Part of a batch between two DDL events: (after, before), either end open. */
export interface Window {
  after: number | null;
  before: number | null;
}

export interface ShapeSummary {
  /** null: the batch's DDL events. */
  shape_id: number | null;
  events: number;
  /** Id of the last TRUNCATE of the table in the window: earlier events do not matter. */
  last_truncate: number | null;
}

export interface DdlEvent {
  ev_id: number;
  ddl: string;
  search_path: string;
}

export async function takeTick(source: Client, groupId: number, force = false): Promise<number> {
  const { rows } = await source.query("select dbsync.tick($1, $2)::float8 as t", [groupId, force]);
  return rows[0].t;
}

export async function nextBatch(source: Client, subscription: string, maxEvents: number): Promise<Batch | undefined> {
  const { rows } = await source.query(
    `select sub_id, group_id, tick_from::float8 as f, tick_to::float8 as t, table_ids
       from dbsync.next_batch($1, $2)`,
    [subscription, maxEvents],
  );
  const r = rows[0];
  return r && { subId: r.sub_id, groupId: r.group_id, from: r.f, to: r.t, tableIds: r.table_ids };
}

/**
 * Events per shape in a window of the batch. DDL events (shape NULL) come back as
 * one row with shape_id null, so that the common batch without DDL costs one scan.
 */
export async function summarize(source: Client, b: Batch, w: Window): Promise<ShapeSummary[]> {
  const { rows } = await source.query<ShapeSummary>(
    `select e.shape_id, count(*)::float8 as events,
            (max(e.ev_id) filter (where e.op = 'T'))::float8 as last_truncate
       from dbsync.batch_events($1, $2, $3) e
      where ($4::bigint is null or e.ev_id > $4) and ($5::bigint is null or e.ev_id < $5)
      group by e.shape_id
      order by e.shape_id`,
    [b.groupId, b.from, b.to, w.after, w.before],
  );
  return rows;
}

/** DDL queued by execute_ddl inside the batch, in stream order. */
export async function ddlEvents(source: Client, b: Batch): Promise<DdlEvent[]> {
  const { rows } = await source.query<DdlEvent>(
    `select e.ev_id::float8 as ev_id, e.row[1] as ddl, e.row[2] as search_path
       from dbsync.batch_events($1, $2, $3) e where e.op = 'X' order by e.ev_id`,
    [b.groupId, b.from, b.to],
  );
  return rows;
}

/**
 * COPY of one shape's events in a window of the batch, one line per key in its
 * last state: the op ('U' or 'D') then the captured columns as text. Keys are
 * compared as values of their source type (not as text), and rows never pass
 * through JavaScript: the sidecar pipes these bytes into the target's COPY.
 * COPY takes no parameters, so the values are literals (numbers, and the type
 * names of our own catalog, as format_type wrote them).
 */
export function copyOutSql(b: Batch, shape: Shape, w: Window): string {
  const keys = shape.key_positions.map((p) => `(e.row[${p}])::${shape.types[p - 1]}`);
  const cols = shape.columns.map((_, i) => `e.row[${i + 1}]`);
  const after = w.after === null ? "" : ` and e.ev_id > ${int(w.after)}`;
  const before = w.before === null ? "" : ` and e.ev_id < ${int(w.before)}`;
  return `copy (
    select e.op, ${cols.join(", ")}
      from (select distinct on (${keys.join(", ")}) e.op, e.row
              from dbsync.batch_events(${int(b.groupId)}, ${int(b.from)}, ${int(b.to)}) e
             where e.shape_id = ${int(shape.shape_id)} and e.op in ('U', 'D')${after}${before}
             order by ${keys.join(", ")}, e.ev_id desc) e
  ) to stdout`;
}

function int(n: number): string {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return String(n);
}

