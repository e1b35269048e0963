// Attacks on session 20's changes (63dfbc5..b043265): the hold of DDL that changes
// rows outside execute_ddl (timestamp <-> timestamptz without a rewrite), the
// process-kept plans, and capture's NOTIFY under two-phase commit. The property:
// the group is never shown in sync while the target holds other rows than the source.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, value } from "./helpers";
import { assertTablesEqual, setup, strictlyConverged, synced } from "./kit/convergence";

// A typed table (CREATE TABLE ... OF type): ALTER TYPE ... ALTER ATTRIBUTE ... CASCADE
// retypes its column, and under a TimeZone of offset 0 (PostgreSQL 12 on) rewrites
// nothing. The command names the composite type, not the table. (Before 12 it
// rewrites: the rewrite event trigger sees the table, and the test holds alike.)
test("a typed table's column retyped timestamp -> timestamptz by ALTER TYPE ... CASCADE under UTC, the target's DBA in another zone: held, then equal", async () => {
  const env = await freshEnv("brk20_typed");
  const ddl = "create type pair as (id int, ts timestamp); create table t of pair (primary key (id))";
  await setup(env, ddl, ["t"]);
  await env.source.query("insert into t select g, timestamp '2020-01-01' + g * interval '1 hour' from generate_series(1, 20) g");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    // (Renamed first: the record must follow the name.)
    const alter = "alter type pair rename attribute ts to ts2 cascade; alter type pair alter attribute ts2 type timestamptz cascade";
    await env.source.query(`begin; set local timezone = 'UTC'; ${alter.split(";")[0]}; commit`);
    await env.source.query(`begin; set local timezone = 'UTC'; ${alter.split(";")[1]}; commit`);
    await env.target.query(`begin; set local timezone = 'America/New_York'; ${alter}; commit`);
    const held = Number(await value(env.source, "select count(*) from dbsync._held_tables()"));
    if (held === 0 && (await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"))) {
      await assertTablesEqual(env.source, env.target, ["t"], "in sync");
      return;
    }
    assert.ok(held > 0, "not in sync, and nothing held");
    assert.ok(Number(await value(env.source, "select dbsync.acknowledge_ddl(null)")) >= 1);
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

test("a typed table's ALTER TYPE ... CASCADE through execute_ddl under UTC: not held, equal, and its record follows (a later ALTER TABLE is not held)", async () => {
  const env = await freshEnv("brk20_typed_ddl");
  await setup(env, "create type pair as (id int, ts timestamp); create table t of pair (primary key (id))", ["t"]);
  await env.source.query("insert into t select g, timestamp '2020-01-01' + g * interval '1 hour' from generate_series(1, 20) g");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    await env.source.query("begin; set local timezone = 'UTC'; select dbsync.execute_ddl('g', 'alter type pair alter attribute ts type timestamptz cascade'); commit");
    await strictlyConverged(env, ["t"]);
    await env.source.query("alter table t alter column ts set not null");
    assert.equal(Number(await value(env.source, "select count(*) from dbsync._held_tables()")), 0);
  } finally {
    await sidecar.stop();
  }
});
