// Attacks on the poll's verdicts (dbsync.sidecar_poll, dbsync._poll_groups): each
// lets a group settle, then writes to it in a way the verdicts might miss; the next
// poll must find the committed events (as dbsync.sidecar_work does), wake-ups aside.
import assert from "node:assert/strict";
import { test } from "node:test";
import { value } from "./helpers";
import { pollFixture } from "./kit/poll";

async function settledGroup(label: string) {
  const f = await pollFixture(label);
  await f.applied();
  await f.settle();
  const { env, poll } = f;
  /** The next poll finds the committed write, as sidecar_work does. */
  const found = async (what: string) => {
    assert.deepEqual(await value(env.source, "select array_agg(name) from dbsync.sidecar_work()"), ["s"], `${what}: sidecar_work`);
    assert.deepEqual(await poll(), ["s"], `${what}: the poll`);
  };
  // (settle: after the batch applied, as in a round.)
  return { ...f, settle: async () => { await f.applied(); await f.settle(); }, found };
}

test("attack: events numbered from values a session cached while the sequence was CACHE 10, after it is CACHE 1 again", async () => {
  const f = await settledGroup("atk_cache");
  const seq = `dbsync.events_seq_${f.gid}`;
  const c = await f.env.source.connect();
  try {
    await f.env.source.query(`alter sequence ${seq} cache 10`);
    await c.query("insert into t values (1, 'caches')");
    await f.env.source.query(`alter sequence ${seq} cache 1`);
    await f.found("the first write");
    await f.settle();
    await c.query("insert into t values (2, 'from the cache')");
    await f.found("a write numbered from the session's cache");
  } finally {
    c.release();
  }
});

test("attack: a writer under session_replication_role = replica", async () => {
  const f = await settledGroup("atk_replica");
  await f.env.source.query("begin; set local session_replication_role = replica; insert into t values (1, 'replica'); commit");
  await f.found("the replica-role write");
});

test("attack: TRUNCATE alone", async () => {
  const f = await settledGroup("atk_truncate");
  await f.env.source.query("truncate t");
  await f.found("the truncate");
});

test("attack: execute_ddl alone", async () => {
  const f = await settledGroup("atk_ddl");
  await f.env.source.query("select dbsync.execute_ddl('g', 'alter table t add column w int')");
  await f.found("the ddl");
});

test("attack: a write while the subscription is paused, found once it is resumed", async () => {
  const f = await settledGroup("atk_pause");
  await f.env.source.query("select dbsync.pause('s')");
  assert.deepEqual(await f.poll(), []);
  await f.env.source.query("insert into t values (1, 'paused')");
  assert.deepEqual(await f.poll(), []);
  await f.env.source.query("select dbsync.resume('s')");
  await f.found("the write made while paused");
});

test("attack: the writer's xid taken in a subtransaction rolled back before the verdict, its write after", async () => {
  const f = await settledGroup("atk_subxact");
  const c = await f.env.source.connect();
  try {
    await c.query("begin; savepoint a; create temp table y (i int); rollback to savepoint a");
    for (let i = 0; i < 3; i++) assert.deepEqual(await f.poll(), []);
    await c.query("insert into t values (1, 'late'); commit");
    await f.found("the late write");
  } finally {
    c.release();
  }
});

test("attack: a writer in another database of the same server neither hides nor is taken for work", async () => {
  const f = await settledGroup("atk_otherdb");
  const db = await value<string>(f.env.source, "select current_database()");
  const other = `${db}_other`;
  await f.env.source.query(`create database ${other}`);
  const { Client } = await import("pg");
  const o = new Client({ connectionString: f.env.sourceUrl.replace(new RegExp(`/${db}(\\?|$)`), `/${other}$1`) });
  await o.connect();
  try {
    await o.query("begin; create table z (i int)");
    for (let i = 0; i < 3; i++) assert.deepEqual(await f.poll(), []);
    await f.env.source.query("insert into t values (1, 'here')");
    await f.found("the write in the group's database");
    await o.query("commit");
  } finally {
    await o.end();
    await f.env.source.query(`drop database ${other}`);
  }
});
