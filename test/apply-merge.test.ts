// How a batch's rows land on the target (src/target/apply.ts, src/target/stream.ts):
// rows of keys the target has are updated in place, new keys inserted, gone keys
// deleted; where an in-place update cannot work (a unique value moving between
// rows of the batch, an identity column GENERATED ALWAYS outside the key) the
// rows are deleted and inserted instead; tables of different widths share one
// stream. Each test ends with the target equal to the source and no error.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, tableText, until, value } from "./helpers";
import { setup, strictlyConverged, synced, targetCounts } from "./kit/convergence";

test("rows of keys the target has are updated in place; new keys inserted; gone keys deleted", async () => {
  const env = await freshEnv("merge_in_place");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t select g, 'v' || g from generate_series(1, 100) g");
    await synced(env);
    await env.source.query(`
      begin;
      update t set v = 'changed ' || id where id <= 50;
      delete from t where id between 51 and 60;
      insert into t select g, 'new' || g from generate_series(101, 110) g;
      commit`);
    await strictlyConverged(env, ["t"]);
    // Stopped: its sessions' statistics reach pg_stat_user_tables as they end (an
    // idle session's only after 10 s, since PostgreSQL 15).
    await sidecar.stop();
    // 100 + 10 inserted, 50 updated, 10 deleted: no row deleted to be inserted again.
    await until("the target's statistics show the batch", async () => {
      const c = await targetCounts(env, "t");
      return c.ins === 110 && c.upd === 50 && c.del === 10;
    }, 20_000).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await targetCounts(env, "t"))}`);
    });
  } finally {
    await sidecar.stop();
  }
});

test("a unique value moving between rows of one batch: deleted and inserted instead, no error", async () => {
  const env = await freshEnv("merge_unique_move");
  await setup(env, "create table t (id int primary key, email text not null unique, n int)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t values (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)");
    await synced(env);
    // Emails rotate: each row takes the next one's (through a temporary value).
    await env.source.query(`
      begin;
      update t set email = 'tmp' where id = 1;
      update t set email = 'a' where id = 2;
      update t set email = 'b' where id = 3;
      update t set email = 'c' where id = 1;
      commit`);
    assert.deepEqual(await tableText(env.source, "t"), ["(1,c,1)", "(2,a,2)", "(3,b,3)"]);
    await strictlyConverged(env, ["t"]);
    // The next batch updates in place again.
    await env.source.query("update t set n = n * 10");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("identity columns GENERATED ALWAYS, in the key and outside it", async () => {
  const env = await freshEnv("merge_identity");
  await setup(
    env,
    `create table k (id int generated always as identity primary key, v text);
     create table o (id int primary key, seq int generated always as identity, v text)`,
    ["k", "o"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into k (v) select 'v' || g from generate_series(1, 20) g");
    await env.source.query("insert into o (id, v) select g, 'v' || g from generate_series(1, 20) g");
    await synced(env);
    await env.source.query("update k set v = 'w' || id where id % 2 = 0");
    // A value of the identity column outside the key changes (only to DEFAULT).
    await env.source.query("update o set seq = default, v = 'w' || id where id % 2 = 0");
    await strictlyConverged(env, ["k", "o"]);
  } finally {
    await sidecar.stop();
  }
});

test("a numeric key changed to an equal value with another text (1.0 to 1.00) reaches the target", async () => {
  const env = await freshEnv("merge_numeric_key");
  await setup(env, "create table t (id numeric primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t values (1.0, 'x'), (2.5, 'y')");
    await synced(env);
    await env.source.query("update t set id = 1.00 where id = 1");
    assert.deepEqual(await tableText(env.source, "t"), ["(1.00,x)", "(2.5,y)"]);
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("tables of different widths, a key-only table and a target without a unique index share one batch", async () => {
  const env = await freshEnv("merge_widths");
  await setup(
    env,
    `create table narrow (id int primary key);
     create table wide (id int primary key, a text, b int, c jsonb, d timestamptz, e bytea, f text[]);
     create table mid (id int primary key, v text)`,
    ["narrow", "wide", "mid"],
  );
  // The target's copy of mid has no key at all: rows are still matched on the source's key.
  await env.target.query("alter table mid drop constraint mid_pkey");
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`
      begin;
      insert into narrow select g from generate_series(1, 30) g;
      insert into wide select g, 'a' || g, g, jsonb_build_object('g', g), '2026-01-01'::timestamptz + g * interval '1 h',
                              ('\\x' || lpad(to_hex(g), 4, '0'))::bytea, array['x', null, 'tab\there']
        from generate_series(1, 30) g;
      insert into mid select g, null from generate_series(1, 30) g;
      commit`);
    await strictlyConverged(env, ["narrow", "wide", "mid"]);
    await env.source.query(`
      begin;
      delete from narrow where id > 20;
      update wide set a = null, c = '{"new": true}', f = '{}' where id % 3 = 0;
      update mid set v = E'line\\nbreak' where id % 2 = 0;
      delete from mid where id > 25;
      commit`);
    await strictlyConverged(env, ["narrow", "wide", "mid"]);
    assert.equal(await value(env.target, "select count(*)::int from mid"), 25);
  } finally {
    await sidecar.stop();
  }
});
