// Wake-ups queued once, not once per `dbsync run` process (issue 19: each is a
// graphile-worker job, and a second one a loop that finds the subscription busy or
// caught up). A write's NOTIFY reaches every process; only the one that wakes the
// group (dbsync.set_sleeping returned true) queues its subscriptions' wake-ups. The
// poll queues none for a subscription another process applies. Also on PostgreSQL
// 11 (in-process wake-ups: nothing shared to count).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, SOURCE_MAJOR, freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";
import { setup } from "./kit/convergence";
import { WORKER_MIN_MAJOR } from "../src/migrate";

test("set_sleeping says whether the call changed the flag", async () => {
  const env = await freshEnv("sleeping_flip");
  await setup(env, "create table t (id int primary key)", ["t"]);
  const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  await env.source.query("select dbsync.set_sleeping($1, true)", [gid]);
  assert.equal(await value(env.source, "select dbsync.set_sleeping($1, false)", [gid]), true);
  assert.equal(await value(env.source, "select dbsync.set_sleeping($1, false)", [gid]), false);
  assert.equal(await value(env.source, "select dbsync.set_sleeping($1, true)", [gid]), true);
});

test("two processes, a write to a sleeping group: one wake-up queued, not one per process", async () => {
  // The poll (a wake-up of its own for work it finds) out of the way: NOTIFY alone.
  const { env, sidecars } = await twoProcesses("notify_once", "60000");
  const writes = 4;
  try {
    for (let i = 1; i <= writes; i++) {
      // The applier caught up and let go of the subscription (not lingering: a
      // NOTIFY would find it running and queue nothing), the group asleep.
      await until("the group asleep", async () => (await value(env.source, "select sleeping from dbsync.groups where name = 'g'")) === true, 30_000, 50);
      await sleep(2500);
      await env.source.query("insert into t values ($1)", [i]);
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecars.map((s) => s.output()).join("\n"));
    }
  } finally {
    for (const s of sidecars) assert.equal(await s.stop(), 0, s.output());
  }
  assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  if (SOURCE_MAJOR < WORKER_MIN_MAJOR) return;
  // Both processes queued each wake-up: 2 a write. (One more for the start-up's scan.)
  const queued = await wakeupsQueued(env);
  assert.ok(queued <= writes + 1, `${queued} wake-ups queued for ${writes} writes`);
});

test("two processes, a batch held 4 s on the target: the other process's poll queues no wake-up for it", async () => {
  const { env, sidecars } = await twoProcesses("poll_applied_elsewhere", "200");
  const holder = await env.target.connect();
  try {
    await until("the group asleep", async () => (await value(env.source, "select sleeping from dbsync.groups where name = 'g'")) === true, 30_000, 50);
    await holder.query("begin");
    await holder.query("lock table t in access exclusive mode");
    await env.source.query("insert into t values (1)");
    await until(
      "the batch waiting for the target's lock",
      async () => (await value<number>(env.target, "select count(*)::int from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'")) > 0,
      30_000,
      50,
    );
    await sleep(4000);
    await holder.query("commit");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecars.map((s) => s.output()).join("\n"));
  } finally {
    holder.release();
    for (const s of sidecars) assert.equal(await s.stop(), 0, s.output());
  }
  assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  if (SOURCE_MAJOR < WORKER_MIN_MAJOR) return;
  // The other process's poll, every 200 ms, queued one each time the last was taken
  // (by a loop that found the subscription busy): 20 and more in 4 s.
  const queued = await wakeupsQueued(env);
  assert.ok(queued <= 4, `${queued} wake-ups queued for one write`);
});

/** Table t in group g, subscription s, and two sidecars whose sessions count their calls of PL/pgSQL functions. */
async function twoProcesses(label: string, pollMs: string) {
  const env = await freshEnv(label);
  await setup(env, "create table t (id int primary key)", ["t"]);
  const db = await value<string>(env.source, "select current_database()");
  await env.source.query(`alter database "${db}" set track_functions = 'pl'`);
  const args = ["--poll-interval", pollMs];
  return { env, sidecars: [startSidecar(env.sourceUrl, args), startSidecar(env.sourceUrl, args)] };
}

/** graphile-worker's add_job calls, once the sidecars have stopped. */
async function wakeupsQueued(env: Env): Promise<number> {
  // A backend's counts reach the shared statistics when it exits (PostgreSQL 15+) or
  // within half a second (the statistics collector before).
  await sleep(1000);
  return value<number>(
    env.source,
    "select coalesce(sum(calls), 0)::int from pg_stat_user_functions where schemaname = 'dbsync_worker' and funcname = 'add_job'",
  );
}
