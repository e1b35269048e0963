// Capture fidelity: every built-in type family, with edge values, written under odd
// session settings, is captured as text that decodes back to the very same row
// (row::text identical). Also: generated columns are not captured, SQL NULL is an
// array NULL, JSON null is the text 'null', and UPDATE / DELETE / TRUNCATE events.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { Client, Pool } from "pg";
import { CAPTURED, ODD, PINNED, ROWS, connectWith, createSql, insertRows, qi } from "./fixtures/all-types";
import { freshEnv, rows, tableText, value } from "./helpers";

let source: Pool;
let sourceUrl: string;
let shape: { shape_id: number; columns: string[]; types: string[] };

const connect = (settings: string[]) => connectWith(sourceUrl, settings);

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
  // The table has a hole in attnum: a dropped column.
  await source.query(`${createSql("fid", { hole: true })}; select dbsync.add_table('fid', 'g');`);
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
  await insertRows(sourceUrl, ROWS, { singly: 5 });

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
  // Where the writer's settings would make the text ambiguous (DateStyle, IntervalStyle,
  // extra_float_digits), the capture's own decide it; TimeZone and bytea_output need
  // not be pinned: the text reads back as the same value whatever they are.
  const same = async (text: string | null, literal: string, type: string) =>
    assert.equal(await value(source, `select $1::${type} = ${literal}::${type}`, [text]), true, `${text} = ${literal}`);
  await same(col("1", "tstz"), "'4714-11-24 00:00:00+00 BC'", "timestamptz");
  assert.equal(col("4", "d"), "2021-01-13");
  assert.equal(col("1", "iv"), "-1 days -02:03:04.5");
  await same(col("1", "ba"), "'\\x00ff5c27225c6e0a'", "bytea");
  assert.equal(col("7", "f8"), "0.30000000000000004");
  assert.equal(col("1", "f8"), "-0");
  assert.equal(col("4", "f8"), "1e-310");
  assert.equal(col("3", "f8"), "NaN");
  await same(col("5", "tstz"), "'2021-03-14 07:30:00+00'", "timestamptz");
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
