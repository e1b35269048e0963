// Batches and commit order: the acceptance tests of "How ordering is kept".
// A batch (tick a, tick b] holds exactly the events of the transactions that
// committed between the two ticks, whatever their event ids; every committed event
// is in exactly one batch; replaying batches in order rebuilds the source.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { Client, Pool } from "pg";
import { freshEnv, rows, sleep, tableText, value } from "./helpers";

interface Ev {
  ev_id: number;
  op: string;
  shape_id: number;
  row: (string | null)[] | null;
}

let sourceUrl: string;
let source: Pool;
const clients: Client[] = [];

before(async () => {
  const env = await freshEnv("capture_ordering");
  sourceUrl = env.sourceUrl;
  source = env.source;
});

async function client(): Promise<Client> {
  const c = new Client({ connectionString: sourceUrl });
  c.on("error", () => undefined);
  await c.connect();
  clients.push(c);
  return c;
}

async function closeAll() {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
}

async function groupId(name: string): Promise<number> {
  return value<number>(source, "select group_id from dbsync.groups where name = $1", [name]);
}

async function tick(c: Client | Pool, g: number, force: boolean): Promise<number> {
  return Number(await value(c, "select dbsync.tick($1, $2)", [g, force]));
}

async function batch(c: Client | Pool, g: number, from: number, to: number): Promise<Ev[]> {
  const r = await rows<{ ev_id: string; op: string; shape_id: number; row: (string | null)[] | null }>(
    c,
    "select ev_id, op, shape_id, row from dbsync.batch_events($1, $2, $3) order by ev_id",
    [g, from, to],
  );
  return r.map((e) => ({ ...e, ev_id: Number(e.ev_id) }));
}

/** The first captured column of each event (the test tables' key or a marker). */
const firsts = (evs: Ev[]) => evs.map((e) => e.row?.[0] ?? null);

/**
 * Replays events (already in apply order) of one table into a fresh copy of it and
 * returns that copy's rows as text: per key the last event wins, 'D' removes, 'T' empties.
 */
async function replay(c: Client | Pool, table: string, evs: Ev[]): Promise<string[]> {
  const shapes = new Map<number, { columns: string[]; types: string[]; key_positions: number[] }>();
  for (const s of await rows<{ shape_id: number; columns: string[]; types: string[]; key_positions: number[] }>(
    c,
    "select shape_id, columns, types, key_positions from dbsync.shapes",
  )) {
    shapes.set(s.shape_id, s);
  }
  const state = new Map<string, (string | null)[]>();
  let shape: { columns: string[]; types: string[] } | undefined;
  for (const e of evs) {
    const s = shapes.get(e.shape_id)!;
    shape = s;
    if (e.op === "T") {
      state.clear();
      continue;
    }
    const key = JSON.stringify(s.key_positions.map((p) => e.row![p - 1]));
    if (e.op === "U") state.set(key, e.row!);
    else if (e.op === "D") state.delete(key);
    else throw new Error(`unknown op ${e.op}`);
  }
  const copy = `replay_${table}`;
  await c.query(`drop table if exists ${copy}`);
  await c.query(`create table ${copy} (like ${table})`);
  if (shape && state.size > 0) {
    const sel = shape.columns.map((col, i) => `(x->>${i})::${shape!.types[i]}`).join(", ");
    await c.query(
      `insert into ${copy} (${shape.columns.map((col) => `"${col}"`).join(", ")})
       select ${sel} from jsonb_array_elements($1::jsonb) x`,
      [JSON.stringify([...state.values()])],
    );
  }
  return tableText(c, copy);
}

test("a transaction that writes before tick A and commits after tick B is in batch (B, C] only", async () => {
  await source.query("create table q (id int primary key, v text); select dbsync.add_table('q', 'late')");
  const g = await groupId("late");
  const ticker = await client();
  const long = await client();
  const short = await client();
  const other = await client();
  try {
    const t0 = await tick(ticker, g, true);
    // `long` writes before A and again after B, and commits after B.
    await long.query("begin");
    await long.query("insert into q values (1, 'long, before A')");
    // `short` writes before A and commits between A and B.
    await short.query("begin");
    await short.query("insert into q values (2, 'short, before A')");
    const A = await tick(ticker, g, true);
    await short.query("commit");
    await other.query("insert into q values (3, 'between A and B')");
    const B = await tick(ticker, g, true);
    await long.query("insert into q values (4, 'long, after B')");
    await other.query("insert into q values (5, 'between B and long commit')");
    await long.query("commit");
    await other.query("insert into q values (6, 'after long commit')");
    const C = await tick(ticker, g, true);
    await other.query("insert into q values (7, 'after C')");
    const D = await tick(ticker, g, true);
    assert.deepEqual([A, B, C, D], [t0 + 1, t0 + 2, t0 + 3, t0 + 4]);

    // The trap: the long transaction's first event has a lower id than events of
    // transactions committed batches before it.
    const ids = new Map(
      (await rows<{ id: string; ev_id: string }>(source, "select row[1] as id, ev_id from dbsync.events where group_id = $1", [g]))
        .map((r) => [r.id, Number(r.ev_id)]),
    );
    assert.ok(ids.get("1")! < ids.get("2")! && ids.get("1")! < ids.get("3")!);

    const ids_of = async (a: number, b: number) => firsts(await batch(ticker, g, a, b)).sort();
    assert.deepEqual(await ids_of(t0, A), []);
    assert.deepEqual(await ids_of(A, B), ["2", "3"]);
    assert.deepEqual(await ids_of(B, C), ["1", "4", "5", "6"]);
    assert.deepEqual(await ids_of(C, D), ["7"]);
    // Non-consecutive ticks: the union of the batches in between.
    assert.deepEqual(await ids_of(t0, B), ["2", "3"]);
    assert.deepEqual(await ids_of(A, C), ["1", "2", "3", "4", "5", "6"]);
    assert.deepEqual(await ids_of(B, D), ["1", "4", "5", "6", "7"]);
    assert.deepEqual(await ids_of(t0, D), ["1", "2", "3", "4", "5", "6", "7"]);
  } finally {
    await closeAll();
  }
});

test("a transaction alone with the ticker, writing before tick A and committing before B, is in (A, B]", async () => {
  // No other transaction completes between its write and tick A: its xid is then at
  // or above the snapshot's xmax, and it is not in the xip list.
  await source.query("create table q2 (id int primary key, v text); select dbsync.add_table('q2', 'alone')");
  const g = await groupId("alone");
  const ticker = await client();
  const w = await client();
  try {
    const t0 = await tick(ticker, g, true);
    await w.query("begin");
    await w.query("insert into q2 values (1, 'before A')");
    const A = await tick(ticker, g, true);
    const snapA = await value<string>(ticker, "select snap::text from dbsync.ticks where group_id = $1 and tick_id = $2", [g, A]);
    const xid = await value<string>(w, "select pg_current_xact_id()::text");
    await w.query("commit");
    const B = await tick(ticker, g, true);
    const C = await tick(ticker, g, true);
    const all = [
      ...firsts(await batch(ticker, g, t0, A)).map((x) => `(t0,A]:${x}`),
      ...firsts(await batch(ticker, g, A, B)).map((x) => `(A,B]:${x}`),
      ...firsts(await batch(ticker, g, B, C)).map((x) => `(B,C]:${x}`),
    ];
    assert.deepEqual(all, ["(A,B]:1"], `xid ${xid}, snapshot A ${snapA}`);
    assert.deepEqual(firsts(await batch(ticker, g, t0, C)), ["1"]);
  } finally {
    await closeAll();
  }
});

test("50 concurrent writers across 20+ ticks: every event in exactly one batch, per-row commit order kept", async () => {
  const KEYS = 30;
  await source.query(`
    create table acct (k int primary key, ver int not null, w int not null, note text);
    -- Not captured: a per-key counter bumped (and so locked until commit) by every
    -- transaction touching the key, before it touches it. Its values are the
    -- key's commit order.
    create table oracle (k int primary key, n int not null);
    insert into oracle select k, 0 from generate_series(0, ${KEYS - 1}) k;
    select dbsync.add_table('acct', 'conc');
  `);
  const g = await groupId("conc");
  const ticker = await client();
  const writers = await Promise.all(Array.from({ length: 50 }, () => client()));
  const rnd = (n: number) => Math.floor(Math.random() * n);
  const stats = { committed: 0, rolledBack: 0, failed: 0 };

  const bump = async (c: Client, k: number) =>
    Number((await c.query("update oracle set n = n + 1 where k = $1 returning n", [k])).rows[0].n);

  type Op = { kind: "upsert" | "update" | "delete" | "pair" | "move"; k: number; k2: number };
  async function writer(c: Client, w: number) {
    for (let j = 0; j < 6; j++) {
      const ops: Op[] = Array.from({ length: 1 + rnd(3) }, () => {
        const r = Math.random();
        const k = rnd(KEYS);
        const k2 = (k + 1 + rnd(KEYS - 1)) % KEYS;
        const kind = r < 0.4 ? "upsert" : r < 0.6 ? "update" : r < 0.75 ? "delete" : r < 0.88 ? "pair" : "move";
        return { kind, k, k2 };
      });
      const keys = [...new Set(ops.flatMap((o) => (o.kind === "pair" || o.kind === "move" ? [o.k, o.k2] : [o.k])))];
      try {
        await c.query("begin");
        // Lock the keys' counters in key order (no deadlocks), then work in random order.
        await c.query("select from oracle where k = any ($1) order by k for update", [keys]);
        for (const { kind, k, k2 } of ops) {
          const n = await bump(c, k);
          if (kind === "upsert") {
            await c.query(
              `insert into acct values ($1, $2, $3, $4)
               on conflict (k) do update set ver = excluded.ver, w = excluded.w, note = excluded.note`,
              [k, n, w, `w${w} t${j} upsert`],
            );
          } else if (kind === "update") {
            await c.query("update acct set ver = $2, w = $3, note = $4 where k = $1", [k, n, w, `w${w} t${j} update`]);
          } else if (kind === "delete") {
            await c.query("delete from acct where k = $1", [k]);
          } else if (kind === "pair") {
            // Two keys in one statement (an INSERT and an UPDATE part).
            const n2 = await bump(c, k2);
            await c.query(
              `insert into acct values ($1, $2, $5, $6), ($3, $4, $5, $6)
               on conflict (k) do update set ver = excluded.ver, w = excluded.w, note = excluded.note`,
              [k, n, k2, n2, w, `w${w} t${j} pair`],
            );
          } else {
            // A key change: k moves to k2 if k2 is free.
            const n2 = await bump(c, k2);
            await c.query(
              `update acct set k = $2, ver = $3, w = $4, note = $5
               where k = $1 and not exists (select from acct where k = $2)`,
              [k, k2, n2, w, `w${w} t${j} move from ${k}`],
            );
          }
          await sleep(rnd(8));
        }
        // Random commit order; some transactions stay open across several ticks.
        await sleep(Math.random() < 0.1 ? 60 + rnd(120) : rnd(25));
        if (Math.random() < 0.08) {
          await c.query("rollback");
          stats.rolledBack++;
        } else {
          await c.query("commit");
          stats.committed++;
        }
      } catch (err) {
        await c.query("rollback").catch(() => undefined);
        stats.failed++;
        throw err;
      }
    }
  }

  try {
    const first = await tick(ticker, g, true);
    let done = false;
    let during = 0;
    const ticking = (async () => {
      while (!done || during < 22) {
        await tick(ticker, g, true);
        during++;
        await sleep(20 + rnd(30));
      }
    })();
    await Promise.all(writers.map((c, w) => writer(c, w)));
    done = true;
    await ticking;
    const last = await tick(ticker, g, true);
    assert.ok(stats.committed > 200, JSON.stringify(stats));

    const ticks = (
      await rows<{ tick_id: string }>(source, "select tick_id from dbsync.ticks where group_id = $1 and tick_id >= $2 order by tick_id", [g, first])
    ).map((t) => Number(t.tick_id));
    assert.equal(ticks[ticks.length - 1], last);
    assert.ok(ticks.length >= 22, `only ${ticks.length} ticks`);
    // Tick `first` was taken before any write: nothing of acct is at or before it.
    assert.deepEqual(await batch(ticker, g, 0, first), []);

    // Every committed event is in exactly one batch.
    const batches: Ev[][] = [];
    for (let i = 0; i + 1 < ticks.length; i++) batches.push(await batch(ticker, g, ticks[i], ticks[i + 1]));
    const seen = new Map<number, number>();
    batches.forEach((b, i) => b.forEach((e) => {
      assert.ok(!seen.has(e.ev_id), `event ${e.ev_id} in batches ${seen.get(e.ev_id)} and ${i}`);
      seen.set(e.ev_id, i);
    }));
    const all = (await rows<{ ev_id: string }>(source, "select ev_id from dbsync.events where group_id = $1", [g]))
      .map((r) => Number(r.ev_id)).sort((a, b) => a - b);
    assert.deepEqual([...seen.keys()].sort((a, b) => a - b), all);
    assert.ok(batches.filter((b) => b.length > 0).length >= 10, "writes spread over too few batches");
    // The test exercised the hazard: some batch holds an event older than the
    // newest event of an earlier batch.
    let maxSoFar = 0;
    let outOfIdOrder = 0;
    for (const b of batches) {
      for (const e of b) if (e.ev_id < maxSoFar) outOfIdOrder++;
      for (const e of b) maxSoFar = Math.max(maxSoFar, e.ev_id);
    }
    assert.ok(outOfIdOrder > 0, "no transaction committed out of event-id order");

    // Per key, in apply order (batch order, then ev_id): new states carry strictly
    // increasing commit numbers, and a delete carries the state last applied.
    const order = batches.flat();
    const lastVer = new Map<string, number>();
    const present = new Map<string, boolean>();
    for (const e of order) {
      const [k, ver] = [e.row![0]!, Number(e.row![1])];
      if (e.op === "U") {
        assert.ok(ver > (lastVer.get(k) ?? 0), `key ${k}: version ${ver} applied after ${lastVer.get(k)}`);
        lastVer.set(k, ver);
        present.set(k, true);
      } else {
        assert.equal(e.op, "D");
        assert.equal(present.get(k), true, `key ${k}: deleted while absent`);
        assert.equal(ver, lastVer.get(k), `key ${k}: delete of version ${ver}, last applied ${lastVer.get(k)}`);
        present.set(k, false);
      }
    }

    // Replaying the batches in order gives the source table exactly.
    assert.deepEqual(await replay(ticker, "acct", order), await tableText(ticker, "acct"));

    // Batches over non-consecutive ticks are the union of the consecutive ones.
    const idsOf = (evs: Ev[]) => evs.map((e) => e.ev_id).sort((a, b) => a - b);
    for (let i = 0; i + 5 < ticks.length; i++) {
      const union = batches.slice(i, i + 5).flat();
      assert.deepEqual(idsOf(await batch(ticker, g, ticks[i], ticks[i + 5])), idsOf(union), `(t${i}, t${i + 5}]`);
    }
    assert.deepEqual(idsOf(await batch(ticker, g, ticks[0], last)), all);
  } finally {
    await closeAll();
  }
});

test("a partitioned table: parent, partition, row moves, later partitions, partition TRUNCATE", async () => {
  await source.query(`
    create table pt (id int, region text, v text, primary key (id, region)) partition by list (region);
    create table pt_a partition of pt for values in ('a');
    create table pt_b partition of pt for values in ('b');
    select dbsync.add_table('pt', 'parts');
  `);
  const g = await groupId("parts");
  const c = await client();
  try {
    let mark = 0;
    const step = async (sql: string) => {
      await c.query(sql);
      const evs = (
        await rows<{ ev_id: string; op: string; shape_id: number; row: (string | null)[] | null }>(
          c,
          "select ev_id, op, shape_id, row from dbsync.events where group_id = $1 and ev_id > $2 order by ev_id",
          [g, mark],
        )
      ).map((e) => ({ ...e, ev_id: Number(e.ev_id) }));
      if (evs.length) mark = evs[evs.length - 1].ev_id;
      return evs;
    };
    const show = (evs: Ev[]) => evs.map((e) => `${e.op}${e.row ? ":" + e.row.join("/") : ""}`);
    const t0 = await tick(c, g, true);

    assert.deepEqual(show(await step("insert into pt values (1, 'a', 'x'), (2, 'b', 'y')")), ["U:1/a/x", "U:2/b/y"]);
    assert.deepEqual(show(await step("insert into pt_a values (3, 'a', 'z')")), ["U:3/a/z"]);
    // A row moving to another partition: the old key goes, the new one comes.
    assert.deepEqual(show(await step("update pt set region = 'b' where id = 1")), ["D:1/a/x", "U:1/b/x"]);
    // An update in place ends with the new state of the row.
    const upd = show(await step("update pt_b set v = 'y2' where id = 2"));
    assert.equal(upd[upd.length - 1], "U:2/b/y2");
    assert.ok(upd.every((e) => e === "U:2/b/y2" || e === "D:2/b/y"), upd.join(" "));
    // A partition created after add_table is captured too, through the parent and directly.
    await c.query("create table pt_c partition of pt for values in ('c')");
    assert.deepEqual(show(await step("insert into pt values (4, 'c', 'w')")), ["U:4/c/w"]);
    assert.deepEqual(show(await step("insert into pt_c values (5, 'c', 'v')")), ["U:5/c/v"]);
    assert.deepEqual(show(await step("delete from pt_c where id = 5")), ["D:5/c/v"]);
    await c.query("insert into pt_c values (6, 'c', 'u')");
    await step("select 1");
    // TRUNCATE of one partition: its rows are deleted, nothing else.
    assert.deepEqual(show(await step("truncate pt_b")).sort(), ["D:1/b/x", "D:2/b/y2"]);
    const t1 = await tick(c, g, true);
    assert.deepEqual(await replay(c, "pt", await batch(c, g, t0, t1)), await tableText(c, "pt"));

    await c.query("insert into pt values (7, 'b', 'q'), (8, 'c', 'r')");
    // TRUNCATE of the whole table ends with a 'T'.
    const tr = show(await step("truncate pt"));
    assert.equal(tr[tr.length - 1], "T");
    await c.query("insert into pt values (9, 'a', 'after truncate')");
    const t2 = await tick(c, g, true);
    assert.deepEqual(await replay(c, "pt", await batch(c, g, t0, t2)), await tableText(c, "pt"));
    assert.deepEqual(await tableText(c, "pt"), ["(9,a,\"after truncate\")"]);
  } finally {
    await closeAll();
  }
});

test(
  "TRUNCATE of a partition created after add_table queues its rows as deletes (DDL event trigger)",
  async () => {
    await source.query(`
      create table lp (id int primary key, v text) partition by range (id);
      create table lp_1 partition of lp for values from (0) to (100);
      select dbsync.add_table('lp', 'late_parts');
      create table lp_2 partition of lp for values from (100) to (200);
      insert into lp values (1, 'a'), (101, 'b'), (102, 'c');
    `);
    const g = await groupId("late_parts");
    const t0 = await tick(source, g, true);
    await source.query("truncate lp_2");
    const t1 = await tick(source, g, true);
    const evs = await batch(source, g, t0, t1);
    assert.deepEqual(evs.map((e) => `${e.op}:${e.row?.[0]}`).sort(), ["D:101", "D:102"]);
    assert.deepEqual(await replay(source, "lp", await batch(source, g, 0, t1)), await tableText(source, "lp"));
  },
);

test("tick without force: same tick while nothing happened, a new one once a write committed", async () => {
  await source.query("create table tk (id int primary key); select dbsync.add_table('tk', 'lazy')");
  const g = await groupId("lazy");
  const c = await client();
  const w = await client();
  try {
    const t0 = await tick(c, g, true);
    assert.equal(await tick(c, g, false), t0);
    assert.equal(await tick(c, g, false), t0);

    await w.query("insert into tk values (1)");
    const t1 = await tick(c, g, false);
    assert.equal(t1, t0 + 1);
    assert.equal(await tick(c, g, false), t1);
    assert.deepEqual(firsts(await batch(c, g, t0, t1)), ["1"]);

    // A write not yet committed: no tick (it would only make an empty batch), however
    // many event ids it draws; once it commits, one.
    await w.query("begin");
    await w.query("insert into tk values (2)");
    assert.equal(await tick(c, g, false), t1);
    await w.query("insert into tk values (3)");
    assert.equal(await tick(c, g, false), t1);
    await w.query("commit");
    const t2 = await tick(c, g, false);
    assert.equal(t2, t1 + 1);
    assert.equal(await tick(c, g, false), t2);
    assert.deepEqual(firsts(await batch(c, g, t1, t2)), ["2", "3"]);

    // A rolled-back write: nothing new, before or after it ends.
    await w.query("begin");
    await w.query("insert into tk values (4)");
    assert.equal(await tick(c, g, false), t2);
    await w.query("rollback");
    assert.equal(await tick(c, g, false), t2);

    // A forced tick is always new.
    assert.equal(await tick(c, g, true), t2 + 1);
    // tick refuses to run in REPEATABLE READ.
    await c.query("begin isolation level repeatable read");
    await assert.rejects(c.query("select dbsync.tick($1)", [g]), /READ COMMITTED/);
    await c.query("rollback");
  } finally {
    await closeAll();
  }
});

test("a transaction that creates a group and writes to its tables has its writes after tick 0", async () => {
  // The creating transaction's xid is below the snapshot's xmax once a later
  // transaction has committed: pg_current_snapshot() then calls it "visible", and a
  // tick 0 taken that way swallowed its own writes.
  const a = await client();
  const b = await client();
  try {
    await source.query("create table own (id int primary key)");
    await a.query("begin");
    await a.query("select pg_current_xact_id()");
    await b.query("select pg_current_xact_id()"); // a later xid, committed at once
    await a.query("select dbsync.add_table('own', 'own_group')");
    await a.query("insert into own values (1), (2)");
    await a.query("commit");
    const g = await groupId("own_group");
    const t1 = await tick(source, g, true);
    assert.deepEqual(await replay(source, "own", await batch(source, g, 0, t1)), ["(1)", "(2)"]);
  } finally {
    await closeAll();
  }
});
