// The target's own record of what it holds: the truth for exactly-once apply.
// dbsync.applied has one row per subscription (by uuid, so two sources or a
// re-created subscription never mix); dbsync.copied one row per copied table.
import { Client, QueryResult, escapeLiteral } from "pg";
import { DbsyncError, PositionMoved, sqlstateOf } from "../errors";
import { DBSYNC_LOCK } from "../locks";
import { DURABLE_COMMIT } from "../db/settings";
import { TargetPosition, tickKey } from "../source/protocol";

// CREATE SCHEMA IF NOT EXISTS checks CREATE on the database even when the schema
// exists, so it runs only when it is missing: a DBA may create the schema for a
// target role that has no CREATE on the database.
const TARGET_SCHEMA_SQL = `
  create table if not exists dbsync.applied (
      sub_uuid      uuid primary key,
      subscription  text not null,
      tick_id       bigint not null,
      applied_at    timestamptz not null default now(),
      tick_key      bigint,
      key_tick      bigint
  );
  create table if not exists dbsync.copied (
      sub_uuid   uuid not null,
      table_id   int not null,
      copy_tick  bigint not null,
      rows       bigint not null,
      copied_at  timestamptz not null default now(),
      primary key (sub_uuid, table_id)
  );
  create unlogged table if not exists dbsync.unlogged_intact (
      sub_uuid   uuid primary key
  );`;

/**
 * Whether dbsync.applied, dbsync.copied and dbsync.unlogged_intact exist, and what in schema dbsync the
 * target role would trust without reason: the schema and its tables must belong
 * to the role itself, to a role it is a member of (not through a superuser's
 * bypass), or to a superuser. Another role that made them first (CREATE on the
 * database is enough) would own the table the sidecar writes its position into at
 * every batch: its triggers there would run as this role (or as a superuser
 * applier), and it could move the position past batches. One statement: every new
 * target connection runs it.
 */
const SCHEMA_STATE_SQL = `
  with me as (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user),
  owned as (
    select 'schema dbsync' as what, n.nspowner as owner
      from pg_catalog.pg_namespace n where n.nspname = 'dbsync'
    union all
    select pg_catalog.format('table dbsync.%I', c.relname), c.relowner
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'dbsync' and c.relname in ('applied', 'copied', 'unlogged_intact'))
  select pg_catalog.to_regclass('dbsync.applied') is not null and pg_catalog.to_regclass('dbsync.copied') is not null
         and pg_catalog.to_regclass('dbsync.unlogged_intact') is not null as ok,
         (select pg_catalog.count(*) = 2 from pg_catalog.pg_attribute a
           where a.attrelid = pg_catalog.to_regclass('dbsync.applied') and a.attname in ('tick_key', 'key_tick')
             and not a.attisdropped) as keyed,
         (select pg_catalog.string_agg(pg_catalog.format('%s (owned by %I)', o.what, r.rolname), ', ')
            from owned o join pg_catalog.pg_roles r on r.oid = o.owner, me
           where not (r.rolname = current_user or r.rolsuper
                      or (not me.rolsuper and pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')))) as untrusted`;

export async function ensureTargetSchema(target: Client): Promise<void> {
  let state = (await target.query<SchemaState>(SCHEMA_STATE_SQL)).rows[0];
  if (!state.ok) {
    await underTargetLock(target, async () => {
      const { rows: schema } = await target.query("select pg_catalog.to_regnamespace('dbsync') is not null as ok");
      if (!schema[0].ok) await target.query("create schema dbsync");
      await target.query(TARGET_SCHEMA_SQL);
    });
    state = (await target.query<SchemaState>(SCHEMA_STATE_SQL)).rows[0];
  }
  if (state.untrusted) {
    throw new DbsyncError(`the target's ${state.untrusted}: another role controls where dbsync records its position`, {
      sqlstate: "42501",
      hint:
        "As a superuser on the target, check what that role put in schema dbsync (triggers, functions), then drop the schema " +
        "or give it and its tables to the sidecar's target role (ALTER SCHEMA dbsync OWNER TO ..., ALTER TABLE dbsync.applied OWNER TO ...); " +
        "the sidecar retries by itself.",
    });
  }
  if (!state.keyed) await addTickKey(target);
}

interface SchemaState {
  ok: boolean;
  keyed: boolean;
  untrusted: string | null;
}

/** `fn` in a transaction holding DBSYNC_LOCK: two sidecars on one target change its bookkeeping one after the other. */
async function underTargetLock(target: Client, fn: () => Promise<void>): Promise<void> {
  await target.query("begin");
  try {
    // A parameter, not a hex literal: those parse only from PostgreSQL 16 on. Typed
    // and qualified: an untyped one would pick a pg_advisory_xact_lock(text) that
    // a role with CREATE on a schema of the search_path made.
    await target.query("select pg_catalog.pg_advisory_xact_lock($1::int8)", [DBSYNC_LOCK]);
    await fn();
    await target.query("commit");
  } catch (err) {
    await target.query("rollback").catch(() => undefined);
    throw err;
  }
}

/**
 * The columns of dbsync.applied that a target made by a sidecar of before migration
 * 0024 lacks: the key of the tick it stands at (see dbsync._tick_key), and the tick
 * that key is of. A sidecar of an older version still running moves tick_id alone:
 * the key is then of another tick, and unknown (readAppliedTick).
 */
async function addTickKey(target: Client): Promise<void> {
  const columns = "add column if not exists tick_key bigint, add column if not exists key_tick bigint";
  try {
    await underTargetLock(target, () => target.query(`alter table dbsync.applied ${columns}`).then(() => undefined));
  } catch (err) {
    if (sqlstateOf(err) !== "42501") throw err;
    throw new DbsyncError("the target's dbsync.applied lacks the columns tick_key and key_tick, and the target role may not add them", {
      sqlstate: "42501",
      hint:
        "As the owner of dbsync.applied (or a superuser) on the target: " +
        "ALTER TABLE dbsync.applied ADD COLUMN IF NOT EXISTS tick_key bigint, ADD COLUMN IF NOT EXISTS key_tick bigint; " +
        "the sidecar retries by itself.",
    });
  }
}

/**
 * The tick the target stands at, with its key when the target recorded the key of
 * that tick; undefined when it has no record of the subscription.
 */
export async function readAppliedTick(target: Client, subUuid: string): Promise<TargetPosition | undefined> {
  const { rows } = await target.query<{ t: number; k: string | null }>(
    "select tick_id::float8 as t, case when key_tick = tick_id then tick_key::text end as k from dbsync.applied where sub_uuid = $1",
    [subUuid],
  );
  return rows[0] && { tick: rows[0].t, key: tickKey(rows[0].k) };
}

/**
 * The target's record of a subscription it had none of, at `tick`, with its row of
 * dbsync.unlogged_intact (nothing of it was lost yet).
 */
export async function startAppliedTick(target: Client, subUuid: string, name: string, at: TargetPosition): Promise<void> {
  await target.query(
    `with fresh as (
       insert into dbsync.applied (sub_uuid, subscription, tick_id, tick_key, key_tick) values ($1, $2, $3, $4, $3)
       on conflict (sub_uuid) do nothing returning sub_uuid)
     insert into dbsync.unlogged_intact (sub_uuid) select f.sub_uuid from fresh f on conflict (sub_uuid) do nothing`,
    [subUuid, name, at.tick, at.key],
  );
}

/**
 * The target's unlogged tables (with the partitioned tables above an unlogged
 * partition), when the subscription's row of dbsync.unlogged_intact is gone: crash
 * recovery (or a failover) emptied them with it, while dbsync.applied, logged, still
 * says they hold every batch. Undefined while the row is there.
 */
export async function lostUnloggedTables(target: Client, subUuid: string): Promise<{ schema: string; name: string }[] | undefined> {
  const { rows: intact } = await target.query("select from dbsync.unlogged_intact where sub_uuid = $1", [subUuid]);
  if (intact.length) return undefined;
  const { rows } = await target.query<{ schema: string; name: string }>(
    `with recursive up (top) as (
       select c.oid from pg_catalog.pg_class c where c.relpersistence = 'u' and c.relkind = 'r'
       union
       select i.inhparent from up join pg_catalog.pg_inherits i on i.inhrelid = up.top
        join pg_catalog.pg_class p on p.oid = i.inhparent and p.relkind = 'p')
     select n.nspname::text as schema, c.relname::text as name
       from up join pg_catalog.pg_class c on c.oid = up.top join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where n.nspname operator(pg_catalog.<>) 'dbsync'`,
  );
  return rows;
}

/** The subscription's row of dbsync.unlogged_intact, once the copies of what its absence says was lost are requested. */
export async function markUnloggedIntact(target: Client, subUuid: string): Promise<void> {
  await target.query("insert into dbsync.unlogged_intact (sub_uuid) values ($1) on conflict (sub_uuid) do nothing", [subUuid]);
}

/**
 * The function a superuser creates on a target before PostgreSQL 15 (README,
 * Security). PL/pgSQL: PostgreSQL 10 refuses a void SQL function ending in a SELECT.
 * Not executable by PUBLIC (a new function is): any role then granted USAGE on the
 * target's schema dbsync (to read dbsync.applied) could turn off its own triggers and
 * foreign keys with it.
 */
export const REPLICA_MODE_FUNCTION =
  "create function dbsync.enter_replica_mode() returns void language plpgsql security definer set search_path = pg_catalog " +
  "as $$ begin perform set_config('session_replication_role', 'replica', false); end $$; " +
  "revoke execute on function dbsync.enter_replica_mode() from public";

/**
 * How each session entered replica mode, learned on its first call (outside any
 * transaction): a refused SET inside one, as when execute_ddl's DDL has run in a
 * batch (apply.ts restoreSession), would abort the batch.
 */
const replicaWays = new WeakMap<Client, "set" | "function">();

/**
 * Puts the apply connection in replica mode for its whole life, so that the
 * target's own triggers and foreign keys do not fire for replicated rows. A role
 * that is not a superuser needs `grant set on parameter session_replication_role`
 * (PostgreSQL 15+); before 15 nothing but a superuser may set it, so a superuser
 * creates dbsync.enter_replica_mode() on the target once (see README, Security)
 * and grants it to the apply role.
 */
export async function enterReplicaMode(target: Client): Promise<void> {
  if (replicaWays.get(target) !== "function") {
    try {
      await target.query("set session_replication_role = replica");
      replicaWays.set(target, "set");
      return;
    } catch (err) {
      if (sqlstateOf(err) !== "42501" || replicaWays.has(target)) throw err;
    }
  }
  // From the catalog: to_regprocedure itself needs USAGE on the schema. Only a
  // superuser's function can set the parameter before 15; one of another owner is
  // not called (it would run that role's code as this one, and could do nothing).
  const { rows } = await target.query(
    `select exists (select from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                      join pg_catalog.pg_roles r on r.oid = p.proowner
                     where n.nspname = 'dbsync' and p.proname = 'enter_replica_mode' and p.pronargs = 0 and r.rolsuper) as ok`,
  );
  const refused = () =>
    new DbsyncError("the target role may not set session_replication_role", {
      sqlstate: "42501",
      hint:
        "On PostgreSQL 15 and later: grant set on parameter session_replication_role to the role. " +
        `Before 15, as a superuser on the target: ${REPLICA_MODE_FUNCTION}; ` +
        "then grant usage on schema dbsync and execute on it to the role.",
    });
  if (!rows[0].ok) throw refused();
  try {
    await target.query("select dbsync.enter_replica_mode()");
  } catch (err) {
    if (sqlstateOf(err) === "42501") throw refused();
    throw err;
  }
  // A function that returned without setting it would let the target's triggers and
  // foreign keys fire on replicated rows, silently.
  const { rows: mode } = await target.query("select pg_catalog.current_setting('session_replication_role') as mode");
  if (mode[0].mode !== "replica") {
    throw new DbsyncError(`dbsync.enter_replica_mode() on the target left session_replication_role at '${mode[0].mode}'`, {
      sqlstate: "42501",
      hint: "Create it again as a superuser, as the README's Security section shows (it must set session_replication_role to replica).",
    });
  }
  replicaWays.set(target, "function");
}

/** The target's record that tables ([table_id, rows]) were copied at `tick` (verify reads it), in one statement. */
export async function recordCopies(target: Client, subUuid: string, tick: number, copies: [number, number][]): Promise<void> {
  if (!copies.length) return;
  await target.query(
    `insert into dbsync.copied (sub_uuid, table_id, copy_tick, rows)
     select $1, c.t, $2, c.r from unnest($3::int[], $4::int8[]) c(t, r)
     on conflict (sub_uuid, table_id) do update set copy_tick = excluded.copy_tick, rows = excluded.rows, copied_at = now()`,
    [subUuid, tick, copies.map((c) => c[0]), copies.map((c) => c[1])],
  );
}

/** Sets the target's position (after resync_subscription: every table is copied again). */
export async function setAppliedTick(target: Client, subUuid: string, at: TargetPosition): Promise<void> {
  await target.query("update dbsync.applied set tick_id = $2, tick_key = $3, key_tick = $2, applied_at = now() where sub_uuid = $1", [
    subUuid,
    at.tick,
    at.key,
  ]);
}

/**
 * Index probes of the keys a batch deletes hit pages that are mostly cached. At the
 * default random_page_cost (4) the planner hashed a whole 100,000-row table to
 * delete 5,000 staged keys (35 ms) where probing the key index took 14 ms.
 */
const PROBE_PAGE_COST = 1.1;

/**
 * Opens the apply transaction (the connection is in replica mode: see
 * enterReplicaMode): a random_page_cost for cached probes,
 * then locks the subscription's row and checks it still stands at `from`. The row
 * lock serializes appliers even if two processes both believe they own the
 * subscription; the check makes a stale one give up. One round trip: literals, not
 * parameters, allow several statements; `then`, more of them (literals too) for
 * the same round trip, whose results are returned.
 */
export async function beginApply(target: Client, subUuid: string, from: number, then = ""): Promise<QueryResult[]> {
  const results = (await target.query(
    `begin;
     select set_config('random_page_cost', least(current_setting('random_page_cost')::float8, ${PROBE_PAGE_COST})::text, true);
     select tick_id::float8 as t from dbsync.applied where sub_uuid = ${escapeLiteral(subUuid)} for update${then ? `;\n${then}` : ""}`,
  )) as unknown as QueryResult[];
  const at = results[2].rows[0]?.t;
  if (at !== from) {
    throw new PositionMoved(`target stands at tick ${at ?? "none"}, not ${from}`);
  }
  return results.slice(3);
}

/**
 * Runs `first` (statements with literals), moves the position to `to` (its tick and
 * key) and commits the apply transaction, in one round trip (commitStatements).
 */
export async function commitApply(target: Client, subUuid: string, to: TargetPosition, first = "", flushLater = false): Promise<void> {
  await target.query(commitStatements(subUuid, to, first, flushLater));
}

/**
 * The statements that run `first`, move the position to `to` and commit the apply
 * transaction. `flushLater`: the commit does not wait for its WAL flush (nor for the
 * target's synchronous standbys), so the batch is visible at once; the caller must
 * then flush it (flushTarget) before the position reaches the source, as native
 * logical replication's apply worker confirms only what its server flushed. A target
 * crash in between loses the batch and its position together: the next session
 * takes the position from the target and applies the batch again. Otherwise the
 * commit waits for its flush even where the target runs with synchronous_commit =
 * off (DURABLE_COMMIT; see flushTarget).
 */
export function commitStatements(subUuid: string, to: TargetPosition, first = "", flushLater = false): string {
  const { tick, key } = to;
  if (!Number.isSafeInteger(tick)) throw new Error(`not a tick: ${tick}`);
  if (key !== null && !Number.isSafeInteger(key)) throw new Error(`not a tick key: ${key}`);
  return (
    `${first ? `${first};\n` : ""}${flushLater ? "set local synchronous_commit = off" : DURABLE_COMMIT};\n` +
    `update dbsync.applied set tick_id = ${tick}, tick_key = ${key ?? "null"}, key_tick = ${tick}, applied_at = now()
      where sub_uuid = ${escapeLiteral(subUuid)};
     commit`
  );
}

/**
 * Waits until every commit the session made is flushed (and, at the session's
 * synchronous_commit, on its synchronous standbys): a transaction that writes
 * commits, and its commit waits for the WAL up to its own record, which follows
 * theirs. It writes the subscription's row as it is: a commit that wrote no WAL
 * waits for nothing, even with an xid (PostgreSQL's RecordTransactionCommit). A
 * target database run with synchronous_commit = off (common for a reporting copy)
 * flushes here all the same (DURABLE_COMMIT): otherwise a position reached the
 * source before the target's disk, and a target crash then left the source ahead,
 * its queue free to drop what the target must apply again.
 */
export async function flushTarget(target: Client, subUuid: string): Promise<void> {
  await target.query(`begin; ${DURABLE_COMMIT}; update dbsync.applied set applied_at = applied_at where sub_uuid = ${escapeLiteral(subUuid)}; commit`);
}

