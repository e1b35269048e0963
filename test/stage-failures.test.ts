// Stage tables keep their rows after a commit and target connections
// are shared by the subscriptions of one target database (src/target/stage.ts,
// src/apply/links.ts). Rows left in a stage by one batch must never reach the
// target through a later batch: of the same subscription or of another, after a
// batch that failed (a constraint in a late piece, the connection terminated),
// after DDL between batches, a resync, a table dropped and made again.
// --concurrency 1 makes every subscription of the target database use one pooled
// connection (one set of stages); small pieces make a batch merge in several steps.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";
import { status } from "./kit/convergence";

const PIECES = { DBSYNC_STREAM_PIECE_LINES: "40" };

/** Two groups on one target database: g1 (a, c), g2 (b), subscriptions s1 and s2. */
async function twoGroups(label: string, ddl: string): Promise<Env> {
  const env = await freshEnv(label);
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("select dbsync.add_table('a', 'g1'), dbsync.add_table('c', 'g1'), dbsync.add_table('b', 'g2')");
  await env.source.query("select dbsync.add_subscription('s1', 'g1', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("select dbsync.add_subscription('s2', 'g2', $1, copy_data => false)", [env.targetUrl]);
  return env;
}

async function inSync(env: Env, sub: string, timeoutMs = 60_000) {
  await until(`${sub} in sync`, async () => (await value(env.source, "select dbsync.wait_for_sync($1, '2 s')", [sub])) === true, timeoutMs, 10);
}

async function same(env: Env, tables: string[]) {
  for (const t of tables) assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t), `${t} differs`);
}

const DDL = `create table a (id int primary key, v text);
             create table b (id int primary key, v text);
             create table c (id int primary key, n int)`;

test("a batch that fails in a late piece, then batches of another subscription and its own on the same connection", async () => {
  const env = await twoGroups("b3_stage_late_fail", DDL);
  // The target refuses one value: the failing batch has merged earlier pieces into a (in place) first.
  await env.target.query("alter table a add constraint no_bad check (v <> 'bad')");
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  try {
    await env.source.query("insert into a select g, 'a' || g from generate_series(1, 400) g; insert into b select g, 'b' || g from generate_series(1, 400) g");
    await inSync(env, "s1");
    await inSync(env, "s2");
    // One batch: updates (in place) of every row, some deletes, new rows, the last one bad.
    await env.source.query(`begin;
      update a set v = v || '+1';
      delete from a where id % 7 = 0;
      insert into a select g, 'new' || g from generate_series(401, 600) g;
      update a set v = 'bad' where id = 600;
      insert into c select g, g from generate_series(1, 300) g;
      commit`);
    await until("s1's error shows", async () => !!(await status(env, "s1"))?.last_error, 60_000);
    // Meanwhile s2 applies batches on the same connection (stages of b only).
    for (let i = 0; i < 5; i++) {
      await env.source.query("update b set v = v || '.' where id % 5 = $1", [i]);
      await env.source.query("delete from b where id = $1", [i * 10 + 3]);
      await inSync(env, "s2");
    }
    await same(env, ["b"]);
    // a is untouched by the failed batch.
    assert.equal(await value(env.target, "select count(*)::int from a where v like '%+1'"), 0, "a failed batch left rows");
    // s1's rows change again before the fix: its retried batch holds the new states.
    await env.source.query("update a set v = v || '+2' where id % 3 = 0; delete from a where id between 10 and 20");
    await env.target.query("alter table a drop constraint no_bad");
    await inSync(env, "s1", 90_000);
    await same(env, ["a", "b", "c"]);
    assert.equal((await status(env, "s1"))?.last_error ?? null, null);
  } finally {
    await sidecar.stop();
  }
});

test("the target connection terminated mid-batch (pg_terminate_backend), then the next batches", async () => {
  const env = await twoGroups("b3_stage_terminated", DDL);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  try {
    await env.source.query("insert into a select g, 'a' || g from generate_series(1, 200) g");
    await inSync(env, "s1");
    for (let round = 0; round < 4; round++) {
      await env.source.query(`begin; update a set v = v || '.'; insert into a select g, 'r${round}' from generate_series(1000 + ${round} * 20000, 1000 + ${round} * 20000 + 19999) g; commit`);
      await env.source.query(`update b set v = 'x' where id = 1; insert into b values (${round}, 'b')`);
      await until("the target applies", async () =>
        (await value<number>(env.target, "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and state = 'active'")) > 0, 30_000, 5);
      await env.target.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%'");
      await env.source.query("update a set v = v || '!' where id % 2 = $1", [round % 2]);
    }
    await inSync(env, "s1", 90_000);
    await inSync(env, "s2", 90_000);
    await same(env, ["a", "b"]);
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl between batches (add, rename, drop a column, change a type) while the connection keeps stages of the old shapes", async () => {
  const env = await twoGroups("b3_stage_ddl", DDL);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  try {
    const write = async (tag: string) => {
      await env.source.query(`begin; update a set v = v || '${tag}' where id % 3 = 0; delete from a where id % 11 = 0 and id > 0;
        insert into a (id, v) select max(id) + 1, '${tag}' from a; commit`);
      await env.source.query(`update b set v = '${tag}' where id % 4 = 0; insert into b select coalesce(max(id), 0) + 1, '${tag}' from b`);
    };
    await env.source.query("insert into a select g, 'a' || g from generate_series(1, 300) g; insert into b select g, 'b' || g from generate_series(1, 300) g");
    await inSync(env, "s1");
    await write("1");
    await inSync(env, "s1");
    await inSync(env, "s2");
    const steps = [
      "alter table a add column w text default 'w'",
      "alter table a rename column v to v2",
      "alter table a drop column w",
      "alter table a add column w int",
      "alter table a alter column w type bigint",
      "alter table a rename column v2 to v",
      "alter table a alter column v type varchar(200)",
    ];
    for (const [i, ddl] of steps.entries()) {
      await env.source.query("select dbsync.execute_ddl('g1', $1)", [ddl]);
      // Writes after the DDL (one batch with it) and in a batch of their own.
      const cols = (await env.source.query("select array_agg(attname::text) as c from pg_attribute where attrelid = 'a'::regclass and attnum > 0 and not attisdropped")).rows[0].c as string[];
      const vcol = cols.includes("v") ? "v" : "v2";
      await env.source.query(`update a set ${vcol} = ${vcol} || '#${i}' where id % 5 = ${i % 5}`);
      await env.source.query("update b set v = v || $1 where id % 5 = $2", [`#${i}`, i % 5]);
      await inSync(env, "s1");
      await env.source.query(`update a set ${vcol} = ${vcol} || '*' where id % 2 = 0`);
      await inSync(env, "s1");
      await inSync(env, "s2");
      await same(env, ["a", "b"]);
    }
  } finally {
    await sidecar.stop();
  }
});

test("the target table dropped and made again with the same name (by hand), resync_table, and another shape under the same name", async () => {
  const env = await twoGroups("b3_stage_recreate", DDL);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  try {
    await env.source.query("insert into a select g, 'a' || g from generate_series(1, 300) g");
    await inSync(env, "s1");
    await env.source.query("update a set v = v || '.' where id <= 100");
    await inSync(env, "s1");
    // Dropped and made again, empty, with the same columns: the stage's signature is the same.
    await env.target.query("drop table a; create table a (id int primary key, v text)");
    await env.source.query("select dbsync.resync_table('s1', 'a')");
    await inSync(env, "s1");
    await same(env, ["a"]);
    await env.source.query("update a set v = v || '!' where id <= 50; delete from a where id > 290");
    await inSync(env, "s1");
    await same(env, ["a"]);
    // Made again without its primary key but a unique index on id (same columns, same types).
    await env.target.query("drop table a; create table a (id int not null, v text); create unique index on a (id)");
    await env.source.query("select dbsync.resync_table('s1', 'a')");
    await inSync(env, "s1");
    await env.source.query("update a set v = 'again' where id <= 20; insert into a values (1000, 'new')");
    await inSync(env, "s1");
    await same(env, ["a"]);
    // Made again with no unique index at all: rows of a key must not be doubled.
    await env.target.query("drop table a; create table a (id int not null, v text)");
    await env.source.query("select dbsync.resync_table('s1', 'a')");
    await inSync(env, "s1");
    await env.source.query("update a set v = 'third' where id <= 30; insert into a values (1001, 'new')");
    await inSync(env, "s1");
    await env.source.query("update a set v = 'fourth' where id <= 30");
    await inSync(env, "s1");
    await same(env, ["a"]);
  } finally {
    await sidecar.stop();
  }
});

test("two dbsync run processes applying two groups into one target database while batches fail and retry", async () => {
  const env = await twoGroups("b3_stage_two_runs", DDL);
  await env.target.query("alter table c add constraint small check (n < 1000000)");
  const one = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  const two = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  try {
    await env.source.query("insert into a select g, 'a' || g from generate_series(1, 300) g; insert into b select g, 'b' || g from generate_series(1, 300) g");
    for (let i = 0; i < 6; i++) {
      await env.source.query(`begin; update a set v = v || '${i}' where id % 4 = ${i % 4}; insert into c values (${i}, ${i === 2 ? 2000000 : i}); commit`);
      await env.source.query(`update b set v = v || '${i}' where id % 3 = ${i % 3}`);
      await sleep(300);
    }
    await until("s1 fails on c", async () => !!(await status(env, "s1"))?.last_error, 60_000);
    await inSync(env, "s2");
    await env.source.query("update c set n = 2 where id = 2");
    await env.target.query("alter table c drop constraint small");
    await inSync(env, "s1", 90_000);
    await same(env, ["a", "b", "c"]);
  } finally {
    await Promise.all([one.stop(), two.stop()]);
  }
});
