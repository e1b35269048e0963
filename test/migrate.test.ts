import assert from "node:assert/strict";
import { test } from "node:test";
import { knownMigrations, migrate } from "../src/migrate";
import { createDatabase, pool, value } from "./helpers";

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
  assert.equal(await value(p, "select to_regclass('dbsync_worker.jobs') is not null or to_regclass('dbsync_worker._private_jobs') is not null"), true);
});

test("a database migrated by a newer dbsync is refused", async () => {
  const url = await createDatabase(process.env.DBSYNC_TEST_SOURCE_URL!, "migrate_newer");
  await migrate(url);
  const p = pool(url);
  await p.query("insert into dbsync.migrations (version, name) values (9999, '9999_future.sql')");
  await assert.rejects(migrate(url), /migrated by a newer dbsync \(schema version 9999/);
});
