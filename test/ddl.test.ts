// Schema changes through the stream (execute_ddl), plain ALTER TABLE, sequences.
import assert from "node:assert/strict";
import { test } from "node:test";
import { migrate } from "../src/migrate";
import { createDatabase, freshEnv, pool, startSidecar, subscribeTables, tableText, until, value } from "./helpers";
import { asRole } from "./kit/roles";

test("execute_ddl: add column with default, rename, drop, change type, between writes using each new shape", async () => {
  const env = await freshEnv("ddl_stream");
  const ddl = "create table acct (id int primary key, name text, balance int)";
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("insert into acct select g, 'n' || g, g from generate_series(1, 100) g");
  await env.source.query("select dbsync.add_table('acct', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    // Everything below is queued while the subscription is paused, so that all the
    // shapes meet in the same batches: no batch may be applied against the wrong shape.
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("update acct set balance = balance + 1 where id <= 10");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table acct add column status text not null default ''open''')");
    await env.source.query("insert into acct (id, name, balance, status) values (101, 'new', 5, 'vip')");
    await env.source.query("update acct set status = 'closed' where id = 2");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table acct rename column name to owner')");
    await env.source.query("insert into acct (id, owner, balance) values (102, 'renamed', 6)");
    await env.source.query("update acct set owner = 'x' where id = 3");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table acct drop column status')");
    await env.source.query("insert into acct (id, owner, balance) values (103, 'dropped', 7)");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table acct alter column balance type numeric(12,2)')");
    await env.source.query("update acct set balance = balance + 0.25 where id in (4, 103)");
    await env.source.query("delete from acct where id = 5");
    // A transaction that changes the shape and writes with it.
    await env.source.query("begin");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table acct add column note text')");
    await env.source.query("insert into acct values (104, 'tx', 1.5, 'in tx')");
    await env.source.query("commit");
    await env.source.query("select dbsync.resume('s')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "acct"), await tableText(env.source, "acct"));
    const cols = "select string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' order by attnum) from pg_attribute where attrelid = 'acct'::regclass and attnum > 0 and not attisdropped";
    assert.equal(await value(env.target, cols), await value(env.source, cols));
    assert.equal(await value(env.source, "select count(*)::int from dbsync.ddl_log where via_execute_ddl"), 5);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.unreplicated_ddl"), 0);
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl that leaves the columns alone: a table's changes on both sides of it, in one batch", async () => {
  const env = await freshEnv("ddl_same_shape");
  await subscribeTables(env, "create table t (id int primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    // Paused: the DDL cuts one batch into two parts that share t's shape (and stage).
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("insert into t values (1, 'a'), (2, 'b')");
    await env.source.query("select dbsync.execute_ddl('g', 'create index t_v on t (v)')");
    await env.source.query("update t set v = 'a2' where id = 1");
    await env.source.query("delete from t where id = 2");
    await env.source.query("insert into t values (3, 'c')");
    await env.source.query("select dbsync.resume('s')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true,
      `not in sync: ${await value(env.source, "select last_error from dbsync.status")}`);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
    assert.equal(await value(env.target, "select count(*)::int from pg_indexes where indexname = 't_v'"), 1);
  } finally {
    await sidecar.stop();
  }
});

test("a plain ALTER TABLE ADD COLUMN: warned and recorded, the error names the column, fixing the target resumes", async () => {
  const env = await freshEnv("ddl_plain");
  const ddl = "create table t (id int primary key, v text)";
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t values (1, 'before')");
    const c = await env.source.connect();
    const warnings: string[] = [];
    c.on("notice", (n) => warnings.push(n.message ?? ""));
    await c.query("alter table t add column extra int");
    c.release();
    assert.ok(warnings.some((w) => /not run through dbsync.execute_ddl/.test(w)), warnings.join("; "));
    assert.equal(await value(env.source, "select count(*)::int from dbsync.unreplicated_ddl where table_name = 'public.t'"), 1);
    await env.source.query("insert into t values (2, 'after', 42)");
    await until("error names the column", async () =>
      /extra/.test((await value<string | null>(env.source, "select last_error from dbsync.status")) ?? ""));
    assert.match(await value<string>(env.source, "select last_error from dbsync.status"), /lacks a column.*extra/s);
    await env.target.query("alter table t add column extra int");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await sidecar.stop();
  }
});

test("sequences: after writes, each target sequence's next value is above every value used on the source; one moved on the target is set back", async () => {
  const env = await freshEnv("ddl_sequences");
  const ddl = `create table o (id serial primary key, v text);
               create table i (id int generated always as identity primary key, v text);
               create sequence standalone;`;
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("select dbsync.add_table('o', 'g'), dbsync.add_table('i', 'g'), dbsync.add_sequence('standalone', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into o (v) select 'x' from generate_series(1, 500)");
    await env.source.query("insert into i (v) select 'y' from generate_series(1, 300)");
    await env.source.query("select nextval('standalone') from generate_series(1, 77)");
    await env.source.query("insert into o (v) values ('z')"); // a batch after the sequence moved
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.ok(Number(await value(env.target, "select nextval('o_id_seq')")) > Number(await value(env.source, "select max(id) from o")));
    assert.ok(Number(await value(env.target, "select nextval('i_id_seq')")) > Number(await value(env.source, "select max(id) from i")));
    assert.ok(Number(await value(env.target, "select nextval('standalone')")) > 77);
    // The target is a copy: a target sequence moved there is set to the source's
    // state again once the source's moves (a failover hands out what the source would).
    await env.target.query("select setval('o_id_seq', 100000)");
    await env.source.query("insert into o (v) values ('more')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.equal(await value(env.target, "select nextval('o_id_seq')::int"), Number(await value(env.source, "select max(id) from o")) + 1);
  } finally {
    await sidecar.stop();
  }
});

test("without the DDL event trigger (migrate by a non-superuser), a column added by plain ALTER TABLE is followed, never dropped silently, and verify compares it", async () => {
  const env = await freshEnv("ddl_no_event_trigger", { migrate: false });
  const owner = `dbsync_nosu_${Math.random().toString(36).slice(2, 8)}`;
  const db = decodeURIComponent(new URL(env.sourceUrl).pathname.slice(1));
  await env.source.query(`create role ${owner} login; grant create on database "${db}" to ${owner}; grant create on schema public to ${owner}`);
  const ownerUrl = (() => {
    const u = new URL(env.sourceUrl);
    u.username = owner;
    return u.toString();
  })();
  await migrate(ownerUrl);
  assert.equal(await value(env.source, "select count(*)::int from pg_event_trigger where evtname like 'dbsync%'"), 0);
  const own = pool(ownerUrl, 2);
  const ddl = "create table t1 (id int primary key, v text)";
  await own.query(ddl);
  await env.target.query(ddl);
  await own.query("insert into t1 select g, 'v' || g from generate_series(1, 20) g");
  await own.query("select dbsync.add_table('t1', 'g')");
  await own.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(ownerUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(own, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    // The steps: no event trigger sees this ALTER.
    await own.query("alter table t1 add column w int");
    await own.query("update t1 set w = 5 where id <= 10");
    // Not in sync, and the error says why: the target lacks w.
    assert.equal(await value(own, "select dbsync.wait_for_sync('s', '3 s')"), false);
    await until("the error names the column", async () =>
      /\bw\b/.test((await value<string | null>(own, "select last_error from dbsync.status")) ?? ""));
    assert.equal(await value(env.target, "select count(*)::int from t1 where v is null"), 0);
    // Once the target has it, the values arrive.
    await env.target.query("alter table t1 add column w int");
    assert.equal(await value(own, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    assert.deepEqual(await tableText(env.target, "t1"), await tableText(own, "t1"));
    assert.equal(await value(env.target, "select count(*)::int from t1 where w = 5"), 10);
    // A subscription made after the ALTER copies w too.
    const target2 = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "ddl_no_event_trigger2");
    const t2 = pool(target2, 2);
    await t2.query("create table t1 (id int primary key, v text, w int)");
    await own.query("select dbsync.add_subscription('s2', 'g', $1)", [target2]);
    assert.equal(await value(own, "select dbsync.wait_for_sync('s2', '60 s')"), true, sidecar.output());
    assert.deepEqual(await tableText(t2, "t1"), await tableText(own, "t1"));
    // verify compares w: a value changed behind dbsync's back on the target is found.
    await env.target.query("update t1 set w = 6 where id = 3");
    const id = await value<string>(own, "select dbsync.verify_table('s', 't1')::text");
    await until("verification done", async () =>
      ["done", "error"].includes(await value<string>(own, "select state from dbsync.verifications where verification_id = $1", [id])), 60_000);
    const v = (await own.query("select state, error, differing_count::int, differing_keys from dbsync.verifications where verification_id = $1", [id])).rows[0];
    assert.deepEqual([v.state, v.error, v.differing_count, v.differing_keys], ["done", null, 1, ["3"]]);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

// The event trigger and execute_ddl run as the dbsync owner (SECURITY DEFINER), so
// the log's default, current_user, named the owner: a DBA looking for who altered a
// replicated table by hand found dbsync's own role.
test("ddl_log names the login role that ran the DDL, by hand or through execute_ddl, not the dbsync owner", async () => {
  const env = await freshEnv("ddl_log_role");
  const app = `ddl_app_${Math.random().toString(36).slice(2, 8)}`;
  await env.source.query(`create role ${app} login; grant usage on schema dbsync to ${app}; grant execute on all functions in schema dbsync to ${app};
    create table t (id int primary key, v int); alter table t owner to ${app}; select dbsync.add_table('t', 'g')`);
  const c = pool(asRole(env.sourceUrl, app), 1);
  try {
    await c.query("alter table t add column by_hand int");
    await c.query("select dbsync.execute_ddl('g', 'alter table t add column by_dbsync int')");
  } finally {
    await c.end();
  }
  const logged = await value<string>(env.source, "select string_agg(command_tag || ' ' || role_name, ', ' order by ddl_id) from dbsync.ddl_log");
  assert.equal(logged, `ALTER TABLE ${app}, execute_ddl ${app}`);
  assert.equal(await value(env.source, "select role_name from dbsync.unreplicated_ddl"), app);
  await env.source.query(`drop table t; drop owned by ${app}; drop role ${app}`);
});
