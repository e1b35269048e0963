// DDL that got past dbsync's watch and let a target diverge without a word: DDL
// run in a session with session_replication_role = replica (event triggers fire
// only in origin and local mode unless ENABLE ALWAYS), and DROP INDEX of the unique
// index a replication key stands on. Then what applications do to replicated
// tables: their own triggers, isolation levels, enums, TRUNCATE ... CASCADE, and a
// table owner who is not dbsync.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "pg";
import { migrate } from "../src/migrate";
import { Env, freshEnv, sqlError, startSidecar, value } from "./helpers";
import { assertTablesEqual, setup, synced } from "./kit/convergence";
import { freshEnvAs } from "./kit/migrate-as";
import { connectAs, rolesDroppedAfter } from "./kit/roles";

const made = rolesDroppedAfter();

/** The last commit whose event triggers fired in origin mode only. */
const BEFORE_ALWAYS = "a3ee1fb";

/** A client of the source that keeps the WARNINGs and NOTICEs it is sent. */
async function listening(env: Env): Promise<{ c: Client; said: string[] }> {
  const c = new Client({ connectionString: env.sourceUrl });
  await c.connect();
  const said: string[] = [];
  c.on("notice", (n) => said.push(`${n.severity}: ${n.message}`));
  return { c, said };
}

// Failed before the fix: in a session with session_replication_role = replica (a
// restore, a hand-made fix, a tool that sets it to skip the application's
// triggers) the DDL event triggers did not fire at all, so DISABLE TRIGGER ALL
// switched capture off and writes never reached the target while wait_for_sync
// said in sync; an ADD COLUMN with a default (every row filled, no row trigger)
// was not listed in dbsync.unreplicated_ddl; the primary key could be dropped.
test("DDL in a session with session_replication_role = replica is watched as in any other session", async () => {
  const env = await freshEnv("brk17_replica_ddl");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const { c, said } = await listening(env);
  try {
    await env.source.query("insert into t select g, 'v' || g from generate_series(1, 10) g");
    await synced(env);
    await c.query("set session_replication_role = replica");
    const off = await sqlError(c, "alter table t disable trigger all");
    assert.equal(off.code, "55006", off.message);
    assert.match(off.message, /capture triggers of public\.t cannot be disabled/);
    const pk = await sqlError(c, "alter table t drop constraint t_pkey");
    assert.match(pk.message, /the key \(id\) of public\.t is no longer unique/);
    // Capture still on: a write made now reaches the target.
    await env.source.query("insert into t values (11, 'after')");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["t"]);
    // A column added and filled: listed, with a WARNING, as in origin mode.
    said.length = 0;
    await c.query("alter table t add column extra int not null default 7");
    assert.ok(said.some((w) => /^WARNING: .*ALTER TABLE of replicated table public\.t was not run through dbsync\.execute_ddl/.test(w)),
      said.join("\n"));
    assert.equal(await value(env.source, "select count(*)::int from dbsync.unreplicated_ddl where table_name = 'public.t'"), 1);
    // The session keeps its role: the event trigger did not change it, nor a SET LOCAL.
    assert.equal(await value(c, "show session_replication_role"), "replica");
    await c.query("reset session_replication_role; begin; set local session_replication_role = replica; alter table t add column e2 int");
    assert.equal(await value(c, "show session_replication_role"), "replica");
    await c.query("commit");
    assert.equal(await value(c, "show session_replication_role"), "origin");
  } finally {
    await c.end();
    await sidecar.stop();
  }
});

// An install made before: its migrate to this version makes the event triggers
// fire ALWAYS (the code's checksum changed, so sql/event_trigger.sql runs again).
test("an older install upgraded: the DDL event triggers fire ALWAYS, and DROP INDEX is watched", async (t) => {
  const env = await freshEnvAs(t, BEFORE_ALWAYS, "the version before ENABLE ALWAYS", "brk17_upgrade_always");
  if (!env) return;
  const enabled = "select string_agg(evtname || '=' || evtenabled::text, ' ' order by evtname) from pg_event_trigger";
  assert.equal(await value(env.source, enabled), "dbsync_ddl_watch=O dbsync_drop_watch=O");
  await migrate(env.sourceUrl);
  assert.equal(await value(env.source, enabled), "dbsync_ddl_watch=A dbsync_drop_watch=A dbsync_rewrite_watch=A");
  assert.match(await value<string>(env.source, "select pg_catalog.array_to_string(evttags, ',') from pg_event_trigger where evtname = 'dbsync_drop_watch'"),
    /DROP INDEX/);
});

// Failed before the fix: the event trigger's own writes, fired in a replica
// session, ran in replica mode too, where foreign keys do not act (their triggers
// are ORIGIN): a carried sequence dropped left its subscription_sequences rows
// behind, pointing at a dbsync.sequences row that no longer was.
test("a carried sequence dropped in a replica session: dbsync forgets it whole", async () => {
  const env = await freshEnv("brk17_replica_seq");
  await setup(env, "create sequence sq; create table t (id int primary key)", ["t"]);
  await env.source.query("select dbsync.add_sequence('sq', 'g')");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const { c, said } = await listening(env);
  try {
    await env.source.query("select nextval('sq') from generate_series(1, 5); insert into t values (1)");
    await synced(env);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.subscription_sequences"), 1);
    await c.query("set session_replication_role = replica; drop sequence sq");
    assert.ok(said.some((w) => /^WARNING: .*sequence public\.sq .*dropped/.test(w)), said.join("\n"));
    assert.equal(await value(env.source, "select count(*)::int from dbsync.sequences"), 0);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.subscription_sequences"), 0);
    assert.equal(await value(c, "show session_replication_role"), "replica");
  } finally {
    await c.end();
    await sidecar.stop();
  }
});

// Failed before the fix: DROP INDEX was not watched. A table replicated on
// key_columns that a unique index (not a constraint) makes unique lost it without
// a word; two rows could then share the key and apply kept only one of them.
test("DROP INDEX of the unique index a replication key stands on is refused, as dropping the primary key is", async () => {
  const env = await freshEnv("brk17_drop_index");
  await setup(env, `create table u (id int, k int not null, v text);
    create unique index u_k on u (k); create index u_v on u (v);
    create table w (id int primary key, k int not null); create unique index w_k on w (k)`, ["u", "w"],
  { keyColumns: { u: ["k"] } });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into u select g, g, 'v' || g from generate_series(1, 10) g");
    const err = await sqlError(env.source, "drop index u_k");
    assert.equal(err.code, "42P16", err.message);
    assert.match(err.message, /the key \(k\) of public\.u is no longer unique/);
    assert.match(err.hint ?? "", /Keep a unique index on the key columns/);
    // CONCURRENTLY: refused too, but PostgreSQL had already made the index invalid
    // (committed before the event trigger runs); the hint says to REINDEX it.
    const concurrently = await sqlError(env.source, "drop index concurrently u_k");
    assert.match(concurrently.message, /no longer unique/);
    assert.match(concurrently.hint ?? "", /REINDEX INDEX/);
    const valid = "select indisvalid and indisready from pg_index where indexrelid = 'u_k'::regclass";
    assert.equal(await value(env.source, valid), false);
    await env.source.query("reindex index u_k");
    assert.equal(await value(env.source, valid), true);
    // Under another name or in replica mode, the same.
    await env.source.query("alter index u_k rename to u_k2");
    assert.match((await sqlError(env.source, "set session_replication_role = replica; drop index u_k2")).message, /no longer unique/);
    await env.source.query("reset session_replication_role");
    // Other indexes go: a plain one, one the key does not need, one replaced first.
    await env.source.query("drop index u_v; drop index w_k");
    await env.source.query("create unique index u_k3 on u (k); drop index u_k2");
    assert.match((await sqlError(env.source, "insert into u values (11, 1, 'twice')")).message, /duplicate key/);
    await env.source.query("update u set v = 'x' || v where k <= 5");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["u", "w"]);
  } finally {
    await sidecar.stop();
  }
});

// Held, kept as a guard. TRUNCATE ... CASCADE empties the tables that reference
// the one named (each fires its own TRUNCATE trigger); on the target one TRUNCATE
// of them all, else DELETE table by table (foreign keys do not act in replica mode).
test("TRUNCATE ... CASCADE of a table referenced by other replicated tables, refilled in the same transaction", async () => {
  const env = await freshEnv("brk17_truncate_cascade");
  await setup(env, `create table p (id int primary key, v text);
    create table c (id int primary key, p int references p, v text);
    create table d (id int primary key, c int references c)`, ["p", "c", "d"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    const fill = `insert into p select g, 'p' || g from generate_series(1, 20) g;
      insert into c select g, g, 'c' || g from generate_series(1, 20) g;
      insert into d select g, g from generate_series(1, 20) g`;
    await env.source.query(fill);
    await synced(env);
    await env.source.query("truncate p cascade");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["p", "c", "d"]);
    await env.source.query(fill);
    await env.source.query(`begin; truncate p cascade; insert into p values (1, 'again'); insert into c values (5, 1, 'again'); commit`);
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["p", "c", "d"]);
  } finally {
    await sidecar.stop();
  }
});

// Failed before the fix: ALTER TYPE was not watched. An enum value renamed outside
// execute_ddl changed every row holding it on the source, with no row trigger
// firing: the target kept the old label in all of them, wait_for_sync said in sync,
// and nothing listed the change in dbsync.unreplicated_ddl.
test("ALTER TYPE ... RENAME VALUE of an enum a replicated column uses (also through a domain, an array, a composite) is listed as DDL not run through execute_ddl", async () => {
  const env = await freshEnv("brk17_enum_rename");
  const ddl = `create type mood as enum ('sad', 'ok'); create domain dmood as mood; create type pair as (a mood, b int);
    create table t (id int primary key, m mood); create table u (id int primary key, ms dmood[]);
    create table w (id int primary key, p pair); create table x (id int primary key, v text)`;
  await setup(env, ddl, ["t", "u", "w", "x"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const { c, said } = await listening(env);
  try {
    await env.source.query(`insert into t select g, 'ok' from generate_series(1, 5) g;
      insert into u values (1, array['ok', 'sad']::dmood[]); insert into w values (1, row('ok', 1)); insert into x values (1, 'ok')`);
    await synced(env);
    await c.query("alter type mood rename value 'ok' to 'fine'");
    const listed = await value<string>(env.source,
      "select string_agg(table_name || ' ' || command_tag, ', ' order by table_name) from dbsync.unreplicated_ddl");
    assert.equal(listed, "public.t ALTER TYPE, public.u ALTER TYPE, public.w ALTER TYPE");
    assert.ok(said.some((w) => /^WARNING: .*ALTER TYPE of replicated table public\.t was not run through dbsync\.execute_ddl/.test(w)),
      said.join("\n"));
    // Repeated on the target, as the hint says: then the tables are equal.
    await env.target.query("alter type mood rename value 'ok' to 'fine'");
    await env.source.query("select dbsync.acknowledge_ddl(null)");
    await assertTablesEqual(env.source, env.target, ["t", "u", "w", "x"]);
    // Through execute_ddl: not listed, and the target gets it.
    said.length = 0;
    await c.query("select dbsync.execute_ddl('g', $$alter type mood rename value 'fine' to 'good'$$)");
    assert.equal(await value(env.source, "select count(*)::int from dbsync.unreplicated_ddl"), 0);
    assert.deepEqual(said.filter((w) => w.startsWith("WARNING")), []);
    await env.source.query("update t set m = 'sad' where id = 1");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["t", "u", "w"]);
    // A composite's attribute dropped: the target would keep its values.
    await c.query("alter type pair drop attribute b");
    assert.equal(await value(env.source, "select string_agg(table_name, ', ') from dbsync.unreplicated_ddl"), "public.w");
    await env.target.query("alter type pair drop attribute b");
    await env.source.query("select dbsync.acknowledge_ddl(null)");
    await assertTablesEqual(env.source, env.target, ["w"]);
    // A type no replicated column uses: nothing to say.
    await c.query("create type other as enum ('a'); alter type other rename value 'a' to 'b'");
    assert.equal(await value(env.source, "select count(*)::int from dbsync.unreplicated_ddl"), 0);
  } finally {
    await c.end();
    await sidecar.stop();
  }
});

// A table owner who is not dbsync's: switching capture off is refused whichever
// way it is asked, on the table or on one of its partitions.
test("a table owner (no superuser) cannot switch capture off: DISABLE TRIGGER ALL, USER, by name, ENABLE REPLICA, on a partition too", async () => {
  const env = await freshEnv("brk17_owner_disable");
  const owner = `brk17_owner_${Date.now() % 100000}`;
  made.push({ url: env.sourceUrl, role: owner });
  await env.source.query(`create role ${owner} login; grant create on schema public to ${owner}`);
  await env.source.query(`create table t (id int primary key, v text);
    create table pt (id int primary key, v text) partition by range (id); create table pt1 partition of pt for values from (0) to (100)`);
  await env.source.query(`alter table t owner to ${owner}; alter table pt owner to ${owner}; alter table pt1 owner to ${owner}`);
  for (const t of ["t", "pt"]) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  const c = await connectAs(env.sourceUrl, owner);
  try {
    const capture = await value<string>(env.source, "select min(tgname) from pg_trigger where tgrelid = 't'::regclass and tgname like 'dbsync\\_capture\\_%'");
    const pcapture = await value<string>(env.source, "select min(tgname) from pg_trigger where tgrelid = 'pt1'::regclass and tgname like 'dbsync\\_capture\\_%'");
    for (const sql of ["alter table t disable trigger all", "alter table t disable trigger user", `alter table t disable trigger ${capture}`,
      `alter table t enable replica trigger ${capture}`, "alter table pt1 disable trigger all", `alter table pt1 disable trigger ${pcapture}`,
      "alter table pt disable trigger all"]) {
      const err = await sqlError(c, sql);
      assert.match(err.message, /cannot be disabled|permission denied/, `${sql}: ${err.message}`);
    }
    // (The plain table's row trigger for the logical replication apply worker fires in replica mode only.)
    assert.deepEqual(await value(env.source, `select array_agg(distinct case when tgname like 'dbsync\\_capture\\_replica%' then 'replica ' else '' end || tgenabled::text)
      from pg_trigger where tgrelid in ('t'::regclass, 'pt'::regclass, 'pt1'::regclass) and tgname like 'dbsync\\_capture\\_%'`), ["A", "replica R"]);
  } finally {
    await c.end();
  }
});

// Failed before the fix: a column dropped with the type it held (DROP TYPE, DROP
// DOMAIN ... CASCADE) went unseen, as these tags were not watched. A key column so
// dropped made every later write to the table fail (its capture named the column);
// another column was not listed in dbsync.unreplicated_ddl, and the target kept it.
test("DROP DOMAIN / TYPE ... CASCADE that drops columns of a replicated table: refused for a key column, listed otherwise", async () => {
  const env = await freshEnv("brk17_drop_type_cascade");
  const ddl = `create domain kid as int; create domain note as text; create type color as enum ('red');
    create table k (id kid primary key, v text, n note, c color)`;
  await setup(env, ddl, ["k"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const { c, said } = await listening(env);
  try {
    await env.source.query("insert into k values (1, 'a', 'n', 'red')");
    await synced(env);
    const err = await sqlError(c, "drop domain kid cascade");
    assert.match(err.message, /key column "id" of public\.k/);
    await c.query("drop domain note cascade; drop type color cascade");
    assert.ok(said.some((w) => /^WARNING: .*DROP DOMAIN of replicated table public\.k was not run through dbsync\.execute_ddl/.test(w)),
      said.join("\n"));
    assert.equal(await value(env.source, "select string_agg(command_tag, ', ' order by ddl_id) from dbsync.unreplicated_ddl"),
      "DROP DOMAIN, DROP TYPE");
    await env.source.query("insert into k values (2, 'b')");
    await synced(env);
    await env.target.query("alter table k drop column n, drop column c");
    await assertTablesEqual(env.source, env.target, ["k"]);
  } finally {
    await c.end();
    await sidecar.stop();
  }
});

// Failed before the fix: the event triggers read dbsync.tables with the snapshot
// of the transaction running the DDL. In REPEATABLE READ or SERIALIZABLE it may
// predate the add_table of the very table the DDL alters, while the trigger rows
// the DDL changes are its own: DISABLE TRIGGER ALL switched capture off unchecked.
// (Not covered: a DROP INDEX there, whose table's capture triggers that snapshot
// does not show either.)
test("DDL in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot predates the table's add_table is refused, to run again", async () => {
  const env = await freshEnv("brk17_rr_snapshot");
  await env.source.query("create table t (id int primary key, v text); create table u (id int primary key, v text)");
  const c = await env.source.connect();
  try {
    for (const [iso, table] of [["repeatable read", "t"], ["serializable", "u"]]) {
      await c.query(`begin isolation level ${iso}; select 1`);
      await env.source.query("select dbsync.add_table($1, 'g')", [table]);
      const err = await sqlError(c, `alter table ${table} disable trigger all`);
      await c.query("rollback");
      assert.equal(err.code, "40001", err.message);
      assert.match(err.message, new RegExp(`public\\.${table} was added to replication after this transaction took its snapshot`));
      // Run again, it is checked: refused as in any session.
      assert.match((await sqlError(c, `alter table ${table} disable trigger all`)).message, /cannot be disabled/);
    }
  } finally {
    c.release();
  }
});
