// Hostile names: group, subscription, schema, table, column and type names full of
// quotes, semicolons, backslashes, percent signs, dollar quotes, unicode, spaces and
// reserved words are names and nothing else. Every path that builds SQL from a name
// runs here: capture triggers (statement- and row-level, partition TRUNCATE), the
// initial copy, the set-wise apply (stage table, key casts), error reporting and the
// status views. A canary table `t` must survive on both sides and no `pwned` table
// may appear anywhere.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool, escapeIdentifier as q } from "pg";
import { createLog } from "../src/log";
import { runVerify } from "../src/verify/jobs";
import { attachedKey, Env, freshEnv, parentKey, partitionKey, partitionKeyColumns, Side, rows, SOURCE_MAJOR, startSidecar, tableText, until, value } from "./helpers";

const log = createLog(process.env.DBSYNC_LOG_LEVEL ?? "warn");

/** dbsync.verify_table, run by the verify job, with tiny chunks so key-range bounds are used. */
async function verify(env: Env, sub: string, tbl: string, repair: boolean) {
  const id = Number(await value(env.source, "select dbsync.verify_table($1, $2, $3)", [sub, tbl, repair]));
  const outcome = await runVerify(env.sourceUrl, env.source, id, log, { chunkRows: 2, waitTimeoutMs: 20_000 });
  const state = async () =>
    (await env.source.query("select state, error, differing_count::int as differing, rows_repaired::int as repaired from dbsync.verifications where verification_id = $1", [id])).rows[0];
  // The running sidecar's verify job may have taken it first: then its outcome counts.
  if (outcome === "busy" || outcome === "nothing") await until(`verification ${id} by the sidecar`, async () => ["done", "error"].includes((await state()).state), 60_000);
  const v = await state();
  assert.equal(outcome === "busy" || outcome === "nothing" ? v.state : outcome, "done", `verify ${tbl}: ${JSON.stringify(v)}`);
  return v as { differing: number; repaired: number };
}

const SCHEMA = `x"; drop table t; --`;
const S = q(SCHEMA);
const GROUP = `g'; select pg_sleep(10); --`;
const SUB = `s\\"; drop`;

/** Each table: its qualified name, its DDL, and a way to fill it. */
const T1 = `${S}.${q("Order Items")}`;
const T2 = `public.${q("window")}`;
const T3 = `${S}.${q('Ünï "part" %s %I $1')}`;
const T3P1 = `${S}.${q("p 1; %s")}`;
const T3_KEY = ["k%s", "id; %I"];
const T3P2 = `${S}.${q('p"2 $$')}`;
const T4 = `${S}.${q("uniq key; drop table t")}`;
const MOOD = `${S}.${q('mood"; create table pwned(); --')}`;
const TABLES = [T1, T2, T3, T4];

/** The tables and their names on `side`. */
const ddl = (side: Side) => `
  create table t (id int primary key);
  insert into t values (42);
  create schema ${S};
  create table ${T1} (
    ${q("select")} int not null,
    ${q('a"b')} text not null,
    ${q("x'y")} text,
    ${q("$1")} int,
    ${q("ünïcödé 🎉")} text,
    ${q("lateral")} boolean,
    ${q('a"; create table pwned(); --')} text,
    ${q("back\\slash\\")} text,
    ${q("100%s %I %L %%")} text,
    ${q("$$ $f$ $b$ $1$")} text,
    ${q("Order")} text,
    ${q("x".repeat(63))} int,
    primary key (${q("select")}, ${q('a"b')})
  );
  create table ${T2} (
    ${q("x'y; drop table t; --")} int primary key,
    ${q("order")} text,
    ${q("user")} text,
    ${q("from")} text,
    ${q("returning")} int
  );
  create table ${T3} (
    ${q("k%s")} int not null,
    ${q("id; %I")} int not null,
    ${q("v$1 %L")} text,
    ${q("o.%I::text")} text${parentKey(T3_KEY.map(q).join(", "), side)}
  ) partition by list (${q("k%s")});
  create table ${T3P1} partition of ${T3}${partitionKey(T3_KEY.map(q).join(", "), side)} for values in (1);
  create table ${T3P2} partition of ${T3}${partitionKey(T3_KEY.map(q).join(", "), side)} for values in (2);
  create type ${MOOD} as enum ('a''b', 'c"d', 'e\\f');
  create table ${T4} (
    ${q("m ood")} ${MOOD} not null,
    ${q("n\\")} int not null,
    ${q("val")} text
  );
  create unique index ${q("uk; drop table t")} on ${T4} (${q("m ood")}, ${q("n\\")});
`;

const ODD_VALUES = [
  `'; drop table t; --`,
  `"quoted" \\N \\\\ back\\slash`,
  "tab\there\nnewline\r\n",
  "ünïcödé 🎉 ☃",
  "$$ $f$ %s %I %L",
  "",
];

async function fill(p: Pool, from: number, to: number) {
  for (let i = from; i <= to; i++) {
    const v = ODD_VALUES[i % ODD_VALUES.length];
    await p.query(`insert into ${T1} values ($1, $2, $3, $4, $5, $6, $3, $3, $3, $3, $2, $1)`, [
      i,
      `k"${i}'`,
      v,
      i * 2,
      v,
      i % 2 === 0,
    ]);
    await p.query(`insert into ${T2} values ($1, $2, $2, $2, $1)`, [i, v]);
    await p.query(`insert into ${T3} values ($1, $2, $3, $3)`, [1 + (i % 2), i, v]);
    await p.query(`insert into ${T4} values ($1, $2, $3)`, [["a'b", 'c"d', "e\\f"][i % 3], i, v]);
  }
}

async function assertSame(env: Env) {
  for (const tbl of TABLES) {
    const [a, b] = await Promise.all([tableText(env.source, tbl), tableText(env.target, tbl)]);
    assert.deepEqual(b, a, `${tbl} differs`);
  }
}

/** The canary lives and no injected statement left anything behind, on both sides. */
async function assertNothingElseHappened(env: Env) {
  for (const p of [env.source, env.target]) {
    assert.deepEqual(await rows(p, "select id from public.t"), [{ id: 42 }]);
    assert.equal(await value(p, "select count(*)::int from pg_class where relname = 'pwned'"), 0);
  }
}

test("hostile identifiers replicate as names through copy, stream, key changes and TRUNCATE", async () => {
  const env = await freshEnv("security_names");
  await env.source.query(ddl("source"));
  await env.target.query(ddl("target"));
  await fill(env.source, 1, 12);

  const started = Date.now();
  for (const tbl of [T1, T2]) await env.source.query("select dbsync.add_table($1, $2)", [tbl, GROUP]);
  await env.source.query("select dbsync.add_table($1, $2, $3)", [T3, GROUP, partitionKeyColumns(T3_KEY)]);
  await env.source.query("select dbsync.add_table($1, $2, $3)", [T4, GROUP, ["m ood", "n\\"]]);
  await env.source.query("select dbsync.add_subscription($1, $2, $3, copy_data => true)", [SUB, GROUP, env.targetUrl]);
  assert.ok(Date.now() - started < 5000, "a name was executed (pg_sleep)");
  assert.deepEqual(await rows(env.source, "select name from dbsync.groups"), [{ name: GROUP }]);

  // Every capture function compiles (the validator parses the generated plpgsql).
  const fns = await rows<{ proname: string }>(
    env.source,
    `select p.proname, plpgsql_validator(p.oid)::text from pg_proc p
      where p.pronamespace = 'dbsync'::regnamespace and p.proname ~ '^capture_'`,
  );
  assert.ok(fns.length >= 4, `capture functions: ${fns.map((f) => f.proname)}`);
  // And the triggers sit on the tables and partitions we named (insert, update, the
  // row trigger for a changed key, delete, truncate, the row trigger of replica mode and its statement mark and unmark).
  for (const tbl of [T1, T2, T4]) {
    assert.equal(await value(env.source, "select count(*)::int from pg_trigger where tgrelid = $1::regclass and tgname ~ '^dbsync_capture'", [tbl]), 8);
  }

  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [SUB]), true, sidecar.output());
    await assertSame(env);
    assert.equal(await value(env.target, `select count(*)::int from ${T1}`), 12);

    // Streaming: inserts, updates, deletes, key changes (incl. across partitions), TRUNCATE.
    await fill(env.source, 13, 20);
    await env.source.query(`update ${T1} set ${q("x'y")} = $1, ${q("lateral")} = not ${q("lateral")} where ${q("select")} % 3 = 0`, [
      ODD_VALUES[0],
    ]);
    await env.source.query(`update ${T1} set ${q("select")} = ${q("select")} + 1000 where ${q("select")} % 4 = 0`);
    await env.source.query(`update ${T1} set ${q('a"b')} = ${q('a"b')} || '"; --' where ${q("select")} % 5 = 0`);
    await env.source.query(`delete from ${T1} where ${q("select")} % 7 = 0`);
    await env.source.query(`update ${T2} set ${q("x'y; drop table t; --")} = -${q("x'y; drop table t; --")} where ${q("x'y; drop table t; --")} % 2 = 0`);
    await env.source.query(`update ${T2} set ${q("order")} = 'o' where ${q("x'y; drop table t; --")} % 3 = 0`);
    await env.source.query(`delete from ${T2} where ${q("x'y; drop table t; --")} = 5`);
    // Moves partitions (before 11 an UPDATE cannot: a delete and an insert in one statement).
    const [k, id, ...rest] = ["k%s", "id; %I", "v$1 %L", "o.%I::text"].map(q);
    await env.source.query(SOURCE_MAJOR >= 11
      ? `update ${T3} set ${k} = 3 - ${k} where ${id} % 3 = 0`
      : `with d as (delete from ${T3} where ${id} % 3 = 0 returning *)
         insert into ${T3} (${[k, id, ...rest].join(", ")}) select 3 - ${k}, ${[id, ...rest].join(", ")} from d`);
    await env.source.query(`update ${T3} set ${q("id; %I")} = ${q("id; %I")} + 100 where ${q("id; %I")} % 5 = 0`);
    await env.source.query(`delete from ${T3} where ${q("id; %I")} = 7`);
    await env.source.query(`update ${T4} set ${q("m ood")} = 'e\\f' where ${q("n\\")} % 2 = 0`);
    await env.source.query(`update ${T4} set ${q("n\\")} = ${q("n\\")} + 500, val = 'moved' where ${q("n\\")} % 3 = 0`);
    await env.source.query(`delete from ${T4} where ${q("n\\")} = 1`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [SUB]), true, sidecar.output());
    await assertSame(env);

    // TRUNCATE: a whole table, and one partition of the partitioned table.
    await env.source.query(`begin; truncate ${T1}; insert into ${T1} (${q("select")}, ${q('a"b')}) values (1, '"'); commit`);
    await env.source.query(`truncate ${T3P1}`);
    await env.source.query(`truncate ${T4}`);
    await fill(env.source, 30, 31);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [SUB]), true, sidecar.output());
    await assertSame(env);
    assert.equal(await value(env.target, `select count(*)::int from ${T3P1}`), await value(env.source, `select count(*)::int from ${T3P1}`));

    const st = await rows<{ name: string; group_name: string; state: string; last_error: string | null }>(
      env.source,
      "select name, group_name, state, last_error from dbsync.status",
    );
    assert.deepEqual(st, [{ name: SUB, group_name: GROUP, state: "streaming", last_error: null }]);
    const ts = await rows<{ table_name: string; state: string }>(
      env.source,
      "select table_name, state from dbsync.table_status order by table_name",
    );
    const expected = await rows<{ table_name: string }>(
      env.source,
      "select format('%I.%I', n.nspname, c.relname) as table_name from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = any ($1::regclass[]) order by 1",
      [TABLES],
    );
    assert.deepEqual(ts, expected.map((e) => ({ table_name: e.table_name, state: "streaming" })));

    // verify_table compares (and repairs) hostile names by key ranges.
    for (const tbl of TABLES) assert.equal((await verify(env, SUB, tbl, false)).differing, 0, tbl);
    await env.target.query(`delete from ${T1} where ${q("select")} = 30`);
    await env.target.query(`update ${T4} set val = 'drift' where ${q("n\\")} = 31`);
    await env.target.query(`insert into ${T2} values (-1000, 'extra')`);
    for (const tbl of [T1, T2, T4]) assert.equal((await verify(env, SUB, tbl, true)).differing, 1, tbl);
    await assertSame(env);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  await assertNothingElseHappened(env);

  // Removing the tables drops the triggers and capture functions by name.
  for (const tbl of TABLES) await env.source.query("select dbsync.remove_table($1)", [tbl]);
  assert.equal(await value(env.source, "select count(*)::int from pg_trigger where tgname ~ '^dbsync_capture'"), 0);
  assert.equal(
    await value(env.source, "select count(*)::int from pg_proc where pronamespace = 'dbsync'::regnamespace and proname ~ '^capture_'"),
    0,
  );
  await env.source.query("select dbsync.drop_subscription($1)", [SUB]);
  await assertNothingElseHappened(env);
});

test("a missing target table with a hostile name is reported on that table, and resumes once created", async () => {
  const env = await freshEnv("security_names_missing");
  const missing = `${S}.${q('Missing "one"; drop table t; --')}`;
  const ddlMissing = `create table ${missing} (${q('i"d')} int primary key, ${q("v;")} text)`;
  await env.source.query(ddl("source"));
  await env.target.query(ddl("target"));
  await env.source.query(ddlMissing);
  await env.source.query("select dbsync.add_table($1, $2)", [T2, GROUP]);
  await env.source.query("select dbsync.add_table($1, $2)", [missing, GROUP]);
  await env.source.query("select dbsync.add_subscription($1, $2, $3, copy_data => false)", [SUB, GROUP, env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await env.source.query(`insert into ${missing} values (1, $1)`, [ODD_VALUES[0]]);
    await env.source.query(`insert into ${T2} values (1, 'x')`);
    await until("error in status", async () =>
      (await value<string | null>(env.source, "select last_error from dbsync.status")) !== null, 60_000);
    const st = (await env.source.query("select * from dbsync.status")).rows[0];
    assert.equal(st.state, "error");
    assert.equal(st.last_error_sqlstate, "42P01");
    assert.equal(st.last_error_table, missing);
    const ts = await rows<{ table_name: string; state: string }>(
      env.source,
      "select table_name, state from dbsync.table_status order by state, table_name",
    );
    assert.deepEqual(
      ts.map((r) => r.state),
      ["error", "streaming"],
      JSON.stringify(ts),
    );
    assert.equal(ts[0].table_name, await value(env.source, "select format('%I.%I', $1::text, $2::text)", [SCHEMA, 'Missing "one"; drop table t; --']));

    await env.target.query(ddlMissing);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [SUB]), true, sidecar.output());
    assert.deepEqual(await tableText(env.target, missing), await tableText(env.source, missing));
    assert.deepEqual(await tableText(env.target, T2), await tableText(env.source, T2));
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  await assertNothingElseHappened(env);
});

test("columns named like dbsync's own aliases and stage columns (dbsync_op, e, row, op, n, o, t, s) replicate", async () => {
  const env = await freshEnv("security_names_internal");
  const tbl = `public.${q("dbsync_stage_1")}`;
  const ddl = `create table ${tbl} (
      ${q("dbsync_op")} text, e int not null, ${q("row")} text, op text, n text, o text, t text, s text,
      ev_id int, shape_id int, ${q("TG_OP")} text, g text, primary key (e))`;
  // The verify job's own column aliases as key columns.
  const vk = `create table vk (dbsync_k int, dbsync_h text, c text, x text, primary key (dbsync_k, dbsync_h))`;
  await env.source.query(ddl + ";" + vk);
  await env.target.query(ddl + ";" + vk);
  await env.source.query(`insert into ${tbl} select 'D', g, 'r', 'U', 'n', 'o', 't', 's', 1, 2, 'TRUNCATE', 'g' from generate_series(1, 5) g`);
  await env.source.query(`insert into vk select g, g::text, 'c', 'x' from generate_series(1, 7) g`);
  await env.source.query("select dbsync.add_table($1, 'g')", [tbl]);
  await env.source.query("select dbsync.add_table('vk', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    await env.source.query(`update ${tbl} set ${q("dbsync_op")} = 'U', e = e + 10 where e % 2 = 0`);
    await env.source.query(`delete from ${tbl} where e = 1`);
    await env.source.query(`insert into ${tbl} (e, ${q("dbsync_op")}) values (100, null)`);
    const ok = await value(env.source, "select dbsync.wait_for_sync('s', '60 s')");
    const st = (await env.source.query("select state, last_error from dbsync.status")).rows[0];
    assert.equal(ok, true, `not in sync: ${JSON.stringify(st)}`);
    assert.deepEqual(await tableText(env.target, tbl), await tableText(env.source, tbl));
    assert.deepEqual(await tableText(env.target, "vk"), await tableText(env.source, "vk"));
    await env.target.query("update vk set c = 'drift' where dbsync_k = 3");
    assert.equal((await verify(env, "s", "vk", true)).differing, 1);
    assert.equal((await verify(env, "s", tbl, false)).differing, 0);
    assert.deepEqual(await tableText(env.target, "vk"), await tableText(env.source, "vk"));
  } finally {
    await sidecar.stop();
  }
});

test("a column named %3$s cannot turn a partition's name into SQL run by the capture trigger", async () => {
  // The partition-TRUNCATE capture builds its statement with format() at run time;
  // a % in a captured column name must not become a format specifier that splices
  // the (attacker-chosen) partition name into SQL run as the dbsync owner.
  const env = await freshEnv("security_names_format");
  // %3$s would splice the partition's name; %1$s then resets format()'s argument
  // counter so that the statement's own %I.%I find their arguments.
  const parted = (side: Side) => `create table parted (${q("%3$s")} int not null, ${q("%1$s")} int, k int not null${parentKey(`${q("%3$s")}, k`, side)}) partition by list (k)`;
  const evil = `x"::text]from(select 1 x)o;create table public.pwned()--`;
  const leaf = (side: Side) => `create table ${q(evil)} partition of parted${partitionKey(`${q("%3$s")}, k`, side)} for values in (1)`;
  for (const side of ["source", "target"] as const) {
    await env[side].query(parted(side));
    await env[side].query(leaf(side));
  }
  await env.source.query("insert into parted values (1, 1, 1), (2, 2, 1)");
  await env.source.query("select dbsync.add_table('parted', 'g', $1)", [partitionKeyColumns(["%3$s", "k"])]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    let truncateError: unknown;
    await env.source.query(`truncate ${q(evil)}`).catch((e) => (truncateError = e));
    assert.equal(await value(env.source, "select count(*)::int from pg_class where relname = 'pwned'"), 0, "injected SQL ran on the source");
    assert.equal(truncateError, undefined, `TRUNCATE of a partition failed: ${truncateError}`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    assert.deepEqual(await tableText(env.target, "parted"), await tableText(env.source, "parted"));
  } finally {
    await sidecar.stop();
  }
});

/** A role that owns schema appz, and a pool logged in as it (trust auth). */
async function ownerRole(env: Env) {
  const role = `dbsync_owner_${Math.random().toString(16).slice(2, 10)}`;
  await env.source.query(`create role ${role} login; create schema appz authorization ${role}`);
  const u = new URL(env.sourceUrl);
  u.username = role;
  return new Pool({ connectionString: u.toString(), max: 1 });
}

test("a table owner cannot run SQL as the dbsync owner by adding a %-named column and naming a partition", async () => {
  // The DDL event trigger re-generates capture, as the dbsync owner, for the owner's
  // ALTER TABLE; the owner picks every name involved.
  const env = await freshEnv("security_names_escalation");
  const owner = await ownerRole(env);
  try {
    const evil = `x"::text]from(select 1 x)o;create table dbsync.p()--`;
    await owner.query(`create table appz.parted (id int not null, k int not null${parentKey("id, k", "source")}) partition by list (k)`);
    await owner.query(`create table appz.${q(evil)} partition of appz.parted${partitionKey("id, k", "source")} for values in (2)`);
    await env.source.query("select dbsync.add_table('appz.parted', 'g', $1)", [partitionKeyColumns(["id", "k"])]);
    assert.equal(await value(env.source, "select count(*)::int from pg_event_trigger where evtname = 'dbsync_ddl_watch'"), 1);
    await owner.query(`alter table appz.parted add column ${q("%3$s")} int, add column ${q("%1$s")} int`);
    await owner.query("insert into appz.parted (id, k) values (1, 2)");
    await owner.query(`truncate appz.${q(evil)}`).catch(() => undefined);
    assert.equal(await value(env.source, "select to_regclass('dbsync.p') is null"), true, "the owner's SQL ran as the dbsync owner");
  } finally {
    await owner.end();
  }
});

test("a table owner who is not superuser can still create and attach partitions of a captured table", async () => {
  // PostgreSQL checks EXECUTE on the trigger function when it clones the capture's
  // row trigger to a new partition, for the role creating the partition.
  const env = await freshEnv("security_names_owner_partitions");
  const owner = await ownerRole(env);
  try {
    await owner.query(`create table appz.parted (id int not null, k int not null${parentKey("id, k", "source")}) partition by list (k)`);
    await owner.query(`create table appz.p1 partition of appz.parted${partitionKey("id, k", "source")} for values in (1)`);
    await env.source.query("select dbsync.add_table('appz.parted', 'g', $1)", [partitionKeyColumns(["id", "k"])]);
    await owner.query(`create table appz.p2 partition of appz.parted${partitionKey("id, k", "source")} for values in (2)`);
    await owner.query(`create table appz.p3 (id int not null, k int not null${attachedKey("id, k", "source")})`);
    await owner.query("alter table appz.parted attach partition appz.p3 for values in (3)");
    await owner.query("insert into appz.parted values (1, 1), (2, 2), (3, 3)");
    assert.equal(
      await value(env.source, "select count(*)::int from dbsync.events e join dbsync.shapes s using (shape_id) join dbsync.tables t using (table_id) where t.relid = 'appz.parted'::regclass"),
      3,
    );
    // The capture function stays out of reach of anybody else.
    assert.equal(await value(env.source, "select has_function_privilege('public', 'dbsync.capture_1()', 'execute')"), false);
  } finally {
    await owner.end();
  }
});
