// A `wait_for_sync` that is waiting must not stall replication. It holds
// AccessShareLock on the queue partitions it read (of every group) until it
// returns; when queue upkeep then wants to TRUNCATE a rotated slot, the TRUNCATE
// queues for AccessExclusiveLock behind it, and every later reader of
// dbsync.events (ticks, batches, other wait_for_sync calls) queues behind the
// TRUNCATE: replication stops until the waiting call times out.
// (Found by sidecar-parallel.test.ts, where wait_for_sync('s2', '90 s') returned
// false because the sidecar's own upkeep rotated the queue during the wait.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, orAfter, sleep, startSidecar, tableText, value } from "./helpers";

test("replication goes on while a wait_for_sync waits and queue upkeep truncates a rotated slot", async (t) => {
  const env = await freshEnv("sidecar_upkeep_lock");
  const DDL = "create table t (id int primary key, v text); create table u (id int primary key, v text);";
  await env.source.query(DDL);
  await env.target.query(DDL);
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_table('u', 'g2')");
  await env.source.query(
    `select dbsync.add_subscription('s', 'g', $1, copy_data => false),
            dbsync.add_subscription('s2', 'g2', $1, copy_data => false)`,
    [env.targetUrl],
  );
  const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  // The test rotates the queue itself (the sidecar's upkeep would, with a short --rotate-after).
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100", "--rotate-after", "3600"]);
  const waiter = await env.source.connect();
  const upkeep = await env.source.connect();
  let waiting: Promise<unknown> | undefined;
  let maintaining: Promise<unknown> | undefined;
  let check: Promise<unknown> | undefined;
  try {
    await env.source.query("insert into t values (1, 'a')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, sidecar.output());

    // Someone waits for a subscription that is not moving (paused here; or merely lagging).
    await env.source.query("select dbsync.pause('s2')");
    await env.source.query("insert into u values (1, 'x')");
    const waiterPid = await value<number>(waiter, "select pg_backend_pid()");
    waiting = waiter.query("select dbsync.wait_for_sync('s2', '40 s')").catch((e) => e);
    await sleep(300);
    const held = await value<number>(
      env.source,
      `select count(*)::int from pg_locks
        where pid = $1 and locktype = 'relation' and granted
          and relation in (select inhrelid from pg_inherits where inhparent = format('dbsync.events_%s', $2::int)::regclass)`,
      [waiterPid, gid],
    );
    t.diagnostic(`the waiting wait_for_sync('s2') holds locks on ${held} queue partitions of the other group g`);

    // Rotate g's queue: the old slot gets its switched_xmax, then every subscription passes it.
    await env.source.query("select dbsync.maintain($1, '0 s')", [gid]);
    await env.source.query("select dbsync.maintain($1, '1 h')", [gid]);
    await env.source.query("insert into t values (2, 'b')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecar.output());
    // Upkeep now truncates the passed slot (as the sidecar does every 5 s).
    const upkeepPid = await value<number>(upkeep, "select pg_backend_pid()");
    maintaining = upkeep.query("select dbsync.maintain($1, '1 h')", [gid]).catch((e) => e);
    await sleep(1000);
    const upkeepWaits = await value<string | null>(
      env.source,
      "select wait_event_type from pg_stat_activity where pid = $1 and state = 'active'",
      [upkeepPid],
    );
    t.diagnostic(`queue upkeep ${upkeepWaits === "Lock" ? "waits for a lock" : "did not wait for a lock"}`);

    // Group g must keep replicating meanwhile.
    const t0 = Date.now();
    await env.source.query("insert into t values (3, 'c')");
    // wait_for_sync itself may block on the queue lock, beyond its own timeout: race it.
    check = value(env.source, "select dbsync.wait_for_sync('s', '10 s')").catch((e) => e);
    const ok = await orAfter(check, 12000, "no answer after 12 s");
    t.diagnostic(`wait_for_sync('s') answered ${String(ok)} after ${Date.now() - t0} ms while wait_for_sync('s2') waited`);
    assert.equal(ok, true, "replication of group g stalled behind queue upkeep and a waiting wait_for_sync");
  } finally {
    // Let everything go: end the waiting call, then upkeep can finish.
    await env.source.query("select pg_cancel_backend(pid) from pg_stat_activity where datname = current_database() and query like 'select dbsync.wait_for_sync(''s2''%' and pid <> pg_backend_pid()");
    await waiting;
    await maintaining;
    await check;
    waiter.release();
    upkeep.release();
  }
  await env.source.query("select dbsync.resume('s2')");
  for (const s of ["s", "s2"]) {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true, sidecar.output());
  }
  assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  assert.deepEqual(await tableText(env.target, "u"), await tableText(env.source, "u"));
  assert.equal(await sidecar.stop(), 0, sidecar.output());
});
