// Source transactions are applied whole: a transaction that touches several tables is
// never half-visible on the target, and a transaction held open across many batches
// is replicated when it finally commits (nothing lost, nothing early).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool, PoolClient } from "pg";
import { compat, freshEnv, seeded, sleep, startSidecar, tableText, until, value } from "./helpers";

const ACCOUNTS = 40; // per table
const START_BALANCE = 1000;
const TOTAL = 2 * ACCOUNTS * START_BALANCE;

const BANK_DDL = `
  create table acct_a (id int primary key, balance bigint not null);
  create table acct_b (id int primary key, balance bigint not null);
  insert into acct_a select g, ${START_BALANCE} from generate_series(1, ${ACCOUNTS}) g;
  insert into acct_b select g, ${START_BALANCE} from generate_series(${ACCOUNTS + 1}, ${2 * ACCOUNTS}) g;`;

const RETRYABLE = new Set(["40P01", "40001", "23505"]);

/** One transaction on a pooled client; deadlocks and key collisions are rolled back and skipped. */
async function tx(pool: Pool, fn: (c: PoolClient) => Promise<boolean | void>): Promise<boolean> {
  const c = await pool.connect();
  try {
    await c.query("begin");
    if ((await fn(c)) === false) {
      await c.query("rollback");
      return false;
    }
    await c.query("commit");
    return true;
  } catch (err) {
    await c.query("rollback").catch(() => undefined);
    if (RETRYABLE.has((err as { code?: string }).code ?? "")) return false;
    throw err;
  } finally {
    c.release();
  }
}

const randomRow = (table: string) => `(select id from ${table} order by random() limit 1)`;

/**
 * Money moves between the two tables, always keeping sum(a) + sum(b) = TOTAL and
 * count(a) + count(b) = 2 * ACCOUNTS: transfers (two statements, sometimes with a
 * pause between them so that ticks fall inside the transaction), whole accounts
 * moving from one table to the other (delete + insert in one statement), key
 * changes, and multi-row updates.
 */
function bankWriter(pool: Pool, stop: { done: boolean }, stats: { commits: number }, index: number) {
  const rng = seeded(`sidecar-atomic/writer${index}`);
  return (async () => {
    while (!stop.done) {
      const r = rng.next();
      const ok = await tx(pool, async (c) => {
        if (r < 0.55) {
          const amount = rng.int(1, 50);
          const a = await c.query(`update acct_a set balance = balance - $1 where id = ${randomRow("acct_a")}`, [amount]);
          if (rng.chance(0.3)) await c.query("select pg_sleep(random() * 0.03)");
          const b = await c.query(`update acct_b set balance = balance + $1 where id = ${randomRow("acct_b")}`, [amount]);
          return a.rowCount === 1 && b.rowCount === 1;
        } else if (r < 0.7) {
          // A whole account moves to the other table, in one statement over both tables.
          const [from, to] = rng.chance(0.5) ? ["acct_a", "acct_b"] : ["acct_b", "acct_a"];
          const m = await c.query(
            `with gone as (delete from ${from} where id = ${randomRow(from)} returning id, balance)
             insert into ${to} select id, balance from gone`,
          );
          return m.rowCount === 1;
        } else if (r < 0.8) {
          // Key change: the account gets a fresh id (ids stay unique across both tables).
          const t = rng.chance(0.5) ? "acct_a" : "acct_b";
          await c.query(`update ${t} set id = nextval('acct_ids') where id = ${randomRow(t)}`);
          const amount = rng.int(1, 20);
          const a = await c.query(`update acct_a set balance = balance + $1 where id = ${randomRow("acct_a")}`, [amount]);
          const b = await c.query(`update acct_b set balance = balance - $1 where id = ${randomRow("acct_b")}`, [amount]);
          return a.rowCount === 1 && b.rowCount === 1;
        } else {
          // Several rows of one table against one row of the other.
          const n = await c.query(
            `update acct_a set balance = balance - 1 where id in (select id from acct_a order by random() limit 3)`,
          );
          if (rng.chance(0.3)) await c.query("select pg_sleep(random() * 0.03)");
          const b = await c.query(`update acct_b set balance = balance + $1 where id = ${randomRow("acct_b")}`, [n.rowCount]);
          return b.rowCount === 1;
        }
      });
      if (ok) stats.commits++;
    }
  })();
}

test("a transaction over two tables is never half-visible on the target (REPEATABLE READ reader)", async (t) => {
  const env = await freshEnv("sidecar_atomic");
  await env.source.query(BANK_DDL + "create sequence acct_ids start 100000;");
  await env.target.query(BANK_DDL);
  await env.source.query("select dbsync.add_table('acct_a', 'bank'), dbsync.add_table('acct_b', 'bank')");
  await env.source.query("select dbsync.add_subscription('bank_sub', 'bank', $1, copy_data => false)", [env.targetUrl]);
  // Small batches and frequent ticks: many target transactions, many chances to split one.
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "50"]);

  // One first change, so that the sidecar has set up the target before the reader starts.
  await env.source.query("update acct_a set balance = balance where id = 1");
  assert.equal(await value(env.source, "select dbsync.wait_for_sync('bank_sub', '90 s')"), true, sidecar.output());
  const stop = { done: false };
  const stats = { commits: 0 };
  const writers = [0, 1, 2, 3].map((i) => bankWriter(env.source, stop, stats, i));
  const rng = seeded("sidecar-atomic/reader");

  const reader = await env.target.connect();
  const violations: string[] = [];
  const ticksSeen = new Set<string>();
  const statesSeen = new Set<string>();
  let reads = 0;
  const readerDone = (async () => {
    while (!stop.done) {
      await reader.query("begin isolation level repeatable read");
      const a = (await reader.query("select coalesce(sum(balance), 0)::int8 as s, count(*)::int as n from acct_a")).rows[0];
      await sleep(rng.below(5)); // let batches commit between the two statements
      const b = (await reader.query("select coalesce(sum(balance), 0)::int8 as s, count(*)::int as n from acct_b")).rows[0];
      const tick = await value<string>(reader, "select max(tick_id)::text from dbsync.applied");
      await reader.query("commit");
      reads++;
      if (tick) ticksSeen.add(tick);
      statesSeen.add(`${a.s}/${a.n}`);
      if (Number(a.s) + Number(b.s) !== TOTAL || a.n + b.n !== 2 * ACCOUNTS) {
        violations.push(`tick ${tick}: a=${a.s} (${a.n} rows) b=${b.s} (${b.n} rows)`);
      }
    }
  })();

  try {
    // Until the reader has watched enough batches for the verdicts below (more than
    // they ask), not for a fixed time: seconds on an idle machine, more on a busy one.
    await until("the reader saw 25 applied ticks", async () => ticksSeen.size >= 25 && statesSeen.size >= 25 && stats.commits > 150, 60_000)
      .catch(() => undefined); // the assertions below say what was missing
    stop.done = true;
    await Promise.all([...writers, readerDone]);
    const waitStart = Date.now();
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('bank_sub', '90 s')"), true, sidecar.output());
    const batches = await value<number>(env.source, "select batches_applied::int from dbsync.subscriptions where name = 'bank_sub'");
    t.diagnostic(`${stats.commits} source transactions, ${batches} batches, ${reads} reads saw ${ticksSeen.size} ticks; caught up ${Date.now() - waitStart} ms after the writers stopped`);

    // The writers themselves keep the invariant on the source.
    const srcTotal = await value(env.source, "select sum(balance)::int8 from (select balance from acct_a union all select balance from acct_b) x");
    assert.equal(srcTotal, String(TOTAL), "the writers broke the invariant on the source");
    assert.deepEqual(violations.slice(0, 10), [], `${violations.length} of ${reads} reads saw half a transaction`);
    assert.ok(stats.commits > 100, `only ${stats.commits} source transactions committed`);
    // The reader must really have watched the target move, batch after batch.
    assert.ok(ticksSeen.size >= 20, `the reader saw only ${ticksSeen.size} distinct applied ticks in ${reads} reads`);
    assert.ok(statesSeen.size >= 20, `the reader saw only ${statesSeen.size} distinct states`);
    assert.ok(batches >= 20, `only ${batches} batches applied`);

    assert.equal(await value(env.target, "select sum(balance)::int8 from (select balance from acct_a union all select balance from acct_b) x"), String(TOTAL));
    for (const t of ["acct_a", "acct_b"]) {
      assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t), `${t} differs`);
    }
  } finally {
    stop.done = true;
    reader.release();
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("a transaction held open across many batches is replicated when it commits, not before", async () => {
  const env = await freshEnv("sidecar_longtx");
  const DDL = `
    create table journal (id int primary key, src text not null, v int not null default 0);
    create table ledger (id int primary key, amount int not null);
    insert into journal values (0, 'seed', 0);
    insert into ledger values (0, 0);`;
  await env.source.query(DDL);
  await env.target.query(DDL);
  await env.source.query("select dbsync.add_table('journal', 'g'), dbsync.add_table('ledger', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "50"]);
  const long = await env.source.connect();
  try {
    const appliedTick = () => value<number>(env.target, "select coalesce(max(tick_id), -1)::int from dbsync.applied");
    await env.source.query("insert into journal values (1, 'before', 0)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, sidecar.output());
    const tickAtStart = await appliedTick();

    await long.query("begin");
    await long.query("insert into journal select g, 'long', 0 from generate_series(100, 199) g");
    await long.query("update journal set v = 42 where id = 0"); // a row committed before it began
    await long.query("insert into ledger values (100, 7)");
    const longTxid = await value<string>(long, compat("select pg_current_xact_id()::text"));

    // Ten short transactions commit and get applied, one after another, while the
    // long one stays open (a count, not a time: under load, 3 s saw only 3 of them).
    for (let id = 1000; id < 1010; id++) {
      await env.source.query("insert into journal values ($1, 'short', 0)", [id]);
      await env.source.query("insert into ledger values ($1, 1)", [id]);
      await until(`short transaction ${id} applied`, async () =>
        (await value<number>(env.target, "select count(*)::int from journal where id = $1", [id])) === 1, 30000);
      if (id === 1005) {
        // More rows in the middle of its life, some in a savepoint, some rolled back.
        await long.query("savepoint s1; insert into journal select g, 'long', 0 from generate_series(200, 249) g; release s1");
        await long.query("savepoint s2; insert into journal select g, 'rolled back', 0 from generate_series(500, 549) g; rollback to s2");
      }
      await sleep(100);
    }
    await long.query("insert into journal select g, 'long', 0 from generate_series(250, 299) g");
    const tickBeforeCommit = await appliedTick();
    assert.ok(tickBeforeCommit - tickAtStart >= 8, `the target moved only from tick ${tickAtStart} to ${tickBeforeCommit} meanwhile`);
    // Nothing of the open transaction is on the target yet.
    assert.equal(await value<number>(env.target, "select count(*)::int from journal where src <> 'short' and id >= 100"), 0);
    assert.equal(await value<number>(env.target, "select v from journal where id = 0"), 0);
    assert.equal(await value<number>(env.target, "select count(*)::int from ledger where id = 100"), 0);
    // The open transaction is in the snapshot of every tick taken meanwhile.
    assert.equal(
      await value<boolean>(env.source, compat("select $1::xid8 = any (array(select pg_snapshot_xip(snap))) from dbsync.ticks where group_id = (select group_id from dbsync.groups where name = 'g') order by tick_id desc limit 1"), [longTxid]),
      true,
    );

    await long.query("commit");
    await env.source.query("insert into journal values (2, 'after', 0)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, sidecar.output());
    assert.equal(await value<number>(env.target, "select count(*)::int from journal where src = 'long'"), 200);
    assert.equal(await value<number>(env.target, "select count(*)::int from journal where src = 'rolled back'"), 0);
    assert.equal(await value<number>(env.target, "select v from journal where id = 0"), 42);
    for (const t of ["journal", "ledger"]) {
      assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t), `${t} differs`);
    }
  } finally {
    await long.query("rollback").catch(() => undefined);
    long.release();
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("a long write still running makes no ticks, so no empty batches; its commit makes one", async () => {
  const env = await freshEnv("sidecar_longwrite");
  await env.source.query("create table bulk (id int primary key, v text)");
  await env.target.query("create table bulk (id int primary key, v text)");
  await env.source.query("select dbsync.add_table('bulk', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "50"]);
  try {
    await env.source.query("insert into bulk values (0, 'first')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, sidecar.output());
    const lastTick = () => value<number>(env.source, "select last_tick_id::int from dbsync.groups where name = 'g'");
    const before = await lastTick();
    // One transaction that keeps writing for 3 s: new event ids all the time, none committed.
    const writer = env.source.query(`
      do $$ begin
        for i in 1..60 loop
          insert into bulk select g, 'long' from generate_series(i * 1000, i * 1000 + 99) g;
          perform pg_sleep(0.05);
        end loop;
      end $$`);
    await sleep(1500);
    assert.equal(await lastTick(), before, "ticks were taken while only an uncommitted transaction had written");
    await writer;
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, sidecar.output());
    assert.equal(await value<number>(env.target, "select count(*)::int from bulk"), 6001);
    assert.ok((await lastTick()) - before <= 2, `${(await lastTick()) - before} ticks for one commit`);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});
