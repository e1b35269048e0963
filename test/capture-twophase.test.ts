// Two-phase commit against capture: a transaction that has executed NOTIFY cannot
// PREPARE, and capture once notified while the sidecar slept, so an application
// preparing its transactions (XA, JTA) failed at PREPARE whenever the group slept.
// Replication must never make an application fail, and what COMMIT PREPARED commits
// (it runs no trigger) must still reach the target while the group sleeps, in commit
// order, however long the transaction stayed prepared. Private clusters: the shared
// ones allow no prepared transactions.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { migrate } from "../src/migrate";
import { createDatabase, pool, startSidecar, until, value } from "./helpers";
import { assertTablesEqual } from "./kit/convergence";
import { privateClusters } from "./kit/private-clusters";
import { startCluster } from "../src/embedded/cluster";
import { underLoad } from "./kit/wait";

const clusters = privateClusters();

/** `sql` in a transaction prepared as `gid` (PREPARE detaches it from the session, which goes back to the pool). */
async function prepare(p: Pool, gid: string, sql: string): Promise<void> {
  const c = await p.connect();
  // A failed PREPARE (or statement) leaves the transaction to roll back.
  await c.query(`begin; ${sql}; prepare transaction '${gid}'`).catch(async (err: Error) => {
    await c.query("rollback");
    throw err;
  }).finally(() => c.release());
}

async function sleeping(src: Pool): Promise<boolean> {
  return value<boolean>(src, "select sleeping from dbsync.groups where name = 'g'");
}

test("a transaction that wrote a replicated table prepares, with the group asleep and awake: INSERT, UPDATE (of a key too), DELETE, TRUNCATE, execute_ddl, DDL, add_table, remove_table", async () => {
  const url = await createDatabase(clusters.source().url(), "twopc_prepare");
  await migrate(url);
  const src = pool(url);
  try {
    await src.query("create table t (id int primary key, v text); insert into t select g, 'v' from generate_series(1, 10) g");
    await src.query("select dbsync.add_table('t', 'g')");
    await src.query("create table d (id int primary key); select dbsync.add_table('d', 'g')");
    const groupId = await value<number>(src, "select group_id from dbsync.groups where name = 'g'");
    // Here transactions can be prepared: capture notifies only when a session says 'on'.
    assert.equal(await value(src, "select dbsync._capture_notifies()"), false);
    assert.deepEqual(await value(src, "select array[set_config('dbsync.notify', 'on', true)::text, dbsync._capture_notifies()::text]"), ["on", "true"]);
    // Each statement through capture, committed or rolled back after its PREPARE
    // (both must work on what was prepared): the statement triggers, the row trigger
    // of a changed key, and what runs in the application's transaction at DDL (the
    // event triggers, execute_ddl, add_table, remove_table).
    const ops: [string, "commit" | "rollback"][] = [
      ["insert into t values (100, 'new')", "commit"],
      ["update t set v = 'changed' where id = 1", "rollback"],
      ["update t set id = id + 1000 where id = 3", "commit"],
      ["delete from t where id = 2", "commit"],
      ["truncate t", "rollback"],
      ["select dbsync.execute_ddl('g', 'alter table t add column w int')", "commit"],
      ["alter table t add column x int", "rollback"],
      ["alter table t alter column w type bigint", "rollback"],
      ["create table u (id int primary key); select dbsync.add_table('u', 'g'); insert into u values (1)", "commit"],
      ["select dbsync.remove_table('u')", "commit"],
      ["drop table d", "rollback"],
    ];
    let n = 0;
    for (const asleep of [true, false]) {
      await src.query("select dbsync.set_sleeping($1, $2)", [groupId, asleep]);
      assert.equal(await sleeping(src), asleep);
      for (const [op, end] of ops) {
        const gid = `twopc_${n++}`;
        await prepare(src, gid, op).catch((err: Error) => assert.fail(`${asleep ? "asleep" : "awake"}: ${op}: ${err.message}`));
        await src.query(`${end} prepared '${gid}'`);
      }
      await src.query("drop table u; alter table t drop column w; truncate t; insert into t select g, 'v' from generate_series(1, 10) g");
    }
  } finally {
    await src.query("select gid from pg_prepared_xacts where database = current_database()").then(async (r) => {
      for (const { gid } of r.rows as { gid: string }[]) await src.query(`rollback prepared '${gid}'`);
    });
    await src.end();
  }
});

test("prepared transactions reach the target while the group sleeps: exactly the committed ones, in commit order, within a bound, one prepared across ticks and slot switches", async () => {
  const ddl = "create table t (id int primary key, v text)";
  const [sourceUrl, targetUrl] = await Promise.all([createDatabase(clusters.source().url(), "twopc_apply"), createDatabase(clusters.target().url(), "twopc_apply")]);
  await migrate(sourceUrl);
  const [src, dst] = [pool(sourceUrl), pool(targetUrl)];
  await Promise.all([src.query(ddl), dst.query(ddl)]);
  // Which target transaction applied each value: commit order shows as their order.
  await dst.query(`create table arrivals (v text not null, tx bigint not null);
    create function log_arrival() returns trigger language plpgsql as $f$
    begin insert into arrivals values (new.v, txid_current()); return null; end $f$;
    create trigger log_arrival after insert or update on t for each row execute procedure log_arrival();
    alter table t enable always trigger log_arrival`);
  await src.query("insert into t select g, 'v0' from generate_series(1, 20) g");
  await src.query("select dbsync.add_table('t', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1)", [targetUrl]);
  // A poll much longer than a linger: what arrives sooner was not found by the poll.
  const pollMs = 4000;
  const sidecar = startSidecar(sourceUrl, ["--poll-interval", String(pollMs), "--rotate-after", "1"]);
  const onTarget = async (v: string) => (await dst.query("select from t where v = $1", [v])).rowCount! > 0;
  const arrives = async (v: string, what: string, boundMs: number) => {
    const began = Date.now();
    await until(`${v} on the target (${what})`, () => onTarget(v), 30_000, 20);
    const took = Date.now() - began;
    assert.ok(took <= boundMs, `${what}: ${took} ms, over ${boundMs} ms`);
  };
  // Right after a batch the loop lingers (2 s), and looks for work itself every 50 ms.
  const lingering = () => underLoad(600, 2500);
  try {
    await until("the first copy", async () => (await dst.query("select from t")).rowCount === 20);
    await until("the group to sleep", () => sleeping(src), 30_000, 50);
    // Prepared while the group sleeps: one committed soon, one much later, one rolled back.
    await prepare(src, "soon", "update t set v = 'soon' where id = 1");
    await prepare(src, "late", "update t set v = 'late' where id = 2; insert into t values (100, 'late')");
    await prepare(src, "never", "update t set v = 'never' where id = 3; delete from t where id = 4; insert into t values (101, 'never')");
    // An ordinary writer after them: it commits first.
    await src.query("update t set v = 'plain1' where id = 5");
    await arrives("plain1", "an ordinary commit with three transactions prepared", pollMs + underLoad(1000, 3000));
    await src.query("commit prepared 'soon'");
    await arrives("soon", "COMMIT PREPARED while the loop lingers", lingering());
    // Ticks, batches and slot switches (rotate-after 1 s) go by while 'late' stays prepared.
    for (let i = 2; i <= 6; i++) {
      await src.query("update t set v = $1 where id = 5", [`plain${i}`]);
      await arrives(`plain${i}`, "an ordinary commit while the loop lingers", lingering());
      await new Promise((r) => setTimeout(r, 700));
    }
    const ticks = await value<number>(src, "select count(*)::int from dbsync.ticks t join dbsync.groups g using (group_id) where g.name = 'g'");
    assert.ok(ticks > 5, `ticks taken while 'late' was prepared: ${ticks}`);
    assert.equal(await onTarget("late"), false, "nothing of a prepared transaction before its commit");
    // Long after the last batch: no loop lingers, the poll finds it.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await sleeping(src), true);
    await src.query("commit prepared 'late'");
    await arrives("late", "COMMIT PREPARED of a transaction prepared across ticks and slot switches, the group asleep", pollMs + underLoad(1000, 3000));
    await src.query("rollback prepared 'never'");
    await src.query("update t set v = 'plain7' where id = 5");
    await arrives("plain7", "after ROLLBACK PREPARED", lingering());
    await assertTablesEqual(src, dst, ["t"], "after COMMIT and ROLLBACK PREPARED");
    assert.equal(await value(dst, "select count(*)::int from arrivals where v = 'never'"), 0, "nothing of a rolled-back transaction");
    // Commit order: plain1, soon, plain2..6, late, plain7, each applied no earlier than the one before.
    const order = ["plain1", "soon", "plain2", "plain3", "plain4", "plain5", "plain6", "late", "plain7"];
    const txs = await Promise.all(order.map((v) => value<string>(dst, "select min(tx)::text from arrivals where v = $1", [v])));
    for (let i = 1; i < order.length; i++) assert.ok(BigInt(txs[i]) >= BigInt(txs[i - 1]), `${order[i]} applied before ${order[i - 1]}: ${txs.join(", ")}`);
    assert.equal(await value(src, "select last_error from dbsync.status where name = 's'"), null);
  } finally {
    await sidecar.stop();
    for (const gid of ["soon", "late", "never"]) await src.query(`rollback prepared '${gid}'`).catch(() => undefined);
    await Promise.all([src.end(), dst.end()]);
  }
});

test("where no transaction can be prepared (PostgreSQL's default), a write to a sleeping group NOTIFYs; dbsync.notify on and off override the rule", async () => {
  // A server of PostgreSQL's default, max_prepared_transactions = 0 (the shared and
  // private clusters allow prepared transactions); stopped with the others after the file.
  const plain = await startCluster();
  const url = await createDatabase(plain.url(), "twopc_default");
  await migrate(url);
  const src = pool(url);
  const listener = await src.connect();
  try {
    await src.query("create table t (id int primary key); select dbsync.add_table('t', 'g')");
    await src.query("select dbsync.set_sleeping(group_id, true) from dbsync.groups where name = 'g'");
    const heard: string[] = [];
    listener.on("notification", (n) => heard.push(n.payload ?? ""));
    await listener.query("listen dbsync");
    const notifies = async (setting: string | null, id: number) => {
      const c = await src.connect();
      try {
        if (setting === null) await c.query("reset dbsync.notify");
        else await c.query("select set_config('dbsync.notify', $1, false)", [setting]);
        const says = await value<boolean>(c, "select dbsync._capture_notifies()");
        const before = heard.length;
        await c.query("insert into t values ($1)", [id]);
        // A notification is delivered at commit, before the INSERT's answer; one round trip more for the listener.
        await listener.query("select 1");
        assert.equal(heard.length > before, says, `dbsync.notify = ${setting}: a NOTIFY only when _capture_notifies says so`);
        return says;
      } finally {
        c.release();
      }
    };
    assert.equal(await notifies(null, 1), true, "the server's default");
    assert.equal(await notifies("off", 2), false);
    assert.equal(await notifies("on", 3), true);
  } finally {
    listener.release();
    await src.end();
  }
});
