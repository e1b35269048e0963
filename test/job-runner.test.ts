// The job runner's first read of its task list fails (the source restarted, or a
// connection timed out, just as the runner started): graphile-worker 0.17 keeps
// that failure and every later attempt to take a job rethrows it, so no wake-up
// was ever run again, and the sidecar said nothing (graphile-worker logs it at
// debug level; the scans see the wake-up due and leave it to the runner). The
// sidecar must notice, say so, and start its runner again.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SOURCE_MAJOR, freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";
import { NO_WORKER, oneSubscription } from "./kit/sidecar-start";
import { createLog, Outages } from "../src/log";
import { APPLY_JOB, WORKER_POLL_INTERVALS, createJobs } from "../src/sidecar/jobs";

test("the runner's first read of its task list fails: the runner is started again, and wake-ups run", { skip: NO_WORKER }, async () => {
  const env = await oneSubscription("job_runner_task_list");
  // graphile-worker's task list read (insert ... select unnest($1::text[])) loses its
  // connection once, as at a restart of the source; add_job's inserts pass.
  await env.source.query(`
    create sequence task_list_faults;
    create function task_list_fault() returns trigger language plpgsql as $$
    begin
      if current_query() like '%select unnest($1::text[])%' and nextval('public.task_list_faults') = 1 then
        perform pg_terminate_backend(pg_backend_pid());
      end if;
      return null;
    end $$;
    create trigger task_list_fault before insert on dbsync_worker._private_tasks
      for each statement execute function task_list_fault();`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "info" });
  try {
    await until("the runner's task list read failed", async () => (await value(env.source, "select is_called from task_list_faults")) === true, 30_000).catch((e) => {
      throw new Error(`${e.message}:\n${sidecar.output()}`);
    });
    await until("the sidecar is running", async () => sidecar.output().includes("dbsync sidecar running"), 30_000);
    // Applied only by a job: the start-up pass had nothing to apply and has ended.
    for (let round = 1; round <= 2; round++) {
      await env.source.query("insert into t select g, $1 from generate_series(1, 10) g on conflict (id) do update set v = excluded.v", [round]);
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, `round ${round} not applied:\n${sidecar.output()}`);
    }
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
    assert.match(sidecar.output(), /job runner .*restart/i, "the failure was said");
  } finally {
    await sidecar.stop();
  }
});

test("the runner fails to take any job while a wake-up waits: it is said, and the runner started again", { skip: NO_WORKER }, async () => {
  const env = await oneSubscription("job_runner_stuck");
  // Every worker's attempt to take a job fails (a new error each time: nothing
  // graphile-worker keeps) while public.runner_fault says so; add_job passes.
  await env.source.query(`
    create table runner_fault (on_ boolean not null);
    insert into runner_fault values (false);
    create function runner_fault() returns trigger language plpgsql as $$
    begin
      if current_query() like '%skip locked%' and (select on_ from public.runner_fault) then
        raise exception 'injected: no job for this runner';
      end if;
      return null;
    end $$;
    create trigger runner_fault before update on dbsync_worker._private_jobs
      for each statement execute function runner_fault();`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "info" });
  try {
    await until("the sidecar is running", async () => sidecar.output().includes("dbsync sidecar running"), 30_000);
    await env.source.query("insert into t values (1, 1)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecar.output());
    await env.source.query("update runner_fault set on_ = true");
    await env.source.query("insert into t values (2, 2)");
    await until("the stuck runner is said", async () => /the job runner takes no wake-up: one has been due for \d+ s/.test(sidecar.output()), 90_000).catch((e) => {
      throw new Error(`${e.message}:\n${sidecar.output()}`);
    });
    await env.source.query("update runner_fault set on_ = false");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecar.output());
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await sidecar.stop();
  }
});

/**
 * A job runner of `pollIntervalMs` (its workers ask for jobs every WORKER_POLL_INTERVALS
 * of them, 10 s here), started on a fresh source, idle: the times its tasks ran.
 */
async function idleRunner(label: string, pollIntervalMs: number) {
  const env = await freshEnv(label);
  const ran = new Map<string, number>();
  const log = createLog("warn");
  const task = async (payload: unknown) => void ran.set((payload as { subscription: string }).subscription, Date.now());
  const jobs = createJobs({ sourceUrl: env.sourceUrl, concurrency: 2, pollIntervalMs, log, outages: new Outages(log), onRestart: async () => undefined, tasks: { [APPLY_JOB]: task } }, SOURCE_MAJOR);
  await jobs.start();
  // The workers' first ask, at their start, is over.
  await sleep(1000);
  return { env, jobs, ran };
}

test("wake-ups queued for later run when they fall due, not at the workers' next poll: the process that queued one announces it; the poll announces one it finds due and not taken", { skip: NO_WORKER }, async () => {
  const pollMs = 1000;
  assert.ok(WORKER_POLL_INTERVALS * pollMs >= 10_000, "the workers' own poll would pass the bounds below");
  const { env, jobs, ran } = await idleRunner("job_runner_due", pollMs);
  try {
    // This process's own, 500 ms later (a slot refused, a retry).
    const t0 = Date.now();
    await jobs.wakeApplier("later", 500);
    await until("the wake-up queued for later ran", async () => ran.has("later"), 5000, 25);
    const ms = ran.get("later")! - t0;
    console.log(`# a wake-up queued for 500 ms later ran after ${ms} ms`);
    assert.ok(ms >= 500, `ran ${ms} ms after it was queued, before it was due`);
    // Another process's, which stopped before it fell due: no NOTIFY comes at its due time.
    await env.source.query(`select dbsync_worker.add_job('sync', json_build_object('subscription', 'orphan'), job_key => 'sync:orphan',
                                                         run_at => now() + interval '200 ms', max_attempts => 1)`);
    await sleep(200 + pollMs + 100);
    const t1 = Date.now();
    assert.equal(ran.has("orphan"), false, "taken by the workers' own poll: nothing tells how long it waited");
    await jobs.dueAppliers();
    await until("the wake-up the poll found due ran", async () => ran.has("orphan"), 5000, 25);
    console.log(`# a wake-up found due by the poll ran ${ran.get("orphan")! - t1} ms after`);
  } finally {
    await jobs.stop();
  }
});
