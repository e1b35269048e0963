// The source server restarted (fast, then immediate) while one big batch
// (hundreds of thousands of rows committed in one transaction) streams to the
// target, and while the sidecar's job runner starts. The sidecar (default poll
// interval, as in production) must be in sync within seconds after the source is
// back, and the target must equal the source. Private clusters (they restart).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { migrate } from "../src/migrate";
import { createDatabase, pool, retrying, sleep, startSidecar, Sidecar, tableText, until } from "./helpers";
import { privateClusters } from "./kit/private-clusters";

// The source commits synchronously: the writers count acknowledged commits across an
// immediate stop. The target keeps the suite's asynchronous commit: an immediate stop
// may then lose its last applied batches, which the sidecar must notice.
const clusters = privateClusters();

/** After a restart: how long a caught-up sidecar may take (the source's own start excluded). */
const IN_SYNC_WITHIN_MS = 20_000;

async function setup(label: string) {
  const [sourceUrl, targetUrl] = await Promise.all([createDatabase(clusters.source().url(), label), createDatabase(clusters.target().url(), label)]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  const ddl = "create table big (id bigint primary key, v text not null)";
  await src.query(ddl);
  await dst.query(ddl);
  await src.query("select dbsync.add_table('big', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [targetUrl]);
  return { sourceUrl, targetUrl, src, dst };
}

/** Milliseconds until wait_for_sync('s') is true (connection errors waited out); fails past `limitMs`. */
async function msToSync(src: Pool, sidecar: Sidecar, limitMs: number, what: string): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const ok = await src
      .query("select dbsync.wait_for_sync('s', '1 s') as ok")
      .then((r) => r.rows[0].ok as boolean)
      .catch(() => false);
    if (ok) return Date.now() - t0;
    if (Date.now() - t0 > limitMs) {
      const st = await src.query("select state, last_error, backlog_events from dbsync.status").then((r) => JSON.stringify(r.rows)).catch((e) => String(e));
      assert.fail(`${what}: not in sync ${limitMs} ms after the source was back (status ${st}; sidecar alive: ${sidecar.proc.exitCode === null})\n${sidecar.output().slice(-6000)}`);
    }
  }
}

/** The target's apply session is inside a batch (not idle). */
async function targetApplying(dst: Pool): Promise<boolean> {
  const n = await dst.query(
    "select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and state <> 'idle'",
  );
  return n.rows[0].n > 0;
}

for (const mode of ["fast", "immediate"] as const) {
  test(`the source restarted (${mode}) while a batch of 300,000 rows streams: in sync within seconds after it is back`, async (t) => {
    const env = await setup(`b3_restart_big_${mode}`);
    const sidecar = startSidecar(env.sourceUrl, [], { DBSYNC_LOG_LEVEL: "info" });
    try {
      await env.src.query("insert into big values (0, 'first')");
      await msToSync(env.src, sidecar, 60_000, "first sync");
      await env.src.query("insert into big select g, md5(g::text) from generate_series(1, 300000) g");
      await until("the target applies the big batch", () => targetApplying(env.dst), 60_000, 20);
      await sleep(300);
      await clusters.source().stop(mode);
      await sleep(1000);
      await clusters.source().start();
      const ms = await msToSync(env.src, sidecar, 90_000, `${mode} restart`);
      t.diagnostic(`${mode}: in sync ${ms} ms after the source was back`);
      assert.equal(sidecar.proc.exitCode, null, "the sidecar exited");
      assert.deepEqual(await tableText(env.dst, "big"), await retrying(() => tableText(env.src, "big")), "target differs");
      // Then a small write: applied within seconds as well (the wake-up path works again).
      const t1 = Date.now();
      await env.src.query("insert into big values (-1, 'after the restart')");
      await msToSync(env.src, sidecar, IN_SYNC_WITHIN_MS, `${mode}: a small write after the restart`);
      t.diagnostic(`${mode}: a small write in sync after ${Date.now() - t1} ms`);
      assert.ok(ms < IN_SYNC_WITHIN_MS + 30_000, `in sync only ${ms} ms after the source was back`);
    } finally {
      await sidecar.stop();
    }
  });
}

test("the source restarted (immediate) while the sidecar starts its job runner: in sync within seconds after it is back", async (t) => {
  const env = await setup("b3_restart_startup");
  await env.src.query("insert into big select g, 'x' from generate_series(1, 1000) g");
  for (const delayMs of [300, 800, 1500]) {
    const sidecar = startSidecar(env.sourceUrl, [], { DBSYNC_LOG_LEVEL: "debug" });
    try {
      // The runner starts after the start-up pass's first batch (or its loop's end).
      await until("the sidecar is starting", () => /sidecar starting/.test(sidecar.output()), 30_000, 10);
      await sleep(delayMs);
      await clusters.source().stop("immediate");
      await sleep(1000);
      await clusters.source().start();
      await retrying(() => env.src.query("insert into big values ($1, 'after restart') on conflict (id) do update set v = excluded.v", [100_000 + delayMs]));
      const ms = await msToSync(env.src, sidecar, 60_000, `restart ${delayMs} ms into the start`);
      t.diagnostic(`restart ${delayMs} ms into the start: in sync ${ms} ms after the source was back`);
      assert.equal(sidecar.proc.exitCode, null, `the sidecar exited\n${sidecar.output().slice(-4000)}`);
      // A later write needs the wake-ups (LISTEN, job runner, poll): applied within seconds.
      await sleep(3000);
      const t1 = Date.now();
      await env.src.query("update big set v = 'later' where id = 1");
      await msToSync(env.src, sidecar, IN_SYNC_WITHIN_MS, `restart ${delayMs} ms into the start: a later write`);
      t.diagnostic(`restart ${delayMs} ms into the start: a later write in sync after ${Date.now() - t1} ms`);
      assert.deepEqual(await tableText(env.dst, "big"), await tableText(env.src, "big"));
    } finally {
      await sidecar.stop();
    }
  }
});
