// Attacks on session 21's capture version 8 (the replica-mode row trigger and its
// statement mark, see dbsync._statement_mark) with PostgreSQL's native logical
// replication feeding a source.
import { test } from "node:test";
import { SOURCE_MAJOR, createDatabase, freshEnv, pool, startSidecar, until, value } from "./helpers";
import { setup, strictlyConverged, synced } from "./kit/convergence";

// The apply worker fills a subscriber-only column from its default, here a counter
// kept in another replicated table: the default's UPDATE is a statement at trigger
// depth 0 within the worker's change, its BEFORE STATEMENT mark matched the worker's
// own row that follows, and the row trigger of t skipped every applied INSERT.
test("native logical replication: a default that writes another replicated table does not hide the apply worker's row", async () => {
  const env = await freshEnv("b21b_default");
  const upstreamUrl = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "b21b_default_upstream");
  const upstream = pool(upstreamUrl, 2);
  await upstream.query("create table t (id int primary key, v text); create publication pb for table t");
  await setup(env, `create table c (id int primary key, n int not null);
    create function next_n() returns int language sql as $$ update public.c set n = n + 1 where id = 1 returning n $$;
    create table t (id int primary key, v text, n int default next_n());
    insert into c values (1, 0)`, ["c", "t"]);
  await env.source.query(`create subscription sb_b21b connection '${upstreamUrl}' publication pb with (copy_data = false)`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    for (let i = 1; i <= 10; i++) await upstream.query("insert into t values ($1, 'up')", [i]);
    await until("the upstream's rows applied on the source", async () => (await value<number>(env.source, "select count(*)::int from t")) === 10, 60_000);
    await strictlyConverged(env, ["c", "t"]);
  } finally {
    await env.source.query("drop subscription sb_b21b");
    await sidecar.stop();
  }
});

// A replica-mode session's MERGE (PostgreSQL 15) fires the statement triggers of each
// action it names, marks itself, and its rows are left to them: every action's rows
// arrive, and an ON CONFLICT's in the same transaction. Held, kept as a guard.
test("a replica-mode session's MERGE and ON CONFLICT on a plain table: every row reaches the target", {
  skip: SOURCE_MAJOR < 15 && "MERGE comes with PostgreSQL 15",
}, async () => {
  const env = await freshEnv("b21b_merge");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  await env.source.query("insert into t select g, 'old' from generate_series(1, 20) g");
  await env.source.query(`begin; set local session_replication_role = replica;
    merge into t using (select g from generate_series(10, 30) g) s on t.id = s.g
      when matched and s.g % 2 = 0 then update set v = 'merged'
      when matched then delete
      when not matched then insert values (s.g, 'new');
    insert into t values (1, 'upsert'), (100, 'upsert') on conflict (id) do update set v = excluded.v;
    commit`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});
