// Queue upkeep: applied events are truncated away slot by slot, never an event a
// subscription still needs, and a dropped subscription frees its backlog.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, queueOf, sleep, startSidecar, subscribeTables, tableText, until, value } from "./helpers";

/** The keys queued, over every group. */
const EVENTS = `select count(*)::int from dbsync.groups g cross join ${queueOf("g.group_id")} e`;
/** The queue slots writers have left (switched from) and that are not truncated yet. */
const SWITCHED = "select count(*)::int from dbsync.queue_slots where switched_at is not null";

test("rotation truncates applied events, spares a transaction open across rotations, loses nothing", async () => {
  const env = await freshEnv("queue_rotate");
  await env.source.query("create table q (id int primary key, v text)");
  await env.target.query("create table q (id int primary key, v text)");
  await env.source.query("select dbsync.add_table('q', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--rotate-after", "1"]);
  const long = await env.source.connect();
  try {
    await long.query("begin");
    await long.query("insert into q select g, 'long' from generate_series(1000000, 1000999) g");
    // Writes until both other slots have been switched to: the slot the long
    // transaction wrote to cannot be truncated while it is open (the third switch
    // waits for that), so this is every rotation there can be meanwhile.
    let id = 0;
    await until("two slot switches while a transaction is open", async () => {
      await env.source.query("insert into q select g, 'x' from generate_series($1::int, $1::int + 99) g", [id]);
      id += 100;
      return (await value<number>(env.source, SWITCHED)) >= 2;
    }, 60_000, 50);
    assert.ok(Number(await value(env.source, "select count(*) from q")) > 0);
    await long.query("commit");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "q"), await tableText(env.source, "q"));
    assert.equal(await value(env.target, "select count(*)::int from q where v = 'long'"), 1000);
    // Rotation went on during the load: old slots were truncated, so the queue
    // holds far fewer events than were written.
    await until("queue truncated", async () => (await value<number>(env.source, EVENTS)) < id / 2, 30_000);
  } finally {
    long.release();
    await sidecar.stop();
  }
});

test("drop_subscription frees the backlog it held", async () => {
  const env = await freshEnv("queue_drop");
  await env.source.query("create table q (id int primary key)");
  await env.target.query("create table q (id int primary key)");
  await env.source.query("select dbsync.add_table('q', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, false)", [env.targetUrl]);
  await env.source.query("select dbsync.pause('s')");
  const sidecar = startSidecar(env.sourceUrl, ["--rotate-after", "1"]);
  try {
    await env.source.query("insert into q select generate_series(1, 5000)");
    // The written slot is switched from (once: nothing is written after it, and an
    // idle group's empty slot is not switched again) and truncates nothing.
    await until("a slot switch, or events truncated", async () =>
      (await value<number>(env.source, SWITCHED)) >= 1 || (await value<number>(env.source, EVENTS)) < 5000, 30_000);
    await sleep(3000);
    assert.equal(await value(env.source, EVENTS), 5000, "a paused subscription keeps its backlog");
    await env.source.query("select dbsync.drop_subscription('s')");
    await until("backlog freed", async () => (await value<number>(env.source, EVENTS)) === 0, 30_000);
  } finally {
    await sidecar.stop();
  }
});

// A tick forced while a transaction below the slot's switched_xmax still runs has
// that transaction running too: the slot waits on, and every subscription of the
// group was woken for a batch that only moved its target to that tick.
test("maintain asks for a tick only once no transaction that could hold the slot back runs", async () => {
  const env = await freshEnv("queue_forced_tick");
  await subscribeTables(env, "create table q (id int primary key, v text)", ["q"]);
  const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  await env.source.query("insert into q values (1, 'a')");
  // The switch away from the slot that holds the event; its switched_xmax comes with the next call.
  assert.equal(await value(env.source, "select dbsync.maintain($1, '0 s')", [gid]), false);
  assert.equal(await value<number>(env.source, SWITCHED), 1);
  const old = await env.source.connect();
  try {
    await old.query("begin; select txid_current()");
    assert.equal(await value(env.source, "select dbsync.maintain($1, '0 s')", [gid]), false, "a tick asked for while an older transaction runs");
    await old.query("commit");
    // Transaction ids are the cluster's: other test files' transactions, in other
    // databases, may hold the snapshot's xmin back a while yet (as another database's
    // would in production: the tick is only later, never skipped).
    await until("maintain asks for the tick", async () => (await value<boolean>(env.source, "select dbsync.maintain($1, '0 s')", [gid])) === true);
  } finally {
    old.release();
  }
});
