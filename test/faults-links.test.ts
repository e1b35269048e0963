// Hung links under a running sidecar. A fault proxy (test/harness/fault-proxy.ts)
// stands between the sidecar and a server; the test black-holes it mid-batch (no
// RST, no FIN: every socket stays open and nothing moves, new connections hang
// too) while clients keep writing directly to the source, then restores it. The
// sidecar must notice within a bounded time (src/db.ts: DBSYNC_QUERY_TIMEOUT_MS
// and DBSYNC_CONNECT_TIMEOUT_MS, set low here), record it, reconnect and resume;
// the target then equals the source table by table, the insert-only table has
// exactly the rows written, and each of them was inserted on the target exactly once.
// The LISTEN connection alone is cut through the proxy's filter on application_name:
// replication goes on by polling.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Pool } from "pg";
import { FaultProxy, startFaultProxy } from "./harness/fault-proxy";
import { Env, freshEnv, rows, sleep, startSidecar, Sidecar, tableText, until, value } from "./helpers";

const QUERY_TIMEOUT_MS = 2000;
const LINK_ENV = {
  DBSYNC_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
  DBSYNC_CONNECT_TIMEOUT_MS: "2000",
  DBSYNC_LOG_LEVEL: "info",
};
/** The sidecar must have noticed a hung link by then: silence + probe + margin. */
const DETECT_BOUND_MS = QUERY_TIMEOUT_MS + 2000 + 3000;

const DDL = `
  create table ins_only (id bigint primary key, writer int not null, n int not null, payload text);
  create table kv (k int primary key, v int not null, note text);
  insert into kv select g, 0, 'seed' from generate_series(1, 300) g;`;

// Target only: count each row insert that an apply transaction commits (exactly
// once), and slow every apply a little so that a fault lands inside a batch.
const TARGET_AUDIT = `
  create table ins_audit (id bigint not null);
  create function audit_ins() returns trigger language plpgsql as $$
  begin
    insert into ins_audit select id from new_rows;
    perform pg_sleep(0.03);
    return null;
  end $$;
  create trigger audit after insert on ins_only referencing new table as new_rows
    for each statement execute function audit_ins();
  alter table ins_only enable always trigger audit;`;

const SKIPPABLE = new Set(["40P01", "40001", "23505"]);
const rnd = (n: number) => Math.floor(Math.random() * n);

async function attempt(pool: Pool, statements: [string, unknown[]][]): Promise<boolean> {
  const c = await pool.connect();
  try {
    await c.query("begin");
    for (const [sql, params] of statements) await c.query(sql, params);
    await c.query("commit");
    return true;
  } catch (err) {
    await c.query("rollback").catch(() => undefined);
    if (SKIPPABLE.has((err as { code?: string }).code ?? "")) return false;
    throw err;
  } finally {
    c.release();
  }
}

interface Load {
  stop: { done: boolean };
  inserted: { rows: number };
  churned: { commits: number };
  done: Promise<unknown>;
}

/** Two inserters on ins_only and two churners on kv (updates, deletes, upserts, key changes). */
function startLoad(pool: Pool): Load {
  const stop = { done: false };
  const inserted = { rows: 0 };
  const churned = { commits: 0 };
  const inserter = async (writer: number) => {
    let next = writer * 1_000_000_000;
    while (!stop.done) {
      const n = 1 + rnd(20);
      const first = next;
      next += n;
      const ok = await attempt(pool, [
        ["insert into ins_only select $1::int8 + g, $2, g, md5(g::text) from generate_series(1, $3::int) g", [first, writer, n]],
      ]);
      assert.ok(ok, "an insert-only transaction failed");
      inserted.rows += n;
      await sleep(10 + rnd(30));
    }
  };
  const churner = async () => {
    while (!stop.done) {
      const ops: [string, unknown[]][] = [];
      for (let i = 1 + rnd(4); i > 0; i--) {
        const k = 1 + rnd(400);
        const r = Math.random();
        if (r < 0.4) ops.push(["update kv set v = v + 1, note = 'upd' where k = $1", [k]]);
        else if (r < 0.55) ops.push(["delete from kv where k = $1", [k]]);
        else if (r < 0.75) ops.push(["insert into kv values ($1, 0, 'ins') on conflict (k) do update set v = kv.v + 100, note = 'upsert'", [k]]);
        else if (r < 0.9) ops.push(["update kv set k = $2 where k = $1", [k, 1 + rnd(400)]]);
        else ops.push(["update kv set v = v - 1 where k between $1 and $1 + 10", [k]]);
      }
      if (await attempt(pool, ops)) churned.commits++;
      await sleep(10 + rnd(30));
    }
  };
  const done = Promise.all([inserter(1), inserter(2), churner(), churner()]);
  return { stop, inserted, churned, done };
}

const proxies: FaultProxy[] = [];
after(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

function clusterPort(url: string): number {
  return Number(new URL(url).port);
}

interface Rig {
  env: Env;
  sourceProxy: FaultProxy;
  targetProxy: FaultProxy;
  sidecar: Sidecar;
  load: Load;
}

/**
 * ins_only in group a (subscription sa), kv in group b (subscription sb), both into
 * one target database; the sidecar reaches the source and (via the conninfo in the
 * subscriptions) the target through the proxies. The writers connect directly.
 */
async function rig(label: string, args: string[] = []): Promise<Rig> {
  const env = await freshEnv(label);
  await env.source.query(DDL);
  await env.target.query(DDL);
  await env.target.query(TARGET_AUDIT);
  const sourceProxy = await startFaultProxy({ port: clusterPort(env.sourceUrl) });
  const targetProxy = await startFaultProxy({ port: clusterPort(env.targetUrl) });
  proxies.push(sourceProxy, targetProxy);
  await env.source.query("select dbsync.add_table('ins_only', 'a'), dbsync.add_table('kv', 'b')");
  const targetVia = targetProxy.url(env.targetUrl);
  await env.source.query("select dbsync.add_subscription('sa', 'a', $1, copy_data => false)", [targetVia]);
  await env.source.query("select dbsync.add_subscription('sb', 'b', $1, copy_data => false)", [targetVia]);
  const sidecar = startSidecar(sourceProxy.url(env.sourceUrl), ["--poll-interval", "200", ...args], LINK_ENV);
  await until("sidecar running", async () => sidecar.output().includes("dbsync sidecar running") || sidecar.proc.exitCode !== null, 20000);
  assert.equal(sidecar.proc.exitCode, null, sidecar.output());
  const load = startLoad(env.source);
  for (const s of ["sa", "sb"]) {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '30 s')", [s]), true, `${s}\n${sidecar.output()}`);
  }
  return { env, sourceProxy, targetProxy, sidecar, load };
}

/** Waits (up to 5 s) until an apply transaction is open on the target: the fault lands mid-batch. */
async function midBatch(env: Env): Promise<boolean> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const busy = await value<number>(
      env.target,
      "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and xact_start is not null",
    );
    if (busy > 0) return true;
    await sleep(5);
  }
  return false;
}

const appliedTick = (env: Env, sub: string) =>
  value<number>(env.source, "select last_applied_tick::int from dbsync.status where name = $1", [sub]);

/** Stops the load, waits for both subscriptions and compares everything. */
async function finish(t: { diagnostic(m: string): void }, r: Rig) {
  const { env, load, sidecar } = r;
  load.stop.done = true;
  await load.done;
  for (const s of ["sa", "sb"]) {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '40 s')", [s]), true, `${s} not in sync\n${sidecar.output()}`);
  }
  for (const table of ["ins_only", "kv"]) {
    const [src, dst] = await Promise.all([tableText(env.source, table), tableText(env.target, table)]);
    assert.equal(dst.length, src.length, `${table}: row count`);
    assert.deepEqual(dst, src, `${table} differs`);
  }
  assert.equal(await value<number>(env.source, "select count(*)::int from ins_only"), load.inserted.rows, "rows written");
  assert.equal(await value<number>(env.target, "select count(*)::int from ins_only"), load.inserted.rows, "rows on the target");
  const audit = (await env.target.query("select count(*)::int as n, count(distinct id)::int as d from ins_audit")).rows[0];
  assert.equal(audit.d, load.inserted.rows, "rows of ins_only never inserted on the target");
  assert.equal(audit.n, load.inserted.rows, `${audit.n - audit.d} rows of ins_only were inserted on the target more than once`);
  t.diagnostic(`${load.inserted.rows} rows inserted, ${load.churned.commits} kv transactions, all equal`);
  const code = await Promise.race([sidecar.stop("SIGTERM"), sleep(12000).then(() => "still running after 12 s")]);
  assert.equal(code, 0, sidecar.output());
}

async function stopAll(r: Rig) {
  r.load.stop.done = true;
  await Promise.allSettled([r.load.done]);
  r.sourceProxy.pass();
  r.targetProxy.pass();
  r.sidecar.proc.kill("SIGKILL");
}

test("target link black-holed mid-batch, then restored: noticed, recorded, resumed, nothing lost or doubled", async (t) => {
  const r = await rig("faults_target_link");
  const { env, targetProxy, sidecar } = r;
  try {
    const landed = await midBatch(env);
    const before = { sa: await appliedTick(env, "sa"), sb: await appliedTick(env, "sb") };
    const t0 = Date.now();
    targetProxy.blackhole();
    // Recorded on the source (which is reachable) within the bound, with a clear message.
    let detectedMs = 0;
    await until(
      "the hung target link recorded in dbsync.status",
      async () => {
        const n = await value<number>(
          env.source,
          "select count(*)::int from dbsync.status where last_error_at >= now() - interval '30 s' and last_error like '%lost%'",
        );
        if (n > 0 && !detectedMs) detectedMs = Date.now() - t0;
        return n > 0;
      },
      DETECT_BOUND_MS + 3000,
    );
    const st = await rows<{ name: string; last_error: string; last_error_sqlstate: string; state: string }>(
      env.source,
      "select name, state, last_error, last_error_sqlstate from dbsync.status where last_error is not null order by name",
    );
    t.diagnostic(`fault ${landed ? "inside an open apply transaction" : "between batches"}; recorded after ${detectedMs} ms: ${st.map((s) => `${s.name} ${s.state} ${s.last_error_sqlstate}: ${s.last_error}`).join("; ")}`);
    assert.ok(detectedMs <= DETECT_BOUND_MS, `noticed after ${detectedMs} ms`);
    assert.equal(st[0].last_error_sqlstate, "08006");
    assert.match(st[0].last_error, new RegExp(`127\\.0\\.0\\.1:${targetProxy.port}`), "the error names the target");
    assert.ok(!/password/i.test(st[0].last_error));
    // Nothing moves while the link hangs; the writers go on.
    const held = { sa: await appliedTick(env, "sa"), sb: await appliedTick(env, "sb") };
    await sleep(3000);
    assert.equal(await appliedTick(env, "sa"), held.sa);
    assert.equal(await appliedTick(env, "sb"), held.sb);
    assert.ok(held.sa >= before.sa && held.sb >= before.sb);
    const holdMs = Date.now() - t0;

    targetProxy.pass();
    const t1 = Date.now();
    await until("both subscriptions move again", async () =>
      (await appliedTick(env, "sa")) > held.sa && (await appliedTick(env, "sb")) > held.sb, 30000);
    t.diagnostic(`link held ${holdMs} ms; both subscriptions applied again ${Date.now() - t1} ms after it was restored`);
    assert.equal(sidecar.proc.exitCode, null, sidecar.output());
    await finish(t, r);
  } finally {
    await stopAll(r);
  }
});

test("source link black-holed mid-batch, then restored: the sidecar reconnects and resumes, nothing lost or doubled", async (t) => {
  const r = await rig("faults_source_link");
  const { env, sourceProxy, sidecar } = r;
  try {
    const landed = await midBatch(env);
    const logBefore = sidecar.output().length;
    const t0 = Date.now();
    sourceProxy.blackhole();
    // The source cannot be told: the sidecar's log says it (and then the source, once back).
    let detectedMs = 0;
    await until(
      "the sidecar noticed the hung source link",
      async () => {
        const hit = /lost: no reply/.test(sidecar.output().slice(logBefore));
        if (hit && !detectedMs) detectedMs = Date.now() - t0;
        return hit;
      },
      DETECT_BOUND_MS + 3000,
    );
    t.diagnostic(`fault ${landed ? "inside an open apply transaction" : "between batches"}; the sidecar noticed after ${detectedMs} ms`);
    assert.ok(detectedMs <= DETECT_BOUND_MS, `noticed after ${detectedMs} ms`);
    // The target's open apply transaction is rolled back, not left holding locks.
    await until("no apply transaction left open on the target", async () =>
      (await value<number>(env.target,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and xact_start is not null")) === 0,
      10000);
    const held = { sa: await appliedTick(env, "sa"), sb: await appliedTick(env, "sb") };
    // Nothing is applied while the source cannot be read.
    const targetTicks = () => tableText(env.target, "dbsync.applied");
    const frozen = await targetTicks();
    await sleep(3000);
    assert.deepEqual(await targetTicks(), frozen, "the target moved while the source link hung");
    const holdMs = Date.now() - t0;

    sourceProxy.pass();
    const t1 = Date.now();
    await until("both subscriptions move again", async () =>
      (await appliedTick(env, "sa")) > held.sa && (await appliedTick(env, "sb")) > held.sb, 40000);
    t.diagnostic(`link held ${holdMs} ms; both subscriptions applied again ${Date.now() - t1} ms after it was restored`);
    assert.equal(sidecar.proc.exitCode, null, sidecar.output());
    await finish(t, r);
  } finally {
    await stopAll(r);
  }
});

test("LISTEN connection alone black-holed: replication goes on by polling, notifications come back after", async (t) => {
  // A slow poll, so that fast delivery after the restore can only come from NOTIFY.
  const r = await rig("faults_listen_link", ["--poll-interval", "2500"]);
  const { env, sourceProxy, sidecar } = r;
  const isListen = (c: { applicationName?: string }) => c.applicationName === "dbsync listen";
  try {
    assert.equal(sourceProxy.connections().filter(isListen).length, 1, "one LISTEN connection through the proxy");
    /** Latency of single marker rows (negative ids, group a) from commit to the target. */
    const latencies = async (n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const id = -(Date.now() * 10 + i);
        await env.source.query("insert into ins_only values ($1, 0, 0, 'marker')", [id]);
        r.load.inserted.rows++;
        const t0 = Date.now();
        await until(`marker ${id}`, async () => (await value<number>(env.target, "select count(*)::int from ins_only where id = $1", [id])) === 1, 15000);
        out.push(Date.now() - t0);
        await sleep(300 + rnd(300));
      }
      return out.sort((a, b) => a - b);
    };
    const normal = await latencies(5);
    sourceProxy.blackhole(isListen);
    await sleep(500);
    const cut = await latencies(6);
    assert.ok(sourceProxy.stats().held >= 1, "the LISTEN connection is held");
    // Everything else of the sidecar still goes through the same proxy and works.
    assert.ok(sourceProxy.connections().some((c) => !isListen(c) && !c.held));
    sourceProxy.pass();
    await sleep(1000);
    const back = await latencies(6);
    t.diagnostic(`marker latency ms (sorted): normal ${normal.join(", ")}; LISTEN hung ${cut.join(", ")}; restored ${back.join(", ")}`);
    assert.ok(cut[cut.length - 1] < 2500 + 3000, "polling keeps replication going while LISTEN hangs");
    assert.ok(cut[Math.floor(cut.length / 2)] > 300, "while LISTEN hangs, wake-ups come from the poll, not NOTIFY");
    assert.ok(back[Math.floor(back.length / 2)] < 1000, "after the restore, NOTIFY wakes the sidecar again");
    assert.equal(sidecar.proc.exitCode, null, sidecar.output());
    await finish(t, r);
  } finally {
    await stopAll(r);
  }
});
