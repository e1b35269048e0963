// Two `dbsync run` processes share many subscriptions; one is SIGKILLed in the
// middle of a copy and started again: the other takes its subscriptions, every
// table reaches every target, and no target commits a table's copy twice (an
// ALWAYS trigger on the target logs each TRUNCATE a committed copy made: a copy
// rolled back takes its log row with it).
import assert from "node:assert/strict";
import { test } from "node:test";
import { createDatabase, freshEnv, pool, sleep, startSidecar, tableText, until, value } from "./helpers";

const GROUPS = 4;
const TABLES = 8;
const ROWS = 500;
const name = (i: number) => `t${String(i).padStart(2, "0")}`;
const group = (i: number) => `g${((i - 1) % GROUPS) + 1}`;

const SOURCE_DDL = Array.from({ length: TABLES }, (_, k) => {
  const t = name(k + 1);
  return `create table ${t} (id int primary key, v int not null, note text);
          insert into ${t} select g, g, md5(g::text) from generate_series(1, ${ROWS}) g;`;
}).join("\n");

// Target only: every TRUNCATE a committed transaction made, by table.
const COPY_LOG = `
  create table copies (tbl text not null);
  create function log_copy() returns trigger language plpgsql as $$
  begin insert into public.copies values (tg_table_name); return null; end $$;`;
const logCopies = (t: string) => `
  create trigger log_copy after truncate on ${t} for each statement execute procedure log_copy();
  alter table ${t} enable always trigger log_copy;`;

const TARGET_DDL =
  COPY_LOG +
  Array.from({ length: TABLES }, (_, k) => `create table ${name(k + 1)} (id int primary key, v int not null, note text);` + logCopies(name(k + 1))).join("\n");

test("two processes, one SIGKILLed mid-copy and restarted: the other takes over, every table copied once, nothing lost", async () => {
  const env = await freshEnv("scale_takeover");
  const target2Url = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "scale_takeover_t2");
  const targets = [env.target, pool(target2Url)];
  await env.source.query(SOURCE_DDL + "analyze;");
  for (const t of targets) await t.query(TARGET_DDL);
  for (let i = 1; i <= TABLES; i++) await env.source.query("select dbsync.add_table($1, $2)", [name(i), group(i)]);
  const subs: string[] = [];
  for (let g = 1; g <= GROUPS; g++) {
    for (const [k, url] of [env.targetUrl, target2Url].entries()) {
      subs.push(`g${g}_${k}`);
      await env.source.query("select dbsync.add_subscription($1, $2, $3)", [`g${g}_${k}`, `g${g}`, url]);
    }
  }
  // The first process gets stuck in the copy of t01 into the first target: its
  // TRUNCATE waits for this lock, inside the batch's transaction.
  const blocker = await env.target.connect();
  await blocker.query("begin; lock table t01 in access exclusive mode");
  const args = ["--poll-interval", "200", "--concurrency", "2"];
  let first = startSidecar(env.sourceUrl, args);
  const second = { proc: undefined as ReturnType<typeof startSidecar> | undefined };
  const stop = { done: false };
  let written = 0;
  // Writes go on all along: the copies must include them, or the stream after them.
  const writerDone = (async () => {
    while (!stop.done) {
      const i = 1 + (written % TABLES);
      await env.source.query(`update ${name(i)} set v = v + 1 where id = $1`, [1 + (written % ROWS)]);
      await env.source.query(`insert into ${name(i)} values ($1, 0, 'new')`, [ROWS + 1 + written]);
      written++;
      await sleep(20);
    }
  })();
  try {
    await until(
      "the first process stuck in the copy of t01",
      async () => (await value<number>(env.target, "select count(*)::int from pg_locks where relation = 't01'::regclass and not granted")) > 0,
      30000,
    );
    second.proc = startSidecar(env.sourceUrl, args);
    await sleep(2000);
    first.proc.kill("SIGKILL");
    await first.exited;
    await blocker.query("commit");
    // Started again while the other is at work.
    first = startSidecar(env.sourceUrl, args);
    await until(
      "every table copied into every target",
      async () => (await value<number>(env.source, "select count(*)::int from dbsync.subscription_tables where state <> 'streaming'")) === 0,
      120000,
    ).catch(async (err) => {
      const status = await env.source.query("select name, state, last_error from dbsync.status where state <> 'streaming'");
      const activity = `select application_name, state, wait_event_type, wait_event, left(query, 100) as query
                          from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
      const [s, t] = await Promise.all([env.source.query(activity), env.target.query(activity)]);
      throw new Error(
        `${(err as Error).message}\n${JSON.stringify(status.rows)}\nsource: ${JSON.stringify(s.rows)}\ntarget: ${JSON.stringify(t.rows)}\n` +
          `${first.output()}\n${second.proc!.output()}`,
      );
    });
    stop.done = true;
    await writerDone;
    for (const s of subs) {
      assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [s]), true, `${s}\n${first.output()}\n${second.proc.output()}`);
    }
    for (const [k, t] of targets.entries()) {
      const copies = await value<Record<string, number>>(t, "select coalesce(jsonb_object_agg(tbl, n), '{}') from (select tbl, count(*) as n from copies group by tbl) x");
      for (let i = 1; i <= TABLES; i++) assert.equal(copies[name(i)], 1, `target ${k}: ${name(i)} copied ${copies[name(i)] ?? 0} times`);
      for (let i = 1; i <= TABLES; i++) {
        assert.deepEqual(await tableText(t, name(i)), await tableText(env.source, name(i)), `target ${k}: ${name(i)} differs`);
      }
    }
    assert.ok(written > 0);
  } finally {
    stop.done = true;
    await writerDone.catch(() => undefined);
    blocker.release();
    await Promise.all([first.stop(), second.proc?.stop()]);
  }
});

test("a copy the target committed is not made again when the sidecar dies before reporting it", async () => {
  const env = await freshEnv("scale_lost_report");
  await env.source.query("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 500) g");
  await env.target.query(COPY_LOG + "create table t (id int primary key, v text);" + logCopies("t"));
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const targetBlocker = await env.target.connect();
  const sourceBlocker = await env.source.connect();
  let sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    // The copy waits on the target (after the sidecar read the target's position)...
    await targetBlocker.query("begin; lock table t in access exclusive mode");
    await until("the copy waiting on the target", async () =>
      (await value<number>(env.target, "select count(*)::int from pg_locks where relation = 't'::regclass and not granted")) > 0, 30000);
    // ... then commits there, and its report waits on the source, where the sidecar dies.
    await sourceBlocker.query("begin; select from dbsync.subscriptions where name = 's' for update");
    await targetBlocker.query("commit");
    await until("the copy committed on the target, its report waiting", async () =>
      (await value<number>(env.target, "select count(*)::int from copies")) === 1 &&
      (await value<number>(env.source,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync%' and wait_event_type = 'Lock'")) > 0,
      30000);
    sidecar.proc.kill("SIGKILL");
    await sidecar.exited;
    // Its report, sent before it died, must not go through once the lock is free.
    await env.source.query(
      "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name like 'dbsync%' and wait_event_type = 'Lock'");
    await sourceBlocker.query("rollback");
    assert.equal(await value(env.source, "select state from dbsync.table_status"), "copying", "the source does not know of the copy yet");
    sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    assert.equal(await value(env.target, "select count(*)::int from copies"), 1, "the copy was made again");
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    targetBlocker.release();
    sourceBlocker.release();
    await sidecar.stop();
  }
});

test("subscriptions of one group with nothing new move to the group's latest tick without taking ticks of their own", async () => {
  const env = await freshEnv("scale_tick_jump");
  const target2Url = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "scale_tick_jump_t2");
  const target2 = pool(target2Url);
  for (const p of [env.source, env.target, target2]) await p.query("create table t (id int primary key, v text)");
  await env.source.query(`select dbsync.add_table('t', 'g'),
                                 dbsync.add_subscription('a', 'g', $1, copy_data => false),
                                 dbsync.add_subscription('b', 'g', $2, copy_data => false)`, [env.targetUrl, target2Url]);
  // Ticks the group took after the subscriptions' position with nothing in them
  // (as one subscription's batch, or upkeep, takes them for itself).
  for (let i = 0; i < 3; i++) await env.source.query("select dbsync.tick(group_id, true) from dbsync.groups where name = 'g'");
  const last = Number(await value(env.source, "select last_tick_id from dbsync.groups where name = 'g'"));
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await until("both at the latest tick", async () =>
      Number(await value(env.source, "select min(position_tick) from dbsync.subscriptions")) >= last, 30000);
    await sleep(1500);
    // Before: each one's empty batch took a tick that put the other behind, which
    // then applied an empty batch for it, and so on.
    assert.equal(Number(await value(env.source, "select last_tick_id from dbsync.groups where name = 'g'")), last, "a tick was taken");
    for (const t of [env.target, target2]) {
      assert.equal(Number(await value(t, "select tick_id from dbsync.applied")), last, "the target's position moved with the source's");
    }
    // And the stream goes on from there.
    await env.source.query("insert into t values (1, 'x')");
    for (const s of ["a", "b"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [s]), true, sidecar.output());
    for (const t of [env.target, target2]) assert.deepEqual(await tableText(t, "t"), ["(1,x)"]);
  } finally {
    await sidecar.stop();
  }
});
