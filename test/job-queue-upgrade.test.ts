// A sidecar upgrade on one source (the same database, the sidecar restarted, or
// several processes restarted one at a time): the wake-ups an older sidecar left in
// graphile-worker's queue must still be run. The task identifier and job key of
// "apply subscription X" ("sync", "sync:<subscription>": src/sidecar/jobs.ts
// APPLY_JOB) are a contract between sidecar versions.
import assert from "node:assert/strict";
import { test } from "node:test";
import { startSidecar, tableText, until, value } from "./helpers";
import { NO_WORKER, oneSubscription } from "./kit/sidecar-start";

test('a wake-up queued by an older sidecar (task "sync", key "sync:<subscription>") is run, not left in the queue', { skip: NO_WORKER }, async () => {
  const env = await oneSubscription("job_queue_upgrade");
  await env.source.query("insert into t select g, g from generate_series(1, 10) g");
  // Queued while no sidecar runs, as every sidecar version so far queues it.
  await env.source.query(
    "select from dbsync_worker.add_job(identifier => 'sync', payload => json_build_object('subscription', 's'), max_attempts => 1, job_key => 'sync:s')",
  );
  const queued = () =>
    value<number>(
      env.source,
      `select count(*)::int from dbsync_worker._private_jobs j join dbsync_worker._private_tasks k on k.id = j.task_id
        where k.identifier = 'sync'`,
    );
  assert.equal(await queued(), 1);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    // A task identifier no runner knows stays in the queue for good.
    await until("the older sidecar's wake-up was run", async () => (await queued()) === 0, 30_000);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecar.output());
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await sidecar.stop();
  }
});
