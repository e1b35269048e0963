// Capture fidelity: every built-in type family, with edge values, written under odd
// session settings, is captured as text that decodes back to the very same row
// (row::text identical). Also: generated columns are not captured, SQL NULL is an
// array NULL, JSON null is the text 'null', and UPDATE / DELETE / TRUNCATE events.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { Client, Pool } from "pg";
import { freshEnv, rows, tableText, value } from "./helpers";

const qi = (s: string) => '"' + s.replace(/"/g, '""') + '"';

// The settings the capture trigger pins; a decoder (the applier) uses the same.
const PINNED = [
  "set datestyle = 'ISO, YMD'",
  "set intervalstyle = 'postgres'",
  "set timezone = 'UTC'",
  "set extra_float_digits = 3",
  "set bytea_output = 'hex'",
  "set lc_monetary = 'C'",
];
// The writer's settings: each one changes some type's output text or input parsing.
const ODD = [
  "set datestyle = 'SQL, DMY'",
  "set timezone = 'America/New_York'",
  "set extra_float_digits = 0",
  "set intervalstyle = 'sql_standard'",
  "set bytea_output = 'escape'",
];

// Column name -> type. "gen" (generated, stored) sits in the middle on purpose, and a
// dropped column leaves a hole in attnum.
const COLUMNS: [string, string][] = [
  ["id", "int primary key"],
  ["i2", "int2"],
  ["i4", "int4"],
  ["i8", "int8"],
  ["num", "numeric"],
  ["nump", "numeric(40,20)"],
  ["f4", "float4"],
  ["f8", "float8"],
  ["mon", "money"],
  ["txt", "text"],
  ["gen", "text generated always as (coalesce(txt, '<null>') || '#' || id) stored"],
  ["ch", "char(5)"],
  ["vc", "varchar(12)"],
  ["Odd \"Col\"", "text"],
  ["ba", "bytea"],
  ["bo", "bool"],
  ["d", "date"],
  ["tm", "time"],
  ["ttz", "timetz"],
  ["ts", "timestamp"],
  ["tstz", "timestamptz"],
  ["iv", "interval"],
  ["u", "uuid"],
  ["ip", "inet"],
  ["cid", "cidr"],
  ["mac", "macaddr"],
  ["mac8", "macaddr8"],
  ["bt", "bit(4)"],
  ["vb", "varbit"],
  ["js", "json"],
  ["jb", "jsonb"],
  ["x", "xml"],
  ["ia", "int[]"],
  ["ia2", "int[]"],
  ["ta", "text[]"],
  ["tza", "timestamptz[]"],
  ["pt", "point"],
  ["bx", "box"],
  ["pg", "polygon"],
  ["ci", "circle"],
  ["ln", "line"],
  ["ls", "lseg"],
  ["pa", "path"],
  ["tv", "tsvector"],
  ["tq", "tsquery"],
  ["r4", "int4range"],
  ["rtz", "tstzrange"],
  ["mr", "int4multirange"],
  ["en", "mood"],
  ["dm", "posint"],
  ["cp", "pair"],
  ["o", "oid"],
  ["lsn", "pg_lsn"],
];
const CAPTURED = COLUMNS.map(([c]) => c).filter((c) => c !== "gen");

// Rows as SQL expressions per column (missing = NULL), evaluated under ODD settings.
const ROWS: Record<string, string>[] = [
  {
    id: "1",
    i2: "-32768",
    i4: "2147483647",
    i8: "-9223372036854775808",
    num: "'NaN'",
    nump: "'-0.0'",
    f4: "'-0'",
    f8: "'-0'",
    mon: "'-92233720368547758.08'",
    txt: String.raw`E'it''s "quoted" \\ back\\slash\nnew line\ttab \r ünïcødé 🐘 {a,b} (x,y)'`,
    ch: "'ab'",
    vc: "' x y '",
    '"Odd ""Col"""': `'a,b'`,
    ba: String.raw`'\x00ff5c27225c6e0a'::bytea`,
    bo: "true",
    d: "'0044-03-15 BC'",
    tm: "'24:00:00'",
    ttz: "'23:59:59.999999-05:30:15'",
    ts: "'2000-02-29 23:59:59.999999'",
    tstz: "'4714-11-24 00:00:00+00 BC'",
    iv: "'-1 2:03:04.5'",
    u: "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    ip: "'2001:db8::1/64'",
    cid: "'10.0.0.0/8'",
    mac: "'08:00:2b:01:02:03'",
    mac8: "'08:00:2b:01:02:03:04:05'",
    bt: "B'1010'",
    vb: "B''",
    js: `'{"a":1,  "a" : [1, 2 ],"b":null, "c":"\\u00e9"}'`,
    jb: `'{"b": [1, {"c": null}], "a": "x\\"y"}'`,
    x: `'<a b="1">t&amp;x<c/></a>'`,
    ia: "'[0:2]={1,2,3}'",
    ia2: "'[-1:0][2:3]={{1,2},{3,NULL}}'",
    ta: String.raw`array['a"b', null, 'NULL', E'c\\d', '', ' sp ', '{x,y}', E'line\nbreak']`,
    tza: "array['2020-03-08 02:30:00', 'infinity', null]::timestamptz[]",
    pt: "'(1.5,-0)'",
    bx: "'((1,2),(3,4))'",
    pg: "'((0,0),(1,1),(1,0))'",
    ci: "'<(1,1),0.5>'",
    ln: "'{1,-1,0}'",
    ls: "'[(0,0),(1,1)]'",
    pa: "'[(0,0),(1,1),(2,0)]'",
    tv: "'a:1A fat:2B,4C cat:5D ''it''''s'''",
    tq: "'fat & (rat | !cat) <-> dog'",
    r4: "'[1,10)'",
    rtz: "'[2020-01-01 00:00+00, infinity)'",
    mr: "'{[1,3), [5,7)}'",
    en: "'happy'",
    dm: "42",
    cp: String.raw`row(1, E'a "q", \\ b', '2020-06-01 12:00+02')`,
    o: "4294967295",
    lsn: "'FFFFFFFF/FFFFFFFF'",
  },
  // all NULL but the key
  { id: "2" },
  {
    id: "3",
    i2: "32767",
    i4: "-2147483648",
    i8: "9223372036854775807",
    num: "'-123456789012345678901234567890.123456789012345678901234567890123456789'",
    nump: "'12345678901234567890.12345678901234567890'",
    f4: "'NaN'",
    f8: "'NaN'",
    mon: "0",
    txt: "''",
    ch: "''",
    vc: "''",
    ba: "''::bytea",
    bo: "false",
    d: "'infinity'",
    tm: "'00:00:00'",
    ttz: "'00:00:00+15:59'",
    ts: "'infinity'",
    tstz: "'-infinity'",
    iv: "'1 year 2 months -3 days 04:05:06.000001'",
    ip: "'10.1.2.3'",
    cid: "'::/0'",
    mac8: "'08:00:2b:01:02:03'",
    bt: "B'0000'",
    vb: "B'10101010101'",
    js: "'null'",
    jb: "'null'",
    x: "'plain text, not a document'",
    ia: "'{}'",
    ia2: "'{{{1},{2}},{{3},{4}}}'",
    ta: "'{}'",
    pt: "'(NaN,Infinity)'",
    tv: "''",
    r4: "'empty'",
    rtz: "'(,)'",
    mr: "'{}'",
    en: "'sad'",
    dm: "1",
    cp: "row(null, null, null)",
    o: "0",
    lsn: "'0/0'",
  },
  {
    id: "4",
    num: "'-0.0'",
    nump: "'0.00000000000000000001'",
    f4: "'Infinity'",
    f8: "'1e-310'",
    txt: String.raw`E'\\N'`,
    ch: "'abcde'",
    vc: "'NULL'",
    d: "'13/01/2021'",
    ts: "'13/01/2021 10:00:00.5'",
    tstz: "'0001-01-01 00:00:00 BC'",
    iv: "'P1Y2M3DT4H5M6.7S'",
    js: `'  "just a string"  '`,
    jb: "'[]'",
    ta: "array[null, null]::text[]",
    tza: "array['1900-01-01 00:00:00']::timestamptz[]",
    cp: "row(0, '', '-infinity')",
  },
  {
    id: "5",
    num: "'Infinity'",
    f4: "'-Infinity'",
    f8: "'-Infinity'",
    txt: "'NULL'",
    js: "'[1, 2 , {\"k\" :null}]'",
    jb: "'{\"a\": null}'",
    tstz: "'2021-03-14 02:30:00'", // a local time that does not exist in New York
    ts: "'1999-12-31 23:59:60'",
  },
  { id: "6", f4: "'1e-45'", f8: "'0.1'", num: "'-Infinity'", iv: "'-178000000 years'" },
  { id: "7", f4: "'0.1'", f8: "0.1::float8 + 0.2::float8", iv: "'178000000 years'" },
  { id: "8", f4: "'3.4028235e38'", f8: "'1.7976931348623157e308'", num: "'0.000000000000000000000000000000000000001'" },
  { id: "9", f8: "'4.9e-324'", f4: "'-1.17549435e-38'" },
];

function insertSql(r: Record<string, string>): string {
  const cols = Object.keys(r);
  const names = cols.map((c) => (c.startsWith('"') ? c : qi(c)));
  return `insert into fid (${names.join(", ")}) values (${cols.map((c) => r[c]).join(", ")})`;
}

let source: Pool;
let sourceUrl: string;
let shape: { shape_id: number; columns: string[]; types: string[] };

async function connect(settings: string[]): Promise<Client> {
  const c = new Client({ connectionString: sourceUrl });
  await c.connect();
  for (const s of settings) await c.query(s);
  return c;
}

/** Decodes the given events' rows into a fresh copy table and returns its rows' text. */
async function decode(c: Client, evIds: number[]): Promise<string[]> {
  await c.query("drop table if exists pg_temp.dec");
  await c.query("create temp table dec (like fid including generated)");
  const sel = shape.columns.map((_, i) => `e.row[${i + 1}]::${shape.types[i]}`).join(", ");
  await c.query(
    `insert into dec (${shape.columns.map(qi).join(", ")})
     select ${sel} from dbsync.events e where e.ev_id = any ($1::bigint[]) order by e.ev_id`,
    [evIds],
  );
  return (await tableText(c, "dec")).sort();
}

before(async () => {
  const env = await freshEnv("capture_fidelity");
  sourceUrl = env.sourceUrl;
  source = env.source;
  await source.query(`
    create type mood as enum ('sad', 'ok', 'happy');
    create domain posint as int check (value > 0);
    create type pair as (a int, b text, c timestamptz);
    create table fid (${COLUMNS.map(([c, t]) => `${qi(c)} ${t}`).join(",\n ")}, dropme int);
    alter table fid drop column dropme;
    select dbsync.add_table('fid', 'g');
  `);
  [shape] = await rows(
    source,
    `select s.shape_id, s.columns, s.types from dbsync.shapes s join dbsync.tables t using (table_id)
     where t.relid = 'fid'::regclass`,
  );
});

test("every type family round-trips: decoded row text equals source row text", async () => {
  // The generated column is not captured; every other column is, in table order.
  assert.deepEqual(shape.columns, CAPTURED);
  assert.ok(!shape.columns.includes("gen"));

  // Write under odd settings: some rows in one transaction, some in one multi-row INSERT.
  const w = await connect(ODD);
  try {
    await w.query("begin");
    for (const r of ROWS.slice(0, 5)) await w.query(insertSql(r));
    await w.query("commit");
    const rest = ROWS.slice(5);
    const cols = [...new Set(rest.flatMap((r) => Object.keys(r)))];
    await w.query(
      `insert into fid (${cols.map(qi).join(", ")}) values ${rest
        .map((r) => `(${cols.map((c) => r[c] ?? "null").join(", ")})`)
        .join(", ")}`,
    );
  } finally {
    await w.end();
  }

  const evs = await rows<{ ev_id: string; op: string; row: (string | null)[]; columns: string[]; types: string[] }>(
    source,
    `select e.ev_id, e.op, e.row, s.columns, s.types from dbsync.events e join dbsync.shapes s using (shape_id) order by ev_id`,
  );
  assert.equal(evs.length, ROWS.length);
  assert.ok(evs.every((e) => e.op === "U"));
  const byId = new Map(evs.map((e) => [e.row[0], e]));
  const col = (id: string, c: string) => byId.get(id)!.row[shape.columns.indexOf(c)];

  // SQL NULL is an array NULL element; JSON null stays the text 'null'.
  assert.deepEqual(byId.get("2")!.row, ["2", ...Array(shape.columns.length - 1).fill(null)]);
  assert.equal(col("3", "js"), "null");
  assert.equal(col("3", "jb"), "null");
  assert.equal(col("3", "txt"), "");
  assert.equal(col("5", "jb"), '{"a": null}');
  // json keeps its text (duplicate keys, spacing); arrays keep their bounds.
  assert.equal(col("1", "js"), '{"a":1,  "a" : [1, 2 ],"b":null, "c":"\\u00e9"}');
  assert.equal(col("4", "js"), '  "just a string"  ');
  assert.equal(col("1", "ia"), "[0:2]={1,2,3}");
  assert.equal(col("1", "ia2"), "[-1:0][2:3]={{1,2},{3,NULL}}");
  // The capture's own settings, not the writer's, decide the text.
  assert.equal(col("1", "tstz"), "4714-11-24 00:00:00+00 BC");
  assert.equal(col("4", "d"), "2021-01-13");
  assert.equal(col("1", "iv"), "-1 days -02:03:04.5");
  assert.equal(col("1", "ba"), "\\x00ff5c27225c6e0a");
  assert.equal(col("7", "f8"), "0.30000000000000004");
  assert.equal(col("1", "f8"), "-0");
  assert.equal(col("4", "f8"), "1e-310");
  assert.equal(col("3", "f8"), "NaN");
  assert.equal(col("5", "tstz"), "2021-03-14 07:30:00+00");
  assert.equal(col("1", "mon"), "-$92,233,720,368,547,758.08");

  // Decode every event under the pinned settings into a copy of the table and replay it.
  const d = await connect(PINNED);
  try {
    await d.query("create table fid_copy (like fid including generated)");
    const sel = shape.columns.map((c, i) => `e.row[${i + 1}]::${shape.types[i]} as ${qi(c)}`).join(", ");
    await d.query(
      `insert into fid_copy (${shape.columns.map(qi).join(", ")})
       select ${shape.columns.map(qi).join(", ")} from (
         select ${sel} from dbsync.events e where e.shape_id = $1 and e.op = 'U' order by e.ev_id) dec`,
      [shape.shape_id],
    );
    // Same text, compared under the pinned settings and again under the odd ones.
    const src = await tableText(d, "fid");
    assert.equal(src.length, ROWS.length);
    assert.deepEqual(await tableText(d, "fid_copy"), src);
    const o = await connect(ODD);
    try {
      assert.deepEqual(await tableText(o, "fid_copy"), await tableText(o, "fid"));
    } finally {
      await o.end();
    }
    // Key by key, not only as sets.
    const diff = await value<number>(
      d,
      `select count(*)::int from fid f full join fid_copy c using (id)
       where f::text is distinct from c::text`,
    );
    assert.equal(diff, 0);
  } finally {
    await d.end();
  }
});

test("UPDATE (also of the key), DELETE and TRUNCATE are captured", async () => {
  const d = await connect(PINNED);
  try {
    const rowText = async (id: number) => value<string>(d, "select f::text from fid f where id = $1", [id]);
    const since = async (ev: number) =>
      rows<{ ev_id: string; op: string; row: (string | null)[] | null }>(
        d,
        "select e.ev_id, e.op, e.row from dbsync.events e where e.ev_id > $1 order by e.ev_id",
        [ev],
      );
    let last = Number(await value<string>(d, "select max(ev_id) from dbsync.events"));

    // A plain update: one 'U' with the new state, which decodes to the new row.
    await d.query("update fid set txt = 'changed', f8 = '-0' where id = 3");
    let evs = await since(last);
    assert.deepEqual(evs.map((e) => e.op), ["U"]);
    assert.deepEqual(await decode(d, evs.map((e) => Number(e.ev_id))), [await rowText(3)]);
    last = Number(evs[evs.length - 1].ev_id);

    // A key change: the old key is deleted ('D' with the old row), the new one written.
    const old4 = await rowText(4);
    await d.query("update fid set id = 104 where id = 4");
    evs = await since(last);
    assert.deepEqual(evs.map((e) => e.op), ["D", "U"]);
    assert.equal(evs[0].row![0], "4");
    assert.equal(evs[1].row![0], "104");
    assert.deepEqual(await decode(d, [Number(evs[0].ev_id)]), [old4]);
    assert.deepEqual(await decode(d, [Number(evs[1].ev_id)]), [await rowText(104)]);
    last = Number(evs[evs.length - 1].ev_id);

    // An update touching no row queues nothing.
    await d.query("update fid set i2 = 0 where false");
    assert.deepEqual(await since(last), []);

    // A multi-row update of several keys: one 'U' per row.
    await d.query("update fid set vc = 'multi' where id in (5, 6, 7)");
    evs = await since(last);
    assert.deepEqual(evs.map((e) => e.op), ["U", "U", "U"]);
    assert.deepEqual(evs.map((e) => e.row![0]).sort(), ["5", "6", "7"]);
    last = Number(evs[evs.length - 1].ev_id);

    // DELETE carries the whole old row.
    const old1 = await rowText(1);
    const old2 = await rowText(2);
    await d.query("delete from fid where id in (1, 2)");
    evs = await since(last);
    assert.deepEqual(evs.map((e) => e.op), ["D", "D"]);
    assert.deepEqual(await decode(d, evs.map((e) => Number(e.ev_id))), [old1, old2].sort());
    last = Number(evs[evs.length - 1].ev_id);

    // TRUNCATE is one 'T' event without a row.
    await d.query("truncate fid");
    evs = await since(last);
    assert.deepEqual(evs.map((e) => [e.op, e.row]), [["T", null]]);
  } finally {
    await d.end();
  }
});
