// dbsync.has_work's look for writers (dbsync._has_new_writers: one probe of the
// group's queue partitions for an event row visible now and not in the position's
// snapshot), without a sidecar: a writer running when the position's tick was taken
// (in its snapshot's xip) counts once it commits, not before; so does one that
// started after the tick; a transaction's own uncommitted events do not count for
// itself, and nothing counts once the position has passed them all.
import assert from "node:assert/strict";
import { test } from "node:test";
import { compat, freshEnv, value } from "./helpers";
import { setup } from "./kit/convergence";

test("has_work: writers running at the position's tick count once committed, later writers too, a transaction's own events not", async () => {
  const env = await freshEnv("has_work_writers");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  const hasWork = () => value<boolean>(env.source, "select dbsync.has_work('s')");
  /** A forced tick, and the subscription's position moved to it (as applying it would). */
  const positionAtNewTick = async () => {
    await env.source.query("select dbsync.tick($1, true)", [gid]);
    await env.source.query("update dbsync.subscriptions s set position_tick = g.last_tick_id from dbsync.groups g where g.group_id = s.group_id and s.name = 's'");
  };
  await positionAtNewTick();
  assert.equal(await hasWork(), false, "nothing written");

  // A writes first, B after it and commits: A's xid is below the tick's xmax, in its xip.
  const a = await env.source.connect();
  const c = await env.source.connect();
  try {
    await a.query("begin; insert into t values (1, 'a')");
    await env.source.query("insert into t values (2, 'b')");
    await positionAtNewTick();
    const inXip = await value<boolean>(
      env.source,
      compat(`select $1::text::xid8 = any (array(select pg_snapshot_xip(t.snap)))
                from dbsync.ticks t join dbsync.groups g on g.group_id = t.group_id and g.last_tick_id = t.tick_id where g.group_id = $2`),
      [await value<string>(a, compat("select pg_current_xact_id()::text")), gid],
    );
    assert.equal(inXip, true, "the running writer is in the tick's xip");
    assert.equal(await hasWork(), false, "B is in the position; A still runs");
    await a.query("commit");
    assert.equal(await hasWork(), true, "A committed after the tick it ran through");
    await positionAtNewTick();
    assert.equal(await hasWork(), false, "A is in the position");

    // C starts after the tick: its xid is at or above the tick's xmax.
    await c.query("begin; insert into t values (3, 'c')");
    assert.equal(await hasWork(), false, "C still runs");
    // Its own events do not count for itself (they are not committed), also once a
    // later transaction has ended: a snapshot leaves its own xid out of its xip, and
    // its xmax is then past it (in a whole run, other databases' transactions did it).
    await env.source.query(compat("select pg_current_xact_id()"));
    assert.equal(await value<boolean>(c, "select dbsync.has_work('s')"), false, "C's own events, seen from C");
    await c.query("commit");
    assert.equal(await hasWork(), true, "C committed after the tick");
    await positionAtNewTick();
    assert.equal(await hasWork(), false, "C is in the position");
  } finally {
    await a.query("rollback").catch(() => undefined);
    await c.query("rollback").catch(() => undefined);
    a.release();
    c.release();
  }
});
