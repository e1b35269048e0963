// The target's own record of what it holds: the truth for exactly-once apply.
// dbsync.applied has one row per subscription (by uuid, so two sources or a
// re-created subscription never mix); dbsync.copied one row per copied table.
import { Client } from "pg";

const TARGET_SCHEMA_SQL = `
  create schema if not exists dbsync;
  create table if not exists dbsync.applied (
      sub_uuid      uuid primary key,
      subscription  text not null,
      tick_id       bigint not null,
      applied_at    timestamptz not null default now()
  );
  create table if not exists dbsync.copied (
      sub_uuid   uuid not null,
      table_id   int not null,
      copy_tick  bigint not null,
      rows       bigint not null,
      copied_at  timestamptz not null default now(),
      primary key (sub_uuid, table_id)
  );`;

// "dbsync" in ASCII, as the migration lock on the source.
const TARGET_SCHEMA_LOCK = 0x646273796e63;

export async function ensureTargetSchema(target: Client): Promise<void> {
  const { rows } = await target.query(
    "select to_regclass('dbsync.applied') is not null and to_regclass('dbsync.copied') is not null as ok",
  );
  if (rows[0].ok) return;
  // Serialize the first creation between two sidecars on one target.
  await target.query("begin");
  try {
    // A parameter, not a hex literal: those parse only from PostgreSQL 16 on.
    await target.query("select pg_advisory_xact_lock($1)", [TARGET_SCHEMA_LOCK]);
    await target.query(TARGET_SCHEMA_SQL);
    await target.query("commit");
  } catch (err) {
    await target.query("rollback").catch(() => undefined);
    throw err;
  }
}

/** The tick the target stands at; a subscription new to it starts at `startTick`. */
export async function readAppliedTick(target: Client, subUuid: string, name: string, startTick: number): Promise<number> {
  await target.query(
    `insert into dbsync.applied (sub_uuid, subscription, tick_id) values ($1, $2, $3)
     on conflict (sub_uuid) do nothing`,
    [subUuid, name, startTick],
  );
  const { rows } = await target.query("select tick_id::float8 as t from dbsync.applied where sub_uuid = $1", [subUuid]);
  return rows[0].t;
}

/**
 * Inside the apply transaction: lock the subscription's row and check it still
 * stands at `from`. The row lock serializes appliers even if two processes both
 * believe they own the subscription; the check makes a stale one give up.
 */
export async function lockApplied(target: Client, subUuid: string, from: number): Promise<void> {
  const { rows } = await target.query(
    "select tick_id::float8 as t from dbsync.applied where sub_uuid = $1 for update",
    [subUuid],
  );
  if (rows[0]?.t !== from) {
    throw new PositionMoved(`target stands at tick ${rows[0]?.t ?? "none"}, not ${from}`);
  }
}

export async function setAppliedTick(target: Client, subUuid: string, tick: number): Promise<void> {
  await target.query("update dbsync.applied set tick_id = $2, applied_at = now() where sub_uuid = $1", [subUuid, tick]);
}

export class PositionMoved extends Error {}
