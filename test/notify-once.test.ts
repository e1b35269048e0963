// A write's NOTIFY reaches every `dbsync run` process; only the one that wakes the
// group (dbsync.set_sleeping returned true) queues its subscriptions' wake-ups
// (issue 19: one graphile-worker job per subscription per wake-up, not one per
// process). Also on PostgreSQL 11 (in-process wake-ups: nothing shared to count).
import assert from "node:assert/strict";
import { test } from "node:test";
import { SOURCE_MAJOR, freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";
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
  const env = await freshEnv("notify_once");
  await setup(env, "create table t (id int primary key)", ["t"]);
  const db = await value<string>(env.source, "select current_database()");
  // Counted by the server (pg_stat_user_functions) for the sidecars' sessions.
  await env.source.query(`alter database "${db}" set track_functions = 'pl'`);
  // The poll (a wake-up of its own for work it finds) out of the way: NOTIFY alone.
  const args = ["--poll-interval", "60000"];
  const sidecars = [startSidecar(env.sourceUrl, args), startSidecar(env.sourceUrl, args)];
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
  // A backend's counts reach the shared statistics when it exits (PostgreSQL 15+) or
  // within half a second (the statistics collector before).
  await sleep(1000);
  const queued = await value<number>(
    env.source,
    "select coalesce(sum(calls), 0)::int from pg_stat_user_functions where schemaname = 'dbsync_worker' and funcname = 'add_job'",
  );
  // Both processes queued each wake-up: 2 a write. (One more for the start-up's scan.)
  assert.ok(queued <= writes + 1, `${queued} wake-ups queued for ${writes} writes`);
});
