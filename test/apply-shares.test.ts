// One heavy table of a big batch read by several readers, each the keys of its share
// (batch_plan's p_split_tables and "shared", batch_keys' p_split, src/target/readers.ts):
// the plan (the table in every stream, each key in one share only, the same lines as
// the one stream; no split where it would not lighten the heaviest reader); a
// backlog of one table applied by two readers with key updates, deletes and
// reinserts, keys moved to keys of the other share, and unique values moved between
// rows of both shares (whose update in place fails: the table then merged at its
// end, once both streams are over); the end of a shared table passed on once, after
// every stream, when a share has no line. DBSYNC_SPLIT_EVENTS makes batches of a
// few hundred events big.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, PoolClient } from "pg";
import { Plan } from "../src/source/batches";
import { Phases } from "../src/target/phases";
import { readStreams } from "../src/target/readers";
import { Piece } from "../src/target/stream";
import { Env, freshEnv, startSidecar } from "./helpers";
import { phasesOf } from "./kit/apply-log";
import { setup, strictlyConverged } from "./kit/convergence";
import { SPLIT_ENV, appliedByTwoReaders, atBatchEnd, copyOut, planNow } from "./kit/two-streams";

const DDL = `create table h (id int primary key, v text, u int unique);
             create table c (id int primary key, n int, w text)`;
const TABLES = ["h", "c"];

/** `writes`, then `check` at the end of the batch they make (atBatchEnd on this file's tables). */
const atEnd = (name: string, writes: (env: Env) => Promise<unknown>, check: (c: PoolClient) => Promise<void>) =>
  atBatchEnd(name, DDL, TABLES, writes, check);

/** The share of a one-column key, as batch_keys computes it (the key's text as capture stores it). */
const SHARE = (id: string, shares: number) => `(pg_catalog.hashtext(array[(${id})::text]::text) & 2147483647) % ${shares}`;

test("batch_plan shares one heavy table's keys out among its readers: in every stream, each key in one, the same lines", async () => {
  const writes = (env: Env) =>
    env.source.query(`insert into h select g, 'h' || g, g from generate_series(1, 600) g;
      update h set v = 'u' where id % 3 = 0; delete from h where id % 7 = 0;
      insert into c select g, g, 'c' from generate_series(1, 20) g`);
  await atEnd("shares_plan", writes, async (c) => {
    const one = await planNow(c, 1, 100, true);
    const h = one.tables.find((t) => t.target === '"public"."h"')!.table_id;
    const whole = await copyOut(c, one.stream!);
    assert.equal((await planNow(c, 3, 100, false)).streams, null, "without p_split_tables: h and c, c too small for a reader of its own");
    for (const readers of [2, 3]) {
      const plan = await planNow(c, readers, 100, true);
      assert.equal(plan.stream, one.stream);
      assert.deepEqual(plan.shared, [h]);
      assert.equal(plan.streams?.length, readers);
      const lines: string[] = [];
      const owner = new Map<string, number>();
      for (const [i, s] of plan.streams!.entries()) {
        assert.ok(s.tables.includes(h), `h in stream ${i}`);
        const mine = await copyOut(c, s.sql);
        for (const l of mine) {
          const [id, , key] = l.split("\t");
          if (Number(id) !== h) continue;
          assert.equal(owner.get(key), undefined, `key ${key} in two streams`);
          owner.set(key, i);
        }
        lines.push(...mine);
      }
      assert.deepEqual(lines.sort(), [...whole].sort(), "the streams' lines are the stream's");
      // Each key in the share batch_keys says: stream i reads share i.
      const shares = await c.query<{ k: string; s: number }>(`select k::text, ${SHARE("k", readers)} as s from unnest($1::int[]) k`, [[...owner.keys()].map(Number)]);
      for (const r of shares.rows) assert.equal(owner.get(r.k), r.s, `key ${r.k}`);
    }
  });
});

test("batch_plan splits a table only when that lightens the heaviest reader", async () => {
  // h a bit heavier than c, of different columns: two readers, one each, is the best
  // cut; h shared out would leave one reader half of h and all of c.
  const writes = (env: Env) =>
    env.source.query(`insert into h select g, 'h', g from generate_series(1, 600) g;
      insert into c select g, g, 'c' from generate_series(1, 400) g`);
  await atEnd("shares_lighter", writes, async (c) => {
    const plan = await planNow(c, 2, 100, true);
    assert.equal(plan.streams?.length, 2);
    assert.equal(plan.shared, null);
    assert.equal(plan.streams!.filter((s) => s.tables.length === 1).length, 2, "each table in one stream");
    // Three readers: h in two shares and c, the heaviest reader lighter than with two.
    const three = await planNow(c, 3, 100, true);
    const h = three.tables.find((t) => t.target === '"public"."h"')!.table_id;
    assert.deepEqual(three.shared, [h]);
    assert.deepEqual(three.streams?.map((s) => s.tables.includes(h)), [true, true, false]);
  });
});

test("a backlog of one table read by two readers: key updates, deletes and reinserts, keys and unique values moved across shares", async () => {
  const env = await freshEnv("shares_backlog");
  await setup(env, DDL, TABLES);
  const old = "insert into h select g, 'old', g + 10000 from generate_series(1, 500) g";
  await env.target.query(old);
  await env.source.query(old);
  // Unique values moved between rows that the target has, first: row 3n+1 gives its
  // value up, row 3n+2 takes it (half of them in the other share: its update in
  // place, merged first, fails on the target, and h is merged at its end).
  const pairs = await env.source.query(`select a from generate_series(1, 500, 3) a where ${SHARE("a", 2)} <> ${SHARE("a + 1", 2)}`);
  assert.ok(pairs.rows.length > 20, "pairs of rows in both shares");
  await env.source.query(`update h set u = null where id % 3 = 1;
    update h set u = id - 1 + 10000 where id % 3 = 2`);
  // Keys moved away and back, deleted and inserted again, and moved to keys of the
  // other share, within the batch.
  const moved = await env.source.query(
    `select a from generate_series(1, 3000, 11) a where ${SHARE("a", 2)} <> ${SHARE("a + 100000", 2)}`,
  );
  assert.ok(moved.rows.length > 50, "keys that move to the other share");
  await env.source.query(`insert into h select g, 'h' || g, g from generate_series(501, 3000) g;
    update h set v = 'updated ' || id where id % 3 = 0;
    update h set id = id + 1000000 where id % 13 = 0;
    update h set id = id - 1000000 where id > 1000000;
    delete from h where id % 7 = 0;
    insert into h select g, 'again ' || g, null from generate_series(7, 3000, 7) g;
    update h set id = id + 100000 where id % 11 = 1;
    insert into c select g, g, 'c' from generate_series(1, 50) g`);
  // Two readers, for one big table and a small one: h shared out.
  await appliedByTwoReaders(env, TABLES, "update h set v = 'later' where id = 1; delete from h where id = 2");
});

test("a shared table's end passed on once, after every stream, when a share has no line", async () => {
  const env = await freshEnv("shares_end");
  const reader = new Client({ connectionString: env.sourceUrl });
  const helpers = [await env.source.connect(), await env.source.connect()];
  await reader.connect();
  try {
    await reader.query("begin isolation level repeatable read");
    const lines = (from: number, to: number) => `copy (select 1, 'U', g::text from generate_series(${from}, ${to}) g) to stdout`;
    // The first share ends long before the second; the third has no line.
    const plan = {
      ddl: [], tables: [], sequences: [], stream: lines(1, 10), stream_width: 1, shared: [1],
      streams: [{ sql: lines(1, 10), tables: [1] }, { sql: lines(11, 100_000), tables: [1] }, { sql: lines(1, 0), tables: [1] }],
    } as unknown as Plan;
    const calls: string[] = [];
    const sink = {
      piece: async (p: Piece) => {
        calls.push(`piece ${p.id}`);
      },
      end: async (id: number) => {
        calls.push(`end ${id}`);
      },
    };
    const phases = new Phases();
    await readStreams(reader, plan, () => 0, sink, phases, { take: async (n) => helpers.slice(0, n), release: () => undefined });
    assert.ok(phases.toJSON()["stream of reader 3"] !== undefined);
    assert.deepEqual(calls.filter((c) => c.startsWith("end")), ["end 1"], "one end");
    assert.equal(calls.at(-1), "end 1", "after every piece");
    assert.ok(calls.filter((c) => c === "piece 1").length > 2, "pieces of both streams");
    await reader.query("commit");
  } finally {
    await reader.end();
    for (const h of helpers) h.release(true);
  }
});

test("a shared table merged at its end (no update in place on the target), beside a table of its columns: a stage of its own", async () => {
  // An identity column GENERATED ALWAYS on the target: g's rows cannot be written
  // over in place, so its pieces wait in its stage for its end; g2, of the same
  // columns, is read meanwhile by one of the readers, and would empty a stage it
  // shared with g.
  const ddl = "create table g (id int primary key, v text, w int); create table g2 (id int primary key, v text, w int)";
  const env = await freshEnv("shares_own_stage");
  await setup(env, ddl, ["g", "g2"], {
    targetDdl: `create table g (id int primary key, v text, w int generated always as identity);
                create table g2 (id int primary key, v text, w int generated always as identity)`,
  });
  const old = "insert into g select x, 'old', x from generate_series(1, 500) x";
  await env.target.query(old.replace("insert into g", "insert into g overriding system value"));
  await env.source.query(old);
  await env.source.query(`insert into g select x, 'g' || x, x from generate_series(501, 2000) x;
    update g set v = 'updated' where id % 3 = 0; delete from g where id % 7 = 0;
    update g set id = id + 100000 where id % 11 = 1;
    insert into g2 select x, 'g2', x from generate_series(1, 150) x`);
  const sidecar = startSidecar(env.sourceUrl, [], SPLIT_ENV);
  try {
    await strictlyConverged(env, ["g", "g2"]);
    assert.ok(phasesOf(sidecar.output())["stream of reader 2"] !== undefined, "two readers");
  } finally {
    await sidecar.stop();
  }
});
