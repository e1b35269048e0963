// A `dbsync migrate` by a dbsync owner that is no longer a superuser, after an install
// by it as one: it may not make the DDL event triggers again (sql/event_trigger.sql).
// Where they are already what the code needs, they stay and keep watching (they call
// dbsync._on_ddl and _on_drop by oid, which CREATE OR REPLACE keeps); where they are
// an older version's, the migrate fails with an error that says to run it as a
// superuser, and changes nothing: left in place, they would miss DDL silently.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "pg";
import { migrate } from "../src/migrate";
import { Env, freshEnv, value } from "./helpers";
import { freshEnvAs } from "./kit/migrate-as";
import { asRole, rolesDroppedAfter } from "./kit/roles";

const made = rolesDroppedAfter();

/** The last commit whose event triggers fired in origin mode only, and did not watch DROP INDEX. */
const BEFORE_ALWAYS = "a3ee1fb";

/** `owner` no longer a superuser; as a dbsync owner, it keeps CREATE on the database (migrate's CREATE SCHEMA IF NOT EXISTS). */
async function demote(env: Env, owner: string) {
  const db = await value<string>(env.source, "select current_database()");
  await env.source.query(`alter role ${owner} nosuperuser; grant create on database "${db}" to ${owner}`);
}

const triggers = (env: Env) =>
  value<string>(env.source, "select string_agg(evtname || '=' || evtenabled::text || ':' || oid::text, ' ' order by evtname) from pg_event_trigger");

test("an owner no longer a superuser, migrating an install with an older version's event triggers: a clear error, nothing changed; as a superuser it goes", async (t) => {
  const owner = "evt_owner_old";
  const env = await freshEnvAs(t, BEFORE_ALWAYS, "the version before ENABLE ALWAYS", "evt_old", owner);
  if (!env) return;
  made.push({ url: env.sourceUrl, role: owner });
  await demote(env, owner);
  const before = { triggers: await triggers(env), versions: await value<string>(env.source, "select string_agg(version::text, ',' order by version) from dbsync.migrations") };
  assert.match(before.triggers, /dbsync_ddl_watch=O:\d+ dbsync_drop_watch=O:\d+/);
  await assert.rejects(migrate(asRole(env.sourceUrl, owner)), (err: Error & { code?: string; hint?: string }) => {
    assert.equal(err.code, "42501", err.message);
    assert.match(err.message, /DDL event triggers dbsync_ddl_watch, dbsync_drop_watch, dbsync_rewrite_watch are not what this version needs, and evt_owner_old may not make them again/);
    assert.match(err.hint ?? "", /Run dbsync migrate once as a superuser.*ALTER ROLE evt_owner_old SUPERUSER/);
    return true;
  });
  assert.deepEqual(
    { triggers: await triggers(env), versions: await value<string>(env.source, "select string_agg(version::text, ',' order by version) from dbsync.migrations") },
    before,
    "nothing changed",
  );
  await env.source.query(`alter role ${owner} superuser`);
  await migrate(asRole(env.sourceUrl, owner));
  assert.match(await triggers(env), /dbsync_ddl_watch=A:\d+ dbsync_drop_watch=A:\d+/);
});

test("an owner no longer a superuser, migrating code over event triggers that are this version's: they stay, and DDL is still watched", async () => {
  const owner = "evt_owner_now";
  const env = await freshEnv("evt_now", { migrate: false });
  await env.source.query(`create role ${owner} login superuser`);
  made.push({ url: env.sourceUrl, role: owner });
  await migrate(asRole(env.sourceUrl, owner));
  await demote(env, owner);
  const before = await triggers(env);
  // Code to install again, as a migrate to a version whose functions changed.
  await env.source.query("update dbsync.installed_code set sha = 'another version'");
  assert.equal((await migrate(asRole(env.sourceUrl, owner))).codeInstalled, true);
  assert.equal(await triggers(env), before, "the event triggers are the same ones");
  await env.source.query(`create table t (id int primary key, v int); alter table t owner to ${owner}; select dbsync.add_table('t')`);
  const c = new Client({ connectionString: env.sourceUrl });
  await c.connect();
  const warnings: string[] = [];
  c.on("notice", (n) => warnings.push(n.message ?? ""));
  try {
    await c.query("alter table t add column w int");
    await c.query("set session_replication_role = replica; alter table t drop column w; reset session_replication_role");
  } finally {
    await c.end();
  }
  assert.equal(warnings.filter((w) => /not run through dbsync.execute_ddl/.test(w)).length, 2, warnings.join("; "));
  assert.equal(await value(env.source, "select count(*)::int from dbsync.ddl_log where not via_execute_ddl"), 2);
});
