// A target that rejects a row: a CHECK on the target fails for one key. The
// subscription stops at that batch (nothing of it, nothing after it, on the target)
// with the error in dbsync.status (last_error, SQLSTATE 23514, the table), retries
// with back-off, and a subscription of another group into the same target keeps
// going. Once the row is fixed it resumes with nothing lost: first by fixing the
// source row (the retried batch reaches up to the fix, whose last state passes),
// then, for a second bad row, by dropping the CHECK on the target.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SOURCE_DDL, TARGET_AUDIT, Workload } from "./kit/workload";
import { freshEnv, rows, seeded, sleep, startSidecar, tableText, until, value } from "./helpers";

test("a CHECK on the target rejects one key: that subscription stops with 23514, the other group goes on, the fix resumes it", async (t) => {
  const env = await freshEnv("faults_reject");
  // Group a: ins_only (insert-only) and items (the CHECK); group b: kv.
  const ITEMS = "create table items (id int primary key, v int not null, note text); insert into items select g, 0, 'seed' from generate_series(1, 20) g;";
  await env.source.query(SOURCE_DDL("ins_only", "kv") + ITEMS);
  await env.target.query(SOURCE_DDL("ins_only", "kv") + ITEMS);
  await env.target.query(TARGET_AUDIT("ins_only"));
  await env.target.query("alter table items add constraint no_poison check (note is distinct from 'poison')");
  await env.source.query("select dbsync.add_table('ins_only', 'a'), dbsync.add_table('items', 'a'), dbsync.add_table('kv', 'b')");
  await env.source.query("select dbsync.add_subscription('sa', 'a', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("select dbsync.add_subscription('sb', 'b', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "info" });
  const rng = seeded("faults-reject");
  const load = new Workload(env.source, { rng }).start();
  // items gets its own churn that never writes 'poison'.
  const stop = { done: false };
  const itemsWriter = (async () => {
    while (!stop.done) {
      await env.source.query("update items set v = v + 1, note = 'upd' where id = $1", [rng.int(3, 20)]);
      await sleep(rng.int(20, 50));
    }
  })();
  const status = async (name: string) =>
    (await rows<{ state: string; last_error: string | null; last_error_sqlstate: string | null; last_error_table: string | null; last_applied_tick: string; error_count: number }>(
      env.source,
      "select state, last_error, last_error_sqlstate, last_error_table, last_applied_tick::text, error_count from dbsync.status where name = $1",
      [name],
    ))[0];
  const appliedOnTarget = async () => Number(await value(env.target, "select tick_id from dbsync.applied where subscription = 'sa'"));

  /** Poisons one row; checks that sa stops right there while sb goes on. Returns the tick sa stopped at. */
  const poison = async (id: number) => {
    const before = await tableText(env.target, "ins_only");
    await env.source.query("update items set note = 'poison' where id = $1", [id]);
    await until("sa records the rejected row", async () => (await status("sa")).last_error_sqlstate === "23514", 20_000);
    const s = await status("sa");
    t.diagnostic(`sa: ${s.state}, ${s.last_error_sqlstate} on ${s.last_error_table}: ${s.last_error}`);
    assert.equal(s.state, "error");
    assert.match(s.last_error_table ?? "", /items/);
    assert.match(s.last_error ?? "", /no_poison/);
    // Stopped: the target neither moves nor holds the bad row, while writes go on.
    const stuckAt = await appliedOnTarget();
    assert.equal(String(stuckAt), s.last_applied_tick, "the source's position is the target's");
    const sbTick = Number((await status("sb")).last_applied_tick);
    // Retried (not a fixed wait: the back-off stretches on a busy machine), and still there.
    await until("sa retries", async () => (await status("sa")).error_count > s.error_count, 60_000);
    assert.equal(await appliedOnTarget(), stuckAt, "sa moved past the failing batch");
    assert.equal(await value(env.target, "select note from items where id = $1", [id]), "seed");
    const after = await tableText(env.target, "ins_only");
    assert.ok(after.length >= before.length);
    // The other group keeps going, into the same target database.
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('sb', '20 s')"), true, "sb was held up by sa's error");
    assert.ok(Number((await status("sb")).last_applied_tick) > sbTick);
    assert.equal((await status("sb")).last_error, null);
    return stuckAt;
  };

  try {
    await until("sidecar running", async () => sidecar.output().includes("dbsync sidecar running"), 20000);
    for (const s of ["sa", "sb"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '30 s')", [s]), true, sidecar.output());

    // 1. Fixed on the source: the retried batch now ends with a state that passes.
    const stuck1 = await poison(1);
    await env.source.query("update items set note = 'cured' where id = 1");
    let t0 = Date.now();
    await until("sa resumes after the source fix", async () => (await appliedOnTarget()) > stuck1, 60_000);
    t.diagnostic(`resumed ${Date.now() - t0} ms after the source row was fixed`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('sa', '30 s')"), true);
    assert.equal((await status("sa")).last_error, null, "the error is cleared once applied");
    assert.equal(await value(env.target, "select note from items where id = 1"), "cured");

    // 2. Fixed on the target: drop the CHECK; the row arrives as it is on the source.
    const stuck2 = await poison(2);
    await env.target.query("alter table items drop constraint no_poison");
    t0 = Date.now();
    await until("sa resumes after the CHECK is dropped", async () => (await appliedOnTarget()) > stuck2, 60_000);
    t.diagnostic(`resumed ${Date.now() - t0} ms after the CHECK was dropped`);

    stop.done = true;
    await itemsWriter;
    await load.stop();
    for (const s of ["sa", "sb"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '40 s')", [s]), true, sidecar.output());
    assert.equal(await value(env.target, "select note from items where id = 2"), "poison");
    assert.deepEqual(await tableText(env.target, "items"), await tableText(env.source, "items"), "items differs");
    assert.deepEqual(await load.problems(env.source, env.target), []);
    t.diagnostic(`${load.insertedRows} rows inserted, ${load.churnTransactions} kv transactions; target == source`);
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  } finally {
    stop.done = true;
    await Promise.allSettled([itemsWriter]);
    await load.stop().catch(() => undefined);
    sidecar.proc.kill("SIGKILL");
  }
});
