// Capture fidelity. Capture records which keys changed (the sidecar reads the rows
// themselves at the batch's snapshot; the fidelity of their values, end to end, is
// test/fidelity-e2e.test.ts). So here: a key of every type family that can be one,
// with edge values, written by a session whose settings change the types' output
// text, is captured as text that reads back as the very same key, and the sidecar's
// own lookup finds its row by it. Also: which keys INSERT, UPDATE (also of the key),
// upserts, DELETE and TRUNCATE queue.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { Client, Pool } from "pg";
import { PINNED, connectWith, createSql } from "./fixtures/all-types";
import { compat, freshEnv, queueOf, rows, value } from "./helpers";

let source: Pool;
let sourceUrl: string;
let pgVersion: number;

const connect = (settings: string[]) => connectWith(sourceUrl, settings);

// The writer's settings: each changes the output text of some key type.
// (Capture pins DateStyle, IntervalStyle and extra_float_digits for the keys whose
// text depends on them; the text of timestamptz under another TimeZone and of bytea
// in escape format reads back as the same value, so those need no pinning.)
const WRITER = [
  "set datestyle = 'SQL, DMY'",
  "set intervalstyle = 'sql_standard'",
  "set extra_float_digits = 0",
  "set timezone = 'Asia/Kolkata'",
  "set bytea_output = 'escape'",
];

interface KeyType {
  /** Table k_<name> has a key column k of this type. */
  name: string;
  type: string;
  /** Distinct keys as SQL expressions, evaluated under the WRITER settings. */
  values: string[];
  /** From this server version on. */
  since?: number;
}

const KPAIR = "public.kpair";
const KEY_TYPES: KeyType[] = [
  { name: "i2", type: "int2", values: ["-32768", "32767", "0"] },
  { name: "i4", type: "int4", values: ["-2147483648", "2147483647", "0"] },
  { name: "i8", type: "int8", values: ["-9223372036854775808", "9223372036854775807", "0"] },
  {
    name: "num",
    type: "numeric",
    values: [
      "'NaN'",
      "'-0.0'",
      "'-123456789012345678901234567890.123456789012345678901234567890123456789'",
      "'0.000000000000000000000000000000000000001'",
      "'1.10'",
    ],
  },
  { name: "numinf", type: "numeric", values: ["'Infinity'", "'-Infinity'", "'1.10'"], since: 140000 },
  { name: "nump", type: "numeric(40,20)", values: ["'12345678901234567890.12345678901234567890'", "'-0.00000000000000000001'"] },
  {
    name: "f4",
    type: "float4",
    values: ["'-0'", "'NaN'", "'Infinity'", "'-Infinity'", "'1e-45'", "'3.4028235e38'", "'0.1'", "'-1.17549435e-38'"],
  },
  {
    name: "f8",
    type: "float8",
    values: [
      "'-0'",
      "'NaN'",
      "'Infinity'",
      "'-Infinity'",
      "'4.9e-324'",
      "'1e-310'",
      "'1.7976931348623157e308'",
      "0.1::float8 + 0.2::float8",
      "'0.1'",
    ],
  },
  { name: "mon", type: "money", values: ["'-92233720368547758.08'", "'0'", "'12.34'"] },
  {
    name: "txt",
    type: "text",
    values: [
      String.raw`E'it''s "quoted" \\ back\\slash\nnew line\ttab \r ünïcødé 🐘 {a,b} (x,y)'`,
      "''",
      "'NULL'",
      String.raw`E'\\N'`,
      "' sp '",
      "'a,b'",
      String.raw`E'\\x00ff'`,
    ],
  },
  { name: "vc", type: "varchar(12)", values: ["' x y '", "''", "'NULL'"] },
  { name: "ch", type: "char(5)", values: ["'ab'", "''", "'abcde'"] },
  { name: "nm", type: "name", values: [`'Odd "name"'`, "''"] },
  { name: "ba", type: "bytea", values: [String.raw`'\x00ff5c27225c6e0a'::bytea`, "''::bytea", String.raw`'\x5c'::bytea`] },
  { name: "bo", type: "bool", values: ["true", "false"] },
  {
    name: "d",
    type: "date",
    values: ["'0044-03-15 BC'", "'4714-11-24 BC'", "'infinity'", "'-infinity'", "'13/01/2021'", "'5874897-12-31'"],
  },
  {
    name: "ts",
    type: "timestamp",
    values: [
      "'2000-02-29 23:59:59.999999'",
      "'infinity'",
      "'-infinity'",
      "'4714-11-24 00:00:00 BC'",
      "'1999-12-31 23:59:60'",
      "'13/01/2021 10:00:00.5'",
    ],
  },
  {
    name: "tstz",
    type: "timestamptz",
    values: [
      "'4714-11-24 00:00:00+00 BC'",
      "'0001-01-01 00:00:00 BC'",
      "'-infinity'",
      "'infinity'",
      "'2021-03-14 02:30:00'",
      "'2020-06-01 12:00:00.123456+02'",
      "'13/01/2021 10:00:00'",
    ],
  },
  { name: "tm", type: "time", values: ["'24:00:00'", "'00:00:00'", "'23:59:59.999999'"] },
  { name: "ttz", type: "timetz", values: ["'23:59:59.999999-05:30:15'", "'00:00:00+15:59'", "'12:00:00+00'"] },
  {
    name: "iv",
    type: "interval",
    values: [
      "'-1 2:03:04.5'",
      "'1 year 2 months -3 days 04:05:06.000001'",
      "'-178000000 years'",
      "'178000000 years'",
      "'P1Y2M3DT4H5M6.7S'",
      "'0'",
    ],
  },
  { name: "ivinf", type: "interval", values: ["'infinity'", "'-infinity'", "'1 day'"], since: 170000 },
  { name: "u", type: "uuid", values: ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"] },
  { name: "ip", type: "inet", values: ["'2001:db8::1/64'", "'10.1.2.3'", "'10.1.2.3/8'", "'::ffff:1.2.3.4'"] },
  { name: "cid", type: "cidr", values: ["'10.0.0.0/8'", "'::/0'"] },
  { name: "mac", type: "macaddr", values: ["'08:00:2b:01:02:03'"] },
  { name: "mac8", type: "macaddr8", values: ["'08:00:2b:01:02:03:04:05'"] },
  { name: "bt", type: "bit(4)", values: ["B'1010'", "B'0000'"] },
  { name: "vb", type: "varbit", values: ["B''", "B'10101010101'"] },
  { name: "o", type: "oid", values: ["4294967295", "0"] },
  { name: "lsn", type: "pg_lsn", values: ["'FFFFFFFF/FFFFFFFF'", "'0/0'"] },
  { name: "jb", type: "jsonb", values: [`'{"b": [1, {"c": null}], "a": "x\\"y"}'`, "'null'", "'[]'", `'"\\u00e9"'`] },
  { name: "r4", type: "int4range", values: ["'[1,10)'", "'empty'"] },
  { name: "rtz", type: "tstzrange", values: ["'[2020-01-01 00:00+00, infinity)'", "'(,)'", "'[13/01/2021 10:00, 14/01/2021)'"] },
  { name: "en", type: "public.mood", values: ["'sad'", "'happy'"] },
  { name: "dm", type: "public.posint", values: ["1", "42", "2147483647"] },
  { name: "dmts", type: "public.stamp", values: ["'2020-06-01 12:00+02'", "'infinity'"] },
  { name: "dmen", type: "public.moodd", values: ["'sad'", "'ok'"] },
  // Domains over composite types come with PostgreSQL 11.
  {
    name: "dmcp",
    type: "public.kpaird",
    values: ["row(1, 'a', null, null, null, null, null)", "row(2, 'b', null, null, null, null, null)"],
    since: 110000,
  },
  {
    name: "ia",
    type: "int[]",
    values: ["'[0:2]={1,2,3}'", "'{1,2,3}'", "'[-1:0][2:3]={{1,2},{3,NULL}}'", "'{}'", "'{{{1},{2}},{{3},{4}}}'"],
  },
  {
    name: "ta",
    type: "text[]",
    values: [
      String.raw`array['a"b', null, 'NULL', E'c\\d', '', ' sp ', '{x,y}', E'line\nbreak']`,
      "'{}'",
      "array[null]::text[]",
    ],
  },
  { name: "f8a", type: "float8[]", values: ["array['-0', 'NaN', '0.1', '1e-310']::float8[]", "'{}'"] },
  {
    name: "tza",
    type: "timestamptz[]",
    values: ["array['2020-03-08 02:30:00', 'infinity', null]::timestamptz[]", "array['13/01/2021 00:00:00']::timestamptz[]"],
  },
  { name: "ena", type: "public.mood[]", values: ["array['sad', 'happy']::public.mood[]", "'{}'"] },
  {
    name: "cp",
    type: KPAIR,
    values: [
      String.raw`row(1, E'a "q", \\ b', '2020-06-01 12:00+02', '13/01/2021', 0.1::float8 + 0.2::float8, '-1 2:03:04.5', '\x00ff5c'::bytea)`,
      "row(null, null, null, null, null, null, null)",
      "row(0, '', '-infinity', 'infinity', '-0', '0', '')",
    ],
  },
  {
    name: "cpa",
    type: `${KPAIR}[]`,
    values: [
      String.raw`array[row(2, 'x', '2021-03-14 02:30:00', '01/02/2003', '0.1', '1 day', '\x01'::bytea)]::public.kpair[]`,
      "'{}'",
    ],
  },
];

/** A key over several columns, in an order other than the table's. */
const MULTI = {
  table: "public.k_multi",
  create: `create table public.k_multi (n int, a int, b text, c timestamptz, d float8, e interval, primary key (c, b, a, d, e))`,
  key: ["c", "b", "a", "d", "e"],
  insert: `insert into public.k_multi (a, b, c, d, e) values
             (1, 'x', '13/01/2021 10:00', 0.1::float8 + 0.2::float8, '-1 2:03:04.5'),
             (1, 'x', '13/01/2021 10:00', '-0', '-1 2:03:04.5'),
             (2, E'q"\\\\', '-infinity', 'NaN', '1 year -1 day')`,
};

const tableOf = (k: KeyType) => `public.k_${k.name}`;

/** What the first test captured: per table and statement kind, the events. */
const captured: { table: string; label: string; evs: Event[] }[] = [];

before(async () => {
  const env = await freshEnv("capture_fidelity");
  sourceUrl = env.sourceUrl;
  source = env.source;
  pgVersion = Number(await value(source, "show server_version_num"));
  // The all-types table, with a hole in attnum (a dropped column), keyed by an int.
  await source.query(`${createSql("fid", { hole: true })}; select dbsync.add_table('fid', 'g');`);
  // A composite type whose fields' text depends on every setting the writer changes.
  await source.query(`
    create type kpair as (a int, b text, c timestamptz, d date, f float8, iv interval, ba bytea);
    create domain stamp as timestamptz;
    create domain moodd as mood;
    ${pgVersion >= 110000 ? "create domain kpaird as kpair;" : ""}`);
  for (const k of KEY_TYPES) {
    if (k.since && pgVersion < k.since) continue;
    await source.query(`create table ${tableOf(k)} (k ${k.type} primary key, n int)`);
    await source.query("select dbsync.add_table($1, 'keys')", [tableOf(k)]);
  }
  await source.query(MULTI.create);
  await source.query("select dbsync.add_table($1, 'keys')", [MULTI.table]);
});

interface Event {
  ev_id: string;
  op: string;
  row: (string | null)[] | null;
}

/** The last event id so far of the table's group (event ids are numbered per group). */
const lastEvent = async (table: string) =>
  Number(
    await value<string>(
      source,
      `select coalesce(max(e.ev_id), 0) from dbsync.events e
       where e.group_id = (select t.group_id from dbsync.tables t where t.relid = $1::regclass)`,
      [table],
    ),
  );

/** The events of a table after event `mark`, oldest first. */
async function eventsOf(table: string, mark: number): Promise<Event[]> {
  return rows<Event>(
    source,
    `select e.ev_id, e.op, e.row from dbsync.tables t join dbsync.shapes s using (table_id)
     cross join ${queueOf("t.group_id")} e
     where t.relid = $1::regclass and e.shape_id = s.shape_id and e.ev_id > $2 order by e.ev_id`,
    [table, mark],
  );
}

/** The table's key columns (in key order) with their types, from its current shape. */
async function keyOf(table: string): Promise<{ columns: string[]; types: number[] }> {
  const [s] = await rows<{ columns: string[]; key_types: number[]; key_attnums: number[] }>(
    source,
    `select s.columns, s.key_types::int8[] as key_types, s.key_attnums::int[] as key_attnums
     from dbsync.shapes s join dbsync.tables t using (table_id)
     where t.relid = $1::regclass order by s.shape_id desc limit 1`,
    [table],
  );
  return { columns: s.columns, types: s.key_types.map(Number) };
}

/**
 * Checks, in session `c`, that the events' keys and the rows of `ref` match one to
 * one: each event's key text, read back as its column's type (`k[i]::type`), equals
 * exactly one row's key, and each row is matched by exactly one event. With
 * `lookup`, the match is the one the sidecar's reader uses (dbsync._key_match), not
 * a cast.
 */
async function assertKeysMatch(c: Client, label: string, ref: string, table: string, evs: Event[], lookup = false) {
  const key = await keyOf(table);
  const match: string[] = [];
  for (const [i, col] of key.columns.entries()) {
    const ident = `t."${col.replace(/"/g, '""')}"`;
    if (lookup) {
      match.push(await value<string>(c, "select dbsync._key_match($1::oid, $2, $3)", [key.types[i], ident, `e.row[${i + 1}]`]));
    } else {
      // The column's declared type, typmod included (`::bit` alone is bit(1)).
      const type = await value<string>(
        c,
        "select format_type(a.atttypid, a.atttypmod) from pg_attribute a where a.attrelid = $1::regclass and a.attname = $2",
        [table, col],
      );
      assert.equal(await value(c, "select $1::regtype::oid", [type]), key.types[i], `${table}.${col}: type of the shape`);
      // A domain's values compare as its base type's (there is no = for a domain
      // over an enum): the text is read as the domain, its checks included.
      const base = await value<string | null>(
        c,
        "select format_type(t.typbasetype, t.typtypmod) from pg_type t where t.oid = $1::oid and t.typtype = 'd'",
        [key.types[i]],
      );
      match.push(
        base
          ? `(${ident})::${base} = ((e.row[${i + 1}])::${type})::${base}`
          : `${ident} = (e.row[${i + 1}])::${type}`,
      );
    }
  }
  const on = match.join(" and ");
  const ids = evs.map((e) => e.ev_id);
  // Only these events' keys are read as the column's type: others may not be its text.
  const evs_ = compat(`with e as materialized (select e.ev_id, e.row from dbsync.tables tb join dbsync.shapes s using (table_id)
                                       cross join ${queueOf("tb.group_id")} e
                                       where tb.relid = $2::regclass and e.shape_id = s.shape_id and e.ev_id = any ($1::int8[]))`);
  const unmatched = await rows<{ row: string[]; n: number }>(
    c,
    `${evs_} select * from (select e.row, (select count(*)::int from ${ref} t where ${on}) as n from e) x where n <> 1`,
    [ids, table],
  );
  assert.equal(await value<number>(c, `${evs_} select count(*)::int from e`, [ids, table]), evs.length);
  assert.deepEqual(unmatched, [], `${label}: events whose key does not find exactly one row of ${table}`);
  const missed = await rows<{ t: string; n: number }>(
    c,
    `${evs_} select * from (select t::text as t, (select count(*)::int from e where ${on}) as n from ${ref} t) x where n <> 1`,
    [ids, table],
  );
  assert.deepEqual(missed, [], `${label}: rows of ${table} not found by exactly one event`);
}

test("every key type family is captured as text that reads back as the same key, whatever the writer's settings", async () => {
  const tables = [
    ...KEY_TYPES.filter((k) => !k.since || pgVersion >= k.since).map((k) => ({ table: tableOf(k), key: ["k"], k })),
    { table: MULTI.table, key: MULTI.key, k: undefined },
  ];
  const w = await connect(WRITER);
  // The sidecar's reader's settings (search_path pg_catalog, pg_temp included).
  const reader = await connect(PINNED);
  // The writer's, to read back with: the text must not depend on the reader's either.
  const other = await connect(WRITER);
  try {
    for (const { table, key, k } of tables) {
      // The shape records the key: its columns, in key order.
      assert.deepEqual((await keyOf(table)).columns, key, table);

      // INSERT: a few rows one by one in a transaction, the rest in one statement.
      let mark = await lastEvent(table);
      if (k) {
        const single = k.values.slice(0, 2);
        const multi = k.values.slice(2);
        await w.query("begin");
        for (const v of single) await w.query(`insert into ${table} (k) values (${v})`);
        await w.query("commit");
        if (multi.length) await w.query(`insert into ${table} (k) values ${multi.map((v) => `(${v})`).join(", ")}`);
      } else {
        await w.query(MULTI.insert);
      }
      const n = Number(await value(source, `select count(*) from ${table}`));
      assert.equal(n, k ? k.values.length : 3, `${table}: rows written`);
      const inserted = await eventsOf(table, mark);
      assert.equal(inserted.length, n, `${table}: one event per inserted row`);
      assert.ok(inserted.every((e) => e.op === "K" && e.row!.length === key.length && !e.row!.includes(null)), JSON.stringify(inserted));

      // UPDATE of other columns: each key once.
      mark = await lastEvent(table);
      await w.query(`update ${table} set n = 1`);
      const updated = await eventsOf(table, mark);
      assert.deepEqual(updated.map((e) => e.row).sort(), inserted.map((e) => e.row).sort(), `${table}: updated keys`);

      // DELETE: the old keys (read from the old rows, not the new).
      await source.query(`create table ${table}_before as select * from ${table}`);
      mark = await lastEvent(table);
      await w.query(`delete from ${table}`);
      const deleted = await eventsOf(table, mark);
      assert.deepEqual(deleted.map((e) => e.row).sort(), inserted.map((e) => e.row).sort(), `${table}: deleted keys`);

      for (const [label, evs] of [["insert", inserted], ["update", updated], ["delete", deleted]] as const) {
        // Read back by a cast, under the reader's settings and under the writer's.
        await assertKeysMatch(reader, `${label}, pinned settings`, `${table}_before`, table, evs);
        await assertKeysMatch(other, `${label}, writer's settings`, `${table}_before`, table, evs);
        captured.push({ table, label, evs });
      }
    }
    // Capture put the writer's settings back.
    const settings: unknown[] = [];
    for (const s of ["datestyle", "intervalstyle", "extra_float_digits", "timezone", "bytea_output"]) {
      settings.push(await value(w, `show ${s}`));
    }
    assert.deepEqual(settings, ["SQL, DMY", "sql_standard", "0", "Asia/Kolkata", "escape"]);
  } finally {
    await Promise.all([w.end(), reader.end(), other.end()]);
  }
});

test("the sidecar's reader finds the row of every captured key (dbsync._key_match), whatever the writer's settings", async () => {
  assert.ok(captured.length > 0, "the test above captured the keys");
  const reader = await connect(PINNED);
  const failures: string[] = [];
  try {
    for (const { table, label, evs } of captured) {
      try {
        await assertKeysMatch(reader, `${label}, sidecar's lookup`, `${table}_before`, table, evs, true);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  } finally {
    await reader.end();
  }
  assert.deepEqual(failures, []);
});

test("the key text is the one capture pins, so keys of settings-dependent types are not ambiguous", async () => {
  // Spot checks of the text itself: where the writer's settings would make it
  // ambiguous (DateStyle, IntervalStyle, extra_float_digits), capture's own decide it.
  const keysOf = async (name: string) =>
    (await eventsOf(`public.k_${name}`, 0)).map((e) => e.row![0]);
  // Floats: from PostgreSQL 12 the shortest text that reads back exactly; before,
  // extra_float_digits = 3 prints 18 significant digits of a float8, 9 of a float4.
  const shortest = pgVersion >= 120000;
  assert.ok((await keysOf("f8")).includes(shortest ? "0.30000000000000004" : "0.300000000000000044"));
  assert.ok((await keysOf("f8")).includes("-0"));
  assert.ok((await keysOf("f8")).includes(shortest ? "1e-310" : "9.99999999999996945e-311"));
  assert.ok((await keysOf("f8")).includes("NaN"));
  assert.ok((await keysOf("f4")).includes(shortest ? "-1.1754944e-38" : "-1.17549435e-38"));
  assert.ok((await keysOf("d")).includes("2021-01-13"));
  assert.ok((await keysOf("d")).includes("0044-03-15 BC"));
  assert.ok((await keysOf("ts")).includes("2021-01-13 10:00:00.5"));
  assert.ok((await keysOf("iv")).includes("-1 days -02:03:04.5"));
  assert.ok((await keysOf("num")).includes("NaN"));
  assert.ok((await keysOf("num")).includes("1.10"));
  assert.ok((await keysOf("ia")).includes("[0:2]={1,2,3}"));
  assert.ok((await keysOf("ia")).includes("[-1:0][2:3]={{1,2},{3,NULL}}"));
  assert.ok((await keysOf("mon")).includes("-$92,233,720,368,547,758.08"));
});

test("UPDATE (also of the key), upserts, DELETE and TRUNCATE queue the keys they touch", async () => {
  const d = await connect(PINNED);
  try {
    const g = await value<number>(source, "select group_id from dbsync.tables where relid = 'public.fid'::regclass");
    // The shape is the key's: the generated column and the others are not captured.
    assert.deepEqual(await keyOf("public.fid"), {
      columns: ["id"],
      types: [Number(await value(source, "select 'int4'::regtype::oid"))],
    });
    await d.query(`insert into public.fid (id, txt) select g, 'row ' || g from generate_series(1, 9) g`);
    let last = await lastEvent("public.fid");
    /** The events since the last call, as "op:key" in queue order. */
    const since = async () => {
      const evs = await rows<Event>(
        d,
        `select e.ev_id, e.op, e.row from ${queueOf("$1")} e where e.ev_id > $2 order by e.ev_id`,
        [g, last],
      );
      if (evs.length) last = Number(evs[evs.length - 1].ev_id);
      return evs.map((e) => `${e.op}${e.row ? ":" + e.row.join("/") : ""}`);
    };
    const sorted = async () => (await since()).sort();

    // A plain update: its key, once.
    await d.query("update public.fid set txt = 'changed', f8 = '-0' where id = 3");
    assert.deepEqual(await since(), ["K:3"]);
    // Twice in one transaction: once per statement.
    await d.query("begin");
    await d.query("update public.fid set txt = 'a' where id = 3");
    await d.query("update public.fid set txt = 'b' where id = 3");
    await d.query("commit");
    assert.deepEqual(await since(), ["K:3", "K:3"]);

    // A key change: the old key (its row is gone) and the new one.
    await d.query("update public.fid set id = 104 where id = 4");
    assert.deepEqual(await sorted(), ["K:104", "K:4"]);
    // Several key changes in one statement, one onto a key another row leaves.
    await d.query("update public.fid set id = id + 1000 where id in (5, 6)");
    assert.deepEqual(await sorted(), ["K:1005", "K:1006", "K:5", "K:6"]);
    await d.query("update public.fid set id = id - 1000 + 10 where id in (1005, 1006)");
    assert.deepEqual(await sorted(), ["K:1005", "K:1006", "K:15", "K:16"]);
    // An update that changes the key of one row and not of another: each key once.
    await d.query("update public.fid set id = case when id = 7 then 17 else id end, txt = 'm' where id in (7, 8)");
    assert.deepEqual(await sorted(), ["K:17", "K:7", "K:8"]);

    // An update touching no row queues nothing.
    await d.query("update public.fid set i2 = 0 where false");
    assert.deepEqual(await since(), []);

    // A multi-row update: each key once.
    await d.query("update public.fid set vc = 'multi' where id in (15, 16, 17)");
    assert.deepEqual(await sorted(), ["K:15", "K:16", "K:17"]);

    // An upsert: the inserted key and the updated one.
    await d.query(
      "insert into public.fid (id, txt) values (3, 'up'), (200, 'new') on conflict (id) do update set txt = excluded.txt",
    );
    assert.deepEqual(await sorted(), ["K:200", "K:3"]);
    // An upsert that does nothing queues nothing.
    await d.query("insert into public.fid (id) values (3) on conflict do nothing");
    assert.deepEqual(await since(), []);

    // DELETE: the old keys.
    await d.query("delete from public.fid where id in (1, 2)");
    assert.deepEqual(await sorted(), ["K:1", "K:2"]);

    // TRUNCATE is one 'T' event without a row.
    await d.query("truncate public.fid");
    assert.deepEqual(await since(), ["T"]);

    // A key named by add_table (a unique NOT NULL set, not the primary key): its
    // columns are captured, in the order given.
    await d.query(`create table public.uk (id int primary key, code text not null, part int not null, v text,
                                            unique (part, code))`);
    await d.query("select dbsync.add_table('public.uk', 'g', array['code', 'part'])");
    assert.deepEqual((await keyOf("public.uk")).columns, ["code", "part"]);
    await d.query("insert into public.uk values (1, 'a', 1, 'x'), (2, 'b', 1, 'y')");
    assert.deepEqual(await sorted(), ["K:a/1", "K:b/1"]);
    await d.query("update public.uk set code = 'c', id = 3 where id = 1");
    assert.deepEqual(await sorted(), ["K:a/1", "K:c/1"]);
    await d.query("update public.uk set id = 4 where id = 2"); // the primary key is not dbsync's key
    assert.deepEqual(await sorted(), ["K:b/1"]);
  } finally {
    await d.end();
  }
});
