// dbsync.sidecar_poll (dbsync._poll_groups): the sidecar's poll with per-group
// verdicts kept between polls. A group settled without new writers is not looked
// into again; a group must never be judged settled while a transaction that wrote
// to its queue is still running (plain, prepared for two-phase commit, or writing
// in a subtransaction), and such a writer's commit is found by the next poll.
// Without a sidecar: the test polls as the sidecar does (src/source/protocol.ts
// pollWork), and moves the subscription's position as applying would.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { PoolClient } from "pg";
import { compat, type Env, value } from "./helpers";
import { pollFixture as fixture } from "./kit/poll";
import { pollWork } from "../src/source/protocol";

/**
 * The writer runs (inside `open`, ended by `end`): however often the sidecar polls,
 * the group is never settled and shows no work; once it committed, the next poll
 * finds its events, as sidecar_work does.
 */
async function neverSettledWhile(label: string, open: (c: PoolClient, env: Env) => Promise<void>, end: (c: PoolClient, env: Env) => Promise<void>) {
  const f = await fixture(label);
  await f.applied();
  await f.settle();
  const c = await f.env.source.connect();
  try {
    await open(c, f.env);
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await f.poll(), [], "uncommitted events are no work");
      assert.notEqual(f.verdicts.get(f.gid)?.settled, true, `poll ${i}: settled while a writer runs`);
      // Other transactions end meanwhile (a snapshot's xmax moves past the writer).
      await f.env.source.query("create temp table if not exists x (); drop table x");
    }
    await end(c, f.env);
    assert.deepEqual(await f.poll(), ["s"], "the writer's commit is found");
    assert.deepEqual(await value(f.env.source, "select array_agg(name) from dbsync.sidecar_work()"), ["s"]);
    await f.applied();
    await f.settle();
  } finally {
    c.release();
  }
}

test("a long open writing transaction keeps its group unsettled; its commit is work at the next poll", async () => {
  await neverSettledWhile(
    "poll_long",
    (c) => c.query("begin; insert into t values (1, 'long')").then(() => undefined),
    (c) => c.query("commit").then(() => undefined),
  );
});

test("a transaction that took its xid before the verdict and writes after it is found", async () => {
  const f = await fixture("poll_late_write");
  await f.applied();
  const c = await f.env.source.connect();
  try {
    // The xid first (an unrelated write), the group's events later.
    await c.query("begin; create temp table y (i int); insert into y values (1)");
    assert.deepEqual(await f.poll(), []);
    assert.deepEqual(await f.poll(), []);
    assert.notEqual(f.verdicts.get(f.gid)?.settled, true, "a transaction older than the bound still runs");
    await c.query("insert into t values (1, 'late')");
    assert.deepEqual(await f.poll(), []);
    await c.query("commit");
    assert.deepEqual(await f.poll(), ["s"]);
  } finally {
    c.release();
  }
});

test("two writers running while no transaction ends: the later one's xid is at the snapshots' xmax or above, and still keeps its group unsettled", async () => {
  // A snapshot's xmax is the last ended xid + 1: a running transaction at or above it
  // is in no snapshot's list of running ones, nor below its xmin.
  const f = await fixture("poll_above_xmax");
  await f.applied();
  await f.settle();
  const a = await f.env.source.connect();
  const b = await f.env.source.connect();
  try {
    await a.query("begin; insert into t values (1, 'a')");
    await b.query("begin; insert into t values (2, 'b')");
    assert.deepEqual(await f.poll(), []);
    await a.query("commit");
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await f.poll(), ["s"], "a's commit is work");
      assert.notEqual(f.verdicts.get(f.gid)?.settled, true, `poll ${i}: settled while b runs`);
    }
    await f.applied();
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await f.poll(), []);
      assert.notEqual(f.verdicts.get(f.gid)?.settled, true, `poll ${i} after a's batch: settled while b runs`);
    }
    await b.query("commit");
    assert.deepEqual(await f.poll(), ["s"], "b's commit is found");
  } finally {
    a.release();
    b.release();
  }
});

test("a REPEATABLE READ writer whose snapshot is older than the verdict: its write and commit are found", async () => {
  const f = await fixture("poll_rr");
  await f.applied();
  const c = await f.env.source.connect();
  try {
    await c.query("begin isolation level repeatable read; select count(*) from t");
    await f.settle();
    await c.query("insert into t values (1, 'rr')");
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await f.poll(), []);
      assert.notEqual(f.verdicts.get(f.gid)?.settled, true, `poll ${i}: settled while the writer runs`);
    }
    await c.query("commit");
    assert.deepEqual(await f.poll(), ["s"]);
  } finally {
    c.release();
  }
});

test("a prepared transaction (2PC) keeps its group unsettled until COMMIT PREPARED", async () => {
  const gid2pc = `poll_2pc_${process.pid}_${Date.now()}`;
  await neverSettledWhile(
    "poll_2pc",
    async (c) => {
      await c.query("set dbsync.notify = off");
      await c.query("begin; insert into t values (1, 'prepared')");
      await c.query(`prepare transaction '${gid2pc}'`);
    },
    async (_c, env) => {
      await env.source.query(`commit prepared '${gid2pc}'`);
    },
  );
});

test("a write in a subtransaction keeps its group unsettled until the top transaction commits", async () => {
  await neverSettledWhile(
    "poll_subxact",
    async (c) => {
      await c.query("begin; savepoint a; insert into t values (1, 'sub'); release savepoint a; savepoint b; insert into t values (2, 'sub2')");
    },
    (c) => c.query("commit").then(() => undefined),
  );
});

test("a settled group is not looked into; a write, a tick or a copy to make is still found", async () => {
  const f = await fixture("poll_skip");
  await f.applied();
  await f.settle();
  const c = await f.env.source.connect();
  try {
    await c.query("begin");
    await c.query("set local track_functions = 'pl'");
    for (let i = 0; i < 3; i++) assert.deepEqual(await pollWork(c, f.verdicts).then((r) => r.map((x) => x.name)), []);
    assert.equal(
      await value(c, "select coalesce(pg_stat_get_xact_function_calls($1::regprocedure), 0)::int", [compat("dbsync._has_new_writers(int, pg_snapshot)")]),
      0,
      "no look into a settled group's queue",
    );
    await c.query("commit");
  } finally {
    c.release();
  }
  // A committed write moves the sequence: looked into, found.
  await f.env.source.query("insert into t values (1, 'x')");
  assert.deepEqual(await f.poll(), ["s"]);
  await f.applied();
  await f.settle();
  // A tick the position stands behind is work without a look into the queue.
  await f.env.source.query("select dbsync.tick($1, true)", [f.gid]);
  assert.deepEqual(await f.poll(), ["s"]);
  await f.applied();
  await f.settle();
  // A paused subscription has none; resumed, the settled verdict holds.
  await f.env.source.query("select dbsync.pause('s')");
  assert.deepEqual(await f.poll(), []);
  await f.env.source.query("select dbsync.resume('s')");
  assert.deepEqual(await f.poll(), []);
});

test("the previous version's poll (sidecar_work) answers as before, beside sidecar_poll", async () => {
  const f = await fixture("poll_old_sidecar");
  await f.applied();
  await f.settle();
  const old = async () => ((await value<string[] | null>(f.env.source, "select array_agg(name) from dbsync.sidecar_work()")) ?? []);
  assert.deepEqual(await old(), []);
  await f.env.source.query("insert into t values (1, 'x')");
  assert.deepEqual(await old(), ["s"]);
  assert.deepEqual(await f.poll(), ["s"]);
  await f.applied();
  assert.deepEqual(await old(), []);
  assert.deepEqual(await f.poll(), []);
  assert.equal(await value(f.env.source, "select dbsync.has_work('s')"), false);
});

test("a poll in a REPEATABLE READ transaction is refused: its sequences would be read after its snapshot", async () => {
  const f = await fixture("poll_isolation");
  const c = await f.env.source.connect();
  try {
    await c.query("begin isolation level repeatable read");
    await assert.rejects(pollWork(c, f.verdicts), /must run in a READ COMMITTED transaction/);
    await c.query("rollback");
  } finally {
    c.release();
  }
});

test("a poll without verdicts (the first, or after a restart) looks into every group", async () => {
  const f = await fixture("poll_fresh");
  await f.applied();
  await f.env.source.query("insert into t values (1, 'x')");
  assert.deepEqual(await value(f.env.source, "select array_agg(n) from dbsync.sidecar_poll(null, null, null, null) p, unnest(p.names) n"), ["s"]);
  assert.deepEqual(await value(f.env.source, "select array_agg(n) from dbsync.sidecar_poll('{}', '{}', '{}', '{}') p, unnest(p.names) n"), ["s"]);
});
