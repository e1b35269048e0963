// Adversarial tests of the batch stream and the in-place merge (commit 0a55ab8):
// each asserts the correct behaviour, so it fails while the bug exists.
import assert from "node:assert/strict";
import { test } from "node:test";
import { TARGET_MAJOR, freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";
import { setup, status, settle, strictlyConverged, synced } from "./kit/convergence";

test("a TRUNCATE of a wide table in the same batch as a change to a narrower table", async () => {
  const env = await freshEnv("advm_trunc_wide");
  await setup(
    env,
    `create table narrow (id int primary key, v text);
     create table wide (id int primary key, a text, b text, c text, d text)`,
    ["narrow", "wide"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into narrow values (1, 'x'); insert into wide values (1, 'a', 'b', 'c', 'd')");
    await settle(env);
    await synced(env);
    // One transaction, one batch: the only change to wide is the TRUNCATE (no stream
    // lines for it), narrow has a row to write.
    await env.source.query("begin; truncate wide; update narrow set v = 'y' where id = 1; commit");
    await strictlyConverged(env, ["narrow", "wide"]);
  } finally {
    await sidecar.stop();
  }
});

/** A plain source table t, its target a partitioned table t (a migration to partitions through replication). */
async function partitionedTarget(label: string) {
  const env = await freshEnv(label);
  await env.source.query("create table t (id int primary key, v text)");
  await env.target.query(`create table t (id int primary key, v text) partition by range (id);
                          create table t_lo partition of t for values from (minvalue) to (100);
                          create table t_hi partition of t for values from (100) to (maxvalue)`);
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  return env;
}

test("a plain source table replicated into a partitioned target table: a delete", { skip: TARGET_MAJOR < 11 && "a partitioned table has no primary key before PostgreSQL 11" }, async () => {
  const env = await partitionedTarget("advm_part_target_del");
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t select g, 'v' || g from generate_series(1, 5) g");
    await settle(env);
    await synced(env);
    assert.equal(await value(env.target, "select count(*)::int from t"), 5);
    await env.source.query("delete from t where id = 1");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("a plain source table replicated into a partitioned target table: an update", { skip: TARGET_MAJOR < 11 && "a partitioned table has no primary key before PostgreSQL 11" }, async () => {
  const env = await partitionedTarget("advm_part_target_upd");
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t select g, 'v' || g from generate_series(1, 5) g");
    await settle(env);
    await synced(env);
    await env.source.query("update t set v = 'changed' where id = 2");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("a NOT NULL domain column outside the key: deleting a row", async () => {
  const env = await freshEnv("advm_nn_domain");
  await setup(env, "create domain nn_text as text not null; create table t (id int primary key, v nn_text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t values (1, 'a'), (2, 'b')");
    await settle(env);
    await synced(env);
    await env.source.query("delete from t where id = 1");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("a column widened by hand on both sides (numeric(10,2) to numeric(12,4)) while the sidecar runs", async () => {
  const env = await freshEnv("advm_typmod");
  await setup(env, "create table t (id int primary key, n numeric(10,2))", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t values (1, 1.25)");
    await settle(env);
    await synced(env);
    await env.source.query("update t set n = 2.5 where id = 1"); // the stage is in use
    await settle(env);
    await synced(env);
    // The documented way for DDL outside execute_ddl: the same change on the target.
    await env.target.query("alter table t alter column n type numeric(12,4)");
    await env.source.query("alter table t alter column n type numeric(12,4)");
    await env.source.query("update t set n = 1.2345 where id = 1");
    // A rewrite of the source's rows, which no row trigger saw: held until the DBA
    // says the target has the change too, then copied (test/ddl-rewrite-outside).
    await env.source.query("select dbsync.acknowledge_ddl(ddl_id) from dbsync.unreplicated_ddl");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("a target column that rejects a value in the middle of a long stream: a clear error in status, no crash, then recovery", async () => {
  const env = await freshEnv("advm_copy_error");
  await env.source.query("create table a (id int primary key, v text); create table b (id int primary key, v text)");
  // a.v is an int on the target: one value will not parse.
  await env.target.query("create table a (id int primary key, v int); create table b (id int primary key, v text)");
  await env.source.query("select dbsync.add_table('a', 'g'), dbsync.add_table('b', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await settle(env);
    await synced(env);
    await env.source.query(`begin;
      insert into a select g, g::text from generate_series(1, 60000) g;
      update a set v = 'not a number' where id = 5;
      insert into b select g, repeat('x', 200) from generate_series(1, 60000) g;
      commit`);
    await until("the error shows in dbsync.status", async () => !!(await status(env))?.last_error, 60_000);
    const st = await status(env);
    // Fix the target: replication resumes by itself.
    await env.target.query("alter table a alter column v type text");
    await until("caught up", async () => (await value(env.source, "select dbsync.wait_for_sync('s', '5 s')")) === true, 90_000);
    assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
    assert.equal(await value(env.target, "select count(*)::int from b"), 60000);
    assert.equal(sidecar.proc.exitCode, null, `the sidecar exited: ${sidecar.output()}`);
    // The error the DBA saw names the problem (the value, the table) and its SQLSTATE.
    assert.match(st!.last_error!, /integer|not a number/i, JSON.stringify(st));
    assert.equal(st!.last_error_sqlstate, "22P02", JSON.stringify(st));
    assert.match(st!.last_error_table ?? "", /"a"/, JSON.stringify(st));
  } finally {
    await sidecar.stop();
  }
});

test("the source streams while the target's preparation waits for a lock: nothing applied before it, all rows after", async () => {
  const env = await freshEnv("advm_prep_overlap");
  await env.source.query("create table a (id int primary key, v text); create table b (id int primary key, v text)");
  await env.target.query("create table a (id int primary key, v text); create table b (id int primary key, v text)");
  await env.source.query("select dbsync.add_table('a', 'g'), dbsync.add_table('b', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  const blocker = await env.target.connect();
  try {
    await settle(env);
    await synced(env);
    await blocker.query("begin; lock table b in access exclusive mode");
    // One batch: many pieces of a (more than the reader may queue ahead), a few rows of b.
    await env.source.query(`begin;
      insert into a select g, repeat('x', 300) || g from generate_series(1, 80000) g;
      insert into b select g, g::text from generate_series(1, 10) g;
      update a set v = 'u' || id where id % 7 = 0;
      delete from a where id % 11 = 0;
      commit`);
    await until("the target's preparation waits for b's lock", async () =>
      (await value<number>(env.target,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name = 'dbsync apply s' and wait_event_type = 'Lock'")) === 1, 60_000);
    // Meanwhile the source reads the batch's stream, and not a row reached the target.
    await until("the reader's COPY runs", async () =>
      (await value<number>(env.source,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name = 'dbsync read s' and query ilike 'copy%' and state = 'active'")) === 1, 60_000);
    await sleep(300);
    assert.equal(await value(env.target, "select count(*)::int from a"), 0);
    await blocker.query("rollback");
    await strictlyConverged(env, ["a", "b"]);
    assert.equal(await value(env.target, "select count(*)::int from a"), 80000 - Math.floor(80000 / 11));
  } finally {
    await blocker.query("rollback").catch(() => undefined);
    blocker.release();
    await sidecar.stop();
  }
});

test("pause() while a batch is opening: nothing committed after pause() returned is applied before resume", async () => {
  const env = await freshEnv("advm_pause_opening");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  const blocker = await env.source.connect();
  try {
    await settle(env);
    await synced(env);
    // The group's row lock stops begin_batch between its read of the subscription
    // (not paused yet) and its tick: the window a pause from another session falls in.
    await blocker.query("begin; select from dbsync.groups where name = 'g' for update");
    await env.source.query("insert into t values (1, 'before the pause')");
    await until("begin_batch waits for the group's lock", async () =>
      (await value<number>(env.source,
        "select count(*)::int from pg_stat_activity where datname = current_database() and query like '%begin_batch%' and wait_event_type = 'Lock'")) >= 1, 60_000);
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("insert into t values (2, 'after the pause')");
    await blocker.query("commit");
    await until("begin_batch done", async () =>
      (await value<number>(env.source,
        "select count(*)::int from pg_stat_activity where datname = current_database() and query like '%begin_batch%' and wait_event_type = 'Lock'")) === 0, 60_000);
    await sleep(1500);
    assert.equal(await value(env.target, "select count(*)::int from t where id = 2"), 0, "a row committed after pause() returned was applied");
    await env.source.query("select dbsync.resume('s')");
    await strictlyConverged(env, ["t"]);
  } finally {
    await blocker.query("rollback").catch(() => undefined);
    blocker.release();
    await sidecar.stop();
  }
});
