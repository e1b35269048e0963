// Attacks on positions (s17): a late progress report of a process that stalled, and
// a source that failed over to a standby that lagged. Each test failed before its fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Env, freshEnv, startSidecar, value } from "./helpers";
import { assertTablesEqual, setup, synced } from "./kit/convergence";

const position = (env: Env) => value<string>(env.source, "select position_tick::text from dbsync.subscriptions where name = 's'");

// Two `dbsync run` processes: one stalls after its batch committed on the target, the
// other takes the subscription over and moves it on; then the first one's report of
// its batch (record_progress of an older tick) arrives. It moved the position back,
// to a tick upkeep had deleted meanwhile: maintain then found no position snapshot for
// the subscription and truncated queue slots it still needed, and the next sidecar
// (the target's position is ahead: taken from there) silently missed their rows.
test("a stalled process's late progress report does not move the position back, and upkeep keeps what the subscription needs", async () => {
  const env = await freshEnv("brk17_late_report");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const subId = await value<number>(env.source, "select sub_id from dbsync.subscriptions where name = 's'");
  const groupId = await value<number>(env.source, "select group_id from dbsync.subscriptions where name = 's'");
  let sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t select g, 'a' from generate_series(1, 10) g");
    await synced(env);
    const old = await position(env);
    await env.source.query("insert into t select g, 'b' from generate_series(11, 20) g");
    await synced(env);
    const now = await position(env);
    assert.ok(Number(now) > Number(old));
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    // Upkeep deletes ticks no subscription stands on once they are a minute old.
    await env.source.query("update dbsync.ticks set created_at = created_at - interval '2 minutes'");
    await env.source.query("select dbsync.maintain($1, '1 h')", [groupId]);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.ticks where tick_id = $1", [old]), 0, "the old tick is gone");
    // The stalled process's report of its batch, which ended at the old tick.
    await env.source.query("select dbsync.record_progress($1, $2, 10, 0.1)", [subId, old]);
    assert.equal(await position(env), now, "a late report moved the position back");
    // Rows after the position, in the current slot; upkeep switches slots twice.
    await env.source.query("insert into t select g, 'c' from generate_series(21, 30) g");
    await env.source.query("select dbsync.maintain($1, '0 s')", [groupId]);
    await env.source.query("select dbsync.maintain($1, '0 s')", [groupId]);
    sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["t"]);
  } finally {
    await sidecar.stop();
  }
});
