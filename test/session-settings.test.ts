// What a DBA, a table owner or execute_ddl can set on a session, on either side, must
// not change what the target receives: dbsync pins how values are written and read
// (src/db/settings.ts PINNED), puts its apply session back after execute_ddl's DDL
// (src/target/apply.ts restoreSession), and keeps capture firing ALWAYS
// (sql/functions/_on_ddl.sql). Found by an adversarial review of the merged main.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, tableText, value } from "./helpers";
import { setup, synced } from "./kit/convergence";

test("a target database with array_nulls = off: NULL array elements stay NULL", async () => {
  const env = await freshEnv("brk_arrnull");
  const db = await value<string>(env.target, "select current_database()");
  await env.target.query(`alter database "${db}" set array_nulls = off`);
  await setup(env, "create table t (id int primary key, a text[]);", ["t"], { copyData: true });
  await env.source.query("insert into t values (1, array[null, 'x']::text[]), (2, array['NULL']::text[])");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    await env.source.query("insert into t values (3, array[null]::text[])");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    const src = await tableText(env.source, "t");
    const tgt = await tableText(env.target, "t");
    assert.deepEqual(tgt, src);
  } finally {
    await sidecar.stop();
  }
});

test("ENABLE TRIGGER ALL through execute_ddl, then a writer in replica mode: still captured", async () => {
  const env = await freshEnv("brk_enall");
  await setup(env, "create table t (id int primary key, v int);", ["t"], { copyData: true });
  await env.source.query("insert into t values (1, 1)");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    await env.source.query("select dbsync.execute_ddl('g', 'alter table t enable trigger all')");
    const c = await env.source.connect();
    try {
      await c.query("set session_replication_role = replica; insert into t values (2, 2); update t set v = 10 where id = 1; reset session_replication_role");
    } finally { c.release(true); }
    await env.source.query("insert into t values (3, 3)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl that sets session_replication_role = origin: the rest of its batch still runs in replica mode on the target", async () => {
  const env = await freshEnv("brk_ddlset");
  await setup(env, "create table t (id int primary key, v int);", ["t"], { copyData: true });
  await env.target.query(`create function spoil() returns trigger language plpgsql as $$ begin new.v := -1; return new; end $$;
    create trigger spoil before insert or update on t for each row execute procedure spoil();`); // (procedure: PostgreSQL 10 knows no "execute function")
  await env.source.query("insert into t values (1, 1)");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    await env.source.query("begin; select dbsync.execute_ddl('g', 'set local session_replication_role = origin'); insert into t values (2, 2); update t set v = 10 where id = 1; commit");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl that sets client_encoding: the rest of its batch is read as UTF8", async () => {
  const env = await freshEnv("brk_ddlenc");
  await setup(env, "create table t (id int primary key, v text);", ["t"], { copyData: true });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    await env.source.query("begin; select dbsync.execute_ddl('g', 'set local client_encoding = latin1'); insert into t values (2, 'caf' || chr(233)); commit");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl's literals are read on the target under the settings of the session that ran it", async () => {
  const env = await freshEnv("brk_ddlgucs");
  await setup(env, "create table t (id int primary key, v text, ts timestamptz, d date, i interval);", ["t"], { copyData: true });
  await env.source.query("insert into t values (1, 'x', null, null, null), (2, 'y', null, null, null)");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    const c = await env.source.connect();
    try {
      await c.query("set timezone = 'Europe/Berlin'; set datestyle = 'SQL, DMY'; set standard_conforming_strings = off; " +
        "set intervalstyle = 'sql_standard'; set extra_float_digits = 0");
      await c.query(`select dbsync.execute_ddl('g', $$alter table t add column at timestamptz not null default '2024-01-01 00:00'$$)`);
      // DMY: the 1st of February; a backslash escape; a mixed-sign sql_standard interval;
      // a timestamp and a float written as text under the session's styles.
      // (Defaults, read when the DDL runs: row changes through execute_ddl reach the
      // targets as rows, and are not read there again.)
      await c.query(`select dbsync.execute_ddl('g', $$alter table t add column ts2 timestamptz default '2024-06-01 12:00',
        add column d2 date default '01/02/2024', add column v2 text default 'a\\\\b', add column i2 interval default '-1 2:03:04',
        add column f text default (0.1::float8 * 3)::text$$)`);
    } finally { c.release(true); }
    // The apply session's own settings are back for rows after the DDL.
    await env.source.query("insert into t (id, v, ts, d) values (3, 'z', '2024-03-04 05:06+00', '2024-03-04')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
    assert.equal(await value(env.target, "select d2::text from t where id = 1"), "2024-02-01");
    // The rows' dates and times came by a copy (a date constant may be 'today': copied
    // again); the defaults show how the target read the literals.
    const defaults = `select string_agg(a.attname || ' ' || pg_get_expr(d.adbin, d.adrelid), '; ' order by a.attnum)
                      from pg_attrdef d join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum where d.adrelid = 't'::regclass`;
    assert.equal(await value(env.target, defaults), await value(env.source, defaults));
  } finally {
    await sidecar.stop();
  }
});
