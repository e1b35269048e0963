// The stages shared by tables alike (src/target/stage.ts): two
// target tables share a temp stage when their "signature" strings are equal. The
// signature joins each column's "name type typmod collation identity" with ", ",
// and a column name may hold ", " and spaces: two tables whose columns differ can
// then write the same string. The second table's rows are parsed into the first
// one's types (numeric(10,2) rounds a numeric(12,4) value), with no error.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, rows, startSidecar } from "./helpers";
import { status, synced } from "./kit/convergence";

// numeric(p,s)'s typmod is ((p << 16) | s) + 4.
const N10_2 = ((10 << 16) | 2) + 4;
const N12_4 = ((12 << 16) | 4) + 4;

test("tables whose columns differ but whose signature strings are equal share a stage: the second one's values are rounded", async () => {
  const env = await freshEnv("stage_signature");
  const source = `create table a (k int primary key, v numeric(12,4));
                  create table b (k int primary key, v numeric(12,4));`;
  await env.source.query(source);
  // On the target, each table has one column the source does not send (nullable):
  // a's first column and b's last are named so that the joined strings are equal,
  // while a.v is numeric(10,2) (a's own choice) and b.v numeric(12,4), as the source.
  const aExtra = `k 23 -1 0 , v 1700 ${N12_4} 0 , Z`;
  const bExtra = `Z 23 -1 0 , v 1700 ${N10_2} 0 , k`;
  await env.target.query(`create table a ("${aExtra}" int, v numeric(10,2), k int primary key);
                          create table b (k int primary key, v numeric(12,4), "${bExtra}" int);`);
  const sig = `select (select string_agg(format('%s %s %s %s %s', a.attname, a.atttypid, a.atttypmod, a.attcollation, a.attidentity), ', ' order by a.attnum)
                 from pg_attribute a where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped) as s`;
  const [sa] = await rows<{ s: string }>(env.target, sig, ["a"]);
  const [sb] = await rows<{ s: string }>(env.target, sig, ["b"]);
  assert.equal(sa.s, sb.s, "precondition: the two signatures are the same string");
  for (const t of ["a", "b"]) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1"]);
  try {
    // Batches of a alone: its stage (numeric(10,2)) is made on the connection.
    await env.source.query("insert into a select g, 1 from generate_series(1, 5) g");
    await synced(env);
    await env.source.query("begin; update a set v = 2 where k <= 3; delete from a where k = 5; commit");
    await synced(env);
    await env.source.query("insert into b select g, 0 from generate_series(1, 5) g");
    await synced(env);
    // A batch of b alone: the connection's stage for that signature is a's.
    await env.source.query("begin; update b set v = 1.2345 where k <= 3; delete from b where k = 5; commit");
    await synced(env);
    const want = await rows(env.source, "select k, v::text from b order by k");
    const got = await rows(env.target, "select k, v::text from b order by k");
    const st = await status(env);
    assert.deepEqual(got, want, `b on the target differs from the source (status ${st?.state}, last_error ${st?.last_error})`);
  } finally {
    await sidecar.stop();
  }
});
