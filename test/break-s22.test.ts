// Session 22's attempts to make a target differ from its source with no error in
// dbsync.status: DDL spelled in ways the event triggers did not watch, application
// sessions and clients of other kinds, crashes at awkward moments. What held is kept
// as a guard; what broke is a test that failed before its fix.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, value } from "./helpers";
import { failsWith, setup, strictlyConverged, synced } from "./kit/convergence";

// Failed before the fix (no error, wait_for_sync true, the target's x holding the
// source's y): PostgreSQL takes ALTER INDEX ... RENAME for a table too, and its tag
// was not one the DDL event trigger watched, so dbsync's record of the names the
// targets know kept the old ones. Once the target's DBA made the same swap, each
// table's rows went into the other's.
test("two replicated tables' names swapped by ALTER INDEX ... RENAME outside execute_ddl: an error until acknowledged, then equal", async () => {
  const env = await freshEnv("brk22_swap_index");
  await setup(env, "create table x (id int primary key, v text); create table y (id int primary key, v text)", ["x", "y"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into x select g, 'x' || g from generate_series(1, 10) g; insert into y select g, 'y' || g from generate_series(1, 10) g");
    await synced(env);
    const swap = "begin; alter index x rename to tmp; alter index y rename to x; alter index tmp rename to y; commit";
    await env.source.query(swap);
    await env.source.query("update y set v = v || ' (old x)' where id <= 5; update x set v = v || ' (old y)' where id > 5; insert into x values (11, 'new in old y')");
    await failsWith(env, /RENAME of public\.[xy] outside dbsync\.execute_ddl changed its name on the source only/);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '1 s')"), false);
    await env.target.query(swap);
    await env.source.query("select dbsync.acknowledge_ddl(null)");
    await env.source.query("update x set v = v || '.'; update y set v = v || '.'");
    await strictlyConverged(env, ["x", "y"]);
    // Through execute_ddl, the targets run it at its point and the record follows.
    await env.source.query("select dbsync.execute_ddl('g', 'alter index x rename to z')");
    await env.source.query("insert into z values (12, 'after the rename')");
    await strictlyConverged(env, ["z", "y"]);
  } finally {
    await sidecar.stop();
  }
});
