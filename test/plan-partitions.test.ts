// batch_plan's relations looked up by OID (v_rels: the table, or
// pg_partition_tree of a partitioned one): a partitioned table with sub-partitions,
// one leaf TRUNCATEd after the batch's snapshot (must raise serialization_failure,
// not read an empty leaf), the row estimate of a copy of a partitioned table (the
// sum of its leaves), then the whole path through the sidecar with small chunks.
// Run on PostgreSQL 17 and 11 (DBSYNC_PG_MAJOR=11: pg_partition_tree is
// dbsync._partition_tree there, src/compat.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { PoolClient } from "pg";
import { Env, freshEnv, parentKey, partitionKey, partitionKeyColumns, Side, SOURCE_MAJOR, startSidecar, until, value } from "./helpers";
import { assertTablesEqual, setup, status, synced } from "./kit/convergence";

const ddl = (side: Side) => `create table p (id int not null, region int not null, v text${parentKey("id", side)}) partition by range (id);
  create table p_lo partition of p for values from (minvalue) to (1000) partition by range (id);
  create table p_lo_a partition of p_lo${partitionKey("id", side)} for values from (minvalue) to (500);
  create table p_lo_b partition of p_lo${partitionKey("id", side)} for values from (500) to (1000);
  create table p_hi partition of p${partitionKey("id", side)} for values from (1000) to (maxvalue);
  create table plain (id int primary key, v text);`;

type Entry = { table_id: number; action: string; rows_estimated: number | null; sql: string | null };

async function planOf(c: PoolClient, between?: () => Promise<void>): Promise<{ tables: Entry[] }> {
  await c.query("begin isolation level repeatable read");
  try {
    await c.query("select 1"); // the snapshot
    await between?.();
    return (await c.query(`select dbsync.batch_plan(s.sub_id, s.position_tick, s.position_tick, 100000000, 100000000) as p
                             from dbsync.subscriptions s where s.name = 's'`)).rows[0].p;
  } finally {
    await c.query("rollback");
  }
}

async function waitingForCopy(label: string): Promise<Env> {
  const env = await freshEnv(label);
  // copy_data: both tables wait for their copy (no sidecar runs yet).
  await setup(env, ddl("source"), ["p", "plain"], { copyData: true, keyColumns: { p: partitionKeyColumns(["id"]) }, targetDdl: ddl("target") });
  await env.source.query("insert into p select g, g % 7, 'v' || g from generate_series(1, 3000) g; insert into plain select g, 'x' from generate_series(1, 10) g");
  await env.source.query("analyze p_lo_a; analyze p_lo_b; analyze p_hi; analyze plain"); // (one table an ANALYZE before 11)
  return env;
}

test("a sub-partition's leaf truncated after the batch's snapshot: serialization_failure, not an empty leaf; the estimate sums the leaves", async () => {
  const env = await waitingForCopy("plan_parts");
  const c = await env.source.connect();
  try {
    const plan = await planOf(c);
    const p = plan.tables.find((t) => t.sql?.includes('"p"') || t.sql?.includes(" p)") || t.sql?.includes("public.p "));
    const copies = plan.tables.filter((t) => t.action === "copy");
    assert.equal(copies.length, 2, JSON.stringify(plan.tables));
    const est = copies.map((t) => t.rows_estimated ?? 0).sort((a, b) => a - b);
    console.log(`# estimates ${JSON.stringify(est)} (p has 3000 rows in 3 leaves, plain 10)`);
    assert.ok(est[1] >= 2700 && est[1] <= 3300, `p's estimate ${est[1]} (3000 rows): ${JSON.stringify(p ?? plan.tables)}`);
    let err: { code?: string; message?: string } | undefined;
    await planOf(c, () => env.source.query("truncate p_lo_b").then(() => undefined)).catch((e) => (err = e));
    assert.equal(err?.code, "40001", `a leaf of a sub-partition truncated after the snapshot: ${err?.message ?? "no error: the plan read it as empty"}`);
  } finally {
    c.release();
  }
});

test("a partitioned table locked before its partitions, as DETACH PARTITION locks them: no deadlock with the plan", async () => {
  const env = await waitingForCopy("plan_parts_lock");
  const c = await env.source.connect();
  const ddl = await env.source.connect();
  try {
    // DETACH PARTITION's order, in two steps so that the plan can come between:
    // the parent, then the partition.
    const pid = (await c.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0].pid;
    await ddl.query("begin");
    await ddl.query("lock table only p in access exclusive mode");
    const plan = planOf(c).then(() => "planned", (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`);
    await until("the plan waits for a lock", async () =>
      (await value<number>(env.source, "select count(*)::int from pg_locks where pid = $1 and not granted", [pid])) > 0);
    const leaf = await ddl.query("lock table p_lo_a in access exclusive mode").then(() => "locked", (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`);
    await ddl.query("rollback");
    assert.deepEqual([leaf, await plan], ["locked", "planned"], "the plan locked a partition before its parent");
  } finally {
    c.release();
    ddl.release();
  }
});

/** Rows of p whose id grows by `by`, into other leaves: before 11 an UPDATE cannot move them, a delete and an insert in one statement do. */
function moved(by: number, where: string): string {
  return SOURCE_MAJOR >= 11
    ? `update p set id = id + ${by} where ${where}`
    : `with d as (delete from p where ${where} returning *) insert into p select id + ${by}, region, v from d`;
}

test("the copy and the stream of a partitioned table with sub-partitions, in chunks, rows moving between leaves", async () => {
  const env = await waitingForCopy("plan_parts_e2e");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200", "--copy-chunk-rows", "700"], { DBSYNC_STREAM_PIECE_LINES: "50" });
  try {
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["p", "plain"], "after the copy");
    await env.source.query(`begin;
      delete from p where id between 600 and 700;
      ${moved(500, "id between 100 and 200")};
      ${moved(100000, "id % 9 = 0 and id < 1500")};
      update p set v = v || '!' where id % 4 = 0;
      delete from p where id % 13 = 0;
      insert into p select g, 1, 'n' from generate_series(3001, 3100) g;
      commit`);
    await env.source.query("truncate p_hi");
    await env.source.query("insert into p select g, 2, 'after truncate' from generate_series(1000, 1100) g");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["p", "plain"], "after the stream");
    assert.equal((await status(env))?.last_error ?? null, null);
  } finally {
    await sidecar.stop();
  }
});
