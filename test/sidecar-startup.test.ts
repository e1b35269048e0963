// `dbsync run`'s start: up to --concurrency subscriptions are applied at once from
// the process, before graphile-worker's runner starts; the advisory lock keeps two
// processes from applying one subscription at the same time, the others wait for
// the job queue, and a process started while another applies leaves it alone.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { appliesPerTable, installApplyLog, overlappingApplies } from "./kit/apply-log";
import { FaultProxy, startFaultProxy } from "./harness/fault-proxy";
import { freshEnv, Sidecar, sleep, startSidecar, tableText, until, value } from "./helpers";
import { DEBUG_JSON as debug, logMessages as messages, NO_WORKER, oneSubscription } from "./kit/sidecar-start";

const TABLE = (t: string) => `create table ${t} (id int primary key, v int not null);`;


test("two processes started at once on a backlog: each subscription applied by one at a time, the first batch before the job runner", async (t) => {
  const env = await freshEnv("sidecar_startup_two");
  const tables = ["a1", "a2", "a3"];
  for (const tbl of tables) await Promise.all([env.source.query(TABLE(tbl)), env.target.query(TABLE(tbl))]);
  if (!(await installApplyLog(env.target, env.targetUrl, tables))) t.diagnostic("dblink is not available: only committed applies are logged");
  for (const [i, tbl] of tables.entries()) {
    await env.source.query("select dbsync.add_table($1, $2)", [tbl, `g${i + 1}`]);
    await env.source.query("select dbsync.add_subscription($1, $2, $3, copy_data => false)", [`s${i + 1}`, `g${i + 1}`, env.targetUrl]);
  }
  // The backlog left while no sidecar ran: many transactions per subscription.
  for (let k = 0; k < 30; k++) {
    for (const tbl of tables) await env.source.query(`insert into ${tbl} select g, g from generate_series($1::int, $1 + 99) g`, [k * 100]);
  }
  // --concurrency 1: each process applies one subscription from its start pass and
  // leaves the others to the job queue (its own runner's, or the other process's).
  // The runner waits for the first batch at most one poll interval: a long one here,
  // the longest first batch under load and more (3 s was not: at load 20 a first
  // batch of 3,000 events took 4.2 s from its start, its sessions' set-up included).
  const args = ["--poll-interval", "10000", "--concurrency", "1"];
  const [a, b] = [startSidecar(env.sourceUrl, args, debug), startSidecar(env.sourceUrl, args, debug)];
  const t0 = Date.now();
  try {
    for (const s of ["s1", "s2", "s3"]) {
      assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true, `${s}\n${a.output()}\n${b.output()}`);
    }
    t.diagnostic(`in sync ${Date.now() - t0} ms after the start`);
    for (const tbl of tables) assert.deepEqual(await tableText(env.target, tbl), await tableText(env.source, tbl), `${tbl} differs`);
    assert.deepEqual(await overlappingApplies(env.target), [], "two backends applied one subscription at the same time");
    t.diagnostic(`apply transactions: ${(await appliesPerTable(env.target)).map((r) => `${r.tbl} ${r.txs} by ${r.pids} backends`).join(", ")}`);
    // One of the two took s1's lock first and applied before its job runner was up.
    const early = [a, b].filter((s) => {
      const m = messages(s);
      const applied = m.indexOf("batch applied");
      return applied >= 0 && applied < m.indexOf("job runner started");
    });
    assert.ok(early.length >= 1, `no process applied a batch before its job runner started\n${a.output()}\n${b.output()}`);
    assert.doesNotMatch(a.output() + b.output(), /another applier moved the target/);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("a process started while another applies leaves the subscription to it, and takes over when it dies", async () => {
  const env = await freshEnv("sidecar_startup_busy");
  await Promise.all([env.source.query(TABLE("t")), env.target.query(TABLE("t"))]);
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const first = startSidecar(env.sourceUrl, ["--poll-interval", "100"], { DBSYNC_LOG_LEVEL: "info" });
  const blocker = await env.target.connect();
  let second: Sidecar | undefined;
  try {
    await until("first sidecar running", async () => first.output().includes("dbsync sidecar running") || first.proc.exitCode !== null);
    // The first sidecar's next batch waits for the target's table, holding the subscription.
    await blocker.query("begin; lock table t in access exclusive mode");
    await env.source.query("insert into t select g, g from generate_series(1, 1000) g");
    const appliers = () =>
      value<number>(env.target, "select count(*)::int from pg_stat_activity where datname = current_database() and application_name = 'dbsync apply s'");
    await until("the first sidecar is applying", async () =>
      (await value<number>(env.target,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name = 'dbsync apply s' and wait_event_type = 'Lock'")) === 1);

    second = startSidecar(env.sourceUrl, ["--poll-interval", "100"], debug);
    await until("second sidecar running", async () => second!.output().includes("dbsync sidecar running") || second!.proc.exitCode !== null);
    await sleep(500);
    assert.equal(await appliers(), 1, "the second process opened the target while the first applies");
    assert.doesNotMatch(second.output(), /batch applied/, "the second process applied a batch");

    // A crash of the first: its batch is rolled back, the second applies it.
    first.proc.kill("SIGKILL");
    await first.stop();
    await blocker.query("rollback");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, second.output());
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
    assert.match(second.output(), /batch applied/);
  } finally {
    await blocker.query("rollback").catch(() => undefined);
    blocker.release();
    await Promise.all([first.stop(), second?.stop()]);
  }
});

test("the job runner waits for a long first batch, and starts at once when another subscription caught up needs wake-ups", async () => {
  const env = await freshEnv("sidecar_startup_runner");
  for (const tbl of ["slow", "idle"]) await Promise.all([env.source.query(TABLE(tbl)), env.target.query(TABLE(tbl))]);
  await env.source.query("select dbsync.add_table('slow', 'g_slow')");
  await env.source.query("select dbsync.add_subscription('s_slow', 'g_slow', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("insert into slow select g, g from generate_series(1, 1000) g");
  const blocker = await env.target.connect();
  let s: Sidecar | undefined;
  const waitingForLock = () =>
    until("s_slow's first batch waits for the lock", async () =>
      (await value<number>(env.target,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name = 'dbsync apply s_slow' and wait_event_type = 'Lock'")) === 1);
  try {
    // One subscription whose first batch lasts longer than a poll interval (its
    // target table locked); the job runner waits for it up to 5 poll intervals (10 s).
    await blocker.query("begin; lock table slow in access exclusive mode");
    s = startSidecar(env.sourceUrl, ["--poll-interval", "2000"], debug);
    await waitingForLock();
    await sleep(3000);
    await blocker.query("rollback");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s_slow', '60 s')"), true, s.output());
    await until("job runner started", async () => messages(s!).includes("job runner started"));
    const m = messages(s);
    assert.ok(m.indexOf("batch applied") >= 0 && m.indexOf("batch applied") < m.indexOf("job runner started"),
      `the job runner started during the first batch\n${s.output()}`);
    await s.stop();

    // Now two: s_slow's first batch waits again, s_idle has nothing to apply. s_idle's
    // loop ends at once and needs wake-ups: the runner and LISTEN must not wait for s_slow.
    await env.source.query("select dbsync.add_table('idle', 'g_idle')");
    await env.source.query("select dbsync.add_subscription('s_idle', 'g_idle', $1, copy_data => false)", [env.targetUrl]);
    await env.source.query("insert into slow select g, g from generate_series(1001, 2000) g");
    await blocker.query("begin; lock table slow in access exclusive mode");
    s = startSidecar(env.sourceUrl, ["--poll-interval", "2000"], debug);
    await waitingForLock();
    // (s_idle's start-up loop, with nothing to apply, has ended by then.)
    await sleep(500);
    await env.source.query("insert into idle values (1, 1)");
    // Well under 5 poll intervals (10 s after the start): woken, not found once the runner starts late.
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s_idle', '4 s')"), true, s.output());
    assert.deepEqual(await tableText(env.target, "idle"), await tableText(env.source, "idle"));
    await blocker.query("rollback");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s_slow', '60 s')"), true, s.output());
    assert.deepEqual(await tableText(env.target, "slow"), await tableText(env.source, "slow"));
  } finally {
    await blocker.query("rollback").catch(() => undefined);
    blocker.release();
    await s?.stop();
  }
});

const proxies: FaultProxy[] = [];
after(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

test("the job runner cannot reach the source while it starts: retried, the sidecar runs on, wake-ups work once it is up", { skip: NO_WORKER }, async () => {
  const env = await oneSubscription("sidecar_startup_runner_lost");
  const proxy = await startFaultProxy({ port: Number(new URL(env.sourceUrl).port) });
  proxies.push(proxy);
  // Only the job runner's connections hang (a source that went away while the
  // runner started): the start-up loop, LISTEN and the control pool pass.
  proxy.blackhole((c) => c.applicationName === "dbsync worker");
  const s = startSidecar(proxy.url(env.sourceUrl), ["--poll-interval", "200"], { ...debug, DBSYNC_CONNECT_TIMEOUT_MS: "1000" });
  try {
    await until("the runner's start failed", async () => messages(s).includes("job runner could not start; retrying"), 30_000);
    assert.equal(s.proc.exitCode, null, `the sidecar exited\n${s.output()}`);
    proxy.pass();
    await until("job runner started again", async () => messages(s).some((m) => m.startsWith("job runner recovered")), 30_000);
    // The start-up loop has caught up: this change needs a wake-up, carried by the runner.
    await env.source.query("insert into t values (1, 1)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, s.output());
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    proxy.pass();
    await s.stop();
  }
});

test("a NOTIFY of a 'breaking migration' on graphile-worker's channel (any role may send one) does not stop the job runner for good", { skip: NO_WORKER }, async () => {
  const env = await oneSubscription("sidecar_startup_runner_notify");
  const s = startSidecar(env.sourceUrl, ["--poll-interval", "200"], debug);
  try {
    await until("the job runner started", async () => messages(s).includes("job runner started"), 30_000);
    // graphile-worker shuts its runner down, cleanly, on this message from anyone;
    // sent until it did (its LISTEN session may open after "job runner started").
    await until("the runner stopped on the NOTIFY", async () => {
      await env.source.query(`notify "worker:migrate", '{"migrationNumber": 999999, "breaking": true}'`);
      return messages(s).includes("job runner stopped; restarting");
    }, 30_000);
    await until("the runner was started again", async () => messages(s).some((m) => m.startsWith("job runner recovered")), 30_000);
    // Applying after the start-up pass needs the runner: the scan's wake-ups are its jobs.
    await env.source.query("insert into t values (1, 1)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, s.output());
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await s.stop();
  }
});
