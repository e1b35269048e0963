// Two replicated tables whose names a statement swaps on the source outside
// execute_ddl (break-s21, break-s22): the spellings PostgreSQL takes for it differ,
// the verdict does not.
import assert from "node:assert/strict";
import { Env, startSidecar, value } from "../helpers";
import { failsWith, setup, strictlyConverged, synced } from "./convergence";

/**
 * Tables x and y (group g, subscription s), ten rows each; `swap` run on the
 * source, then rows changed in both: an error matching `held` in dbsync.status and
 * wait_for_sync false; the same swap on the target and acknowledge_ddl: equal. Then
 * `after` (the sidecar still running), if given.
 */
export async function swapHeldThenEqual(env: Env, swap: string, held: RegExp, after?: () => Promise<void>): Promise<void> {
  await setup(env, "create table x (id int primary key, v text); create table y (id int primary key, v text)", ["x", "y"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into x select g, 'x' || g from generate_series(1, 10) g; insert into y select g, 'y' || g from generate_series(1, 10) g");
    await synced(env);
    await env.source.query(swap);
    // Rows of the table now named y (x's rows), of the one now named x (y's).
    await env.source.query("update y set v = v || ' (old x)' where id <= 5; update x set v = v || ' (old y)' where id > 5; insert into x values (11, 'new in old y')");
    await failsWith(env, held);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '1 s')"), false);
    await env.target.query(swap);
    await env.source.query("select dbsync.acknowledge_ddl(null)");
    await env.source.query("update x set v = v || '.'; update y set v = v || '.'");
    await strictlyConverged(env, ["x", "y"]);
    await after?.();
  } finally {
    await sidecar.stop();
  }
}
