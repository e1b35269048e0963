// Acceptance: the source's tables rewritten or moved on disk while the sidecar
// streams them and copies one of them in chunks, with a writer at work: VACUUM FULL,
// CLUSTER, REINDEX, SET UNLOGGED and SET LOGGED outside execute_ddl (each a new
// relfilenode, none a change of rows), and column types changed through it (the
// key's too: capture's key trigger used to name the key columns in its WHEN,
// which made PostgreSQL refuse to change their type). Every table ends equal, with
// no error to clear.
import { test } from "node:test";
import { freshEnv, startSidecar } from "./helpers";
import { setup, strictlyConverged } from "./kit/convergence";

test("VACUUM FULL, CLUSTER, REINDEX, SET UNLOGGED / LOGGED and ALTER COLUMN TYPE under a writer, during a chunked copy", async () => {
  const env = await freshEnv("acc2_rewrites");
  await setup(env, `
    create table big (id int primary key, v varchar(20), n int);
    create table hot (id int primary key, v varchar(20), n int);`, ["big", "hot"]);
  await env.source.query(`insert into big select g, 'b' || g, g from generate_series(1, 6000) g;
    insert into hot select g, 'h' || g, 0 from generate_series(1, 200) g; analyze big; analyze hot`);
  // big is copied again, in chunks of 500 rows, while the rest goes on.
  await env.source.query("select dbsync.resync_table('s', 'big')");
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      const k = 1 + ((i * 37) % 6000);
      await env.source.query(`update big set n = n + 1, v = 'w${i}' where id = ${k};
        update hot set n = n + 1 where id = ${1 + (i % 200)};
        delete from big where id = ${1 + ((i * 53) % 6000)};
        insert into big values (${6000 + i + 1}, 'new', ${i}) on conflict (id) do update set n = excluded.n`);
    }
  })();
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100", "--copy-chunk-rows", "500"]);
  try {
    for (const sql of [
      "vacuum full big",
      "cluster hot using hot_pkey",
      "reindex table big",
      "alter table hot set unlogged",
      "vacuum full hot",
      "alter table hot set logged",
      "cluster big using big_pkey",
      "select dbsync.execute_ddl('g', 'alter table hot alter column v type text')",
      "select dbsync.execute_ddl('g', 'alter table big alter column n type bigint')",
      "vacuum full hot",
    ]) {
      await env.source.query(sql);
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    writing = false;
    await writer;
  }
  try {
    await strictlyConverged(env, ["big", "hot"]);
  } finally {
    await sidecar.stop();
  }
});

test("an int key widened to bigint (through execute_ddl and by a plain ALTER TABLE) while rows are written", async () => {
  const env = await freshEnv("acc2_key_bigint");
  await setup(env, "create table a (id int primary key, v text); create table b (id int primary key, v text)", ["a", "b"]);
  await env.source.query("insert into a select g, 'a' || g from generate_series(1, 100) g; insert into b select g, 'b' || g from generate_series(1, 100) g");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("select dbsync.execute_ddl('g', 'alter table a alter column id type bigint')");
    await env.source.query("update a set id = id + 3000000000 where id <= 10; delete from a where id = 50");
    // The application's own migration, outside execute_ddl: the target is widened by hand first.
    await env.target.query("alter table b alter column id type bigint");
    await env.source.query("alter table b alter column id type bigint");
    await env.source.query("update b set id = id + 3000000000 where id <= 10");
    // A rewrite of the source's rows outside execute_ddl is held until acknowledged, then copied.
    await env.source.query("select dbsync.acknowledge_ddl(ddl_id) from dbsync.unreplicated_ddl");
    await strictlyConverged(env, ["a", "b"]);
  } finally {
    await sidecar.stop();
  }
});
