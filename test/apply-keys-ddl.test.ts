// Adversarial tests of the in-place merge (commit 0a55ab8), second part.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SOURCE_MAJOR, TARGET_MAJOR, compat, freshEnv, startSidecar, tableText, until, value } from "./helpers";
import { setup, settle, strictlyConverged, synced } from "./kit/convergence";

test("a key under a nondeterministic collation, unique case-sensitively; the target without that index", async (t) => {
  if (Math.min(SOURCE_MAJOR, TARGET_MAJOR) < 12) {
    t.skip("nondeterministic collations come with PostgreSQL 12");
    return;
  }
  const env = await freshEnv("advm_ci_two_rows");
  if ((await value<number>(env.source, "select count(*)::int from pg_collation where collprovider = 'i'")) === 0) {
    t.skip("no ICU");
    return;
  }
  const ddl = `create collation ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
               create table t (k text collate ci not null, v int)`;
  await env.source.query(ddl + "; create unique index t_k on t (k collate \"C\")");
  // The target has no unique index (as test/apply-merge's "mid"): rows are matched on the source's key.
  await env.target.query(ddl);
  await env.source.query("select dbsync.add_table('t', 'g', array['k'])");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t values ('abc', 1), ('ABC', 2)");
    await settle(env);
    await synced(env);
    assert.deepEqual(await tableText(env.target, "t"), ["(ABC,2)", "(abc,1)"]);
    await env.source.query("update t set v = 10 where k = 'abc' collate \"C\"");
    await strictlyConverged(env, ["t"]);
    await env.source.query("delete from t where k = 'abc' collate \"C\"");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl adding and dropping columns between writes of one batch, generated and dropped columns", async () => {
  const env = await freshEnv("advm_ddl_mid");
  // Generated columns come with PostgreSQL 12.
  const generated = Math.min(SOURCE_MAJOR, TARGET_MAJOR) >= 12 ? ", g int generated always as (id * 2) stored" : "";
  await setup(
    env,
    `create table t (id int primary key, a text, gone text${generated});
     create table o (id int primary key, v text)`,
    ["t", "o"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t (id, a, gone) select g, 'a' || g, 'x' from generate_series(1, 20) g; insert into o values (1, 'o')");
    await settle(env);
    await synced(env);
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("update t set a = 'before' where id <= 5");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table t add column b int default 7')");
    await env.source.query("update t set b = id where id between 3 and 8");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table t drop column gone')");
    await env.source.query("delete from t where id = 10; insert into t (id, a, b) values (100, 'new', 1)");
    await env.source.query("update o set v = 'o2'");
    await env.source.query("select dbsync.resume('s')");
    await strictlyConverged(env, ["t", "o"]);
    await env.source.query("update t set a = 'after' where id % 2 = 0");
    await strictlyConverged(env, ["t", "o"]);
  } finally {
    await sidecar.stop();
  }
});

test("the sidecar killed (SIGKILL) in the middle of a batch's stream, then restarted", async () => {
  const env = await freshEnv("advm_kill");
  await setup(env, "create table a (id int primary key, v text); create table b (id int primary key, v text)", ["a", "b"]);
  let sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into a select g, 'v' from generate_series(1, 50000) g; insert into b select g, 'v' from generate_series(1, 50000) g");
    await settle(env);
    await synced(env);
    await env.source.query(`begin; update a set v = repeat('n', 100) where id % 2 = 0; delete from a where id % 7 = 0;
                            update b set v = 'changed' where id % 3 = 0; insert into b select g, 'new' from generate_series(50001, 90000) g; commit`);
    await until("the batch is being applied", async () =>
      (await value<number>(env.target, "select count(*)::int from pg_stat_activity where datname = current_database() and query ilike 'copy%dbsync_stage%'")) > 0, 30000).catch(() => undefined);
    sidecar.proc.kill("SIGKILL");
    await sidecar.stop();
    sidecar = startSidecar(env.sourceUrl);
    await strictlyConverged(env, ["a", "b"]);
  } finally {
    await sidecar.stop();
  }
});

test("target ENABLE ALWAYS triggers that count inserts and deletes per key stay consistent with the rows", async () => {
  // Not a divergence of the replicated table: whatever the target's triggers see, the
  // table ends equal; here only the table is checked.
  const env = await freshEnv("advm_always");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  await env.target.query(compat(`
    create table log (id int, op text);
    create function t_log() returns trigger language plpgsql as $$
    begin
      -- (Before PostgreSQL 11, reading NEW in a DELETE trigger is an error, not NULL.)
      if tg_op = 'DELETE' then insert into log values (old.id, tg_op); return old; end if;
      insert into log values (new.id, tg_op); return new;
    end $$;
    create trigger t_log before insert or update or delete on t for each row execute function t_log();
    alter table t enable always trigger t_log`, "target"));
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t select g, 'v' from generate_series(1, 10) g");
    await settle(env);
    await synced(env);
    await env.source.query("begin; update t set v = 'w' where id <= 5; delete from t where id = 6; commit");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});
