// Subscriptions of one process share its target connections (src/apply/links.ts).
// Whatever one subscription's batches leave in a connection's session must not
// reach another's batches: here DDL from execute_ddl turns replica mode off for
// the rest of the session, and the other subscription (another group, the same
// target database) would then fire the target's ordinary triggers, which rewrite
// its rows without an error.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createLog } from "../src/log";
import { Links } from "../src/apply/links";
import { compat, freshEnv, startSidecar, tableText, until, value } from "./helpers";
import { synced } from "./kit/convergence";

const DDL = `create table a (id int primary key, v int not null);
             create table b (id int primary key, v int not null);`;

// Target only: an ordinary trigger, which replica mode keeps from firing.
const TARGET_TRIGGER = `
  create function spoil() returns trigger language plpgsql as $$ begin new.v := -1; return new; end $$;
  create trigger spoil before insert or update on b for each row execute function spoil();`;

const pidOf = async (c: { query: (sql: string) => Promise<{ rows: { pid: number }[] }> }) =>
  (await c.query("select pg_backend_pid() as pid")).rows[0].pid;

test("a target connection whose session DDL changed is closed, not leased to another subscription", async () => {
  const env = await freshEnv("links_reuse");
  await env.source.query(DDL + "insert into a values (1, 1); insert into b values (1, 1);");
  await env.target.query(DDL + compat(TARGET_TRIGGER, "target"));
  await env.source.query("select dbsync.add_table('a', 'ga'), dbsync.add_table('b', 'gb')");
  await env.source.query("select dbsync.add_subscription('sa', 'ga', $1), dbsync.add_subscription('sb', 'gb', $1)", [env.targetUrl]);
  // One apply slot: both subscriptions take turns on one target connection.
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"]);
  try {
    await synced(env, "sa");
    await synced(env, "sb");
    const source = await env.source.connect();
    try {
      // (On the source too it lasts for the session: this connection is not reused.)
      // Replica mode is put back after the DDL (target/apply.ts restoreSession); work_mem is not.
      await source.query("select dbsync.execute_ddl('ga', 'alter table a add column n int; set session_replication_role = origin; set work_mem = ''7MB''')");
    } finally {
      source.release(true);
    }
    await until("sa applied the DDL", async () =>
      (await value<number>(env.target, "select count(*)::int from pg_attribute where attrelid = 'a'::regclass and attname = 'n'")) === 1);
    await env.source.query("insert into b values (2, 2); update b set v = 10 where id = 1");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('sb', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "b"), await tableText(env.source, "b"));
    await until("the warning logged", () => /session changed; closed/.test(sidecar.output()), 10_000);
  } finally {
    await sidecar.stop();
  }
});

test("a connection given back as it was leased is leased again; one left in a transaction, with a setting or a lock is closed", async () => {
  const env = await freshEnv("links_check");
  // One connection per pool: the next lease waits for the one given back.
  const links = new Links({ sourceUrl: env.sourceUrl, concurrency: 1, statementTimeoutMs: 0, log: createLog("silent") });
  try {
    let { client } = await links.target(env.targetUrl, "s1");
    let pid = await pidOf(client);
    for (const [dirty, kept] of [
      ["select 1", true],
      ["begin", false],
      ["set search_path = public, pg_catalog", false],
      ["set session_replication_role = origin", false],
      ["select pg_advisory_lock(1)", false],
      ["begin; set local search_path = public; commit", true],
    ] as const) {
      await client.query(dirty);
      links.release(client);
      ({ client } = await links.target(env.targetUrl, "s2"));
      const again = await pidOf(client);
      assert.equal(again === pid, kept, `after ${dirty}: ${kept ? "leased again" : "closed"}`);
      assert.equal((await client.query("show session_replication_role")).rows[0].session_replication_role, "replica");
      pid = again;
    }
    links.release(client);
    const reader = await links.reader("s1");
    const readerPid = await pidOf(reader);
    links.release(reader);
    const next = await links.reader("s2");
    assert.equal(await pidOf(next), readerPid, "a reader given back clean is leased again");
    links.release(next);
  } finally {
    await links.close();
  }
});

test("a lease of dbsync's own statements only is given back without its settings read; a transaction, a lock or lost replica mode still close it", async () => {
  const env = await freshEnv("links_own");
  const links = new Links({ sourceUrl: env.sourceUrl, concurrency: 1, statementTimeoutMs: 0, log: createLog("silent") });
  try {
    // The lease that set the session up (ensureTargetSchema) is checked in full whatever the caller says.
    let { client } = await links.target(env.targetUrl, "s1");
    let pid = await pidOf(client);
    await client.query("set work_mem = '7MB'");
    links.release(client, false, true);
    ({ client } = await links.target(env.targetUrl, "s2"));
    assert.notEqual(await pidOf(client), pid, "the first lease's setting is seen");
    pid = await pidOf(client);
    for (const [dirty, kept] of [
      ["select 1", true],
      ["begin", false],
      ["select pg_advisory_lock(1)", false],
      ["set session_replication_role = origin", false],
    ] as const) {
      await client.query(dirty);
      links.release(client, false, true);
      ({ client } = await links.target(env.targetUrl, "s2"));
      const again = await pidOf(client);
      assert.equal(again === pid, kept, `after ${dirty}: ${kept ? "leased again" : "closed"}`);
      pid = again;
    }
    // (The connection the last one closed left for a new one: set up in this lease, checked in full.)
    links.release(client, false, true);
    ({ client } = await links.target(env.targetUrl, "s3"));
    assert.equal(await pidOf(client), pid);
    // The caller's word: a lease that ran no batch changed no setting, so none is read (this one did).
    await client.query("set work_mem = '7MB'");
    links.release(client, false, true);
    ({ client } = await links.target(env.targetUrl, "s3"));
    assert.equal(await pidOf(client), pid);
    links.release(client);
  } finally {
    await links.close();
  }
});
