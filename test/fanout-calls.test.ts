// The source's calls per batch that find nothing (issue 19's fan-out round, where
// each batch cost five begin_batch calls and about four wake-up jobs): counted by
// the source's function statistics (track_functions, flushed when the sidecar's
// sessions end), since only their number tells the new paths from the old.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, SOURCE_MAJOR, freshEnv, sleep, startSidecar, subscribeTables, tableText, until, value } from "./helpers";
import { WORKER_MIN_MAJOR } from "../src/migrate";

/** Every session the sidecar opens from now on counts its PL/pgSQL function calls. */
async function countCalls(env: Env) {
  await env.source.query("do $$ begin execute format('alter database %I set track_functions = ''pl''', current_database()); end $$");
}

/** Calls of dbsync's (or the job queue's) function `name` counted so far, once the sessions that made them have ended. */
async function calls(env: Env, schema: string, name: string): Promise<number> {
  let last = -1;
  // (A session's counts reach the view when it exits, a moment after the sidecar did.)
  for (;;) {
    const n = Number(await value(env.source, "select coalesce(sum(calls), 0) from pg_stat_user_functions where schemaname = $1 and funcname = $2", [schema, name]));
    if (n === last) return n;
    last = n;
    await sleep(500);
  }
}

test("a batch of a group without sequences costs two begin_batch calls (the early one finding nothing ends the loop); one with a sequence still carries it", async () => {
  const env = await freshEnv("fanout_begin_calls");
  await subscribeTables(env, "create table a (id int primary key, v text); create sequence sq;", ["a"]);
  await countCalls(env);
  const ROUNDS = 10;
  // No poll in the rounds: only each write's NOTIFY wakes the subscription.
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "600000"]);
  try {
    for (let i = 1; i <= ROUNDS; i++) {
      await env.source.query("insert into a values ($1, 'x')", [i]);
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
      await sleep(300);
    }
  } finally {
    await sidecar.stop();
  }
  // Per batch: the one that takes its tick and the early one (while the target
  // commits) that finds nothing (20 calls in all seen). Before, two more: one with
  // the report, asking again for what the early one does not look at (sequences),
  // and one after each write's NOTIFY, which poked the lingering loop a second
  // time once its pass was under way (39 calls in all).
  const begun = await calls(env, "dbsync", "begin_batch");
  console.log(`# begin_batch calls: ${begun}`);
  assert.ok(begun <= 2 * ROUNDS + 4, `begin_batch called ${begun} times for ${ROUNDS} batches`);
  assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));

  // A group that carries a sequence: the loop asks again (without p_from), and a
  // sequence moved after the batch's plan is carried.
  await env.source.query("select dbsync.add_sequence('sq', 'g')");
  const again = startSidecar(env.sourceUrl, ["--poll-interval", "600000"]);
  try {
    await env.source.query("insert into a values (100, 'y')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, again.output());
    await env.source.query("select setval('sq', 777); insert into a values (101, 'z')");
    await until("the sequence carried", async () => Number(await value(env.target, "select last_value from sq")) === 777, 30_000, 50).catch((err: Error) => {
      throw new Error(`${err.message}\n${again.output()}`);
    });
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, again.output());
  } finally {
    await again.stop();
  }
  assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
});

test("two processes: the poll of one queues no wake-up for a subscription the other is applying", { skip: SOURCE_MAJOR < WORKER_MIN_MAJOR && "in-process wake-ups before PostgreSQL 12" }, async () => {
  const env = await freshEnv("fanout_wake_jobs");
  await subscribeTables(env, "create table a (id int primary key, v text)", ["a"]);
  await countCalls(env);
  const args = ["--poll-interval", "100", "--concurrency", "1"];
  const one = startSidecar(env.sourceUrl, args);
  const two = startSidecar(env.sourceUrl, args);
  const blocker = await env.target.connect();
  try {
    await env.source.query("insert into a values (1, 'x')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, one.output() + two.output());
    // A batch that cannot commit for 4 s: the subscription has work (its position
    // behind the group's last tick) all along, and one process applies it.
    await blocker.query("begin; lock table a in access exclusive mode");
    await env.source.query("insert into a values (2, 'y')");
    await until(
      "the batch waiting for the target's lock",
      async () => Number(await value(env.target, "select count(*) from pg_locks where relation = 'a'::regclass and not granted")) > 0,
      30_000,
      50,
    );
    await sleep(4000);
    await blocker.query("commit");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, one.output() + two.output());
  } finally {
    blocker.release();
    await Promise.all([one.stop(), two.stop()]);
  }
  // Before: the other process queued one every poll it found none due, each a job
  // that found the subscription busy (34 calls in all; 3 after).
  const jobs = await calls(env, "dbsync_worker", "add_job");
  console.log(`# add_job calls: ${jobs}`);
  assert.ok(jobs <= 8, `add_job called ${jobs} times`);
  assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
});
