// A subscription that caught up keeps its connections and apply lock for a while
// (src/sidecar/appliers.ts, linger): a change committed meanwhile is applied by the
// same apply loop, woken by its NOTIFY, without a new job; after that while the
// lock is let go (an idle subscription holds nothing), and the next change is
// applied through a wake-up job again.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, freshEnv, sleep, startSidecar, until, value } from "./helpers";
import { setup, strictlyConverged } from "./kit/convergence";

/** Whether a session holds the subscription's apply lock (dbsync._lock_class('apply'), sub_id). */
function applyLockHeld(env: Env): Promise<boolean> {
  return value<boolean>(
    env.source,
    `select exists (select from pg_locks l join dbsync.subscriptions s on l.objid = s.sub_id
                    where l.locktype = 'advisory' and l.classid = dbsync._lock_class('apply')::oid
                      and l.database = (select oid from pg_database where datname = current_database()) and s.name = 's')`,
  );
}

const jobsStarted = (log: string) => log.split("\n").filter((l) => l.includes('"apply job started"')).length;

test("a change committed while the caught-up applier lingers is applied by the same loop; then the lock is let go and a job applies the next", async () => {
  const env = await freshEnv("apply_linger");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl, [], { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" });
  const applied = (n: number) => until(`row ${n} on the target`, async () => (await value<number>(env.target, "select count(*)::int from t")) === n, 30_000, 20);
  try {
    await env.source.query("insert into t values (1, 'a')");
    await applied(1);
    const jobs = jobsStarted(sidecar.output());
    assert.ok(jobs >= 1, "the first row was applied by an apply job");
    // The loop that caught up lingers with its lock (2 s): well after its last batch
    // it still holds it (a loop that ends at once has let go by then).
    await sleep(700);
    assert.ok(await applyLockHeld(env), "the applier that caught up still holds its lock");
    await env.source.query("insert into t values (2, 'b')");
    await applied(2);
    assert.equal(jobsStarted(sidecar.output()), jobs, "the lingering loop applied row 2, without a job");
    // Past the linger: the lock is let go (the session goes back to the pool).
    await until("the apply lock let go", async () => !(await applyLockHeld(env)), 15_000, 50);
    const before = jobsStarted(sidecar.output());
    await sleep(200);
    await env.source.query("insert into t values (3, 'c')");
    await applied(3);
    assert.ok(jobsStarted(sidecar.output()) > before, "row 3 came through a wake-up job");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});
