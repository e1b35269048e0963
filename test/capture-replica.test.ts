// Capture in replica mode (session_replication_role = replica). PostgreSQL's logical
// replication apply worker fires row triggers only, so a plain table has a row
// trigger for it (dbsync_capture_replica); every other replica-mode session (dbsync's
// own apply into a database that is also a source, a bulk load skipping foreign keys)
// fires the statement triggers as well, which capture its rows a thousand keys to an
// event. The row trigger must leave those rows to them (a queue INSERT per row took
// a 100,000-row INSERT from 1.7 to 12 s), and must still capture every row the apply
// worker writes, an application trigger's statements among them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { compat, createDatabase, freshEnv, pool, startSidecar, tableText, until, value } from "./helpers";
import { setup, strictlyConverged, synced } from "./kit/convergence";

const events = (env: { source: import("pg").Pool }, op: string) =>
  value<number>(env.source, "select count(*)::int from dbsync.events e join dbsync.groups g using (group_id) where g.name = 'g' and e.op = $1", [op]);

test("a replica-mode session's statements on a plain table queue their keys a thousand to an event, not once more per row", async () => {
  const env = await freshEnv("cap_replica_bulk");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  await env.source.query(`begin; set local session_replication_role = replica;
    insert into t select g, 'r' from generate_series(1, 2500) g;
    update t set v = 'u' where id <= 1500;
    delete from t where id > 2400;
    commit`);
  // 2,500 + 1,500 + 100 keys: 3 + 2 + 1 'M' events, and no 'K' event (no key changed).
  assert.equal(await events(env, "K"), 0, "a key queued once more for each row");
  assert.equal(await events(env, "M"), 6);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

// The apply worker's changes of t, and an application trigger of another table that
// the worker fires (ENABLE ALWAYS) writing t by its own statements, in one upstream
// transaction: the trigger's statements mark themselves at the trigger's depth, so
// the worker's own rows of t that follow are still captured by the row trigger.
test("native logical replication into a source: the apply worker's rows and an application trigger's statements in one transaction all reach the target", async () => {
  const env = await freshEnv("cap_replica_native");
  const upstreamUrl = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "cap_replica_upstream");
  const upstream = pool(upstreamUrl, 2);
  const ddl = "create table t (id int primary key, v text); create table x (id int primary key)";
  await upstream.query(`${ddl}; create publication pb for table t, x`);
  await env.source.query(ddl);
  await env.target.query("create table t (id int primary key, v text)");
  await env.source.query(compat(`create function x_writes_t() returns trigger language plpgsql as $$
    begin insert into public.t values (new.id + 100000, 'from x') on conflict (id) do update set v = excluded.v; return null; end $$;
    create trigger x_writes_t after insert on x for each row execute function x_writes_t();
    alter table x enable always trigger x_writes_t`, "source"));
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query(`create subscription sb_cap_replica connection '${upstreamUrl}' publication pb with (copy_data = false)`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    for (let i = 1; i <= 20; i++) {
      await upstream.query(`begin; insert into x values (${i}); insert into t values (${i}, 'direct');
        update t set v = v || '+' where id < ${i}; insert into x values (${i + 1000}); delete from t where id = ${i - 5}; commit`);
    }
    const sourceHas = async () => (await value<number>(env.source, "select count(*)::int from x")) === 40;
    await until("the upstream's transactions applied on the source", sourceHas, 60_000);
    assert.ok((await tableText(env.source, "t")).length > 40);
    await strictlyConverged(env, ["t"]);
  } finally {
    await env.source.query("drop subscription sb_cap_replica");
    await sidecar.stop();
  }
});
