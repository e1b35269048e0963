// `dbsync run` stops on SIGTERM with exit code 0 within 10 s: idle, in the middle
// of applying a big batch (which is then either all on the target or not at all,
// and completed by the next run), and while it is still starting up.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, orAfter, Sidecar, sleep, startSidecar, until, value } from "./helpers";

/** SIGTERM; the exit code (null: killed by a signal, or still running after 12 s) and the time it took. */
async function terminate(s: Sidecar): Promise<{ code: number | null; signal: string | null; ms: number }> {
  const t0 = Date.now();
  const code = await orAfter(s.stop("SIGTERM"), 12000, null);
  return { code, signal: s.proc.signalCode, ms: Date.now() - t0 };
}

async function running(s: Sidecar) {
  await until("sidecar running", async () => s.output().includes("dbsync sidecar running") || s.proc.exitCode !== null, 30000);
  assert.equal(s.proc.exitCode, null, s.output());
}

const info = { DBSYNC_LOG_LEVEL: "info" };

test("SIGTERM while idle: exit 0 within 10 s, after a clean stop", async (t) => {
  const env = await freshEnv("sidecar_sigterm_idle");
  await env.source.query("create table t (id int primary key, v text)");
  await env.target.query("create table t (id int primary key, v text)");
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, [], info);
  await running(sidecar);
  await env.source.query("insert into t select g, 'x' from generate_series(1, 100) g");
  assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, sidecar.output());
  await sleep(1500); // idle: caught up, listening
  const r = await terminate(sidecar);
  t.diagnostic(`exited ${r.code} (signal ${r.signal}) ${r.ms} ms after SIGTERM`);
  assert.equal(r.code, 0, `exit code ${r.code}, signal ${r.signal}\n${sidecar.output()}`);
  assert.ok(r.ms < 10000, `took ${r.ms} ms`);
  assert.match(sidecar.output(), /dbsync sidecar stopped/, "the sidecar did not stop cleanly");
  await until("the stopped sidecar's connections are closed", async () =>
    (await value<number>(env.source,
      "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync%'")) === 0, 5000);
});

test("SIGTERM while a big batch is being applied: exit 0 within 10 s, the batch is all or nothing, the next run completes it", async (t) => {
  const env = await freshEnv("sidecar_sigterm_busy");
  const DDL = "create table big (id int primary key, grp int not null, payload text not null)";
  await env.source.query(DDL);
  await env.target.query(DDL);
  await env.source.query("select dbsync.add_table('big', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const ROWS = 200_000;
  const first = startSidecar(env.sourceUrl, [], info);
  await running(first);
  // One source transaction: one batch.
  await env.source.query(`insert into big select g, g % 100, repeat(md5(g::text), 3) from generate_series(1, ${ROWS}) g`);
  const inFlight = async () =>
    (await value<number>(
      env.target,
      "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and xact_start is not null and state = 'active'",
    )) > 0;
  await until("the batch is being applied on the target", inFlight, 60000);
  await sleep(200);
  const stillApplying = await inFlight();
  const r = await terminate(first);
  t.diagnostic(`exited ${r.code} (signal ${r.signal}) ${r.ms} ms after SIGTERM; apply ${stillApplying ? "was" : "was no longer"} in flight 200 ms before`);
  assert.equal(r.code, 0, `exit code ${r.code}, signal ${r.signal}\n${first.output()}`);
  assert.ok(r.ms < 10000, `took ${r.ms} ms`);
  // The target holds the batch completely or not at all.
  await until("the stopped sidecar's target transaction is gone", async () => !(await inFlight()), 30000);
  const onTarget = await value<number>(env.target, "select count(*)::int from big");
  t.diagnostic(`${onTarget} of ${ROWS} rows on the target after the stop`);
  assert.ok(onTarget === 0 || onTarget === ROWS, `half a batch on the target: ${onTarget} rows`);

  const second = startSidecar(env.sourceUrl, [], info);
  await running(second);
  assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, second.output());
  const digest = "select count(*)::int as n, md5(string_agg(b::text, ',' order by id)) as h from big b";
  assert.deepEqual((await env.target.query(digest)).rows, (await env.source.query(digest)).rows);
  const r2 = await terminate(second);
  assert.equal(r2.code, 0, second.output());
});

test("SIGTERM while still starting up (the source is slow to answer): exit 0 within 10 s", async (t) => {
  const env = await freshEnv("sidecar_sigterm_start");
  await env.source.query("create table t (id int primary key)");
  await env.target.query("create table t (id int primary key)");
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  // A DBA's long transaction holds dbsync.groups: the sidecar's start-up waits for it.
  const blocker = await env.source.connect();
  let sidecar: Sidecar | undefined;
  try {
    await blocker.query("begin; lock table dbsync.groups in access exclusive mode");
    sidecar = startSidecar(env.sourceUrl, [], info);
    await until("the sidecar's start-up waits on the source", async () =>
      (await value<number>(env.source,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync%' and wait_event_type = 'Lock'")) > 0, 30000);
    await sleep(300);
    const r = await terminate(sidecar);
    t.diagnostic(`exited ${r.code} (signal ${r.signal}) ${r.ms} ms after SIGTERM`);
    assert.equal(r.code, 0, `exit code ${r.code}, signal ${r.signal}\n${sidecar.output()}`);
    assert.ok(r.ms < 10000, `took ${r.ms} ms`);
  } finally {
    await blocker.query("rollback").catch(() => undefined);
    blocker.release();
    sidecar?.proc.kill("SIGKILL");
  }
});
