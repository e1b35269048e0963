// Session 21's attacks as an acceptance run would make them: other replicators,
// clients, types, DDL, application triggers and isolation levels against the
// promise that a target never differs from its source without an error in
// dbsync.status.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SOURCE_MAJOR, TARGET_MAJOR, createDatabase, freshEnv, pool, sqlError, startSidecar, tableText, until, value } from "./helpers";
import { failsWith, setup, strictlyConverged, synced } from "./kit/convergence";
import { swapHeldThenEqual } from "./kit/swaps";

// A source that is itself the subscriber of PostgreSQL's own logical replication
// (a cascade: an upstream database -> this source -> dbsync's targets). The apply
// worker fires row triggers only, never statement triggers: the statement triggers
// that capture a plain table saw none of its inserts, updates or deletes, and only
// the old key of a key change reached the target (its row deleted there).
test("a replicated table fed by native logical replication (CREATE SUBSCRIPTION on the source): its applied rows reach the target", async () => {
  const env = await freshEnv("brk21_native");
  const upstreamUrl = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "brk21_upstream");
  const upstream = pool(upstreamUrl, 2);
  const ddl = "create table t (id int primary key, v text)";
  await upstream.query(`${ddl}; create publication pb for table t; insert into t select g, 'first ' || g from generate_series(1, 20) g`);
  await setup(env, ddl, ["t"], { copyData: true });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  // Through the initial synchronization (a COPY, which fires statement triggers) first.
  await env.source.query(`create subscription sb_brk21 connection '${upstreamUrl}' publication pb`);
  try {
    const arrived = async () => (await tableText(upstream, "t")).join("\n") === (await tableText(env.source, "t")).join("\n");
    await until("the subscription's initial copy on the source", arrived, 60_000);
    await synced(env);
    // Then applied by the apply worker, row by row.
    await upstream.query("insert into t select g, 'applied ' || g from generate_series(21, 40) g");
    await upstream.query("update t set v = v || ' updated' where id % 3 = 0");
    await upstream.query("update t set id = id + 100 where id % 5 = 0");
    await upstream.query("delete from t where id % 7 = 0");
    await until("the upstream's changes applied on the source", arrived, 60_000);
    await strictlyConverged(env, ["t"]);
  } finally {
    await env.source.query("drop subscription sb_brk21");
    await sidecar.stop();
  }
});

test("the replica-mode capture trigger of a plain table stays so: ENABLE TRIGGER ALL and ENABLE ALWAYS set it back, disabling it is refused", async () => {
  const env = await freshEnv("brk21_replica_trigger");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const modes = async () => Object.fromEntries((await env.source.query<{ tgname: string; tgenabled: string }>(
    "select tgname, tgenabled from pg_trigger where tgrelid = 't'::regclass order by tgname")).rows.map((r) => [r.tgname, r.tgenabled]));
  const meant = { dbsync_capture_del: "A", dbsync_capture_ins: "A", dbsync_capture_key: "A", dbsync_capture_replica: "R", dbsync_capture_replica_mark: "R", dbsync_capture_replica_unmark: "R", dbsync_capture_trunc: "A", dbsync_capture_upd: "A" };
  assert.deepEqual(await modes(), meant);
  for (const ddl of ["alter table t enable trigger all", "alter table t enable always trigger dbsync_capture_replica", "alter table t enable trigger dbsync_capture_replica"]) {
    await env.source.query(ddl);
    assert.deepEqual(await modes(), meant, ddl);
  }
  for (const ddl of ["alter table t disable trigger dbsync_capture_replica", "alter table t enable replica trigger dbsync_capture_ins"]) {
    assert.match((await sqlError(env.source, ddl)).message, /cannot be disabled/, ddl);
  }
  // A replica session's statements fire both kinds: each key queued twice, the rows once.
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("begin; set local session_replication_role = replica; insert into t select g, 'r' from generate_series(1, 10) g; update t set id = id + 10 where id < 4; delete from t where id = 5; commit");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

// Names the sidecar plans with (kept per process, migration 0036) must follow a
// table moved to another schema, and a schema renamed, at their point in the stream.
test("execute_ddl moving replicated tables between schemas (SET SCHEMA, ALTER SCHEMA ... RENAME) between writes, in one batch and across batches", async () => {
  const env = await freshEnv("brk21_set_schema");
  await setup(env, "create schema a; create schema b; create table a.t (id int primary key, v text); create table a.u (id int primary key, v text)", ["a.t", "a.u"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    const write = (t: string, n: number) => env.source.query(`insert into ${t} values (${n}, 'v${n}'); update ${t} set v = v || '+' where id < ${n}`);
    await write("a.t", 1);
    await write("a.u", 1);
    await synced(env);
    await write("a.t", 2);
    await env.source.query("select dbsync.execute_ddl('g', 'alter table a.t set schema b')");
    await write("b.t", 3);
    await strictlyConverged(env, ["b.t", "a.u"]);
    await env.source.query("select dbsync.pause('s')");
    await write("a.u", 2);
    await env.source.query("select dbsync.execute_ddl('g', 'alter schema a rename to c')");
    await write("c.u", 3);
    await env.source.query("select dbsync.execute_ddl('g', 'create schema a; alter table b.t set schema a; alter table c.u set schema b')");
    await write("a.t", 4);
    await write("b.u", 4);
    await env.source.query("select dbsync.resume('s')");
    await strictlyConverged(env, ["a.t", "b.u"]);
  } finally {
    await sidecar.stop();
  }
});

// The key's unique index may decide equality by another collation than its
// column's: under a case-insensitive column, a unique index COLLATE "C" holds 'a'
// and 'A' as two keys, which the column's own = takes for one.
test("a text key whose column is case-insensitive (nondeterministic collation) and whose unique index is COLLATE \"C\": 'a' and 'A' are two rows on both sides", { skip: Math.min(SOURCE_MAJOR, TARGET_MAJOR) < 12 && "nondeterministic collations come with PostgreSQL 12" }, async () => {
  const env = await freshEnv("brk21_ci_key");
  const ddl = `create collation ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    create table t (k text collate ci not null, v text);
    create unique index t_k on t (k collate "C")`;
  await setup(env, ddl, ["t"], { keyColumns: { t: ["k"] } });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t values ('a', 'lower'), ('A', 'upper'), ('b', 'lower b')");
    await synced(env);
    await env.source.query("update t set v = v || '!' where k = 'a' collate \"C\"");
    await env.source.query("insert into t values ('B', 'upper b')");
    await env.source.query("delete from t where k = 'b' collate \"C\"");
    await env.source.query("update t set k = 'Z' where k = 'A' collate \"C\"");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

// The target's commit is the one statement of a batch that an application's
// deferred constraint trigger (ENABLE ALWAYS there) can fail: the error must be
// the subscription's, named in dbsync.status, and the rows after it wait.
test("a deferred constraint trigger on the target (ENABLE ALWAYS) that fails at the batch's commit: an error in dbsync.status, then equal once it is fixed", async () => {
  const env = await freshEnv("brk21_deferred_target");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  await env.target.query(`create function refuse_bad() returns trigger language plpgsql as $$
      begin if new.v = 'bad' then raise exception 'refused at commit: %', new.id; end if; return null; end $$;
    create constraint trigger at_commit after insert or update on t deferrable initially deferred
      for each row execute procedure refuse_bad();
    alter table t enable always trigger at_commit`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t values (1, 'good')");
    await synced(env);
    await env.source.query("insert into t values (2, 'bad')");
    await env.source.query("insert into t values (3, 'after')");
    await failsWith(env, /refused at commit: 2/);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '1 s')"), false);
    await env.target.query("drop trigger at_commit on t");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

// The blue/green swap of two replicated tables' names, run on the source as plain
// DDL (a WARNING said to make the same change on the targets and acknowledge it).
// The target is written under the source's current names: with both names there
// until the target's own swap, each table's changes landed in the other's table,
// and stayed after it (the row inserted meanwhile was left in the wrong one), with
// wait_for_sync true. Now a rename outside execute_ddl holds the table (an error in
// dbsync.status) until acknowledged, then copies it again.
test("two replicated tables' names swapped on the source outside execute_ddl, rows changed in both, then the same swap on the target: an error until acknowledged, then equal", async () => {
  const env = await freshEnv("brk21_swap_plain");
  await swapHeldThenEqual(env, "begin; alter table x rename to tmp; alter table y rename to x; alter table tmp rename to y; commit",
    /RENAME of public\.[xy] outside dbsync\.execute_ddl changed its name on the source only/);
});

// The same swap one level up: ALTER SCHEMA ... RENAME names only the schema, and the
// DDL event trigger did not watch it: nothing was held, nothing listed.
test("two schemas holding replicated tables swap their names outside execute_ddl, and execute_ddl of another group renames one: held until acknowledged, then equal", async () => {
  const env = await freshEnv("brk21_swap_schemas");
  await setup(env, "create schema a; create schema b; create table a.t (id int primary key, v text); create table b.t (id int primary key, v text)", ["a.t", "b.t"]);
  await env.source.query("create schema h; create table h.u (id int primary key, v text); select dbsync.add_table('h.u', 'other')");
  await env.target.query("create schema h; create table h.u (id int primary key, v text)");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into a.t select g, 'a' || g from generate_series(1, 10) g; insert into b.t select g, 'b' || g from generate_series(1, 10) g");
    await synced(env);
    const swap = "begin; alter schema a rename to tmp; alter schema b rename to a; alter schema tmp rename to b; commit";
    await env.source.query(swap);
    await env.source.query("insert into a.t values (11, 'new in old b'); update b.t set v = v || ' (old a)'");
    await failsWith(env, /ALTER SCHEMA \.\.\. RENAME of [ab]\.t outside dbsync\.execute_ddl changed its name/);
    await env.target.query(swap);
    await env.source.query("select dbsync.acknowledge_ddl(null)");
    await strictlyConverged(env, ["a.t", "b.t"]);
    // Group g's execute_ddl renames the schema of group other's table: held for that group.
    await env.source.query("select dbsync.execute_ddl('g', 'alter schema h rename to h2')");
    assert.equal(Number(await value(env.source, "select count(*) from dbsync.unreplicated_ddl where table_name = 'h2.u'")), 1);
  } finally {
    await sidecar.stop();
  }
});
