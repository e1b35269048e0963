// The next batch opened while the target commits the one before it (src/apply/applier.ts,
// dbsync.begin_batch's p_from): the batch starts at the position the target is about
// to reach, no position reaches the source before the target has it, and a commit
// that fails or dies on the way throws the early batch away.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "pg";
import { beginBatch, openReader } from "../src/source/batches";
import { compat, freshEnv, sleep, sqlError, startSidecar, subscribeTables, tableText, until, value } from "./helpers";

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
    await openReader(control, reader, first, { copyRows: 1000, readers: 1, splitEvents: 1 });
    await reader.query("commit");
    // Not reported: the source still has the subscription at first.from.
    await env.source.query("insert into a (v) values ('two')");
    const second = await beginBatch(control, "s", subId, undefined, first.to);
    assert.ok(second?.snapshot);
    assert.equal(second.from, first.to);
    const plan = await openReader(control, reader, second, { copyRows: 1000, readers: 1, splitEvents: 1 });
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

test("the target's commit fails, then dies, while the next batch is being opened: nothing lost or applied twice, and no position reaches the source before the target", async () => {
  const env = await freshEnv("pipeline_commit_dies");
  await subscribeTables(env, "create table a (id int primary key, n int not null, v text)", ["a"]);
  // On the target: every row version applied, logged by a trigger that fires in
  // replica mode too (a batch applied twice logs its versions twice); and a check
  // at commit that, for the row 'trip', fails the first commit and ends the
  // session in the second (the sequence is not rolled back with them).
  await env.target.query(
    compat(
      `create table a_log (id int, n int);
       create function a_log() returns trigger language plpgsql as $$
       begin insert into a_log values (new.id, new.n); return null; end $$;
       create trigger a_log after insert or update on a for each row execute function a_log();
       alter table a enable always trigger a_log;
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
