// End-to-end fidelity: the all-types table (every built-in type family, edge values,
// values over 1 MB, a generated column, an enum, a domain, a composite, ranges)
// reaches the target through the initial copy and through the stream with row::text
// identical to the source's, whatever the writers' and the databases' settings.
// Every row of the fixture travels both ways: ids 1..n by the copy, the same rows
// as ids 101..100+n by the stream; then updates (to SQL NULL, to JSON null, to the
// edge values, of the key), a key swap, deletes and a re-insert, all by the stream.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import {
  ALL_ROWS as ROWS,
  BIG_ROWS,
  HAS_GENERATED,
  ODD,
  PINNED,
  connectWith,
  createSql,
  insertRows,
  insertSql,
  setSql,
  withId,
} from "./fixtures/all-types";
import { Env, compat, freshEnv, rows, startSidecar, until, value } from "./helpers";

// Yet other settings: the target database's defaults, so that a session of the
// sidecar that did not pin its settings would read or write text differently.
const OTHER = [
  "set datestyle = 'German, DMY'",
  "set timezone = 'Asia/Kathmandu'",
  "set extra_float_digits = -15",
  "set intervalstyle = 'iso_8601'",
  "set bytea_output = 'escape'",
];

const STREAMED = ROWS.map((r) => withId(r, Number(r.id) + 100));

function dbName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

/** `set x = v` statements as `alter database ... set x = v`. */
async function setDatabaseDefaults(p: Pool, url: string, settings: string[]) {
  for (const s of settings) await p.query(s.replace(/^set /, `alter database "${dbName(url)}" set `));
}

interface RowDigest {
  id: number;
  len: number;
  md5: string;
  gen_len: number | null;
  gen_md5: string | null;
}

async function digests(url: string, settings: string[]): Promise<Map<number, RowDigest>> {
  const c = await connectWith(url, settings);
  try {
    const rs = await rows<RowDigest>(
      c,
      // Before PostgreSQL 12 the table has no generated column: none to compare.
      compat(`with r as materialized (select id, t::text as r, ${HAS_GENERATED ? "gen" : "null::text as gen"} from fid t)
       select id, length(r) as len, md5(r) as md5, length(gen) as gen_len, md5(gen) as gen_md5 from r order by id`),
    );
    return new Map(rs.map((r) => [r.id, r]));
  } finally {
    await c.end();
  }
}

/** Where two texts first differ, with some context: a failure must not print megabytes. */
function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const around = (s: string) => JSON.stringify(s.slice(Math.max(0, i - 80), i + 80));
  return `lengths ${a.length} / ${b.length}, first difference at ${i}:\n  source ${around(a)}\n  target ${around(b)}`;
}

/**
 * Asserts that every row's text on the target equals the source's, both read
 * under the same session settings; the generated column too.
 */
async function assertSameRows(env: Env, settings: string[], label: string, expectedIds?: number[]) {
  const [src, dst] = await Promise.all([digests(env.sourceUrl, settings), digests(env.targetUrl, settings)]);
  const srcIds = [...src.keys()];
  if (expectedIds) assert.deepEqual(srcIds, expectedIds, `${label}: source ids`);
  assert.deepEqual([...dst.keys()], srcIds, `${label}: target ids`);
  const differing: string[] = [];
  for (const [id, s] of src) {
    const d = dst.get(id)!;
    if (s.md5 === d.md5 && s.len === d.len) continue;
    const text = async (url: string) => {
      const c = await connectWith(url, settings);
      try {
        return await value<string>(c, "select t::text from fid t where id = $1", [id]);
      } finally {
        await c.end();
      }
    };
    differing.push(`id ${id}: ${firstDifference(await text(env.sourceUrl), await text(env.targetUrl))}`);
  }
  assert.deepEqual(differing, [], `${label}: rows differ`);
  // The target computed its generated column, to the source's value.
  for (const [id, s] of src) {
    const d = dst.get(id)!;
    assert.deepEqual([d.gen_len, d.gen_md5], [s.gen_len, s.gen_md5], `${label}: generated column of id ${id}`);
  }
}

/**
 * Under the pinned settings (full float precision, ISO dates: the text that shows
 * most) and again under the odd ones, the same on both sides.
 */
async function compareEverywhere(env: Env, label: string, expectedIds?: number[]) {
  await assertSameRows(env, PINNED, `${label}, pinned settings`, expectedIds);
  await assertSameRows(env, ODD, `${label}, odd settings`);
}

test("every type family reaches the target by the copy and by the stream with identical row text", async () => {
  const env = await freshEnv("fidelity_e2e");
  // The source has a hole in attnum (a dropped column), the target none; both have
  // the generated column, which the target computes.
  await env.source.query(createSql("fid", { hole: true }));
  await env.target.query(createSql("fid", { hole: false }));
  // Every session that does not say otherwise writes and reads with odd settings:
  // the source's with ODD, the target's with OTHER.
  await setDatabaseDefaults(env.source, env.sourceUrl, ODD);
  await setDatabaseDefaults(env.target, env.targetUrl, OTHER);

  // Rows that travel by the initial copy.
  await insertRows(env.sourceUrl, ROWS, { singly: 5 });
  await env.source.query("select dbsync.add_table('fid', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);

  const sidecar = startSidecar(env.sourceUrl);
  try {
    await until(
      "the copy of fid",
      async () => {
        const st = await value<string>(env.source, "select state from dbsync.table_status where subscription = 's'");
        if (st === "error") {
          throw new Error(`copy failed: ${await value(env.source, "select last_error from dbsync.table_status")}`);
        }
        return st === "streaming";
      },
      120_000,
    );
    assert.equal(Number(await value(env.source, "select rows_copied from dbsync.table_status")), ROWS.length);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true, sidecar.output());
    const copiedIds = ROWS.map((r) => Number(r.id));
    await compareEverywhere(env, "after the copy", copiedIds);
    // The big values are big on the target too.
    const sizes = await rows<Record<string, number>>(
      env.target,
      `select octet_length(txt) as txt, octet_length(ba) as ba, octet_length(js::text) as js,
              octet_length(jb::text) as jb, octet_length(ta::text) as ta${HAS_GENERATED ? ", octet_length(gen) as gen" : ""}
         from fid where id = $1`,
      [BIG_ROWS[0].id],
    );
    for (const [col, n] of Object.entries(sizes[0])) assert.ok(n > 1_000_000, `${col} of the big row: ${n} bytes`);

    // Rows and changes that travel by the stream, all written under the odd settings.
    await insertRows(env.sourceUrl, STREAMED, { singly: 5 });
    const w = await connectWith(env.sourceUrl, ODD);
    try {
      const big = BIG_ROWS[0];
      // To SQL NULL (also the JSON columns), in a copied and in a streamed row.
      await w.query(
        "update fid set txt = null, js = null, jb = null, ta = null, ia = null, cp = null, en = null, dm = null, x = null where id in (1, 101)",
      );
      // To JSON null, and from JSON null to SQL NULL.
      await w.query(`update fid set js = 'null', jb = 'null' where id in (5, 105)`);
      await w.query(`update fid set js = '{"n" : null}', jb = '[null]' where id = 4`);
      await w.query("update fid set js = null, jb = null where id = 103");
      // The all-NULL rows get the edge values of row 1 and the values over 1 MB.
      await w.query(`update fid set ${setSql(ROWS[0])} where id = 2`);
      await w.query(`update fid set ${setSql(big)} where id = 102`);
      // Values over 1 MB change a little (in a copied row) and go to NULL (in a streamed one).
      await w.query(
        String.raw`update fid set txt = txt || E'\\ tail\t', ba = ba || '\x00ff'::bytea, jb = jb || '[null, "x"]', ta[-3] = 'front' where id = ${big.id}`,
      );
      await w.query(`update fid set txt = null, ba = null, js = null where id = ${Number(big.id) + 100}`);
      // Literals that the odd settings parse: DMY dates, New York local times, SQL-standard intervals.
      await w.query(
        `update fid set d = '31/12/1999', ts = '01/02/2003 04:05:06.789', tstz = '01/02/2003 04:05:06',
                        iv = '-1 2:03:04', tm = '24:00', tza = array['13/01/2021 00:00:00', '-infinity']::timestamptz[]
          where id in (6, 106)`,
      );
      // Key changes: of a copied row; of a streamed row, then more changes to it, in one transaction.
      await w.query("update fid set id = 1004 where id = 4");
      await w.query("begin");
      await w.query("update fid set id = 1104, txt = 'moved' where id = 104");
      await w.query("update fid set d = '01/02/0003 BC', f8 = '-0' where id = 1104");
      await w.query("commit");
      // Two keys swapped in one transaction (the key is not deferrable: by way of a third).
      await w.query("begin");
      await w.query("update fid set id = -7 where id = 7");
      await w.query("update fid set id = 7 where id = 9");
      await w.query("update fid set id = 9 where id = -7");
      await w.query("commit");
      // Deletes: a copied row, and a streamed row that comes back with other values.
      await w.query("delete from fid where id = 8");
      await w.query("begin");
      await w.query("delete from fid where id = 107");
      await w.query(insertSql(withId(ROWS[2], 107)));
      await w.query("commit");
    } finally {
      await w.end();
    }

    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true, sidecar.output());
    const ids = [...copiedIds, ...STREAMED.map((r) => Number(r.id)), 1004, 1104]
      .filter((id) => id !== 4 && id !== 104 && id !== 8)
      .sort((a, b) => a - b);
    await compareEverywhere(env, "after the stream", ids);

    // SQL NULL and JSON null arrived as what they are.
    const nulls = await rows<{ id: number; js_null: boolean; js: string | null; jb: string | null }>(
      env.target,
      "select id, js is null as js_null, js::text as js, jb::text as jb from fid where id in (1, 5, 103, 105, 1004) order by id",
    );
    assert.deepEqual(nulls, [
      { id: 1, js_null: true, js: null, jb: null },
      { id: 5, js_null: false, js: "null", jb: "null" },
      { id: 103, js_null: true, js: null, jb: null },
      { id: 105, js_null: false, js: "null", jb: "null" },
      { id: 1004, js_null: false, js: '{"n" : null}', jb: "[null]" },
    ]);
    const st = (await env.source.query("select state, last_error from dbsync.status where name = 's'")).rows[0];
    assert.deepEqual(st, { state: "streaming", last_error: null });
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});
