// execute_ddl judges what its statement did from the relations of its group and those
// the statement locked (dbsync._ddl_effects), not from every replicated table: a
// relation the statement locks for the first time in the transaction has no counts
// "before" it, and its counts may hold earlier transactions' rows not yet flushed to
// the shared statistics. These must not make a statement look as if it wrote a
// table it only read, and a table of another group that it changed inside a
// subtransaction must still be refused.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, value } from "./helpers";
import { setup } from "./kit/convergence";

test("execute_ddl reading a table that an earlier transaction of the session wrote (its counts not yet flushed) does not count it as written", async () => {
  const env = await freshEnv("ddlscope_pending");
  await setup(env, "create table t (id int primary key, v int); create table lookup (k int); create table h1 (id int primary key)", ["t"]);
  await env.source.query("select dbsync.add_table('h1', 'h')");
  await env.source.query("insert into t select g, g from generate_series(1, 10) g");
  const c = await env.source.connect();
  const notices: string[] = [];
  c.on("notice", (n) => notices.push(n.message ?? ""));
  try {
    // One query string: the backend does not go idle between the transactions, so
    // the inserts' counts are still pending when execute_ddl's statement runs.
    await c.query(`begin; insert into lookup select g from generate_series(1, 5) g; insert into h1 select g from generate_series(1, 5) g; commit;
      select dbsync.execute_ddl('g', 'alter table t add column w int; update t set w = 1 where id in (select k from lookup) and exists (select from h1)')`);
  } finally {
    c.release();
  }
  assert.equal(await value(env.source, "select count(*)::int from dbsync.events where op = 'X'"), 1);
  assert.deepEqual(notices.filter((n) => /copied again/.test(n)).map((n) => n.replace(/ by every.*/, "")), ["execute_ddl: public.t is copied again"]);
});

test("execute_ddl inside a savepoint still refuses a TRUNCATE and an ALTER (adding a column, rewriting) of another group's tables", async () => {
  const env = await freshEnv("ddlscope_savepoint");
  await setup(env, `create table t (id int primary key); create table h1 (id int primary key);
    create table parent (id int primary key, v int); create table child (primary key (id)) inherits (parent)`, ["t", "parent"]);
  await env.source.query("select dbsync.add_table('h1', 'h'), dbsync.add_table('child', 'h')");
  // (The rewrite of the child, in another group, by its parent's ALTER: the rewrite
  // event trigger does nothing under execute_ddl, which refuses it.)
  for (const [ddl, changed] of [["truncate h1", "h1"], ["alter table parent add column w int", "child"],
    ["alter table parent alter column v type int using v * 2", "child"]]) {
    const c = await env.source.connect();
    try {
      await c.query("begin; savepoint a");
      await assert.rejects(c.query(`select dbsync.execute_ddl('g', '${ddl}')`), (e: Error & { code?: string }) => {
        assert.equal(e.code, "22023", `${ddl}: ${e.message}`);
        assert.match(e.message, new RegExp(`changes public\\.${changed} of group "h"`));
        return true;
      });
      await c.query("rollback");
    } finally {
      c.release();
    }
  }
});

test("without the DDL event triggers, execute_ddl refuses to drop another group's table (its lock is all that is left of it)", async () => {
  const env = await freshEnv("ddlscope_drop");
  await setup(env, "create table t (id int primary key); create table h1 (id int primary key)", ["t"]);
  await env.source.query("select dbsync.add_table('h1', 'h')");
  // As where migrate could not create them (not a superuser): nothing marks h1 removed.
  await env.source.query("alter event trigger dbsync_drop_watch disable; alter event trigger dbsync_ddl_watch disable");
  await assert.rejects(env.source.query("select dbsync.execute_ddl('g', 'drop table h1')"), (e: Error & { code?: string }) => {
    assert.equal(e.code, "22023", e.message);
    assert.match(e.message, /changes public\.h1 of group "h"/);
    return true;
  });
  assert.equal(await value(env.source, "select count(*)::int from pg_class where relname = 'h1'"), 1);
});
