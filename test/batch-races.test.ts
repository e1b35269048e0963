// Pause, resume, resync_table and remove_table racing batches that are
// opening (held in begin_batch by a row lock on dbsync.groups) or in flight (held
// on the target by a lock on the target table, which the batch needs before it
// writes). Each ends in a target equal to the source, or an error the DBA sees.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PoolClient } from "pg";
import { Env, freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";
import { setup, settle, status, strictlyConverged, synced } from "./kit/convergence";

const DDL = "create table t (id int primary key, v text); create table u (id int primary key, v text)";

/** A batch of `sub` waits on the target for a lock on t (taken by `holder`). */
async function batchWaitsOnTarget(env: Env) {
  await until("a batch waits for the target table's lock", async () =>
    (await value<number>(env.target,
      "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and wait_event_type = 'Lock'")) >= 1, 60_000, 20);
}

async function holdTarget(env: Env): Promise<PoolClient> {
  const holder = await env.target.connect();
  await holder.query("begin; lock table t in share mode");
  return holder;
}

async function start(label: string, copyData = false) {
  const env = await freshEnv(label);
  await setup(env, DDL, ["t", "u"], { copyData });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  await env.source.query("insert into t select g, 'v' || g from generate_series(1, 100) g; insert into u select g, 'u' || g from generate_series(1, 100) g");
  const t0 = Date.now();
  await settle(env);
  await synced(env);
  console.log(`# first sync ${Date.now() - t0} ms`);
  return { env, sidecar };
}

test("pause() while a batch is in flight (held on the target): the batch commits, nothing committed after pause() returned is applied before resume", async () => {
  const { env, sidecar } = await start("b3_race_pause_flight");
  const holder = await holdTarget(env);
  try {
    await env.source.query("update t set v = 'in flight' where id = 1");
    await batchWaitsOnTarget(env);
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("update t set v = 'after pause' where id = 2; update u set v = 'after pause' where id = 2");
    await holder.query("commit");
    await until("the held batch commits", async () => (await value(env.target, "select v from t where id = 1")) === "in flight", 30_000);
    await sleep(2000);
    assert.equal(await value(env.target, "select v from t where id = 2"), "v2", "a change committed after pause() returned was applied");
    assert.equal(await value(env.target, "select v from u where id = 2"), "u2", "a change committed after pause() returned was applied");
    // Resume and pause again at once, then resume.
    await env.source.query("select dbsync.resume('s'); select dbsync.pause('s')");
    await env.source.query("update t set v = 'paused again' where id = 3");
    await sleep(1500);
    assert.equal(await value(env.target, "select v from t where id = 3"), "v3", "applied while paused again");
    await env.source.query("select dbsync.resume('s')");
    await strictlyConverged(env, ["t", "u"]);
  } finally {
    await holder.query("rollback").catch(() => undefined);
    holder.release();
    await sidecar.stop();
  }
});

test("resync_table while a batch of that table is in flight, with writes before and after", async () => {
  const { env, sidecar } = await start("b3_race_resync_flight");
  const holder = await holdTarget(env);
  try {
    await env.source.query("update t set v = 'in flight' where id <= 10; delete from t where id = 50");
    await batchWaitsOnTarget(env);
    // The target drifts meanwhile (a resync's reason), then resync_table.
    await env.source.query("select dbsync.resync_table('s', 't')");
    await env.source.query("update t set v = 'after resync' where id between 5 and 15; insert into t values (1000, 'new'); delete from t where id = 60");
    await holder.query("commit");
    await strictlyConverged(env, ["t", "u"]);
    // Then a drift on the target, a resync and writes racing its copy.
    await env.target.query("update t set v = 'drift' where id = 70");
    await env.source.query("select dbsync.resync_table('s', 't')");
    for (let i = 0; i < 20; i++) await env.source.query("update t set v = $1 where id = $2", [`w${i}`, 80 + i]);
    await strictlyConverged(env, ["t", "u"]);
  } finally {
    await holder.query("rollback").catch(() => undefined);
    holder.release();
    await sidecar.stop();
  }
});

test("remove_table and add_table again while a batch of that table is in flight", async () => {
  // A subscription that copies its tables: t, added again, is copied again.
  const { env, sidecar } = await start("b3_race_remove_flight", true);
  const holder = await holdTarget(env);
  try {
    await env.source.query("update t set v = 'in flight' where id <= 10; update u set v = 'in flight' where id <= 10");
    const t1 = Date.now();
    await batchWaitsOnTarget(env);
    console.log(`# batch waits after ${Date.now() - t1} ms`);
    // remove_table waits for the batch's reader (whose transaction waits for the target): released meanwhile.
    const removing = env.source.query("select dbsync.remove_table('t')");
    await sleep(500);
    await holder.query("commit");
    const t0 = Date.now();
    await removing;
    console.log(`# remove_table returned ${Date.now() - t0} ms after the target was released`);
    await env.source.query("update t set v = 'not captured' where id between 20 and 30; update u set v = 'after remove' where id between 20 and 30");
    await env.source.query("select dbsync.add_table('t', 'g')");
    await env.source.query("update t set v = 'captured again' where id between 25 and 35; delete from t where id = 99");
    await strictlyConverged(env, ["t", "u"]);
    // In sync within seconds, as for any batch (no back-off of a minute).
    assert.ok(Date.now() - t0 < 20_000, `converged only after ${Date.now() - t0} ms:\n${sidecar.output().slice(-5000)}`);
    // SIGTERM: the sidecar drains and exits within seconds.
    const t2 = Date.now();
    const code = await sidecar.stop("SIGTERM", 30_000);
    assert.ok(Date.now() - t2 < 10_000, `SIGTERM took ${Date.now() - t2} ms (exit ${code}):\n${sidecar.output().slice(-5000)}`);
  } finally {
    await holder.query("rollback").catch(() => undefined);
    holder.release();
    await sidecar.stop();
  }
});

test("pause() and resync_table while the wake-up waits for the group's lock, resume after", async () => {
  const { env, sidecar } = await start("b3_race_pause_opening");
  const blocker = await env.source.connect();
  try {
    await blocker.query("begin; select from dbsync.groups where name = 'g' for update");
    await env.source.query("update t set v = 'before' where id = 1");
    // The wake-up (set_sleeping, or begin_batch when the group is awake) waits for the group's row.
    await until("the wake-up waits for the group's lock", async () =>
      (await value<number>(env.source,
        "select count(*)::int from pg_stat_activity where datname = current_database() and (query like '%begin_batch%' or query like '%set_sleeping%') and wait_event_type = 'Lock'")) >= 1, 60_000, 20);
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("select dbsync.resync_table('s', 'u')");
    await env.source.query("update t set v = 'after' where id = 2; update u set v = 'after' where id = 2");
    await blocker.query("commit");
    await sleep(2000);
    assert.equal(await value(env.target, "select v from t where id = 2"), "v2", "applied while paused");
    assert.equal(await value(env.target, "select v from u where id = 2"), "u2", "applied while paused (the resync's copy)");
    const st = await status(env);
    assert.equal(st?.last_error ?? null, null);
    await env.source.query("select dbsync.resume('s')");
    await strictlyConverged(env, ["t", "u"]);
    assert.deepEqual(await tableText(env.target, "u"), await tableText(env.source, "u"));
  } finally {
    await blocker.query("rollback").catch(() => undefined);
    blocker.release();
    await sidecar.stop();
  }
});
