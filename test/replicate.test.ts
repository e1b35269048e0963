// Replication end to end: the sidecar as a child process between real servers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "pg";
import { beginBatch, openReader } from "../src/source/batches";
import { applyBatch } from "../src/target/apply";
import { ensureTargetSchema, startAppliedTick } from "../src/target/progress";
import { SequenceSync } from "../src/target/sequences";
import { StageTables } from "../src/target/stage";
import { StraightCopies } from "../src/target/straight-copies";
import { compat, freshEnv, orAfter, sleep, startSidecar, subscribeTables, tableText, until, value } from "./helpers";

const DDL = `
  create table items (id int primary key, name text, qty int);
  create table notes (a int, b text, body text, primary key (a, b));`;

test("inserts, updates, deletes, key changes and TRUNCATE replicate", async () => {
  const env = await freshEnv("replicate_basic");
  await env.source.query(DDL);
  await env.target.query(DDL);
  await env.source.query("select dbsync.add_table('items', 'shop'), dbsync.add_table('notes', 'shop')");
  await env.source.query("select dbsync.add_subscription('dr', 'shop', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into items select g, 'item ' || g, g from generate_series(1, 1000) g");
    await env.source.query("insert into notes values (1, 'x', 'one'), (2, 'y', 'two'), (3, 'z', null)");
    await env.source.query("update items set qty = qty * 2 where id % 3 = 0");
    await env.source.query("delete from items where id % 7 = 0");
    await env.source.query("update items set id = id + 10000 where id between 100 and 200"); // key change
    await env.source.query("update notes set b = b || '!' where a = 1");
    await env.source.query("begin; truncate notes; insert into notes values (9, 'n', 'after truncate'); commit");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('dr', '30 s')"), true);
    assert.deepEqual(await tableText(env.target, "items"), await tableText(env.source, "items"));
    assert.deepEqual(await tableText(env.target, "notes"), await tableText(env.source, "notes"));
    const st = (await env.source.query("select * from dbsync.status")).rows[0];
    assert.equal(st.state, "streaming");
    assert.equal(Number(st.backlog_events), 0);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("wait_for_sync is false at its timeout while paused, true once applied", async () => {
  const env = await freshEnv("replicate_wait");
  await env.source.query(DDL);
  await env.target.query(DDL);
  await env.source.query("select dbsync.add_table('items', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("insert into items values (1, 'a', 1)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '1 s')"), false);
    await sleep(200);
    assert.equal(await value(env.target, "select count(*)::int from items"), 0);
    await env.source.query("select dbsync.resume('s')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.equal(await value(env.target, "select count(*)::int from items"), 1);
  } finally {
    await sidecar.stop();
  }
});

test("a missing target table is an error in dbsync.status; creating it resumes with nothing lost", async () => {
  const env = await freshEnv("replicate_missing");
  await env.source.query(DDL);
  await env.source.query("select dbsync.add_table('items', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into items select g, 'x', g from generate_series(1, 50) g");
    await until("error in status", async () =>
      (await value<string | null>(env.source, "select last_error from dbsync.status where name = 's'")) !== null);
    const st = (await env.source.query("select * from dbsync.status")).rows[0];
    assert.equal(st.state, "error");
    assert.match(st.last_error, /items/);
    assert.equal(st.last_error_sqlstate, "42P01");
    assert.equal(st.last_error_table, '"public"."items"');
    await env.source.query("insert into items select g, 'y', g from generate_series(51, 60) g");
    await env.target.query(DDL);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "items"), await tableText(env.source, "items"));
    assert.equal(await value(env.source, "select last_error from dbsync.status"), null);
  } finally {
    await sidecar.stop();
  }
});

test("a table failing on the target while the next one's changes are being read: error in status, then it resumes", async () => {
  const env = await freshEnv("replicate_fail_mid_batch");
  await subscribeTables(env, "create table a (id int primary key, v text); create table b (id int primary key, v text)", ["a", "b"]);
  // The target refuses some of a's rows; b comes after a in every batch.
  await env.target.query("alter table a add constraint no_bad check (v <> 'bad')");
  await env.source.query("select dbsync.pause('s')");
  await env.source.query("insert into a select g, case when g = 7 then 'bad' else 'ok' end from generate_series(1, 20000) g");
  await env.source.query("insert into b select g, 'b' from generate_series(1, 20000) g");
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("select dbsync.resume('s')");
    await until("error in status", async () =>
      /no_bad/.test((await value<string | null>(env.source, "select last_error from dbsync.status where name = 's'")) ?? ""));
    assert.equal(await value(env.source, "select last_error_table from dbsync.status"), '"public"."a"');
    assert.equal(await value(env.target, "select count(*)::int from b"), 0);
    await env.target.query("alter table a drop constraint no_bad");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    for (const t of ["a", "b"]) assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t));
  } finally {
    await sidecar.stop();
  }
});

test("the source reader lost while the target merges a table: nothing is lost, and the next batch reads again", async () => {
  const env = await freshEnv("replicate_source_lost_mid_batch");
  await subscribeTables(env, "create table a (id int primary key, v text); create table b (id int primary key, v text)", ["a", "b"]);
  // a's merge (or its rows' COPY straight into it) on the target takes 3 s (a trigger that fires under replication too); the
  // reader's transaction is open (idle) meanwhile.
  await env.target.query(compat(`
    create function slow() returns trigger language plpgsql as $$ begin perform pg_sleep(3); return null; end $$;
    create trigger slow after insert on a for each statement execute function slow();
    alter table a enable always trigger slow`, "target"));
  await env.source.query("select dbsync.pause('s')");
  await env.source.query("insert into a select g, 'a' from generate_series(1, 1000) g");
  await env.source.query("insert into b select g, 'b' from generate_series(1, 1000) g");
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("select dbsync.resume('s')");
    await until("a's merge running", async () =>
      (await value<number>(env.target, "select count(*)::int from pg_stat_activity where datname = current_database() and (query like '%update only \"public\".\"a\"%' or query like 'copy \"public\".\"a\"%') and state = 'active' and pid <> pg_backend_pid()")) > 0);
    const killed = await value<number>(env.source,
      "select count(pg_terminate_backend(pid))::int from (select pid from pg_stat_activity where datname = current_database() and application_name = 'dbsync read s' offset 0) x");
    assert.ok(killed >= 1);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true,
      `not in sync: ${await value(env.source, "select last_error from dbsync.status")}`);
    for (const t of ["a", "b"]) assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t));
    // The next batch gets a reader again.
    await env.source.query("update b set v = 'again'");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true,
      `not in sync: ${await value(env.source, "select last_error from dbsync.status")}`);
    assert.deepEqual(await tableText(env.target, "b"), await tableText(env.source, "b"));
  } finally {
    await sidecar.stop();
  }
});

test("applyBatch fails with the link's own error when the source link breaks before a table's changes are read", async () => {
  const env = await freshEnv("replicate_link_breaks_mid_batch");
  await subscribeTables(env, "create table a (id int primary key, v text); create table b (id int primary key, v text)", ["a", "b"]);
  await env.source.query("insert into a select g, 'a' from generate_series(1, 1000) g");
  await env.source.query("insert into b select g, 'b' from generate_series(1, 1000) g");
  const [control, source, target, locker] = [new Client(env.sourceUrl), new Client(env.sourceUrl), new Client(env.targetUrl), new Client(env.targetUrl)];
  await Promise.all([control.connect(), source.connect(), target.connect(), locker.connect()]);
  source.on("error", () => undefined); // its socket is broken on purpose below
  try {
    const sub = (await control.query("select sub_id, sub_uuid, position_tick::float8 as tick from dbsync.subscriptions where name = 's'")).rows[0];
    await ensureTargetSchema(target);
    await startAppliedTick(target, sub.sub_uuid, "s", { tick: sub.tick, key: null });
    const batch = await beginBatch(control, "s", sub.sub_id, undefined);
    assert.ok(batch);
    const { plan, tickCommitted } = await openReader(control, source, batch, { copyRows: 1000, readers: 1, splitEvents: 1 });
    await tickCommitted;
    // The target stalls on table a (its stage is created from a) while a's COPY is
    // already running on the source; then the source's socket breaks.
    await locker.query("begin; lock table a");
    const applying = applyBatch(source, target, sub.sub_uuid, batch, plan, { stages: new StageTables(), sequences: new SequenceSync(), straight: new StraightCopies() })
      .then(() => "applied", (err: Error) => `failed: ${err.message}`);
    await until("the target waits for the lock", async () =>
      (await value<number>(env.target, "select count(*)::int from pg_locks where relation = 'a'::regclass and not granted")) > 0);
    (source as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await sleep(200);
    await locker.query("rollback");
    const outcome = await orAfter(applying, 15000, "still running after 15 s");
    // The link's own error, not a hang nor an error from inside the COPY stream.
    assert.match(outcome, /^failed: (Connection terminated|Client has encountered a connection error)/);
  } finally {
    await Promise.all([control, source, target, locker].map((c) => c.end().catch(() => undefined)));
  }
});

test("wait_for_sync covers sequences that moved without any data change", async () => {
  const env = await freshEnv("replicate_sequences_only");
  await subscribeTables(env, "create table orders (id serial primary key, v text)", ["orders"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into orders (v) values ('a')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    // No captured change: only the sequence moves (a cutover relies on it being carried).
    await env.source.query("select nextval('orders_id_seq') from generate_series(1, 100)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.equal(await value(env.target, "select last_value::int from orders_id_seq"), 101);
  } finally {
    await sidecar.stop();
  }
});

test("a batch whose only change to a table is a TRUNCATE empties it on the target", async () => {
  const env = await freshEnv("replicate_truncate_only");
  await subscribeTables(env, "create table a (id int primary key, v text); create table b (id int primary key)", ["a", "b"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into a select g, 'x' from generate_series(1, 10) g");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    await env.source.query("truncate a");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true,
      `not in sync: ${await value(env.source, "select last_error from dbsync.status")}`);
    assert.equal(await value(env.target, "select count(*)::int from a"), 0);
    assert.equal(await value(env.source, "select error_count from dbsync.status"), 0);
  } finally {
    await sidecar.stop();
  }
});

test("a batch's reader has a work_mem of at least 64MB, and keeps a larger one of its session", async () => {
  const env = await freshEnv("replicate_reader_work_mem");
  await subscribeTables(env, "create table a (id int primary key)", ["a"]);
  const [control, reader] = [new Client(env.sourceUrl), new Client(env.sourceUrl)];
  await Promise.all([control.connect(), reader.connect()]);
  try {
    const subId = await value<number>(env.source, "select sub_id from dbsync.subscriptions where name = 's'");
    const seen: string[] = [];
    for (const session of ["4MB", "1GB"]) {
      await reader.query(`set work_mem = '${session}'`);
      await env.source.query("insert into a select coalesce(max(id), 0) + 1 from a");
      const batch = await beginBatch(control, "s", subId, undefined);
      assert.ok(batch?.snapshot);
      await (await openReader(control, reader, batch, { copyRows: 1000, readers: 1, splitEvents: 1 })).tickCommitted;
      seen.push(await value<string>(reader, "show work_mem"));
      await reader.query("commit");
      await env.source.query("select dbsync.record_progress($1, $2, 1, 0.1)", [subId, batch.to]);
    }
    assert.deepEqual(seen, ["64MB", "1GB"]);
  } finally {
    await Promise.all([control, reader].map((c) => c.end()));
  }
});
