// Hung links under a running sidecar. A fault proxy (test/harness/fault-proxy.ts)
// stands between the sidecar and a server; the test black-holes it mid-batch (no
// RST, no FIN: every socket stays open and nothing moves, new connections hang
// too) while clients keep writing directly to the source, then restores it. The
// sidecar must notice within a bounded time (src/db/liveness.ts: DBSYNC_QUERY_TIMEOUT_MS
// and DBSYNC_CONNECT_TIMEOUT_MS, set low here), record it, reconnect and resume;
// the target then equals the source table by table, the insert-only table has
// exactly the rows written, and each of them was inserted on the target exactly once.
// (The LISTEN connection alone: faults-listen.test.ts.)
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { SOURCE_DDL, TARGET_AUDIT, Workload } from "./kit/workload";
import { FaultProxy, startFaultProxy } from "./harness/fault-proxy";
import { Env, freshEnv, orAfter, rows, seeded, Sidecar, sleep, startSidecar, tableText, until, value } from "./helpers";
import { running } from "./kit/sidecar-start";
import { underLoad } from "./kit/wait";

const QUERY_TIMEOUT_MS = 2000;
const LINK_ENV = {
  DBSYNC_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
  DBSYNC_CONNECT_TIMEOUT_MS: "2000",
  DBSYNC_LOG_LEVEL: "info",
};
/** Without DBSYNC_QUERY_TIMEOUT_MS (src/db/settings.ts): what a sidecar deaf to the setting would wait. */
const DEFAULT_QUERY_TIMEOUT_MS = 30_000;
/**
 * The sidecar must have noticed a hung link by then: silence + probe + margin, the
 * probe and margin (5 s idle) stretched on a loaded machine (PostgreSQL 14's run,
 * load 15: 4.8 s of 7). Capped at half the default timeout, so that a sidecar that
 * ignores the setting, or never notices, still fails.
 */
const detectBoundMs = () => QUERY_TIMEOUT_MS + underLoad(2000 + 3000, DEFAULT_QUERY_TIMEOUT_MS / 2 - QUERY_TIMEOUT_MS);

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
  load: Workload;
}

/**
 * ins_only in group a (subscription sa), kv in group b (subscription sb), both into
 * one target database; the sidecar reaches the source and (via the conninfo in the
 * subscriptions) the target through the proxies. The writers connect directly.
 */
async function rig(label: string, args: string[] = []): Promise<Rig> {
  const env = await freshEnv(label);
  await env.source.query(SOURCE_DDL("ins_only", "kv"));
  await env.target.query(SOURCE_DDL("ins_only", "kv"));
  await env.target.query(TARGET_AUDIT("ins_only", 0.03));
  const sourceProxy = await startFaultProxy({ port: clusterPort(env.sourceUrl) });
  const targetProxy = await startFaultProxy({ port: clusterPort(env.targetUrl) });
  proxies.push(sourceProxy, targetProxy);
  await env.source.query("select dbsync.add_table('ins_only', 'a'), dbsync.add_table('kv', 'b')");
  const targetVia = targetProxy.url(env.targetUrl);
  await env.source.query("select dbsync.add_subscription('sa', 'a', $1, copy_data => false)", [targetVia]);
  await env.source.query("select dbsync.add_subscription('sb', 'b', $1, copy_data => false)", [targetVia]);
  const sidecar = startSidecar(sourceProxy.url(env.sourceUrl), ["--poll-interval", "200", ...args], LINK_ENV);
  await running(sidecar);
  assert.equal(sidecar.proc.exitCode, null, sidecar.output());
  const load = new Workload(env.source, { rng: seeded("faults-links") }).start();
  // Waits, not bounds: at load 50 the sidecar's own 2 s connect timeout ran out over
  // and over before its first sync, and 30 s were not enough.
  for (const s of ["sa", "sb"]) {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true, `${s}\n${sidecar.output()}`);
  }
  return { env, sourceProxy, targetProxy, sidecar, load };
}

const midCopyIds = seeded("faults-links/midcopy");

/**
 * Commits one large transaction (so that its batch streams for a while) and waits
 * (up to 10 s) until the apply of it is inside its COPY on the given side: the fault
 * then lands mid-batch, mid-stream. Returns where it landed.
 */
async function midCopy(env: Env, load: Workload, side: "source" | "target"): Promise<string> {
  const n = 60_000;
  const first = 9_000_000_000 + midCopyIds.below(1000) * 1_000_000;
  await env.source.query("insert into ins_only select $1::int8 + g, 9, g, repeat(md5(g::text), 3) from generate_series(1, $2::int) g", [first, n]);
  load.ranges.push([first + 1, n]);
  load.insertedRows += n;
  load.insertTransactions++;
  const pool = side === "source" ? env.source : env.target;
  const deadline = Date.now() + 10_000;
  let open = false;
  while (Date.now() < deadline) {
    const r = (await pool.query(
      `select count(*) filter (where state = 'active' and query ilike 'copy %')::int as copying,
              count(*) filter (where xact_start is not null)::int as open
         from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%'`,
    )).rows[0];
    if (r.copying > 0) return `inside the COPY of a ${n}-row batch on the ${side}`;
    open ||= r.open > 0;
    await sleep(2);
  }
  return open ? "inside an apply transaction" : "between batches";
}

const appliedTick = (env: Env, sub: string) =>
  value<number>(env.source, "select last_applied_tick::int from dbsync.status where name = $1", [sub]);
const targetTick = (env: Env, sub: string) => value<number>(env.target, "select tick_id::int from dbsync.applied where subscription = $1", [sub]);

/** Stops the load, waits for both subscriptions and compares everything. */
async function finish(t: { diagnostic(m: string): void }, r: Rig) {
  const { env, load, sidecar } = r;
  await load.stop();
  for (const s of ["sa", "sb"]) {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true, `${s} not in sync\n${sidecar.output()}`);
  }
  await assertSame(env, load);
  t.diagnostic(`${load.insertedRows} rows inserted in ${load.insertTransactions} transactions, ${load.churnTransactions} kv transactions; target == source`);
  const code = await orAfter(sidecar.stop("SIGTERM"), 12000, "still running after 12 s");
  assert.equal(code, 0, sidecar.output());
}

/** Target == source table by table, exact rows on the insert-only table, each inserted on the target once. */
async function assertSame(env: Env, load: Workload) {
  assert.equal(load.unsureTransactions, 0);
  assert.deepEqual(await load.problems(env.source, env.target), []);
}

async function stopAll(r: Rig) {
  await r.load.stop().catch(() => undefined);
  r.sourceProxy.pass();
  r.targetProxy.pass();
  r.sidecar.proc.kill("SIGKILL");
}

test("target link black-holed mid-batch, then restored: noticed, recorded, resumed, nothing lost or doubled", async (t) => {
  const r = await rig("faults_target_link");
  const { env, targetProxy, sidecar } = r;
  try {
    const landed = await midCopy(env, r.load, "target");
    const before = { sa: await appliedTick(env, "sa"), sb: await appliedTick(env, "sb") };
    const cutAt = await value<string>(env.source, "select pg_catalog.clock_timestamp()::text");
    const bound = detectBoundMs();
    const t0 = Date.now();
    targetProxy.blackhole();
    // Recorded on the source (which is reachable) within the bound, with a clear message.
    // (An error the load caused before the cut, retried and cleared since, keeps its
    // last_error_at: only an error present and newer than the cut counts.)
    let detectedMs = 0;
    let seen: { name: string; state: string; last_error: string; last_error_sqlstate: string } | undefined;
    await until(
      "the hung target link recorded in dbsync.status",
      async () => {
        [seen] = await rows<NonNullable<typeof seen>>(
          env.source,
          "select name, state, last_error, last_error_sqlstate from dbsync.status where last_error is not null and last_error_at >= $1::timestamptz order by name limit 1",
          [cutAt],
        );
        if (seen && !detectedMs) detectedMs = Date.now() - t0;
        return !!seen;
      },
      bound + 3000,
    );
    t.diagnostic(`fault ${landed}; recorded after ${detectedMs} ms (bound ${bound} ms): ${seen!.name} ${seen!.state} ${seen!.last_error_sqlstate}: ${seen!.last_error}`);
    assert.ok(detectedMs <= bound, `noticed after ${detectedMs} ms (bound ${bound} ms)`);
    assert.equal(seen!.state, "error");
    assert.match(seen!.last_error_sqlstate, /^08/);
    assert.match(seen!.last_error, new RegExp(`127\\.0\\.0\\.1:${targetProxy.port}`), "the error names the target");
    // Nothing is applied while the link hangs; the writers go on. The target's own
    // record: the source's may still move once, by the late report of a batch the
    // target committed before the link hung (reports follow commits, see applier.ts).
    const held = { sa: await targetTick(env, "sa"), sb: await targetTick(env, "sb") };
    await sleep(3000);
    assert.equal(await targetTick(env, "sa"), held.sa);
    assert.equal(await targetTick(env, "sb"), held.sb);
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
    const landed = await midCopy(env, r.load, "source");
    const logBefore = sidecar.output().length;
    const bound = detectBoundMs();
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
      bound + 3000,
    );
    t.diagnostic(`fault ${landed}; the sidecar noticed after ${detectedMs} ms (bound ${bound} ms)`);
    assert.ok(detectedMs <= bound, `noticed after ${detectedMs} ms (bound ${bound} ms)`);
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
