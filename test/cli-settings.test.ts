// The CLI's sessions on the source run with dbsync's pinned settings (src/db/settings.ts,
// PINNED), as the sidecar's do: what it prints must not depend on the DateStyle a
// DBA or the database set. `dbsync schema` prints partition bounds and defaults
// through pg_get_expr, which writes a date as the session's DateStyle says; printed
// as 'SQL, DMY' and replayed on a target that reads MDY, 03/01/2024 is March 1st,
// not January 3rd.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, parentKey, partitionKey, partitionKeyColumns } from "./helpers";
import { runDbsync } from "./kit/dbsync";

test("dbsync schema prints dates in ISO whatever the source database's DateStyle", async () => {
  const env = await freshEnv("cli_settings");
  try {
    await env.source.query(`
      create table public.events (id bigint not null, at date not null default '2024-01-03'${parentKey("id, at", "source")}) partition by range (at);
      create table public.events_2024 partition of public.events${partitionKey("id, at", "source")} for values from ('2024-01-03') to ('2025-01-01');`);
    await env.source.query("select dbsync.add_table('public.events', 'g', $1)", [partitionKeyColumns(["id", "at"])]);
    const db = (await env.source.query("select current_database() as d")).rows[0].d;
    await env.source.query(`alter database ${db} set datestyle = 'SQL, DMY'`);
    const r = await runDbsync(["schema", "--source", env.sourceUrl], { env: { DBSYNC_LOG_LEVEL: "warn" }, unset: ["DBSYNC_SOURCE_URL", "DATABASE_URL"] });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /FOR VALUES FROM \('2024-01-03'\) TO \('2025-01-01'\)/, r.stdout);
    assert.doesNotMatch(r.stdout, /03\/01\/2024/, r.stdout);
  } finally {
    await Promise.all([env.source.end(), env.target.end()]);
  }
});
