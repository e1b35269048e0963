// Statements run through execute_ddl whose effect on rows a target cannot reproduce
// by running them again. Row changes rather than schema changes: the
// target runs a queued statement on its rows as of the start of the batch that holds
// it, which are not the rows the source's statement saw: a transaction that committed
// after the statement's snapshot and before its commit can be in an earlier batch. So
// row changes of replicated tables reach the targets as rows (captured like any
// other), never by running the statement again there. Columns added with values that
// each server computes for itself (now(), random(), a sequence): the table is copied
// again.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PoolClient } from "pg";
import { compat, Env, freshEnv, SOURCE_MAJOR, sqlError, startSidecar, TARGET_MAJOR, until, value } from "./helpers";
import { assertTablesEqual, setup, synced } from "./kit/convergence";

/** With the sidecar running and the first sync done: fn gets a source session and the NOTICEs it received. */
async function withSession(env: Env, fn: (c: PoolClient, notices: string[]) => Promise<void>): Promise<void> {
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const c = await env.source.connect();
  const notices: string[] = [];
  c.on("notice", (n) => notices.push(n.message ?? ""));
  try {
    await synced(env);
    await fn(c, notices);
  } finally {
    c.release();
    await sidecar.stop();
  }
}

test("an UPDATE and a DELETE through execute_ddl leave alone the rows that transactions committed after their snapshot, in an earlier batch", async () => {
  const env = await freshEnv("ddlrows_race");
  await setup(env, "create table t (id int primary key, v text)", ["t"], { copyData: true });
  await env.source.query("insert into t select g, 'old' from generate_series(1, 20) g");
  await withSession(env, async (ddl) => {
    await ddl.query("begin");
    await ddl.query("select dbsync.execute_ddl('g', 'update t set v = ''ddl'' where id % 7 = 0')");
    await ddl.query("select dbsync.execute_ddl('g', 'delete from t where id in (29, 30)')");
    // After both statements' snapshots: rows they did not see, on keys they match.
    await env.source.query("insert into t values (21, 'new'), (29, 'new'), (30, 'new')");
    await env.source.query("update t set id = 35 where id = 3");
    // (Also: replication goes on while a transaction that called execute_ddl is open;
    // the row lock that execute_ddl's log row took on its group stopped every tick.)
    await until("the target has the later rows (their batch came before the DDL's)", async () =>
      (await value<number>(env.target, "select count(*)::int from t where id in (21, 29, 30, 35)")) === 4);
    await ddl.query("commit");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.equal(await value(env.source, "select string_agg(id || v, ',' order by id) from t where v <> 'old'"), "7ddl,14ddl,21new,29new,30new");
    await assertTablesEqual(env.source, env.target, ["t"]);
  });
});

test("execute_ddl of statements that only change rows of replicated tables: the rows reach the targets, nothing is queued, a NOTICE says so", async () => {
  const env = await freshEnv("ddlrows_only");
  await setup(env, "create table t (id int primary key, v int)", ["t"], { copyData: true });
  await env.source.query("insert into t select g, g from generate_series(1, 10) g");
  await withSession(env, async (c, notices) => {
    await c.query("select dbsync.execute_ddl('g', 'update t set v = v * 100 where id <= 5')");
    await c.query("select dbsync.execute_ddl('g', 'insert into t values (11, 11); delete from t where id = 1')");
    // A statement that writes no row at all (its key is not there yet) is not run on the targets either.
    await c.query("select dbsync.execute_ddl('g', 'update t set v = -1 where id = 12')");
    // Keys enough for capture's queue row to be TOASTed (a TOAST table is not a catalog).
    await c.query("select dbsync.execute_ddl('g', 'insert into t select g, g from generate_series(100, 30000) g')");
    assert.equal(notices.filter((n) => /^execute_ddl: not run on the targets/.test(n)).length, 4, notices.join("; "));
    assert.equal(await value(env.source, "select count(*)::int from dbsync.ddl_log"), 0);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.events where op = 'X'"), 0);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await assertTablesEqual(env.source, env.target, ["t"]);
  });
});

test("DDL that changes rows of a replicated table in the same call (an UPDATE after the ALTER, a TRUNCATE of a table written before it, an event trigger's audit row) runs on the targets, and those tables are copied again", async () => {
  const env = await freshEnv("ddlrows_mixed");
  await setup(env, `create table t (id serial primary key, v int); create table staging (id int primary key);
    create table ddl_audit (id serial primary key, tag text, at timestamptz default clock_timestamp())`, ["t", "staging", "ddl_audit"], { copyData: true });
  await env.source.query("insert into t (v) select g from generate_series(1, 10) g");
  // An application's own DDL log, itself replicated: every DDL writes a row of it.
  await env.source.query(compat(`create function audit_ddl() returns event_trigger language plpgsql as $f$
      begin insert into public.ddl_audit (tag) values (tg_tag); end $f$;
    create event trigger ddlrows_audit on ddl_command_end execute function audit_ddl()`));
  try {
    await withSession(env, async (c, notices) => {
      await c.query("select dbsync.execute_ddl('g', 'alter table t add column w int; update t set w = v * 2; insert into t (v, w) values (0, 0)')");
      // A TRUNCATE sets the transaction's counts of a table back to zero: the rows
      // written after it still count (the target's run would insert a row of its own serial).
      await c.query("begin");
      await c.query("insert into staging select g from generate_series(1, 10) g");
      await c.query("select dbsync.execute_ddl('g', 'truncate staging; insert into t (v) values (7)')");
      await c.query("commit");
      assert.ok(notices.some((n) => /public\.t is copied again by every subscription: the statement changed its rows besides its DDL/.test(n)), notices.join("; "));
      assert.ok(notices.some((n) => /public\.ddl_audit is copied again/.test(n)), notices.join("; "));
      await env.source.query("insert into t (v, w) values (100, 100)");
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
      await assertTablesEqual(env.source, env.target, ["t", "staging", "ddl_audit"]);
    });
  } finally {
    await env.source.query("drop event trigger ddlrows_audit");
  }
});

test("execute_ddl refuses a statement that writes other tables from replicated rows, a TRUNCATE of another group's table, an ALTER that recurses into one", async () => {
  const env = await freshEnv("ddlrows_refused");
  await setup(env, `create table t (id int primary key, v int); create table notes (n text); create table h1 (id int primary key);
    create table parent (id int primary key); create table child (primary key (id)) inherits (parent)`, ["t", "parent"], { copyData: true });
  await env.source.query("select dbsync.add_table('h1', 'h'), dbsync.add_table('child', 'h')");
  await env.source.query("insert into t select g, g from generate_series(1, 10) g; insert into h1 values (1)");
  const both = await sqlError(env.source, "select dbsync.execute_ddl('g', 'with u as (update t set v = 0 where id = 1 returning id) insert into notes select id::text from u')");
  assert.equal(both.code, "0A000");
  assert.match(both.message, /writes rows of public\.notes from rows of replicated tables/);
  // TRUNCATE fires no DDL event trigger: group g's targets would truncate h1 at g's point.
  const truncate = await sqlError(env.source, "select dbsync.execute_ddl('g', 'truncate h1')");
  assert.equal(truncate.code, "22023");
  assert.match(truncate.message, /changes public\.h1 of group "h"/);
  // ALTER TABLE of a parent recurses into its inheritance child, of group h.
  const child = await sqlError(env.source, "select dbsync.execute_ddl('g', 'alter table parent add column w int')");
  assert.equal(child.code, "22023");
  assert.match(child.message, /changes public\.child of group "h" too$/);
  // Nothing was done: one transaction.
  assert.equal(await value(env.source, "select count(*)::int from notes"), 0);
  assert.equal(await value(env.source, "select count(*)::int from h1"), 1);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.events where op = 'X'"), 0);
});

test("a DELETE through execute_ddl that touches no row here (a filter false on the source, true on a target) is not run on the targets", async () => {
  const env = await freshEnv("ddlrows_onetime");
  await setup(env, "create table t (id int primary key, v int); create table purge_requests (id int)", ["t"], { copyData: true });
  await env.source.query("insert into t select g, g from generate_series(1, 10) g");
  // Not replicated, and not the same on both servers (a local work table).
  await env.target.query("insert into purge_requests values (1)");
  await withSession(env, async () => {
    await env.source.query("select dbsync.execute_ddl('g', 'delete from t where (select count(*) from purge_requests) > 0')");
    await env.source.query("insert into t values (11, 11)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await assertTablesEqual(env.source, env.target, ["t"]);
  });
});

test("execute_ddl of DDL, and of row changes of tables outside every group, still runs on the targets", async () => {
  const env = await freshEnv("ddlrows_other");
  await setup(env, "create table t (id int primary key, v int); create table lookup (k int primary key, label text)", ["t"], { copyData: true });
  await env.target.query("insert into lookup values (1, 'one')");
  await env.source.query("insert into lookup values (1, 'one')");
  await withSession(env, async () => {
    await env.source.query("select dbsync.execute_ddl('g', 'insert into lookup values (2, ''two''); update lookup set label = ''uno'' where k = 1')");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table t add column w int default 5')");
    await env.source.query("insert into t values (1, 1, 1)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await assertTablesEqual(env.source, env.target, ["t", "lookup"]);
  });
});

test("a column added with values each server computes for itself (clock_timestamp(), now(), random(), identity, serial, a conversion through text, a date that may be 'today', a default dropped at once) is copied again; one with a constant default is not", async () => {
  const env = await freshEnv("ddlrows_recopy");
  await setup(env, "create table t (id int primary key, v int); create table c (id int primary key)", ["t", "c"], { copyData: true });
  await env.source.query("insert into t select g, g from generate_series(1, 50) g; insert into c select g from generate_series(1, 50) g");
  const requests = () => value<number>(env.source, "select sum(copy_request)::int from dbsync.subscription_tables st join dbsync.tables t using (table_id) where t.table_name = 'c'");
  await withSession(env, async (conn, notices) => {
    const before = await requests();
    // (No generated columns before PostgreSQL 12.)
    const generated = Math.min(SOURCE_MAJOR, TARGET_MAJOR) >= 12 ? ", add column g int generated always as (id * 2) stored" : "";
    await conn.query(`select dbsync.execute_ddl('g', 'alter table c add column k int default 5${generated}')`);
    assert.equal(await requests(), before, "a constant default and a generated column need no copy");
    await conn.query(`select dbsync.execute_ddl('g', $$alter table t add column at timestamptz not null default clock_timestamp(),
      add column day timestamptz default now(), add column r text default md5(random()::text), add column n bigint generated always as identity,
      add column s serial, add column io timestamptz default ('now'::text)::timestamptz,
      add column d date default '2024-01-02'$$)`);
    // (d: a date constant, as 'today' is stored: _expr_immutable cannot tell them apart.)
    assert.ok(notices.some((n) => /public\.t is copied again by every subscription: its new column at, day, r, n, s, io, d\b/.test(n)), notices.join("; "));
    assert.equal(notices.length, 1, notices.join("; "));
    // The new columns' sequences travel with the table (a cutover needs them).
    assert.equal(await value(env.source, "select count(*)::int from dbsync.sequences where seq_name in ('t_n_seq', 't_s_seq')"), 2);
    // The backfill idiom: existing rows get now(), new ones NULL.
    await conn.query("select dbsync.execute_ddl('g', 'alter table c add column created timestamptz default now(); alter table c alter column created drop default')");
    assert.ok(notices.some((n) => /public\.c is copied again by every subscription: its new column created/.test(n)), notices.join("; "));
    await env.source.query("insert into t (id, v) values (51, 51)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await assertTablesEqual(env.source, env.target, ["t", "c"]);
  });
});
