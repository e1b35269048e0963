// execute_ddl records the caller's search_path, as it resolves on the source, and the
// settings its literals are read under, both read before the DDL runs; the targets run
// it under them (sql/functions/execute_ddl.sql, _ddl_settings.sql; src/target/apply.ts
// runDdl). Found by an adversarial review: a SET LOCAL at the DDL's end was recorded
// instead of the settings the DDL was read under, "$user" named the apply role's
// schema on the target, a temporary table of the caller stood in for the replicated one.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, tableText, value } from "./helpers";
import { setup, strictlyConverged, synced } from "./kit/convergence";

test("a SET LOCAL at the end of execute_ddl's DDL: the DDL before it is read under the caller's settings, on the target too", async () => {
  const env = await freshEnv("eds_trailset");
  await setup(env, "create table t (id int primary key, d date);", ["t"], { copyData: true });
  await env.source.query("insert into t values (1, '2024-01-15'), (2, '2024-03-01')");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    // Source session: ISO, MDY and UTC. The SET LOCALs come after the literals.
    await env.source.query(`begin; set local timezone = 'UTC'; set local datestyle = 'ISO, MDY';
      select dbsync.execute_ddl('g', $$alter table t add column at timestamptz not null default '2024-01-01 00:00',
        add column cut date not null default '01/02/2024'; set local timezone = 'Asia/Tokyo'; set local datestyle = 'ISO, DMY'$$);
      commit`);
    await env.source.query("insert into t (id, d) values (3, '2024-01-20')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl under search_path \"$user\", public by a role whose schema shadows public: the target changes the same table", async () => {
  const env = await freshEnv("eds_dollaruser");
  const role = "brk2_alice";
  await env.source.query(`do $$ begin if not exists (select from pg_roles where rolname = '${role}') then create role ${role} superuser; end if; end $$`);
  await setup(env, `create schema ${role}; create table ${role}.t (id int primary key, v int); create table public.t (id int primary key, v int);`,
    [`${role}.t`, "public.t"], { copyData: true });
  await env.source.query(`insert into ${role}.t select g, g from generate_series(1, 5) g; insert into public.t select g, g from generate_series(1, 5) g`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    await env.source.query(`begin; set local role ${role}; set local search_path = "$user", public;
      select dbsync.execute_ddl('g', 'alter table t alter column v type bigint using v * 100'); commit`);
    await env.source.query("insert into public.t values (6, 6)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await strictlyConverged(env, [`${role}.t`, "public.t"]);
  } finally {
    await sidecar.stop();
  }
});

test("session-level SETs inside the DDL (standard_conforming_strings, search_path, transform_null_equals): the rows after it and later batches arrive intact", async () => {
  const env = await freshEnv("eds_ddlleak");
  await setup(env, `create schema other; create table "we\\ird'n" (id int primary key, v text, a text[], ts timestamp, d date);
    create table other."we\\ird'n" (id int primary key, v text, a text[], ts timestamp, d date);`, [`"we\\ird'n"`], { copyData: true });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    // (A connection of its own: the SETs stay in the source session too.)
    const c = await env.source.connect();
    try {
      await c.query(`select dbsync.execute_ddl('g', $$set standard_conforming_strings = off; set search_path = other, public;
        set transform_null_equals = on; set datestyle = 'SQL, DMY'; set timezone = 'America/Caracas'; set array_nulls = off; set session_replication_role = origin$$)`);
    } finally { c.release(true); }
    await env.source.query(`insert into "we\\ird'n" values (1, 'a\\b''c', array['NULL', null, 'x\\y'], '2024-02-01 10:00', '2024-02-01'), (2, null, null, null, null)`);
    await new Promise((r) => setTimeout(r, 1500));
    await env.source.query(`update "we\\ird'n" set v = v || '\\n' where id = 1; insert into "we\\ird'n" values (3, E'\\\\', '{}', '2024-12-31 23:59:59.999999', '2024-12-31')`);
    await env.source.query(`select dbsync.execute_ddl('g', $$alter table "we\\ird'n" add column e text default 'x\\y'$$)`);
    await env.source.query(`insert into "we\\ird'n" (id, v) values (4, 'after')`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await strictlyConverged(env, [`"we\\ird'n"`]);
    assert.equal(await value(env.target, "select count(*)::int from other.\"we\\ird'n\""), 0);
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl naming a table that a temporary table of the caller shadows: the target changes the same table", async () => {
  const env = await freshEnv("eds_tempshadow");
  await setup(env, "create table t (id int primary key, v int);", ["t"], { copyData: true });
  await env.source.query("insert into t select g, g from generate_series(1, 5) g");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    const c = await env.source.connect();
    try {
      await c.query("create temp table t (id int primary key, v int); insert into t values (1, 1)");
      await c.query("select dbsync.execute_ddl('g', 'alter table t alter column v type bigint using v * 100')");
    } finally { c.release(true); }
    await env.source.query("insert into t values (6, 6)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});
