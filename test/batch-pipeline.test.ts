// The next batch opened while the target commits the one before it (src/apply/applier.ts,
// dbsync.begin_batch's p_from): the batch starts at the position the target is about
// to reach, no position reaches the source before the target has it, and a commit
// that fails or dies on the way throws the early batch away.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "pg";
import { beginBatch, openReader } from "../src/source/batches";
import { compat, freshEnv, sleep, sqlError, startSidecar, subscribeTables, tableText, until, value } from "./helpers";
import { ROW_LOG, atTickCommit } from "./kit/workload";

test("begin_batch from a position not recorded yet: the batch starts there; behind the recorded one it is refused; sequences alone are left to the request without it", async () => {
  const env = await freshEnv("pipeline_begin_from");
  await subscribeTables(env, "create table a (id serial primary key, v text)", ["a"]);
  const control = new Client(env.sourceUrl);
  const reader = new Client(env.sourceUrl);
  await Promise.all([control.connect(), reader.connect()]);
  try {
    const subId = await value<number>(env.source, "select sub_id from dbsync.subscriptions where name = 's'");
    await env.source.query("insert into a (v) values ('one')");
    const first = await beginBatch(control, "s", subId, undefined);
    assert.ok(first?.snapshot);
    await (await openReader(control, reader, first, { copyRows: 1000, readers: 1, splitEvents: 1 })).tickCommitted;
    await reader.query("commit");
    // Not reported: the source still has the subscription at first.from.
    await env.source.query("insert into a (v) values ('two')");
    const second = await beginBatch(control, "s", subId, undefined, first.to);
    assert.ok(second?.snapshot);
    assert.equal(second.from, first.to);
    const { plan, tickCommitted } = await openReader(control, reader, second, { copyRows: 1000, readers: 1, splitEvents: 1 });
    await tickCommitted;
    await reader.query("commit");
    assert.deepEqual(plan.tables.map((t) => [t.target, t.events]), [['"public"."a"', 1]]);
    assert.equal(await value<number>(env.source, "select position_tick::int from dbsync.subscriptions where name = 's'"), first.from);

    // Behind the recorded position: an error, not a batch that would apply again.
    await env.source.query("select dbsync.record_progress($1, $2, 1, 0.1)", [subId, second.to]);
    await control.query("begin");
    const behind = await sqlError(control, "select * from dbsync.begin_batch('s', $1)", [first.to]);
    await control.query("rollback");
    assert.equal(behind.code, "22023");

    // Only the sequence moved: the request with p_from finds nothing (the batch
    // before it has not reported what it pushed), the one without it a batch.
    await env.source.query("select nextval('a_id_seq')");
    assert.equal(await beginBatch(control, "s", subId, undefined, second.to), undefined);
    const sequences = await beginBatch(control, "s", subId, undefined);
    assert.ok(sequences?.snapshot);
    await control.query("rollback");
  } finally {
    await Promise.all([control, reader].map((c) => c.end()));
  }
});

// Each subscription of a group took a tick of its own for the same change: the
// others then stood behind the group's last tick, and each was woken to apply a
// batch that only moved its target's position (a lease, a target commit, a job and
// a report per subscription at every change of the group).
test("a group's subscriptions end their batches at the same tick when nothing was committed between them; a write in between makes a new one", async () => {
  const env = await freshEnv("pipeline_shared_tick");
  await subscribeTables(env, "create table a (id int primary key, v text)", ["a"]);
  await env.source.query("select dbsync.add_subscription('s2', 'g', $1, copy_data => false)", [env.targetUrl]);
  const control = new Client(env.sourceUrl);
  const reader = new Client(env.sourceUrl);
  await Promise.all([control.connect(), reader.connect()]);
  const subId = async (name: string) => value<number>(env.source, "select sub_id from dbsync.subscriptions where name = $1", [name]);
  /** A batch of `name` begun and read (not applied), its plan's events per table. */
  const batchOf = async (name: string) => {
    const batch = await beginBatch(control, name, await subId(name), undefined);
    assert.ok(batch?.snapshot, `no batch to read for ${name}`);
    const { plan, tickCommitted } = await openReader(control, reader, batch, { copyRows: 1000, readers: 1, splitEvents: 1 });
    await tickCommitted;
    await reader.query("commit");
    return { batch, events: plan.tables.map((t) => [t.target, t.events]) };
  };
  try {
    await env.source.query("insert into a values (1, 'one')");
    const first = await batchOf("s");
    const sibling = await batchOf("s2");
    assert.equal(sibling.batch.to, first.batch.to, "the second subscription took a tick of its own");
    assert.deepEqual(sibling.events, [['"public"."a"', 1]]);
    assert.equal(sibling.batch.key, first.batch.key);
    // Both at that tick, nothing left for either (no batch that only moves the target).
    for (const name of ["s", "s2"]) await env.source.query("select dbsync.record_progress($1, $2, 1, 0.1)", [await subId(name), first.batch.to]);
    assert.deepEqual((await env.source.query("select name from dbsync.sidecar_work()")).rows, []);

    // A write committed after the first subscription's tick: the second one's batch needs a new tick.
    await env.source.query("insert into a values (2, 'two')");
    const second = await batchOf("s");
    await env.source.query("insert into a values (3, 'three')");
    const later = await batchOf("s2");
    assert.ok(later.batch.to > second.batch.to, "a tick taken before a write was reused after it");
    assert.deepEqual(later.events, [['"public"."a"', 2]]);
  } finally {
    await Promise.all([control, reader].map((c) => c.end()));
  }
});

test("the target's commit fails, then dies, while the next batch is being opened: nothing lost or applied twice, and no position reaches the source before the target", async () => {
  const env = await freshEnv("pipeline_commit_dies");
  await subscribeTables(env, "create table a (id int primary key, n int not null, v text)", ["a"]);
  // On the target: the row log, and a check at commit that, for the row 'trip',
  // fails the first commit and ends the session in the second (the sequence is
  // not rolled back with them).
  await env.target.query(
    compat(
      `${ROW_LOG}
       create sequence trips;
       create function trip() returns trigger language plpgsql as $$
       begin
         case nextval('trips')
           when 1 then raise exception 'tripped at commit';
           when 2 then perform pg_terminate_backend(pg_backend_pid());
           else null;
         end case;
         return null;
       end $$;
       create constraint trigger trip after insert on a deferrable initially deferred
         for each row when (new.v = 'trip') execute function trip();
       alter table a enable always trigger trip;`,
      "target",
    ),
  );
  const sidecar = startSidecar(env.sourceUrl, [], { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" });
  let writing = true;
  const behind: string[] = [];
  // Read the source's position, then the target's: the target's only moves on, so
  // it may never be found behind the position read before it.
  const watcher = (async () => {
    while (writing) {
      const source = await value<number>(env.source, "select position_tick::int from dbsync.subscriptions where name = 's'");
      const target = await value<number>(env.target, "select tick_id::int from dbsync.applied").catch(() => undefined);
      if (target !== undefined && target < source) behind.push(`source ${source}, target ${target}`);
      await sleep(2);
    }
  })();
  try {
    // Each transaction inserts a row and updates the one before: batches follow each
    // other, each with changes for the next; 'trip' once the sidecar applies them.
    for (let i = 1; i <= 1500; i++) {
      await env.source.query("with u as (update a set n = n + 1 where id = $1 - 1) insert into a values ($1, 0, $2)", [i, i === 700 ? "trip" : "x"]);
      if (i === 100) await until("the sidecar applies", async () => (await value<number>(env.target, "select count(*)::int from a")) >= 100);
      if (i % 5 === 0) await sleep(2);
    }
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output().slice(-3000));
    writing = false;
    await watcher;
    assert.equal(await value<number>(env.target, "select nextval('trips')::int"), 4, "the commit with the row 'trip' failed twice, then passed");
    assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
    assert.deepEqual((await env.target.query("select id, n, count(*)::int from a_log group by id, n having count(*) > 1 limit 5")).rows, []);
    assert.deepEqual(behind.slice(0, 5), []);
    const batches = sidecar
      .output()
      .split("\n")
      .filter((l) => l.includes('"batch applied"'))
      .map((l) => JSON.parse(l).at as Record<string, number>)
      .sort((x, y) => x.tick - y.tick);
    // (begin_batch sent before the batch before was committed; its tick may come
    // after that commit, which the tests' clusters make without a disk flush. About
    // half of them here: the others found nothing yet and asked again after it.)
    const early = batches.filter((b, i) => i > 0 && b.begin < batches[i - 1].applied).length;
    assert.ok(early >= 3, `${early} of ${batches.length} batches opened while the one before committed`);
    assert.match(sidecar.output(), /tripped at commit/);
  } finally {
    writing = false;
    await watcher.catch(() => undefined);
    await sidecar.stop();
  }
});

test("the tick's commit on the source is slow, then fails, while its batch is read and merged: the target commits no batch before its tick, and nothing is lost or applied twice", async () => {
  const env = await freshEnv("pipeline_tick_commit");
  await subscribeTables(env, "create table a (id int primary key, n int not null, v text)", ["a"]);
  await env.target.query(compat(ROW_LOG, "target"));
  // On the source, at the commit of a new tick (the control transaction of
  // begin_batch, which the sidecar commits beside the batch's stream): while
  // tick_fault says 'slow', the commit waits 2 s, the tick's id kept in a sequence
  // (not rolled back); while it says 'fail', the commit fails.
  await env.source.query(
    compat(`create table tick_fault (mode text);
       create sequence slow_tick;
       ${atTickCommit(`case (select mode from public.tick_fault)
           when 'slow' then perform pg_catalog.setval('public.slow_tick', new.tick_id); perform pg_catalog.pg_sleep(2);
           when 'fail' then raise exception 'tick commit failed';
           else null;
         end case;`)}`),
  );
  const sidecar = startSidecar(env.sourceUrl, [], { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" });
  try {
    let i = 0;
    const write = () => env.source.query("with u as (update a set n = n + 1 where id = $1 - 1) insert into a values ($1, 0, 'x')", [++i]);
    for (let k = 0; k < 20; k++) await write();
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output().slice(-3000));

    await env.source.query("insert into tick_fault values ('slow')");
    await write();
    await until("a tick's commit waits", async () =>
      (await value<number>(env.source, "select count(*)::int from pg_stat_activity where wait_event = 'PgSleep' and application_name like 'dbsync%'")) > 0);
    const slow = await value<number>(env.source, "select last_value::int from slow_tick");
    // Until the tick is on disk, the target has no batch of it (the sleep outlasts
    // the batch's read and merge: its target transaction waits at its commit).
    for (let k = 0; k < 10; k++) {
      assert.ok((await value<number>(env.target, "select tick_id::int from dbsync.applied")) < slow);
      await sleep(50);
    }
    await env.source.query("update tick_fault set mode = 'fail'");
    await until("the target has the slow tick's batch", async () => (await value<number>(env.target, "select tick_id::int from dbsync.applied")) >= slow);
    // Failing commits: batches planned and merged, never committed on the target.
    await write();
    await until("a tick's commit fails", async () => /tick commit failed/.test(sidecar.output()));
    const failedAt = await value<number>(env.target, "select tick_id::int from dbsync.applied");
    assert.equal(await value<number>(env.target, "select count(*)::int from a"), i - 1);
    await env.source.query("delete from tick_fault");
    for (let k = 0; k < 20; k++) await write();
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output().slice(-3000));
    assert.ok((await value<number>(env.target, "select tick_id::int from dbsync.applied")) > failedAt);
    assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
    assert.deepEqual((await env.target.query("select id, n, count(*)::int from a_log group by id, n having count(*) > 1 limit 5")).rows, []);
    const slowBatch = sidecar
      .output()
      .split("\n")
      .filter((l) => l.includes('"batch applied"'))
      .map((l) => JSON.parse(l) as { to: number; phases: Record<string, number> })
      .find((b) => b.to === slow);
    assert.ok(slowBatch?.phases["tick commit"] !== undefined, "the slow tick's batch waited for its commit after its stream");
  } finally {
    await sidecar.stop();
  }
});
