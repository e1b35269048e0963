// Attacks on the merged whole of session 18 (helper "breaker" of session 19): ways to
// make the target differ from the source while dbsync says it is in sync, or to make
// someone act with dbsync's (or its DBA's) rights.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, SOURCE_MAJOR, startSidecar, TARGET_MAJOR, until, value } from "./helpers";
import { Client } from "pg";
import { createDatabase, TEMPLATE } from "./kit/databases";
import { runDbsync } from "./kit/dbsync";
import { failsWith, setup, strictlyConverged, synced } from "./kit/convergence";

// The bytes of each row's text, as UTF8 whatever the session's client_encoding.
const utf8Bytes = "select id, encode(convert_to(v, 'UTF8'), 'hex') as v from t order by id";

test("client_encoding defaults of the source and target databases (LATIN1, WIN1252): non-ASCII text reaches the target as it is", async () => {
  // Held: node-postgres asks for UTF8 at start-up, which wins over both databases' defaults.
  const env = await freshEnv("brk19_enc");
  await setup(env, "create table t (id int primary key, v text);", ["t"], { copyData: true });
  // Two characters whose LATIN1 bytes (C3 A9) are the UTF8 of one other character.
  await env.source.query("insert into t values (1, 'caf' || chr(233)), (2, chr(195) || chr(169))");
  for (const [p, enc] of [[env.source, "LATIN1"], [env.target, "WIN1252"]] as const) {
    await p.query(`alter database "${await value<string>(p, "select current_database()")}" set client_encoding = '${enc}'`);
  }
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    await env.source.query("insert into t values (3, 'na' || chr(239) || 've')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.deepEqual((await env.target.query(utf8Bytes)).rows, (await env.source.query(utf8Bytes)).rows);
  } finally {
    await sidecar.stop();
  }
});

test("names with line breaks in the comments of dbsync schema: piped into the target, they run nothing", async () => {
  // Any role that owns a type a replicated column uses, or a foreign key of a
  // replicated table to a table outside the group, names it; the DBA runs what
  // `dbsync schema` prints on the target as an administrator (README Quickstart).
  const env = await freshEnv("brk19_schema_nl");
  // (A line feed ends a comment, and so does a carriage return.)
  const evil = (what: string, eol: string) => `"${what}${eol}; create table pwned_${what} (); --"`;
  await env.source.query(`create type ${evil("type", "\n")} as (a int);
    create table other (id int primary key);
    create table t (id int primary key, c ${evil("type", "\n")}, o int, constraint ${evil("fk", "\r")} foreign key (o) references other);
    select dbsync.add_table('t', 'g')`);
  const r = await runDbsync(["schema", "--group", "g", "--source", env.sourceUrl]);
  assert.equal(r.code, 0, r.stderr);
  await env.target.query(`create type ${evil("type", "\n")} as (a int)`);
  await env.target.query(r.stdout);
  assert.deepEqual((await env.target.query("select relname from pg_class where relname like 'pwned%'")).rows, []);
});

test("a database name with a line break, in the header of dbsync schema: piped into psql on the target, it runs nothing", async () => {
  // Whoever may create databases names the source's; the DBA pipes the output into
  // psql on the target. (A ';' cannot reach the name through a URL, a psql
  // backslash command needs none.)
  const env = await freshEnv("brk19_schema_db");
  const url = await createDatabase(env.sourceUrl, "", { template: TEMPLATE, name: "app\n\\! touch pwned" });
  const source = new Client({ connectionString: url });
  await source.connect();
  try {
    await source.query("create table t (id int primary key); select dbsync.add_table('t', 'g')");
  } finally {
    await source.end();
  }
  const r = await runDbsync(["schema", "--source", url]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.split("\n").filter((l) => l.startsWith("\\")), [], "no line is a psql command");
  await env.target.query(r.stdout);
});

test("a table alone in its batches, read with its columns' own values: other column order and dropped columns on the target, a column added between batches, keys gone", async () => {
  // Held. The own-values lookup (3103e3e) lines up with the target by name.
  const env = await freshEnv("brk19_own_cols");
  await env.source.query(`create table t (id int primary key, gone1 int, f float8, n numeric, iv interval, ts timestamptz, a interval[], e text);
    alter table t drop column gone1`);
  await env.target.query(`create table t (e text, gone2 int, a interval[], extra text default 'target''s', ts timestamptz, iv interval, n numeric, f float8, id int primary key);
    alter table t drop column gone2`);
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const write = async (sql: string) => {
    const c = await env.source.connect();
    try {
      await c.query(`set datestyle = 'SQL, DMY'; set intervalstyle = 'sql_standard'; set timezone = 'Pacific/Chatham'; set extra_float_digits = -15; ${sql}`);
    } finally { c.release(true); }
  };
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await write(`insert into t select g, case g % 4 when 0 then 'NaN' when 1 then '-0' when 2 then '-Infinity' else 1/3::float8 end,
      case g % 3 when 0 then 'NaN' when 1 then 1.10 else 12345678901234567890.000100 end, make_interval(0, g, 0, g, 0, 0, -0.5),
      case when g % 5 = 0 then 'infinity' else '0044-03-15 10:00 BC'::timestamptz + g * interval '1 hour' end,
      '[0:1]={1 mon -1 day, -00:00:01}', 'e' || g from generate_series(1, 40) g`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await write("update t set f = f * -1, n = -n, iv = -iv where id % 2 = 0; delete from t where id % 7 = 0");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table t add column z date')");
    await write("update t set z = '05/06/2024' where id < 10; delete from t where id = 1; insert into t (id, z) values (1, '01/02/2003')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    const cols = "id, f, n, iv, ts, a, e, z";
    const read = async (p: typeof env.source) => (await p.query(`select ${cols} from t order by id`)).rows.map((r) => JSON.stringify(r));
    assert.deepEqual(await read(env.target), await read(env.source));
    assert.equal(await value(env.target, "select count(*)::int from t where extra is distinct from 'target''s'"), 0);
  } finally {
    await sidecar.stop();
  }
});

test("reg* values (regclass, regtype, regproc) name the source's objects on the target, whatever schemas the target's search_path finds first", async () => {
  // A role with CREATE on the target database makes a schema named after the
  // sidecar's target role ("$user", before public in the target session's path)
  // holding objects named as the source's in public. The reader printed them
  // unqualified (public is on its path), and the target read them as its own.
  const env = await freshEnv("brk19_regs");
  const objects = "create table orders (id int); create type mood as enum ('x'); create function f(int) returns int language sql as 'select 1'";
  const targetRole = await value<string>(env.target, "select current_user");
  await env.source.query(objects);
  await env.target.query(`${objects}; create schema ${targetRole}; set search_path = ${targetRole}; ${objects}; reset search_path`);
  await setup(env, "create table public.t (id int primary key, c regclass, ty regtype, p regproc, cs regclass[])", ["public.t"], { copyData: true });
  const row = "'public.orders'::regclass, 'public.mood'::regtype, 'public.f'::regproc, array['public.orders'::regclass, 'pg_class']";
  await env.source.query(`insert into public.t values (1, ${row})`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    await env.source.query(`insert into public.t values (2, ${row})`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    const named = "select id, c::oid = 'public.orders'::regclass::oid as c, ty::oid = 'public.mood'::regtype::oid as ty, " +
      "p::oid = 'public.f'::regproc::oid as p, cs = array['public.orders'::regclass, 'pg_catalog.pg_class'] as cs from public.t order by id";
    assert.deepEqual((await env.target.query(named)).rows, (await env.source.query(named)).rows);
    // Verification reads both sides the same way: equal, then one value moved to the
    // other schema's object is a difference (it printed as the same text before).
    const verified = async () => {
      const id = await value<string>(env.source, "select dbsync.verify_table('s', 'public.t')::text");
      await until("the verification", async () => (await value(env.source, "select state from dbsync.verifications where verification_id = $1", [id])) === "done", 60_000);
      return value<number>(env.source, "select differing_count::int from dbsync.verifications where verification_id = $1", [id]);
    };
    assert.equal(await verified(), 0);
    await env.target.query(`update public.t set c = '${targetRole}.orders' where id = 1`);
    assert.equal(await verified(), 1);
  } finally {
    await sidecar.stop();
  }
});

test("MERGE of PostgreSQL 17: WHEN NOT MATCHED BY SOURCE (delete, update of the key), RETURNING in a writable CTE, on a plain and a partitioned table, rows moving partition", { skip: SOURCE_MAJOR < 17 && "MERGE ... NOT MATCHED BY SOURCE comes with 17" }, async () => {
  const env = await freshEnv("brk19_merge17");
  await setup(env, `create table t (id int primary key, v text);
    create table p (id int not null, k int not null, v text, primary key (id, k)) partition by list (k);
    create table p1 partition of p for values in (1); create table p2 partition of p for values in (2);
    create table log (id int primary key, what text)`, ["t", "p", "log"]);
  await env.source.query("insert into t select g, 'v' || g from generate_series(1, 20) g; insert into p select g, 1 + g % 2, 'p' || g from generate_series(1, 20) g");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    await env.source.query(`merge into t using (select g as id from generate_series(5, 30) g) s on t.id = s.id
      when matched and t.id % 3 = 0 then update set v = 'm' || s.id
      when not matched by target then insert values (s.id, 'new')
      when not matched by source and t.id < 3 then delete
      when not matched by source then update set id = t.id + 100`);
    await env.source.query(`with m as (merge into p using (select g as id, 1 + (g + 1) % 2 as k from generate_series(10, 25) g) s on p.id = s.id
        when matched then update set k = s.k, v = 'moved'
        when not matched by target then insert values (s.id, s.k, 'new')
        when not matched by source then delete
        returning merge_action() as a, p.id)
      insert into log select id, a from m`);
    await env.source.query(`begin; savepoint a; merge into t using (values (7), (8)) s(id) on t.id = s.id when matched then delete;
      rollback to savepoint a; merge into t using (values (9)) s(id) on t.id = s.id when matched then update set id = 1; commit`);
    await strictlyConverged(env, ["t", "p", "log"]);
  } finally {
    await sidecar.stop();
  }
});

test("a column the source generates is a plain column on the target (a target on PostgreSQL 11, a table made by hand): an error that says so, not a column that stays as the target has it", {
  skip: Math.min(SOURCE_MAJOR, TARGET_MAJOR) < 12 && "generated columns come with 12",
}, async () => {
  const env = await freshEnv("brk19_generated");
  const both = "create table t (id int primary key, v int, g int";
  await env.source.query(`${both} generated always as (v * 2) stored)`);
  await env.target.query(`${both})`);
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  await env.source.query("insert into t (id, v) values (1, 1), (2, 2)");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await failsWith(env, /target table "public"\."t" has column\(s\) "g" that the source generates, as plain columns/);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '1 s')"), false);
    // Made generated there as on the source: the copy goes on, and so does the stream.
    await env.target.query("alter table t drop column g; alter table t add column g int generated always as (v * 2) stored");
    await env.source.query("update t set v = 10 where id = 1; insert into t (id, v) values (3, 3)");
    await strictlyConverged(env, ["t"]);
    assert.deepEqual((await env.target.query("select id, g from t order by id")).rows, [{ id: 1, g: 20 }, { id: 2, g: 4 }, { id: 3, g: 6 }]);
    // Made plain again by hand, while the table streams: the next batch stops.
    await env.target.query("alter table t drop column g; alter table t add column g int");
    await env.source.query("update t set v = 5 where id = 2");
    await failsWith(env, /has column\(s\) "g" that the source generates/);
  } finally {
    await sidecar.stop();
  }
});
