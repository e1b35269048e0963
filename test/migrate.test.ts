import assert from "node:assert/strict";
import { test } from "node:test";
import { knownMigrations, migrate, WORKER_MIN_MAJOR } from "../src/migrate";
import { createDatabase, pool, SOURCE_MAJOR, startSidecar, subscribeTables, tableText, until, value } from "./helpers";
import { freshEnvAs, migrateUnderWriter } from "./kit/migrate-as";

test("migrate installs once, re-runs as a no-op, and is safe from two processes at once", async () => {
  const url = await createDatabase(process.env.DBSYNC_TEST_SOURCE_URL!, "migrate");
  const results = await Promise.all([migrate(url), migrate(url)]);
  const all = knownMigrations().length;
  assert.deepEqual(results.map((r) => r.applied.length).sort(), [0, all]);
  const again = await migrate(url);
  assert.deepEqual(again.applied, []);
  assert.equal(again.codeInstalled, false);
  const p = pool(url);
  assert.equal(await value(p, "select count(*)::int from dbsync.migrations"), all);
  // The job queue where graphile-worker runs; before, no schema of it at all (the sidecar wakes its jobs in-process).
  const worker = SOURCE_MAJOR >= WORKER_MIN_MAJOR;
  assert.equal(await value(p, "select to_regclass('dbsync_worker.jobs') is not null or to_regclass('dbsync_worker._private_jobs') is not null"), worker);
  assert.equal(await value(p, "select to_regnamespace('dbsync_worker') is not null"), worker);
});

test("a database migrated by a newer dbsync is refused", async () => {
  const url = await createDatabase(process.env.DBSYNC_TEST_SOURCE_URL!, "migrate_newer");
  await migrate(url);
  const p = pool(url);
  await p.query("insert into dbsync.migrations (version, name) values (9999, '9999_future.sql')");
  await assert.rejects(migrate(url), /migrated by a newer dbsync \(schema version 9999/);
});

// The dbsync before migration 0010 (capture version 1: statement triggers with SET
// search_path, an UPDATE queuing the union of old and new keys). Its tree comes
// from git history, so this test needs the repository.
const BEFORE_0010 = "e95665f92ff0f945141166fe0cad203e042c96bb";

// The version before migration 0023, which kept a carried sequence's row after the sequence was dropped.
const BEFORE_0023 = "0a41e95cc5ab94f88e61e1e1aefa3900f1beba8c";

test("upgrade past migration 0023: a carried sequence dropped while an older version ran is forgotten, and one made again under its name can be added", async (t) => {
  const env = await freshEnvAs(t, BEFORE_0023, "the version before 0023", "migrate_dropped_seq");
  if (!env) return;
  await env.source.query(`create sequence gone; create sequence kept;
                          select dbsync.create_group('seqs');
                          select dbsync.add_sequence('gone', 'seqs'); select dbsync.add_sequence('kept', 'seqs');
                          drop sequence gone`);
  const carried = async () => (await env.source.query(`select seq_name from dbsync.sequences order by 1`)).rows.map((r) => r.seq_name);
  assert.deepEqual(await carried(), ["gone", "kept"], "the older version kept the dropped sequence's row");
  await migrate(env.sourceUrl);
  assert.deepEqual(await carried(), ["kept"]);
  await env.source.query(`create sequence gone; select dbsync.add_sequence('gone', 'seqs')`);
  assert.deepEqual(await carried(), ["gone", "kept"]);
});

test("upgrade from the capture before migration 0010: every table gets the new capture, one that stays locked keeps the old one until the next migrate, and nothing queued before or after is lost", async (t) => {
  const env = await freshEnvAs(t, BEFORE_0010, "the version before 0010", "migrate_upgrade");
  if (!env) return;
  const ddl = `create table t (id int primary key, v text);
               create table busy (id int primary key, v text);
               create table p (id int primary key, v text) partition by range (id);
               create table p1 partition of p for values from (0) to (100);
               create table p2 partition of p for values from (100) to (1000)`;
  await subscribeTables(env, ddl, ["t", "busy", "p"]);
  const write = async (base: number) => {
    await env.source.query(`insert into t values (${base}, 'a'), (${base + 1}, 'b');
                            update t set id = ${base + 50} where id = ${base + 1};
                            insert into busy values (${base}, 'a');
                            insert into p values (${base}, 'a'), (${base + 1}, 'b');
                            update p set id = ${base + 150} where id = ${base};
                            delete from p where id = ${base + 1}`);
  };
  await write(1);

  // A writer holds busy while migrate runs: its capture cannot be regenerated (10 s lock timeout).
  const writer = await env.source.connect();
  let upgraded;
  try {
    await writer.query("begin");
    await writer.query("insert into busy values (500, 'held')");
    const running = migrate(env.sourceUrl);
    // Meanwhile t, upgraded before busy, takes writes: its upgrade has committed.
    await until("migrate waits for busy's lock", async () =>
      Number(await value(env.source, "select count(*) from pg_stat_activity where datname = current_database() and application_name = 'dbsync migrate' and wait_event_type = 'Lock'")) > 0,
    );
    await env.source.query("begin; set local lock_timeout = '5s'; insert into t values (900, 'while migrate waits'); commit");
    upgraded = await running;
    await writer.query("commit");
  } finally {
    writer.release();
  }
  assert.ok(upgraded.applied.includes("0010_capture_v2.sql"), JSON.stringify(upgraded));
  assert.equal(upgraded.captureUpgraded, 2);
  const versions = async () =>
    Object.fromEntries(
      (await env.source.query<{ t: string; v: number }>("select table_name as t, capture_version as v from dbsync.tables")).rows.map((r) => [r.t, r.v]),
    );
  const current = Number(await value(env.source, "select dbsync._capture_version()"));
  assert.deepEqual(await versions(), { t: current, p: current, busy: 1 });
  // The new capture: a row trigger for changed keys, no SET clause, firing ALWAYS.
  assert.equal(await value(env.source, "select count(*)::int from pg_trigger where tgrelid = 't'::regclass and tgname = 'dbsync_capture_key' and tgenabled = 'A'"), 1);
  assert.equal(
    await value(env.source, "select count(*)::int from pg_proc where pronamespace = 'dbsync'::regnamespace and proname ~ '^capture_' and proconfig is not null"),
    1,
    "only busy's old capture function still sets search_path",
  );
  await write(200);

  // The next migrate upgrades it.
  const again = await migrate(env.sourceUrl);
  assert.equal(again.captureUpgraded, 1);
  assert.deepEqual(await versions(), { t: current, p: current, busy: current });
  await write(400);

  const sc = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sc.output());
  } finally {
    await sc.stop();
  }
  for (const tbl of ["t", "busy", "p"]) assert.deepEqual(await tableText(env.target, tbl), await tableText(env.source, tbl), tbl);
});

// The dbsync before capture version 3 (capture v2: one queue row per key).
const BEFORE_CAPTURE_3 = "05a7893606a1c889ed77d34c28f450f61056f7a4";

test("upgrade to capture version 3 (a statement's keys in 'M' events): the keys queued one row each before it, and those of writers running while migrate regenerates capture, all reach the target", async (t) => {
  const env = await freshEnvAs(t, BEFORE_CAPTURE_3, "the version before capture 3", "migrate_capture3");
  if (!env) return;
  await subscribeTables(env, `create table t (id int primary key, v int);
                              create table m (a int, b text, v int, primary key (a, b))`, ["t", "m"]);
  const sc0 = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sc0.output());
  } finally {
    await sc0.stop();
  }
  // Queued by the old capture, not applied yet: one 'K' row per key.
  await env.source.query(`insert into t select g, 0 from generate_series(1, 2500) g;
                          insert into m select g, 'k,"' || g, 0 from generate_series(1, 1500) g;
                          update t set id = id + 10000 where id <= 10`);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.events where op = 'K'"), 4020);

  // Writers of multi-row statements all through the upgrade.
  await migrateUnderWriter(env, (i) => `begin;
                       update t set v = v + 1 where id % 7 = ${i % 7};
                       insert into t select 100000 + ${i} * 10 + g, ${i} from generate_series(0, 4) g;
                       update m set v = v + 1, b = b || 'x' where a % 50 = ${i % 50};
                       delete from t where id between 20 + ${i} * 3 and 22 + ${i} * 3;
                       commit`, 2);
  assert.ok(Number(await value(env.source, "select count(*) from dbsync.events where op = 'M'")) > 0, "the new capture queues 'M' events");
  await env.source.query("update t set v = -v where id > 2000; insert into m select g, 'new', 1 from generate_series(1, 1200) g");

  const sc = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true, sc.output());
  } finally {
    await sc.stop();
  }
  for (const tbl of ["t", "m"]) assert.deepEqual(await tableText(env.target, tbl), await tableText(env.source, tbl), tbl);
});
