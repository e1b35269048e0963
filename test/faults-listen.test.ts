// The sidecar's LISTEN connection alone hangs (the fault proxy black-holes only the
// connections whose startup packet says application_name = 'dbsync listen'; its
// reconnection attempts hang too), while every other connection of the sidecar goes
// through the same proxy unharmed and clients keep writing. Replication must go on
// by polling; the hung LISTEN is noticed (pg-listen's periodic check, bounded by
// src/db/liveness.ts's query timeout) and, once the link is back, NOTIFY wakes the sidecar again.
import assert from "node:assert/strict";
import os from "node:os";
import { after, test } from "node:test";
import { SOURCE_DDL, TARGET_AUDIT, Workload } from "./kit/workload";
import { FaultProxy, startFaultProxy } from "./harness/fault-proxy";
import { freshEnv, orAfter, seeded, sleep, startSidecar, until, value } from "./helpers";
import { running } from "./kit/sidecar-start";
import { underLoad } from "./kit/wait";

const POLL_MS = 5000;
/** pg-listen checks its connection every 30 s; here every 5 s (DBSYNC_LISTEN_CHECK_MS), not to wait half a minute. */
const LISTEN_CHECK_MS = 5000;
const DEFAULT_LISTEN_CHECK_MS = 30_000;
/**
 * A marker that NOTIFY woke the sidecar for arrives within this (1.5 s idle; longer
 * on a loaded machine, but under half a poll interval, which the poll alone takes
 * on average).
 */
const notifiedMs = () => underLoad(1500, POLL_MS / 2);

const proxies: FaultProxy[] = [];
after(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

test("LISTEN connection alone black-holed: replication goes on by polling, NOTIFY works again after", async (t) => {
  const env = await freshEnv("faults_listen");
  await env.source.query(SOURCE_DDL("ins_only", "kv"));
  await env.target.query(SOURCE_DDL("ins_only", "kv"));
  await env.target.query(TARGET_AUDIT("ins_only"));
  const proxy = await startFaultProxy({ port: Number(new URL(env.sourceUrl).port) });
  proxies.push(proxy);
  await env.source.query("select dbsync.add_table('ins_only', 'a'), dbsync.add_table('kv', 'b')");
  await env.source.query("select dbsync.add_subscription('sa', 'a', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("select dbsync.add_subscription('sb', 'b', $1, copy_data => false)", [env.targetUrl]);
  // A slow poll: a wake-up within a second can then only come from NOTIFY.
  const sidecar = startSidecar(proxy.url(env.sourceUrl), ["--poll-interval", String(POLL_MS)], {
    DBSYNC_QUERY_TIMEOUT_MS: "2000",
    DBSYNC_CONNECT_TIMEOUT_MS: "2000",
    DBSYNC_LISTEN_CHECK_MS: String(LISTEN_CHECK_MS),
    DBSYNC_LOG_LEVEL: "info",
  });
  const rng = seeded("faults-listen");
  const load = new Workload(env.source, { rng }).start();
  const isListen = (c: { applicationName?: string }) => c.applicationName === "dbsync listen";
  try {
    await running(sidecar);
    assert.equal(sidecar.proc.exitCode, null, sidecar.output());
    for (const s of ["sa", "sb"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true);
    assert.equal(proxy.connections().filter(isListen).length, 1, "one LISTEN connection through the proxy");

    // Markers: single inserts into group a while the other writers pause and both
    // subscriptions have caught up, each timed from commit to arrival on the target.
    // (With group b's churn going on, at load 35 markers arrived within 1.5 s with or
    // without NOTIFY: the sidecar was kept busy, and the poll could not be told from it.)
    let marker = 0;
    const latency = async () => {
      const id = -++marker;
      await env.source.query("insert into ins_only values ($1, 0, 0, 'marker')", [id]);
      load.ranges.push([id, 1]);
      load.insertedRows++;
      const t0 = Date.now();
      await until(`marker ${id}`, async () => (await value<number>(env.target, "select count(*)::int from ins_only where id = $1", [id])) === 1, POLL_MS + 10_000);
      const ms = Date.now() - t0;
      await sleep(rng.int(200, 600));
      return ms;
    };
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

    const quiet = async () => {
      load.pauseInserts = true;
      load.pauseChurn = true;
      for (const s of ["sa", "sb"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [s]), true, `${s} caught up`);
    };
    await quiet();
    const normal: number[] = [];
    for (let i = 0; i < 5; i++) normal.push(await latency());

    const logFrom = sidecar.output().length;
    const cutAt = Date.now();
    proxy.blackhole(isListen);
    load.pauseInserts = false;
    load.pauseChurn = false;
    await sleep(3000);
    await quiet();
    const cut: number[] = [];
    // Markers until pg-listen's check has had time to find the hung connection (each
    // takes most of a poll interval: four of them outlast a check and its timeout).
    // (On a loaded machine the check's query and the reconnection take longer: up to
    // less than the default check's 30 s, which a sidecar deaf to the setting would take.)
    let noticedMs = 0;
    const noticeWithin = LISTEN_CHECK_MS + underLoad(10_000, DEFAULT_LISTEN_CHECK_MS - LISTEN_CHECK_MS - 5000);
    while (cut.length < 4 || (!noticedMs && Date.now() - cutAt < noticeWithin)) {
      cut.push(await latency());
      if (!noticedMs && /LISTEN (connection lost; )?reconnecting/.test(sidecar.output().slice(logFrom))) noticedMs = Date.now() - cutAt;
    }
    const noticed = noticedMs > 0;
    assert.ok(proxy.connections().some((c) => isListen(c) && c.held), "LISTEN connections are held");
    assert.ok(proxy.connections().some((c) => !isListen(c) && !c.held), "the sidecar's other connections pass");

    proxy.pass();
    // pg-listen retries every few seconds; its old, abandoned connections close on release.
    await until("LISTEN reconnected", async () => {
      const l = proxy.connections().filter(isListen);
      return l.length === 1 && l[0].bytesDown > 0 && Date.now() - l[0].openedAt > 1000;
    }, 20_000);
    const back: number[] = [];
    for (let i = 0; i < 6; i++) back.push(await latency());
    load.pauseInserts = false;
    load.pauseChurn = false;
    await sleep(2000);

    t.diagnostic(`marker latency ms: normal ${normal.join(", ")}; LISTEN hung ${cut.join(", ")}; restored ${back.join(", ")}`);
    t.diagnostic(noticed ? `hung LISTEN noticed (pg-listen reconnecting) ${noticedMs} ms after the cut` : "hung LISTEN NOT noticed");
    // A poll's wait, then the batch's work (4 s idle, more on a loaded machine, under a second poll).
    const polledWithin = POLL_MS + underLoad(4000, POLL_MS);
    const notified = notifiedMs();
    t.diagnostic(`bounds (load ${os.loadavg()[0].toFixed(1)}): by poll ${polledWithin} ms, by NOTIFY ${notified} ms`);
    assert.ok(Math.max(...cut) < polledWithin, "polling keeps replication going while LISTEN hangs");
    assert.ok(median(cut) > median(normal) + 500 || median(cut) > 1500, "while LISTEN hangs, the wake-ups come from the poll");
    assert.ok(median(back) < notified, "after the restore, NOTIFY wakes the sidecar again");
    assert.ok(noticed, "the hung LISTEN connection was noticed");

    await load.stop();
    for (const s of ["sa", "sb"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true);
    assert.deepEqual(await load.problems(env.source, env.target), []);
    t.diagnostic(`${load.insertedRows} rows inserted, ${load.churnTransactions} kv transactions; target == source`);
    const code = await orAfter(sidecar.stop("SIGTERM"), 12000, "still running after 12 s");
    assert.equal(code, 0, sidecar.output());
  } finally {
    await load.stop().catch(() => undefined);
    proxy.pass();
    sidecar.proc.kill("SIGKILL");
  }
});

test("LISTEN link that cannot be opened at start: the sidecar runs on by polling, and LISTENs once the link is back", async () => {
  const env = await freshEnv("faults_listen_start");
  await env.source.query("create table t (id int primary key, v int)");
  await env.target.query("create table t (id int primary key, v int)");
  await env.source.query("select dbsync.add_table('t', 'a')");
  await env.source.query("select dbsync.add_subscription('sa', 'a', $1, copy_data => false)", [env.targetUrl]);
  const proxy = await startFaultProxy({ port: Number(new URL(env.sourceUrl).port) });
  proxies.push(proxy);
  const isListen = (c: { applicationName?: string }) => c.applicationName === "dbsync listen";
  proxy.blackhole(isListen);
  const sidecar = startSidecar(proxy.url(env.sourceUrl), ["--poll-interval", String(POLL_MS)], {
    DBSYNC_CONNECT_TIMEOUT_MS: "1500",
    DBSYNC_LOG_LEVEL: "info",
  });
  const arrives = async (id: number, ms: number) => {
    await env.source.query("insert into t values ($1, 0)", [id]);
    const t0 = Date.now();
    await until(`row ${id} on the target`, async () => (await value<number>(env.target, "select count(*)::int from t where id = $1", [id])) === 1, ms);
    return Date.now() - t0;
  };
  try {
    await until("the LISTEN connection attempted and timed out", async () => /LISTEN connection lost/.test(sidecar.output()), 30_000);
    await arrives(1, 15_000);
    await sleep(3000); // several connect timeouts later
    assert.equal(sidecar.proc.exitCode, null, `the sidecar exited:\n${sidecar.output()}`);
    await arrives(2, 15_000);

    proxy.pass();
    await until("LISTEN connected", async () => proxy.connections().some((c) => isListen(c) && !c.held && c.bytesDown > 0), 30_000);
    await sleep(1000);
    // With a 5 s poll, a wake-up well under it can only come from NOTIFY.
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) latencies.push(await arrives(10 + i, 10_000));
    latencies.sort((a, b) => a - b);
    const notified = notifiedMs();
    assert.ok(latencies[2] < notified, `NOTIFY wakes the sidecar again (median ${latencies[2]} ms, bound ${notified} ms)`);
    const code = await orAfter(sidecar.stop("SIGTERM"), 12000, "still running after 12 s");
    assert.equal(code, 0, sidecar.output());
  } finally {
    proxy.pass();
    sidecar.proc.kill("SIGKILL");
  }
});
