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

// A subscription with streaming = on (PostgreSQL 14; parallel from 16): a transaction
// larger than the upstream's logical_decoding_work_mem reaches the apply worker in
// pieces, applied from its spool file at the commit (or by a parallel apply worker, if
// one is free, as it comes; not checked here), with an application trigger's statements
// among its rows. Held, kept as a guard.
test("native logical replication with streaming = on (parallel on 16+): a streamed transaction's rows all reach the target", {
  skip: SOURCE_MAJOR < 14 && "streaming subscriptions come with PostgreSQL 14",
}, async () => {
  const env = await freshEnv("b21b_stream");
  const upstreamUrl = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "b21b_stream_upstream");
  const upstream = pool(upstreamUrl, 2);
  await upstream.query(`create table t (id int primary key, v text); create publication pb for table t;
    do $$ begin execute format('alter database %I set logical_decoding_work_mem = %L', current_database(), '64kB'); end $$`);
  await setup(env, "create table t (id int primary key, v text); create table c (id int primary key, n int not null)", ["c", "t"]);
  await env.source.query(`insert into c values (1, 0);
    create function t_counts() returns trigger language plpgsql as $$ begin update public.c set n = n + 1 where id = 1; return null; end $$;
    create trigger t_counts after insert on t for each row execute function t_counts();
    alter table t enable always trigger t_counts`);
  await env.source.query(`create subscription sb_b21b_stream connection '${upstreamUrl}' publication pb with (copy_data = false, streaming = ${SOURCE_MAJOR >= 16 ? "parallel" : "on"})`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    await upstream.query("insert into t select g, repeat('x', 200) from generate_series(1, 5000) g");
    await upstream.query("begin; update t set v = 'u' where id % 3 = 0; delete from t where id % 7 = 0; commit");
    await until("the upstream's rows applied on the source", async () => (await value<number>(env.source, "select count(*)::int from t where v = 'u'")) > 0, 120_000);
    await until("the upstream streamed a transaction", async () =>
      (await value<number>(upstream, "select coalesce(sum(stream_txns), 0)::int from pg_stat_replication_slots where slot_name = 'sb_b21b_stream'")) > 0, 30_000);
    await strictlyConverged(env, ["c", "t"]);
  } finally {
    await env.source.query("drop subscription sb_b21b_stream");
    await sidecar.stop();
  }
});
