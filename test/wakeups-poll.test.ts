// The poll and its wake-ups (dbsync._with_work for every subscription in one
// query; _has_new_writers planned per group; a subscription whose wake-up waits in
// the queue, due, is not woken again): with no
// NOTIFY at all (writers' dbsync.notify = off), work of every kind must be applied
// within a few poll intervals: rows, a transaction that wrote events and committed
// late, a paused then resumed subscription, a table waiting for its copy (resync), a
// sequence behind, a wake-up job that failed for good, and two `dbsync run`
// processes. Also on PostgreSQL 11 (in-process wake-ups, the SQL rewritten).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, SOURCE_MAJOR, freshEnv, sleep, startSidecar, until, value } from "./helpers";
import { setup, status, strictlyConverged } from "./kit/convergence";
import { running } from "./kit/sidecar-start";
import { WORKER_MIN_MAJOR } from "../src/migrate";

const POLL_MS = 300;
/**
 * "A few poll intervals", with room for a loaded machine (load ~8 on 2 cores),
 * counted once the sidecars run: at load 20-28 two sidecars started at once took
 * 7.5 s to load before their first line, and the first row, written at their
 * spawn, timed out for their start, not for a poll (on f9731b1 as after it).
 */
const LIMIT_MS = 8_000;
/**
 * The first row after the sidecars run: "running" is said once the job runner and
 * LISTEN are up, which at start-up may be before the start-up pass's first batch
 * (the runner waits for it a few poll intervals at most): that row waits for
 * that batch, and the first batch of a fresh process opens its sessions and runs
 * dbsync's functions for the first time in them, 2.7 s for a batch of no event
 * at load 30. Every failure of this file in session 21's logs (13) was that row
 * timed out after 8 s, none a later one; its bound is the start-up's (running()'s).
 */
const FIRST_LIMIT_MS = 60_000;
/** Info: running() waits for the sidecar's "dbsync sidecar running" line. */
const RUNNING_LOG = { DBSYNC_LOG_LEVEL: "info" };

/** How long until the target's t holds `n` rows, after `write` ran (notify off in its session). */
async function applyMs(env: Env, sql: string, check: string, what: string, limitMs = LIMIT_MS): Promise<number> {
  const c = await env.source.connect();
  try {
    await c.query("set dbsync.notify = off");
    await c.query(sql);
  } finally {
    c.release();
  }
  const t0 = Date.now();
  await until(what, async () => (await value<boolean>(env.target, check)) === true, limitMs, 25).catch(async (err) => {
    const tables = (await env.source.query("select * from dbsync.table_status")).rows;
    const work = await value(env.source, "select dbsync.has_work('s')");
    throw new Error(`${(err as Error).message} (status ${JSON.stringify(await status(env))}, has_work ${work}, tables ${JSON.stringify(tables)})`);
  });
  const ms = Date.now() - t0;
  console.log(`# ${what}: ${ms} ms`);
  return ms;
}

const DDL = `create table t (id int primary key, v text); create table late (id int primary key, v text);
  create sequence sq;`;

async function start(label: string): Promise<Env> {
  const env = await freshEnv(label);
  await setup(env, DDL, ["t"]);
  await env.source.query("select dbsync.add_sequence('sq', 'g')");
  return env;
}

const count = (n: number) => `select count(*) = ${n} from t`;

test("no NOTIFY at all: rows, a late commit, pause and resume, a table to copy, a sequence behind: applied within a few polls", async () => {
  const env = await start("wake_poll");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", String(POLL_MS)], RUNNING_LOG);
  try {
    await running(sidecar);
    await applyMs(env, "insert into t values (1, 'a')", count(1), "first row", FIRST_LIMIT_MS);
    // Idle long enough for the applier to sleep (the group's sleeping flag set).
    await sleep(2000);
    await applyMs(env, "insert into t values (2, 'b')", count(2), "a row after the applier slept");
    // A transaction writes events, others commit and are applied past it, then it commits.
    const open = await env.source.connect();
    try {
      await open.query("set dbsync.notify = off; begin; insert into t values (100, 'late')");
      await applyMs(env, "insert into t values (3, 'c')", count(3), "a row while another transaction is open");
      await sleep(1500);
      await open.query("commit");
      const t0 = Date.now();
      await until("the late commit", async () => (await value<boolean>(env.target, count(4))) === true, LIMIT_MS, 25);
      console.log(`# the late commit: ${Date.now() - t0} ms`);
    } finally {
      open.release();
    }
    // Paused: nothing applied; resumed: applied (resume may notify: the writes do not).
    await env.source.query("select dbsync.pause('s')");
    await applyMs(env, "insert into t values (4, 'paused')", "select true", "(write while paused)");
    await sleep(1500);
    assert.equal(await value<boolean>(env.target, count(4)), true, "nothing applied while paused");
    await env.source.query("set dbsync.notify = off; select dbsync.resume('s')");
    const t1 = Date.now();
    await until("applied after resume", async () => (await value<boolean>(env.target, count(5))) === true, LIMIT_MS, 25);
    console.log(`# after resume: ${Date.now() - t1} ms`);
    // A table added to the group: waits for its copy.
    await env.source.query("insert into late select g, 'x' from generate_series(1, 50) g");
    // (Without copy_data the subscription takes it as there: a resync copies it.)
    await env.source.query("select dbsync.add_table('late', 'g')");
    await applyMs(env, "select dbsync.resync_table('s', 'late')", "select count(*) = 50 from late", "a table's copy");
    // A sequence behind (nextval writes no event).
    await applyMs(env, "select setval('sq', 5000)", "select last_value >= 5000 from sq", "a sequence behind");
    await strictlyConverged(env, ["t", "late"]);
  } finally {
    await sidecar.stop();
  }
});

test("a wake-up job that failed for good (graphile-worker's queue), and two `dbsync run` processes: still applied within a few polls", async () => {
  const env = await start("wake_jobs");
  const a = startSidecar(env.sourceUrl, ["--poll-interval", String(POLL_MS), "--concurrency", "1"], RUNNING_LOG);
  const b = startSidecar(env.sourceUrl, ["--poll-interval", String(POLL_MS), "--concurrency", "1"], RUNNING_LOG);
  try {
    await Promise.all([running(a), running(b)]);
    await applyMs(env, "insert into t values (1, 'a')", count(1), "first row, two processes", FIRST_LIMIT_MS);
    await sleep(1500);
    // The subscription's wake-up in the queue, failed for good (attempts used up), due.
    if (SOURCE_MAJOR >= WORKER_MIN_MAJOR) {
        await env.source.query(`select dbsync_worker.add_job('sync', json_build_object('subscription', 's'), job_key => 'sync:s',
                                                           run_at => now() + interval '1 hour', max_attempts => 1)`);
      await env.source.query("update dbsync_worker._private_jobs set attempts = max_attempts, run_at = now() - interval '1 s', last_error = 'attack' where key = 'sync:s'");
    }
    for (let i = 2; i <= 6; i++) {
      await applyMs(env, `insert into t values (${i}, 'x')`, count(i), `row ${i} with a failed job queued`);
      await sleep(700);
    }
    await strictlyConverged(env, ["t"]);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
