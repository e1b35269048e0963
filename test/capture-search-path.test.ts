// Capture functions run SECURITY DEFINER (as the dbsync owner, a superuser here)
// without SET search_path: the writer's search_path is in force inside them. So
// every name they use must be qualified, or a table owner could put an operator,
// a function, a type or a table on the search_path and have it run, or read, with
// dbsync's rights (see sql/functions/_install_capture.sql). Here the owner shadows
// what the capture body uses (operators on int8, int4, text and text[], LIKE,
// built-in functions) in schemas before pg_catalog, and temporary tables and types
// named as the capture's transition tables and types; its sessions put them all on
// the search_path, pg_temp first, then write to plain, partitioned and inheritance
// tables with integer and timestamptz keys (the latter makes capture check the
// output settings). Nothing may run as the dbsync owner, and the target must end up
// equal to the source.
import assert from "node:assert/strict";
import { test } from "node:test";
import { queueOf, SOURCE_MAJOR, startSidecar, tableText, value } from "./helpers";
import { ranAs, scene } from "./security-escalation-helpers";

/** Traps for what capture evaluates, beyond the helpers' operators on int4, text and app.e. */
const MORE_TRAPS = ["app", "public"].flatMap((schema) => [
  ...[
    ["%", "int8", "int8", "int8", "int8mod"],
    [">=", "int8", "int4", "boolean", "int84ge"],
    ["=", "int8", "int8", "boolean", "int8eq"],
    ["<>", "int8", "int8", "boolean", "int8ne"],
    ["!~~", "text", "text", "boolean", "textnlike"],
    ["<>", "text[]", "text[]", "boolean", "array_ne"],
    ["=", "text[]", "text[]", "boolean", "array_eq"],
    ["<>", "timestamptz", "timestamptz", "boolean", "timestamptz_ne"],
  ].map(([op, l, r, ret, fn]) => {
    const f = `${schema}.trap_${fn}`;
    return `
      create function ${f}(${l}, ${r}) returns ${ret} language plpgsql volatile strict as $f$
      begin
          perform app.mark('operator ${op} (${l}, ${r})');
          return pg_catalog.${fn}($1, $2);
      end $f$;
      create operator ${schema}.${op} (leftarg = ${l}, rightarg = ${r}, procedure = ${f});`;
  }),
  ...[
    ["pg_sequence_last_value(regclass)", "int8", "pg_catalog.pg_sequence_last_value($1)"],
    ["current_setting(text, boolean)", "text", "pg_catalog.current_setting($1, $2)"],
  ].map(([sig, ret, body]) => `
      create function ${schema}.${sig} returns ${ret} language plpgsql volatile strict as $f$
      begin
          perform app.mark('function ${schema}.${sig.slice(0, sig.indexOf("("))}');
          return ${body};
      end $f$;`),
]);

/** As the owner, each trap fires when reached by an unqualified name (the test is not vacuous). */
const REACH: Array<[string, string]> = [
  ["select 5::int8 % 4", "operator % (int8, int8)"],
  ["select 5::int8 >= 4", "operator >= (int8, int4)"],
  ["select 'x'::text !~~ 'y%'", "operator !~~ (text, text)"],
  ["select array['a'] <> array['b']", "operator <> (text[], text[])"],
  ["select now() <> now()", "operator <> (timestamptz, timestamptz)"],
  ["select 'a'::text <> 'b'", "operator <> (text)"],
  ["select 1 <> 2", "operator <> (int4)"],
  ["select pg_sequence_last_value('app.s')", "function app.pg_sequence_last_value"],
];

const TABLES = ["app.plain", "app.ts", "app.part", "app.child"];

// PostgreSQL 10: no primary key on a partitioned table (one per partition, and
// key_columns for add_table), and no UPDATE that moves a row between partitions.
const PG10 = SOURCE_MAJOR < 11;
const PART_KEY = PG10 ? " (primary key (id))" : "";

const DDL = `
  create sequence app.s;
  create table app.plain (id int primary key, v text);
  create table app.ts (at timestamptz primary key, v text);
  create table app.part (id int not null${PG10 ? "" : " primary key"}, v text) partition by range (id);
  create table app.part_1 partition of app.part${PART_KEY} for values from (0) to (100);
  create table app.part_2 partition of app.part${PART_KEY} for values from (100) to (1000);
  create table app.parent (id int primary key, v text);
  create table app.child (primary key (id)) inherits (app.parent);`;

/** The temporary objects a hostile session adds: tables named as the transition tables, types named as capture's. */
const TEMP = `
  create temp table dbsync_new (id int, at timestamptz, k text[]);
  create temp table dbsync_old (id int, at timestamptz, k text[]);
  insert into dbsync_new values (666, '2001-01-01', '{666}');
  insert into dbsync_old values (667, '2001-01-02', '{667}');
  create temp table int8 (x int);
  create temp table int2 (x int);
  create temp table text (x int);
  create temp table events (x int)`;

const WRITES = [
  "insert into app.plain values (1, 'a'), (2, 'b'), (3, 'c')",
  "update app.plain set v = 'a2' where id = 1",
  "update app.plain set id = 20 where id = 2",
  "delete from app.plain where id = 3",
  "insert into app.ts values ('2020-01-01 10:00+00', 'a'), ('2020-01-02 10:00+00', 'b')",
  "update app.ts set at = at + interval '1 hour' where v = 'b'",
  "delete from app.ts where v = 'a'",
  "insert into app.part values (1, 'a'), (150, 'b'), (5, 'c')",
  PG10 ? "with d as (delete from app.part where id = 1 returning v) insert into app.part select 160, v from d" : "update app.part set id = 160 where id = 1",
  "update app.part set v = 'b2' where id = 150",
  "delete from app.part where id = 5",
  "truncate app.part_2",
  "insert into app.part values (7, 'd')",
  "insert into app.child values (1, 'a'), (2, 'b')",
  "update app.parent set v = 'through the parent' where id = 1",
  "update app.child set id = 30 where id = 2",
  "delete from app.parent where id = 30",
  "insert into app.plain values (4, 'd')",
  "truncate app.plain",
  "insert into app.plain values (5, 'e')",
];

test("capture under a hostile search_path and temporary objects: nothing runs as the dbsync owner, nothing is captured wrong", async () => {
  const s = await scene("capture_search_path", { operators: true });
  try {
    const { env } = s;
    await s.srcApp.query(MORE_TRAPS.join("\n"));
    await s.srcApp.query(DDL);
    await s.tgtApp.query(DDL);
    for (const t of TABLES) await env.source.query("select dbsync.add_table($1, 'g', key_columns => $2)", [t, PG10 && t === "app.part" ? ["id"] : null]);
    await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);

    const c = await s.srcApp.connect();
    try {
      await c.query("set search_path = pg_temp, app, public, pg_catalog");
      for (const [sql, tag] of REACH) {
        await c.query(sql);
        assert.deepEqual(ranAs(await s.marks(), "source", tag), [s.app], `\`${sql}\` should fire the trap "${tag}"`);
      }
      await s.clearMarks();
      await c.query(TEMP);
      // A DateStyle that makes capture pin the output settings of the timestamptz key.
      await c.query("set datestyle = 'SQL, DMY'");
      for (const sql of WRITES) await c.query(sql);
    } finally {
      c.release();
    }
    await s.assertNoEscalation("capture");
    assert.deepEqual(
      await value(env.source, `select array_agg(distinct k order by k) from dbsync.groups g cross join lateral (select e.row[1] as k from ${queueOf("g.group_id")} e where e.op = 'K') x where k in ('666', '667')`),
      null,
      "capture read the session's temporary tables instead of its transition tables",
    );

    const sc = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
    try {
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sc.output());
    } finally {
      await sc.stop();
    }
    for (const t of [...TABLES, "only app.parent"]) {
      assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t), t);
    }
    await s.assertNoEscalation("apply");
  } finally {
    await s.cleanup();
  }
});

test("names a table owner controls: a renamed type under a domain key, a column named as capture's variable, regclass keys under the writer's search_path", async () => {
  const s = await scene("capture_owner_names", {});
  try {
    const { env } = s;
    const ddl = `
      create table app.other (x int);
      create table app.dk (k app.de primary key, v text);
      create table app.vs (id int primary key, v_state int, v_saved int);
      create table app.rc (r regclass primary key, v text)`;
    await s.srcApp.query(ddl);
    await s.tgtApp.query(ddl);
    for (const t of ["app.dk", "app.vs", "app.rc"]) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
    await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);

    // Capture keeps its SQL as text: a type renamed after it was generated, and
    // another by the old name with a cast from the renamed one, must not be reached.
    await s.srcApp.query(`
      alter type app.e rename to e_old;
      create type app.e as enum ('x', 'y', 'z');
      create function app.e_convert(app.e_old) returns app.e language plpgsql as $f$
      begin
          perform app.mark('cast app.e_old -> app.e');
          return 'x';
      end $f$;
      create cast (app.e_old as app.e) with function app.e_convert(app.e_old)`);
    const c = await s.srcApp.connect();
    try {
      await c.query("select 'y'::app.de::app.e");
      assert.deepEqual(ranAs(await s.marks(), "source", "cast app.e_old -> app.e"), [s.app], "the cast is reachable");
      await s.clearMarks();
      await c.query("insert into app.dk values ('y', 'a'), ('z', 'b')");
      await c.query("update app.dk set k = 'x' where v = 'b'");
      await c.query("insert into app.vs values (1, 2, 3), (2, 3, 4)");
      await c.query("update app.vs set v_state = 5, id = 3 where id = 2");
      // The writer's search_path finds app.other by its bare name.
      await c.query("set search_path = app, public");
      await c.query("insert into app.rc values ('app.other', 'a'), ('pg_catalog.pg_class', 'b')");
      await c.query("update app.rc set v = 'a2' where r = 'app.other'::regclass");
    } catch (err) {
      await s.assertNoEscalation("capture");
      throw err;
    } finally {
      c.release();
    }
    await s.assertNoEscalation("capture");
    assert.deepEqual(
      await value(env.source, `select array_agg(distinct e.row[1] order by e.row[1]) from dbsync.tables t cross join ${queueOf("t.group_id")} e where t.relid = 'app.rc'::regclass and e.shape_id = (select max(shape_id) from dbsync.shapes s where s.table_id = t.table_id)`),
      ["app.other", "pg_class"],
      "regclass keys recorded by the writer's search_path",
    );
    const sc = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
    try {
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sc.output());
    } finally {
      await sc.stop();
    }
    for (const t of ["app.dk", "app.vs", "app.rc"]) {
      assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t), t);
    }
    await s.assertNoEscalation("apply");
  } finally {
    await s.cleanup();
  }
});
