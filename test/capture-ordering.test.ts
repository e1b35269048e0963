// Batches and commit order: the acceptance tests of "How ordering is kept".
// A batch (tick a, tick b] holds exactly the events of the transactions that
// committed between the two ticks, whatever their event ids; every committed event
// is in exactly one batch. Capture records which keys changed and the sidecar reads
// those keys' rows at the batch's end, so what must hold is that a batch's keys are
// complete: every key a transaction changed (old and new key of a key change, keys
// written by writable CTEs, by application triggers' nested statements, swapped
// under a deferrable key) is in the batch its transaction committed in.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { Client, Pool } from "pg";
import { compat, freshEnv, queueOf, rows, seeded, sleep, SOURCE_MAJOR, tableText, value } from "./helpers";

/** PostgreSQL 10: no key on a partitioned table (one per partition, named to add_table), no row movement. */
const PG10 = SOURCE_MAJOR < 11;

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

/** The distinct keys of the 'K' events, each as its columns joined by "/", sorted. */
const keysOf = (evs: Ev[]) => [...new Set(evs.filter((e) => e.op === "K").map((e) => e.row!.join("/")))].sort();

/** Every key of a table now, as keysOf shows them. */
async function tableKeys(c: Client | Pool, table: string, key: string[]): Promise<string[]> {
  const r = await rows<{ k: string }>(c, `select concat_ws('/', ${key.join(", ")}) as k from ${table}`);
  return r.map((x) => x.k).sort();
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
      (await rows<{ id: string; ev_id: string }>(source, `select row[1] as id, ev_id from ${queueOf("$1")} e`, [g]))
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
    const xid = await value<string>(w, compat("select pg_current_xact_id()::text"));
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

test("50 concurrent writers across 20+ ticks: every event in exactly one batch, every changed key in its transaction's batch, per-key commit order kept", async () => {
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
  const stats = { committed: 0, rolledBack: 0, failed: 0 };
  /** Per committed transaction: its xid, the keys whose rows it changed, and its commit number per key it locked. */
  const txs: { xid: string; changed: Set<string>; n: Map<string, number> }[] = [];
  /** The xids of the transactions rolled back. */
  const rolledBack: string[] = [];

  type Op = { kind: "upsert" | "update" | "delete" | "pair" | "move"; k: number; k2: number };
  async function writer(c: Client, w: number) {
    const rng = seeded(`capture-ordering/writer${w}`);
    const rnd = (n: number) => rng.below(n);
    for (let j = 0; j < 6; j++) {
      const ops: Op[] = Array.from({ length: 1 + rnd(3) }, () => {
        const r = rng.next();
        const k = rnd(KEYS);
        const k2 = (k + 1 + rnd(KEYS - 1)) % KEYS;
        const kind = r < 0.4 ? "upsert" : r < 0.6 ? "update" : r < 0.75 ? "delete" : r < 0.88 ? "pair" : "move";
        return { kind, k, k2 };
      });
      const keys = [...new Set(ops.flatMap((o) => (o.kind === "pair" || o.kind === "move" ? [o.k, o.k2] : [o.k])))];
      const changed = new Set<string>();
      const n = new Map<string, number>();
      const bump = async (k: number) => {
        const v = Number((await c.query("update oracle set n = n + 1 where k = $1 returning n", [k])).rows[0].n);
        n.set(String(k), v);
        return v;
      };
      /** Runs a write; the keys it changed are those of the rows it returned. */
      const write = async (sql: string, params: unknown[], returning: string) => {
        const r = await c.query(`${sql} returning ${returning}`, params);
        for (const row of r.rows) for (const v of Object.values(row)) changed.add(String(v));
      };
      try {
        await c.query("begin");
        // Lock the keys' counters in key order (no deadlocks), then work in random order.
        await c.query("select from oracle where k = any ($1) order by k for update", [keys]);
        const xid = await value<string>(c, compat("select pg_current_xact_id()::text"));
        for (const { kind, k, k2 } of ops) {
          const v = await bump(k);
          if (kind === "upsert") {
            await write(
              `insert into acct values ($1, $2, $3, $4)
               on conflict (k) do update set ver = excluded.ver, w = excluded.w, note = excluded.note`,
              [k, v, w, `w${w} t${j} upsert`],
              "k",
            );
          } else if (kind === "update") {
            await write("update acct set ver = $2, w = $3, note = $4 where k = $1", [k, v, w, `w${w} t${j} update`], "k");
          } else if (kind === "delete") {
            await write("delete from acct where k = $1", [k], "k");
          } else if (kind === "pair") {
            // Two keys in one statement (an INSERT and an UPDATE part).
            const v2 = await bump(k2);
            await write(
              `insert into acct values ($1, $2, $5, $6), ($3, $4, $5, $6)
               on conflict (k) do update set ver = excluded.ver, w = excluded.w, note = excluded.note`,
              [k, v, k2, v2, w, `w${w} t${j} pair`],
              "k",
            );
          } else {
            // A key change: k moves to k2 if k2 is free; both keys changed.
            const v2 = await bump(k2);
            await write(
              `update acct set k = $2, ver = $3, w = $4, note = $5
               where k = $1 and not exists (select from acct where k = $2)`,
              [k, k2, v2, w, `w${w} t${j} move from ${k}`],
              "$1::int as old, k",
            );
          }
          await sleep(rnd(8));
        }
        // Random commit order; some transactions stay open across several ticks.
        await sleep(rng.chance(0.1) ? 60 + rnd(120) : rnd(25));
        if (rng.chance(0.08)) {
          await c.query("rollback");
          rolledBack.push(xid);
          stats.rolledBack++;
        } else {
          await c.query("commit");
          txs.push({ xid, changed, n });
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
    const rng = seeded("capture-ordering/ticker");
    const ticking = (async () => {
      while (!done || during < 22) {
        await tick(ticker, g, true);
        during++;
        await sleep(rng.int(20, 50));
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
      // (The keys of one 'M' event share its id.)
      assert.ok(!seen.has(e.ev_id) || seen.get(e.ev_id) === i, `event ${e.ev_id} in batches ${seen.get(e.ev_id)} and ${i}`);
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

    // The batch each transaction committed in, by the ticks' snapshots alone.
    const batchOf = new Map(
      (
        await rows<{ xid: string; i: number }>(
          source,
          compat(`select x.xid::text, (select count(*)::int - 1 from unnest($2::int8[]) t(tick_id)
                                join dbsync.ticks k on k.group_id = $3 and k.tick_id = t.tick_id
                                where not pg_visible_in_snapshot(x.xid::xid8, k.snap)) as i
           from unnest($1::text[]) x(xid)`),
          [txs.map((t) => t.xid), ticks, g],
        )
      ).map((r) => [r.xid, r.i]),
    );
    // Per transaction: its events are in that batch, and their keys are exactly the
    // keys whose rows it changed (old and new key of a move, both keys of a pair).
    const eventsOf = new Map<string, { batches: Set<number>; keys: Set<string> }>();
    const evXids = new Map(
      (await rows<{ ev_id: string; txid: string }>(source, `select ev_id, txid::text from ${queueOf("$1")} e`, [g]))
        .map((r) => [Number(r.ev_id), r.txid]),
    );
    batches.forEach((b, i) => b.forEach((e) => {
      assert.equal(e.op, "K");
      const x = evXids.get(e.ev_id)!;
      const t = eventsOf.get(x) ?? { batches: new Set(), keys: new Set() };
      t.batches.add(i);
      t.keys.add(e.row![0]!);
      eventsOf.set(x, t);
    }));
    let moves = 0;
    for (const t of txs) {
      const i = batchOf.get(t.xid)!;
      assert.ok(i >= 0 && i < batches.length, `transaction ${t.xid} committed in no batch (${i})`);
      const got = eventsOf.get(t.xid);
      if (t.changed.size === 0) {
        assert.equal(got, undefined, `transaction ${t.xid} changed no row but queued ${JSON.stringify(got && [...got.keys])}`);
        continue;
      }
      assert.ok(got, `transaction ${t.xid} changed keys ${[...t.changed]} and queued nothing`);
      assert.deepEqual([...got.batches], [i], `transaction ${t.xid}: events in batches ${[...got.batches]}, committed in ${i}`);
      assert.deepEqual([...got.keys].sort(), [...t.changed].sort(), `transaction ${t.xid}: keys queued vs changed`);
      if (t.changed.size > 1) moves++;
    }
    assert.ok(moves > 0, "no transaction changed several keys");
    // Nothing else is queued: no event of a rolled-back transaction, none of no transaction.
    const committed = new Set(txs.map((t) => t.xid));
    for (const x of eventsOf.keys()) assert.ok(committed.has(x), `events of transaction ${x}, which did not commit`);
    assert.ok(rolledBack.every((x) => !eventsOf.has(x)));

    // Per key, the transactions that changed it come in commit order (the oracle's
    // numbers), batch by batch: a later change is never in an earlier batch.
    const perKey = new Map<string, { n: number; i: number }[]>();
    for (const t of txs) {
      for (const k of t.changed) {
        const list = perKey.get(k) ?? [];
        list.push({ n: t.n.get(k)!, i: batchOf.get(t.xid)! });
        perKey.set(k, list);
      }
    }
    for (const [k, list] of perKey) {
      list.sort((a, b) => a.n - b.n);
      for (let j = 1; j < list.length; j++) {
        assert.ok(list[j].n > list[j - 1].n, `key ${k}: two transactions with commit number ${list[j].n}`);
        assert.ok(list[j].i >= list[j - 1].i, `key ${k}: change ${list[j].n} in batch ${list[j].i}, before change ${list[j - 1].n} in ${list[j - 1].i}`);
      }
    }
    // Reading every changed key at the end gives the source: each key present now
    // was changed by some batch.
    const changedKeys = keysOf(batches.flat());
    const present = await tableKeys(ticker, "acct", ["k"]);
    assert.deepEqual(present.filter((k) => !changedKeys.includes(k)), []);

    // Batches over non-consecutive ticks are the union of the consecutive ones.
    // (Queue events: the keys of one 'M' event share its id.)
    const idsOf = (evs: Ev[]) => [...new Set(evs.map((e) => e.ev_id))].sort((a, b) => a - b);
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
  const partKey = PG10 ? "(primary key (id, region))" : "";
  await source.query(`
    create table pt (id int not null, region text not null, v text${PG10 ? "" : ", primary key (id, region)"}) partition by list (region);
    create table pt_a partition of pt ${partKey} for values in ('a');
    create table pt_b partition of pt ${partKey} for values in ('b');
    select dbsync.add_table('pt', 'parts', ${PG10 ? "array['id', 'region']" : "null"});
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
          `select ev_id, op, shape_id, row from ${queueOf("$1")} e where ev_id > $2 order by ev_id`,
          [g, mark],
        )
      ).map((e) => ({ ...e, ev_id: Number(e.ev_id) }));
      if (evs.length) mark = evs[evs.length - 1].ev_id;
      return evs;
    };
    const show = (evs: Ev[]) => evs.map((e) => `${e.op}${e.row ? ":" + e.row.join("/") : ""}`);
    const sorted = async (sql: string) => show(await step(sql)).sort();
    const t0 = await tick(c, g, true);
    // Every event names the key's columns: (id, region).
    const shapeCols = async () =>
      (await rows<{ columns: string[] }>(
        c,
        `select distinct s.columns from ${queueOf("$1")} e join dbsync.shapes s using (shape_id) where e.op = 'K'`,
        [g],
      )).map((r) => r.columns);

    assert.deepEqual(await sorted("insert into pt values (1, 'a', 'x'), (2, 'b', 'y')"), ["K:1/a", "K:2/b"]);
    assert.deepEqual(await sorted("insert into pt_a values (3, 'a', 'z')"), ["K:3/a"]);
    // A row moving to another partition: the old key and the new one.
    // (PostgreSQL 10 moves no row between partitions: the application deletes and inserts.)
    const move = PG10 ? "with d as (delete from pt where id = 1 returning id, v) insert into pt select id, 'b', v from d" : "update pt set region = 'b' where id = 1";
    assert.deepEqual(await sorted(move), ["K:1/a", "K:1/b"]);
    // An update in place: its key, once.
    assert.deepEqual(await sorted("update pt_b set v = 'y2' where id = 2"), ["K:2/b"]);
    // A partition created after add_table is captured too, through the parent and directly.
    await c.query(`create table pt_c partition of pt ${partKey} for values in ('c')`);
    assert.deepEqual(await sorted("insert into pt values (4, 'c', 'w')"), ["K:4/c"]);
    assert.deepEqual(await sorted("insert into pt_c values (5, 'c', 'v')"), ["K:5/c"]);
    assert.deepEqual(await sorted("delete from pt_c where id = 5"), ["K:5/c"]);
    assert.deepEqual(await sorted("insert into pt_c values (6, 'c', 'u')"), ["K:6/c"]);
    // TRUNCATE of one partition: its rows' keys, nothing else.
    assert.deepEqual(await sorted("truncate pt_b"), ["K:1/b", "K:2/b"]);
    const t1 = await tick(c, g, true);
    // The batch lists every key that changed in it.
    const b1 = await batch(c, g, t0, t1);
    assert.deepEqual(keysOf(b1), ["1/a", "1/b", "2/b", "3/a", "4/c", "5/c", "6/c"]);
    assert.ok(b1.every((e) => e.op === "K"));
    assert.deepEqual(await tableKeys(c, "pt", ["id", "region"]), ["3/a", "4/c", "6/c"]);

    assert.deepEqual(await sorted("insert into pt values (7, 'b', 'q'), (8, 'c', 'r')"), ["K:7/b", "K:8/c"]);
    // TRUNCATE of the whole table: each partition's keys (its BEFORE TRUNCATE
    // trigger), then one 'T'.
    const tr = show(await step("truncate pt"));
    assert.equal(tr[tr.length - 1], "T");
    assert.deepEqual(tr.slice(0, -1).sort(), ["K:3/a", "K:4/c", "K:6/c", "K:7/b", "K:8/c"]);
    await c.query("insert into pt values (9, 'a', 'after truncate')");
    const t2 = await tick(c, g, true);
    const b2 = await batch(c, g, t1, t2);
    assert.deepEqual(b2.filter((e) => e.op === "T").length, 1);
    assert.deepEqual(keysOf(b2), ["3/a", "4/c", "6/c", "7/b", "8/c", "9/a"]);
    assert.deepEqual(await tableText(c, "pt"), ["(9,a,\"after truncate\")"]);
    assert.deepEqual(await shapeCols(), [["id", "region"]]);
  } finally {
    await closeAll();
  }
});

test(
  "TRUNCATE of a partition created after add_table queues its rows' keys (DDL event trigger)",
  async () => {
    await source.query(`
      create table lp (id int not null${PG10 ? "" : " primary key"}, v text) partition by range (id);
      create table lp_1 partition of lp ${PG10 ? "(primary key (id))" : ""} for values from (0) to (100);
      select dbsync.add_table('lp', 'late_parts', ${PG10 ? "array['id']" : "null"});
      create table lp_2 partition of lp ${PG10 ? "(primary key (id))" : ""} for values from (100) to (200);
      insert into lp values (1, 'a'), (101, 'b'), (102, 'c');
    `);
    const g = await groupId("late_parts");
    const t0 = await tick(source, g, true);
    await source.query("truncate lp_2");
    const t1 = await tick(source, g, true);
    const evs = await batch(source, g, t0, t1);
    assert.deepEqual(evs.map((e) => `${e.op}:${e.row?.[0]}`).sort(), ["K:101", "K:102"]);
    assert.deepEqual(keysOf(await batch(source, g, 0, t1)), ["1", "101", "102"]);
    assert.deepEqual(await tableKeys(source, "lp", ["id"]), ["1"]);
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
    await a.query(compat("select pg_current_xact_id()"));
    await b.query(compat("select pg_current_xact_id()")); // a later xid, committed at once
    await a.query("select dbsync.add_table('own', 'own_group')");
    await a.query("insert into own values (1), (2)");
    await a.query("commit");
    const g = await groupId("own_group");
    const t1 = await tick(source, g, true);
    assert.deepEqual(keysOf(await batch(source, g, 0, t1)), ["1", "2"]);
  } finally {
    await closeAll();
  }
});

/**
 * What `sql` queued in `g`, committed alone between two ticks: the batch's events,
 * its 'K' keys, and those keys per table.
 */
async function batchKeys(
  c: Client,
  g: number,
  sql: string | string[],
): Promise<{ keys: string[]; evs: Ev[]; byTable: Record<string, string[]> }> {
  const a = await tick(c, g, true);
  for (const q of Array.isArray(sql) ? sql : [sql]) await c.query(q);
  const b = await tick(c, g, true);
  const evs = await batch(c, g, a, b);
  const tables = new Map(
    (await rows<{ shape_id: number; t: string }>(
      c,
      "select s.shape_id, t.table_name as t from dbsync.shapes s join dbsync.tables t using (table_id) where t.group_id = $1",
      [g],
    )).map((r) => [r.shape_id, r.t]),
  );
  const byTable: Record<string, string[]> = {};
  for (const t of new Set(tables.values())) {
    const k = keysOf(evs.filter((e) => tables.get(e.shape_id) === t));
    if (k.length) byTable[t] = k;
  }
  return { keys: keysOf(evs), evs, byTable };
}

test("a writable CTE: the batch lists every key each of its parts changed", async () => {
  await source.query(`
    create table wc (id int primary key, v text);
    create table wc2 (id int primary key, v text);
    insert into wc select g, 'v' || g from generate_series(1, 6) g;
    insert into wc2 values (1, 'x');
    select dbsync.add_table('wc', 'cte'), dbsync.add_table('wc2', 'cte');
  `);
  const g = await groupId("cte");
  const c = await client();
  try {
    // Delete, key change, insert and a write to another table in one statement
    // (their statement triggers fire in an order that is not execution order).
    const { evs, byTable } = await batchKeys(
      c,
      g,
      `with d as (delete from wc where id = 1 returning id, v),
            m as (update wc set id = id + 10 where id in (2, 3) returning id),
            u as (update wc set v = 'u' where id = 4 returning id),
            o as (update wc2 set id = 20 where id = 1 returning id)
       insert into wc select id + 100, v from d`,
    );
    assert.deepEqual(byTable, { wc: ["1", "101", "12", "13", "2", "3", "4"], wc2: ["1", "20"] });
    // One statement: each key once.
    assert.equal(evs.length, 9);
    assert.deepEqual(await tableKeys(c, "wc", ["id"]), ["101", "12", "13", "4", "5", "6"]);
  } finally {
    await closeAll();
  }
});

test("application triggers: keys written by nested statements and keys a BEFORE trigger changed are listed", async () => {
  await source.query(compat(`
    create table at (id int primary key, v text, n int not null default 0);
    create table at_log (id int primary key, what text);
    insert into at select g, 'v' || g, 0 from generate_series(1, 5) g;
    create function at_after() returns trigger language plpgsql as $$
    begin
      -- A nested statement on the same table, and one on another captured table.
      update at set n = n + 1 where id = NEW.id - 1;
      insert into at_log values (NEW.id, TG_OP);
      return null;
    end $$;
    create trigger at_after after insert on at for each row execute function at_after();
    create function at_before() returns trigger language plpgsql as $$
    begin
      -- The stored key is not the one the statement wrote.
      if NEW.id >= 1000 then NEW.id := NEW.id + 1000; end if;
      return NEW;
    end $$;
    create trigger at_before before insert or update on at for each row execute function at_before();
    create function at_del() returns trigger language plpgsql as $$
    begin
      delete from at where id = OLD.id + 1;
      return OLD;
    end $$;
    create trigger at_del before delete on at for each row when (OLD.id = 2) execute function at_del();
    select dbsync.add_table('at', 'apptrig'), dbsync.add_table('at_log', 'apptrig');
  `));
  const g = await groupId("apptrig");
  const c = await client();
  try {
    // Inserts 6 and 1007 (stored as 2007); the AFTER trigger updates 5 and logs 6 and 2007.
    let r = await batchKeys(c, g, "insert into at (id, v) values (6, 'six'), (1007, 'big')");
    assert.deepEqual(r.byTable, { at: ["2007", "5", "6"], at_log: ["2007", "6"] });
    assert.deepEqual(await tableKeys(c, "at", ["id"]), ["1", "2", "2007", "3", "4", "5", "6"]);
    // A key change that the BEFORE trigger changes again.
    r = await batchKeys(c, g, "update at set id = 1001 where id = 1");
    assert.deepEqual(r.byTable, { at: ["1", "2001"] });
    // A delete whose BEFORE trigger deletes another row first.
    r = await batchKeys(c, g, "delete from at where id = 2");
    assert.deepEqual(r.byTable, { at: ["2", "3"] });
    assert.deepEqual(await tableKeys(c, "at", ["id"]), ["2001", "2007", "4", "5", "6"]);
  } finally {
    await closeAll();
  }
});

test("a deferrable key: keys swapped inside a transaction or a statement are all listed", async () => {
  await source.query(`
    create table dk (id int primary key deferrable initially deferred, v text);
    insert into dk values (1, 'a'), (2, 'b'), (3, 'c');
    select dbsync.add_table('dk', 'deferred');
  `);
  const g = await groupId("deferred");
  const c = await client();
  try {
    // Two statements: key 1 exists twice between them.
    let r = await batchKeys(c, g, [
      "begin",
      "update dk set id = 2 where v = 'a'",
      "update dk set id = 1 where v = 'b'",
      "commit",
    ]);
    assert.deepEqual(r.keys, ["1", "2"]);
    // Every statement lists the old and the new key.
    assert.deepEqual(r.evs.map((e) => e.row![0]).sort(), ["1", "1", "2", "2"]);
    // One statement rotating three keys: the new keys, and the old key of each row
    // whose key changed (the same keys: the reader reads each once).
    r = await batchKeys(c, g, "update dk set id = id % 3 + 1");
    assert.deepEqual(r.keys, ["1", "2", "3"]);
    assert.deepEqual(r.evs.map((e) => e.row![0]).sort(), ["1", "1", "2", "2", "3", "3"]);
    assert.deepEqual(
      (await rows<{ id: number; v: string }>(c, "select id, v from dk order by id")).map((x) => `${x.id}${x.v}`),
      ["1c", "2b", "3a"],
    );
  } finally {
    await closeAll();
  }
});
