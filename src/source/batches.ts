// Reading batches on the source: the next batch of a subscription with its
// summary per shape (one call, dbsync.advance), the parts between DDL events, and
// the COPY that streams one table's part of it, already reduced to the last state
// of each key.
import { Client } from "pg";
import { Shape } from "./catalog";

export interface Batch {
  subId: number;
  groupId: number;
  from: number;
  to: number;
  tableIds: number[];
  hasSequences: boolean;
  /** Per shape among the batch's events: counts, and the shape with its table's current name. */
  shapes: BatchShape[];
}

export type BatchShape = ShapeSummary & Partial<Shape>;

/** What the previous batch did, reported to the source with the next request. */
export interface Done {
  tick: number;
  events: number;
  seconds: number;
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

/**
 * One round trip per batch (dbsync.advance): report the batch just committed on the
 * target, take a tick, and read the next batch with its shapes. Undefined: nothing
 * to apply, or the subscription is paused or gone.
 */
export async function advance(source: Client, subscription: string, done: Done | undefined, maxEvents: number): Promise<Batch | undefined> {
  const { rows } = await source.query(
    `select sub_id, group_id, tick_from::float8 as f, tick_to::float8 as t, table_ids, has_sequences, shapes
       from dbsync.advance($1, $2, $3, $4, $5)`,
    [subscription, done?.tick ?? null, done?.events ?? 0, done?.seconds ?? 0, maxEvents],
  );
  const r = rows[0];
  return (
    r && {
      subId: r.sub_id,
      groupId: r.group_id,
      from: r.f,
      to: r.t,
      tableIds: r.table_ids,
      hasSequences: r.has_sequences,
      shapes: r.shapes,
    }
  );
}

/**
 * Events per shape in a window of the batch (dbsync._batch_summary, which advance
 * also uses for the whole batch). DDL events come back as one row with shape_id null.
 */
export async function summarize(source: Client, b: Batch, w: Window): Promise<ShapeSummary[]> {
  const { rows } = await source.query<ShapeSummary>(
    `select shape_id, events::float8 as events, last_truncate::float8 as last_truncate
       from dbsync._batch_summary($1, $2, $3, $4, $5)
      order by shape_id`,
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

