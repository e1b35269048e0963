// Acceptance: the source crashes (an immediate stop: crash recovery at the next
// start) under a replicated table. Private clusters (they restart).
import assert from "node:assert/strict";
import { test } from "node:test";
import { migrate } from "../src/migrate";
import { Pool } from "pg";
import { createDatabase, pool, retrying, startSidecar } from "./helpers";
import { assertTablesEqual } from "./kit/convergence";
import { privateClusters } from "./kit/private-clusters";

const clusters = privateClusters();

/** Databases on the private clusters, the source migrated, each side's DDL run, tables added to group g, subscription s. */
async function subscribed(label: string, sourceDdl: string, targetDdl: string, tables: string[], copyData: boolean) {
  const [sourceUrl, targetUrl] = await Promise.all([createDatabase(clusters.source().url(), label), createDatabase(clusters.target().url(), label)]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  await src.query(sourceDdl);
  await dst.query(targetDdl);
  for (const t of tables) await src.query("select dbsync.add_table($1, 'g')", [t]);
  await src.query("select dbsync.add_subscription('s', 'g', $1, copy_data => $2)", [targetUrl, copyData]);
  return { sourceUrl, src, dst };
}

/** wait_for_sync('s') true, the source's connection errors (a restart) waited out. */
async function inSync(src: Pool) {
  await retrying(async () => {
    if (!(await src.query("select dbsync.wait_for_sync('s', '5 s') as ok")).rows[0].ok) throw new Error("not in sync yet");
  });
}

test("an unlogged table emptied by the source's crash recovery is emptied on the target too", async () => {
  const ddl = "create unlogged table cache (id int primary key, v text); create table kept (id int primary key, v text)";
  const { sourceUrl, src, dst } = await subscribed("acc_unlogged_crash", ddl, ddl, ["cache", "kept"], false);
  const sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
  try {
    await src.query("insert into cache select g, 'before' from generate_series(1, 100) g; insert into kept values (1, 'before')");
    assert.equal((await src.query("select dbsync.wait_for_sync('s', '60 s') as ok")).rows[0].ok, true);
    // Crash recovery resets an unlogged table to empty, and no trigger sees it.
    await clusters.source().stop("immediate");
    await clusters.source().start();
    assert.equal((await retrying(() => src.query("select count(*)::int as n from cache"))).rows[0].n, 0);
    await src.query("insert into cache values (1000, 'after'); update kept set v = 'after'");
    await inSync(src);
    await assertTablesEqual(src, dst, ["cache", "kept"], "after the source's crash");
  } finally {
    await sidecar.stop();
  }
});

test("a target's unlogged table emptied by the target's crash recovery is filled again", async () => {
  // A reporting copy kept unlogged on the target only: cheaper writes there.
  const { sourceUrl, src, dst } = await subscribed("acc_unlogged_target_crash", "create table cache (id int primary key, v text)",
    "create unlogged table cache (id int primary key, v text)", ["cache"], false);
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
    await inSync(src);
    await assertTablesEqual(src, dst, ["cache"], "after the target's crash");
  } finally {
    await sidecar.stop();
  }
});

test("a target restored from a backup older than its subscription (no dbsync.applied row) is not taken as a new one", async () => {
  const ddl = "create table t (id int primary key, v text)";
  const { sourceUrl, src, dst } = await subscribed("acc_target_no_position", ddl, ddl, ["t"], true);
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

// Held, kept as a guard (break-s15). The early batch's begin_batch (its report of the
// batch before the one being committed, then its tick) runs beside the reader's and
// the target's commits: the source is stopped 'immediate' at that moment, under a
// writer, three times. The source's recorded position never passes the target's,
// and the tables end equal.
test("the source crashes while an early batch's begin_batch runs beside the commits of the batch before: positions ordered, nothing lost", async () => {
  const ddl = "create table a (id int primary key, n int not null)";
  const { sourceUrl, src, dst } = await subscribed("acc_early_batch_crash", ddl, ddl, ["a"], false);
  await src.query("insert into a select g, 0 from generate_series(1, 100) g");
  const sidecar = startSidecar(sourceUrl, ["--poll-interval", "50"]);
  let stopping = false;
  const writer = (async () => {
    for (let i = 1; !stopping; i++) {
      await src.query(`update a set n = n + 1 where id = ${(i % 100) + 1}; insert into a values (${1000 + i}, ${i})`)
        .catch(() => new Promise((r) => setTimeout(r, 100)));
    }
  })();
  try {
    await inSync(src);
    for (let crash = 0; crash < 3; crash++) {
      const early = `select exists (select from pg_stat_activity where application_name = 'dbsync control' and state = 'active'
                       and query ~ 'begin_batch\\(''s'', [0-9]')`;
      for (let looks = 0; !(await src.query(early)).rows[0].exists; looks++) {
        assert.ok(looks < 20_000, "no early begin_batch seen running");
      }
      await clusters.source().stop("immediate");
      await clusters.source().start();
      await inSync(src);
      const source = Number((await src.query("select position_tick from dbsync.subscriptions where name = 's'")).rows[0].position_tick);
      const target = Number((await dst.query("select max(tick_id) as t from dbsync.applied")).rows[0].t);
      assert.ok(source <= target, `after crash ${crash}: the source's position ${source} passed the target's ${target}`);
    }
    stopping = true;
    await writer;
    await inSync(src);
    await assertTablesEqual(src, dst, ["a"], "after the source's crashes");
  } finally {
    stopping = true;
    await writer;
    await sidecar.stop();
  }
});

// A batch commits on the target without waiting for its WAL flush (visible at once);
// the target flushes it before its position is reported. The target is stopped
// 'immediate' under a writer, three times: an unflushed commit is lost with its
// position, so the source's position, read while the target is down, must be at or
// before the tick the target recovers at (a report sent before the flush passed it:
// the next session then took the position back from the target, logging it). The
// target runs with synchronous_commit = off, as the test clusters do and as a DBA
// may run a reporting copy: the flush must wait for the disk all the same.
test("the target crashes while batches commit without waiting for their flush: no position reaches the source before the target's disk", async () => {
  const ddl = "create table a (id int primary key, n int not null)";
  const { sourceUrl, src, dst } = await subscribed("acc_target_flush_crash", ddl, ddl, ["a"], false);
  assert.equal((await dst.query("show synchronous_commit")).rows[0].synchronous_commit, "off");
  await src.query("insert into a select g, 0 from generate_series(1, 100) g");
  const sidecar = startSidecar(sourceUrl, ["--poll-interval", "50"], { DBSYNC_LOG_LEVEL: "info", DBSYNC_LOG_FORMAT: "json" });
  let stopping = false;
  const writer = (async () => {
    for (let i = 1; !stopping; i++) {
      await src.query(`update a set n = n + 1 where id = ${(i % 100) + 1}; insert into a values (${1000 + i}, ${i})`);
    }
  })();
  try {
    await inSync(src);
    for (let crash = 0; crash < 3; crash++) {
      await new Promise((r) => setTimeout(r, 300));
      await clusters.target().stop("immediate");
      const source = Number((await src.query("select position_tick from dbsync.subscriptions where name = 's'")).rows[0].position_tick);
      await clusters.target().start();
      const target = Number((await retrying(() => dst.query("select tick_id from dbsync.applied"))).rows[0].tick_id);
      assert.ok(source <= target, `after crash ${crash}: the source's position ${source} passed the target's ${target}`);
      await inSync(src);
    }
    stopping = true;
    await writer;
    await inSync(src);
    await assertTablesEqual(src, dst, ["a"], "after the target's crashes");
    const back = sidecar.output().split("\n").filter((l) => l.includes('"position taken from the target"')).map((l) => JSON.parse(l) as { source: number; target: number });
    assert.deepEqual(back.filter((l) => l.target < l.source), [], "the target went back behind the source's position");
  } finally {
    stopping = true;
    await writer;
    await sidecar.stop();
  }
});
