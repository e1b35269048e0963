// What the sidecar reads about subscriptions, tables and shapes on the source.
import { Client, escapeIdentifier } from "pg";

export interface Subscription {
  sub_id: number;
  name: string;
  sub_uuid: string;
  group_id: number;
  target_conninfo: string;
  paused: boolean;
  position_tick: number;
}

export interface Shape {
  shape_id: number;
  table_id: number;
  schema_name: string;
  table_name: string;
  columns: string[];
  types: string[];
  key_positions: number[];
}

export async function loadSubscription(source: Client, name: string): Promise<Subscription | undefined> {
  const { rows } = await source.query<Subscription>(
    `select sub_id, name, sub_uuid, group_id, target_conninfo, paused, position_tick::int8::float8 as position_tick
       from dbsync.subscriptions where name = $1`,
    [name],
  );
  return rows[0];
}

/** The key column names of a shape, as its events name them. */
export function keyColumns(shape: Shape): string[] {
  return shape.key_positions.map((p) => shape.columns[p - 1]);
}

export function qualifiedName(shape: { schema_name: string; table_name: string }): string {
  return `${escapeIdentifier(shape.schema_name)}.${escapeIdentifier(shape.table_name)}`;
}
