// Subscriptions share a process's --concurrency slots in turns. An applier loops
// until its subscription has caught up; under writes that never pause, it never
// does, and held its slot for ever while the other subscriptions' wake-ups were
// turned away (the CI failure of scale-takeover: four of eight subscriptions never
// got a slot from two processes of two slots each, their copies never started,
// and nothing said why). Now an applier that has held its slot for a while gives it
// up after a batch when another subscription's wake-up waits.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, until, value } from "./helpers";

test("with --concurrency 1 and writers that never pause on two groups, both subscriptions apply in turns", async () => {
  const env = await freshEnv("fairness");
  const ddl = "create table a (id int primary key, v int not null); create table b (id int primary key, v int not null);";
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("insert into a values (1, 0); insert into b values (1, 0)");
  await env.source.query("select dbsync.add_table('a', 'ga'), dbsync.add_table('b', 'gb')");
  await env.source.query("select dbsync.add_subscription('sa', 'ga', $1), dbsync.add_subscription('sb', 'gb', $1)", [env.targetUrl]);
  const stop = { done: false };
  // Flat out, one transaction after another: there is always a commit newer than
  // the batch an applier just took.
  const writers = ["a", "b"].map((t) =>
    (async () => {
      while (!stop.done) await env.source.query(`update ${t} set v = v + 1 where id = 1`);
    })(),
  );
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"]);
  try {
    await until("both writers under way", async () => (await value<number>(env.source, "select least((select v from a), (select v from b))")) > 200, 60_000);
    // Three times over, each table's row on the target reaches a value the source
    // had while both writers went on: the slot goes back and forth (a turn given up
    // once, and never again, passed a single round).
    for (let round = 1; round <= 3; round++) {
      const [va, vb] = [await value<number>(env.source, "select v from a"), await value<number>(env.source, "select v from b")];
      await until(
        `round ${round}: both subscriptions applied while the writers go on (a >= ${va}, b >= ${vb} on the target)`,
        async () =>
          (await value<number>(env.target, "select coalesce((select v from a where id = 1), -1)")) >= va &&
          (await value<number>(env.target, "select coalesce((select v from b where id = 1), -1)")) >= vb,
        60_000,
      ).catch(async (err) => {
        const status = await env.source.query("select name, state, backlog_events, last_error from dbsync.status");
        throw new Error(`${(err as Error).message}\n${JSON.stringify(status.rows)}\n${sidecar.output()}`);
      });
    }
    stop.done = true;
    await Promise.all(writers);
    for (const s of ["sa", "sb"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [s]), true, s);
    for (const t of ["a", "b"]) {
      assert.equal(await value<number>(env.target, `select v from ${t}`), await value<number>(env.source, `select v from ${t}`), t);
    }
  } finally {
    stop.done = true;
    await Promise.all(writers).catch(() => undefined);
    await sidecar.stop();
  }
});
