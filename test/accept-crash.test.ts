// Acceptance: the source crashes (an immediate stop: crash recovery at the next
// start) under a replicated table. Private clusters (they restart).
import assert from "node:assert/strict";
import { test } from "node:test";
import { migrate } from "../src/migrate";
import { createDatabase, pool, sleep, startSidecar } from "./helpers";
import { assertTablesEqual } from "./kit/convergence";
import { privateClusters } from "./kit/private-clusters";

const clusters = privateClusters();

async function retrying<T>(fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

test("an unlogged table emptied by the source's crash recovery is emptied on the target too", async () => {
  const [sourceUrl, targetUrl] = await Promise.all([
    createDatabase(clusters.source().url(), "acc_unlogged_crash"),
    createDatabase(clusters.target().url(), "acc_unlogged_crash"),
  ]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  const ddl = "create unlogged table cache (id int primary key, v text); create table kept (id int primary key, v text)";
  await src.query(ddl);
  await dst.query(ddl);
  await src.query("select dbsync.add_table('cache', 'g'); select dbsync.add_table('kept', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [targetUrl]);
  const sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
  try {
    await src.query("insert into cache select g, 'before' from generate_series(1, 100) g; insert into kept values (1, 'before')");
    assert.equal((await src.query("select dbsync.wait_for_sync('s', '60 s') as ok")).rows[0].ok, true);
    // Crash recovery resets an unlogged table to empty, and no trigger sees it.
    await clusters.source().stop("immediate");
    await clusters.source().start();
    assert.equal((await retrying(() => src.query("select count(*)::int as n from cache"))).rows[0].n, 0);
    await src.query("insert into cache values (1000, 'after'); update kept set v = 'after'");
    const synced = await retrying(async () => {
      const ok = (await src.query("select dbsync.wait_for_sync('s', '5 s') as ok")).rows[0].ok as boolean;
      if (!ok) throw new Error("not in sync yet");
      return ok;
    });
    assert.equal(synced, true);
    await assertTablesEqual(src, dst, ["cache", "kept"], "after the source's crash");
  } finally {
    await sidecar.stop();
  }
});

test("a target's unlogged table emptied by the target's crash recovery is filled again", async () => {
  const [sourceUrl, targetUrl] = await Promise.all([
    createDatabase(clusters.source().url(), "acc_unlogged_target_crash"),
    createDatabase(clusters.target().url(), "acc_unlogged_target_crash"),
  ]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  await src.query("create table cache (id int primary key, v text)");
  // A reporting copy kept unlogged on the target only: cheaper writes there.
  await dst.query("create unlogged table cache (id int primary key, v text)");
  await src.query("select dbsync.add_table('cache', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [targetUrl]);
  const sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
  try {
    await src.query("insert into cache select g, 'before' from generate_series(1, 100) g");
    assert.equal((await src.query("select dbsync.wait_for_sync('s', '60 s') as ok")).rows[0].ok, true);
    // The target commits asynchronously: its position is on disk before the crash.
    await dst.query("checkpoint");
    await clusters.target().stop("immediate");
    await clusters.target().start();
    assert.equal((await retrying(() => dst.query("select count(*)::int as n from cache"))).rows[0].n, 0);
    await src.query("insert into cache values (1000, 'after')");
    await retrying(async () => {
      if (!(await src.query("select dbsync.wait_for_sync('s', '5 s') as ok")).rows[0].ok) throw new Error("not in sync yet");
    });
    await assertTablesEqual(src, dst, ["cache"], "after the target's crash");
  } finally {
    await sidecar.stop();
  }
});

test("a target restored from a backup older than its subscription (no dbsync.applied row) is not taken as a new one", async () => {
  const [sourceUrl, targetUrl] = await Promise.all([
    createDatabase(clusters.source().url(), "acc_target_no_position"),
    createDatabase(clusters.target().url(), "acc_target_no_position"),
  ]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  const ddl = "create table t (id int primary key, v text)";
  await src.query(ddl);
  await dst.query(ddl);
  await src.query("select dbsync.add_table('t', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1)", [targetUrl]);
  await src.query("insert into t select g, 'before' from generate_series(1, 100) g");
  let sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
  try {
    assert.equal((await src.query("select dbsync.wait_for_sync('s', '60 s') as ok")).rows[0].ok, true);
  } finally {
    await sidecar.stop();
  }
  // The target as a backup from before the subscription left it (or as a crash left
  // it that lost every commit since: synchronous_commit = off): no dbsync schema, no rows.
  await dst.query("drop schema dbsync cascade; truncate t");
  await src.query("insert into t values (1000, 'after')");
  sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
  try {
    // Loud: the subscription in error, with the way out; not in sync without the first 100 rows.
    let st: { state: string; last_error: string | null } | undefined;
    for (let i = 0; i < 60 && !st?.last_error; i++) {
      assert.equal((await src.query("select dbsync.wait_for_sync('s', '1 s') as ok")).rows[0].ok, false, "in sync without the target's rows");
      st = (await src.query("select state, last_error from dbsync.status where name = 's'")).rows[0];
    }
    assert.equal(st?.state, "error");
    assert.match(st?.last_error ?? "", /has no record of it/);
    await src.query("select dbsync.resync_subscription('s')");
    assert.equal((await src.query("select dbsync.wait_for_sync('s', '60 s') as ok")).rows[0].ok, true);
    await assertTablesEqual(src, dst, ["t"], "the target restored from an old backup, then resync_subscription");
  } finally {
    await sidecar.stop();
  }
});
