// The measurements themselves: one function per figure (a..e), each on fresh
// databases, each returning plain numbers for one run. run.ts repeats them and
// takes medians; report.ts prints them.
import { compareTables, differences } from "../src/embedded/compare";
import { BenchEnv, checkpoint, connect, createDbPair, DbPair, onBoth, vacuumAnalyze, withClient } from "./clusters";
import { BatchStats, installDbsync, SidecarProcess, setPaused, StartupTimeline, statusRows, subscribe, waitForSync } from "./dbsync";
import { ApplyProfile, startProfile } from "./batch-profile";
import { CaptureProfile, installReference, PROFILE_SETS, profileCapture } from "./capture-profile";
import { Breakdown, breakdown, LatencyRow } from "./latency-breakdown";
import { backendCpuDelta, backendCpuSeconds, cpuBusy, cpuSample, LatencyProbe, median, percentile, processCpuSeconds, queueBytes } from "./measure";
import { createNative, dropNative, NativeSub, setEnabled, waitMarkers, waitStopped, waitStreaming } from "./native";
import {
  bulkDdl, bulkInsertSql, bulkUpdateSql, INSERT_ONLY_ROW_CHANGES, insertOnlyTransaction, manyTransactionsSql, runTpcb,
  sleep, TPCB_ROW_CHANGES, tpcbDdl, tpcbPopulate, TpcbScale, tpcbTableNames,
} from "./workloads";

export interface Sizes {
  scale: TpcbScale;
  clients: number;
  /** tpcb-like transactions in the apply backlog (all table sets together). */
  backlogTransactions: number;
  bulkRows: number;
  /** Seconds of tpcb-like load per variant in the capture-overhead figure. */
  overheadSeconds: number;
  /** Capture profile: transactions per round, and rounds (see capture-profile.ts). */
  profileTransactions: number;
  profileRounds: number;
  /** Paced tpcb-like load of the queue figure (tx/s). */
  rate: number;
  /** The latency figure's rates (tx/s), each measured in every run. */
  latencyRates: number[];
  latencySeconds: number;
  latencyWarmupSeconds: number;
  memoryEvents: number;
  memoryRowsPerTransaction: number;
  steadyMinutes: number;
  /** After the steady load: wait this long (sidecar idle) before the "settled" queue size. */
  queueSettleSeconds: number;
  /** Give up waiting for a catch-up after this long. */
  timeoutSeconds: number;
  /** Start-up figure: sidecar starts (and native enables) per run; the run's figure is their median. */
  startupRounds: number;
}

/** The full run's sizes (`npm run bench`; bench:latency-ab's too). */
export const FULL: Sizes = {
  scale: { branches: 8, tellersPerBranch: 10, accountsPerBranch: 12_500 },
  clients: 8,
  backlogTransactions: 100_000,
  bulkRows: 1_000_000,
  overheadSeconds: 16,
  profileTransactions: 3_000,
  profileRounds: 5,
  rate: 500,
  latencyRates: [500, 1000],
  latencySeconds: 20,
  latencyWarmupSeconds: 3,
  memoryEvents: 1_000_000,
  memoryRowsPerTransaction: 1_000,
  steadyMinutes: 2,
  queueSettleSeconds: 70,
  timeoutSeconds: 900,
  startupRounds: 5,
};

export interface Ctx {
  env: BenchEnv;
  sizes: Sizes;
  run: number;
  /** Progress text for the current step. */
  step(text: string): void;
  /** Problems worth reporting that did not stop the measurement. */
  note(text: string): void;
}

const schemasOf = (n: number) => Array.from({ length: n }, (_, i) => `s${i + 1}`);

/** The tpcb-like table sets `schemas`, with the same initial data, on both sides of `pair`. */
async function tpcbSetup(ctx: Ctx, pair: DbPair, schemas: string[], scale = ctx.sizes.scale) {
  await onBoth(pair, schemas.map((s) => tpcbDdl(s) + tpcbPopulate(s, scale)).join("\n"));
  const tables = schemas.flatMap(tpcbTableNames);
  await Promise.all([vacuumAnalyze(pair.sourceUrl, tables), vacuumAnalyze(pair.targetUrl, tables)]);
  return {
    groups: schemas.map((s) => ({
      name: s,
      tables: tpcbTableNames(s).filter((t) => !t.endsWith('"bench_marker"')),
      marker: `"${s}"."bench_marker"`,
    })),
  };
}

async function tpcbPair(ctx: Ctx, label: string, schemas: string[]): Promise<DbPair> {
  const pair = await createDbPair(ctx.env, label);
  await tpcbSetup(ctx, pair, schemas);
  return pair;
}

async function mismatches(pair: DbPair, tables: string[]): Promise<string[]> {
  const [s, t] = await Promise.all([connect(pair.sourceUrl), connect(pair.targetUrl)]);
  try {
    return differences(await compareTables(s, t, tables, { by: "checksum" }));
  } finally {
    await Promise.all([s.end(), t.end()]);
  }
}

async function insertMarkers(url: string, markerTables: string[], id: number) {
  await withClient(url, async (c) => {
    for (const t of markerTables) await c.query(`insert into ${t} (id) values ($1)`, [id]);
  });
}

const reported = new Set<string>();

/** Sidecar teardown that turns a bad exit or logged warnings/errors into notes (each distinct line once). */
async function stopSidecar(ctx: Ctx, sidecar: SidecarProcess, what: string) {
  const code = await sidecar.stop();
  if (code !== 0) ctx.note(`${what}: the sidecar exited with code ${code}: ${sidecar.output(20)}`);
  for (const line of new Set(sidecar.problems())) {
    // pino lines differ by time and pid; the message identifies the problem.
    const key = line.replace(/"(time|pid|hostname)":[^,}]*,?/g, "");
    if (reported.has(key)) continue;
    reported.add(key);
    ctx.note(`${what}: the sidecar logged: ${line.slice(0, 600)}`);
  }
}

// ---- a. apply throughput of a backlog -------------------------------------------

export interface ApplySide {
  rowChanges: number;
  seconds: number;
  rowsPerSecond: number;
  /** Per subscription: seconds to catch up. */
  perSubscription: Record<string, number>;
  loadSeconds: number;
  /** Share of the machine's CPUs busy while applying (0..1): how much room parallel groups had. */
  cpuBusy: number;
  peakRssBytes?: number;
  /** dbsync only: the sidecar's batches (time inside applyBatch vs the wall time above). */
  batches?: BatchStats;
  /** dbsync only: where the time before the first batch went (s from the spawn). */
  startup?: StartupTimeline;
  /** dbsync only: CPU seconds the sidecar process used from its spawn to the markers' arrival. */
  sidecarCpuSeconds?: number | null;
  /** Statements (dbsync) and WAL (both) over the timed apply: see batch-profile.ts. */
  profile?: ApplyProfile;
  mismatches: string[];
}

export interface ApplyResult {
  dbsync: ApplySide;
  native: ApplySide;
  ratio: number;
}

/** A backlog is loaded by `load` on each side in turn (order alternates by run). */
async function applyComparison(
  ctx: Ctx,
  label: string,
  setup: (pair: DbPair) => Promise<{ groups: { name: string; tables: string[]; marker: string }[] }>,
  load: (sourceUrl: string, side: "dbsync" | "native") => Promise<number>,
  compared: string[],
): Promise<ApplyResult> {
  const dbsyncSide = async (): Promise<ApplySide> => {
    ctx.step(`dbsync: setting up`);
    const pair = await createDbPair(ctx.env, `${label}_dbsync`);
    let sidecar: SidecarProcess | undefined;
    try {
      const { groups } = await setup(pair);
      await installDbsync(pair.sourceUrl);
      for (const g of groups) await subscribe(pair.sourceUrl, pair.targetUrl, `g_${g.name}`, [...g.tables, g.marker], `sub_${g.name}`);
      const subs = groups.map((g) => `sub_${g.name}`);
      // As after maintenance: the backlog is written while no sidecar runs (the
      // subscriptions are not paused), then the sidecar is started and the clock
      // runs from its spawn, so node's start, the job runner's and the first poll
      // are in the figure, as a DBA restarting it sees them.
      ctx.step(`dbsync: loading the backlog (sidecar stopped)`);
      const l0 = performance.now();
      const rowChanges = await load(pair.sourceUrl, "dbsync");
      const loadSeconds = (performance.now() - l0) / 1000;
      await insertMarkers(pair.sourceUrl, groups.map((g) => g.marker), 1);
      await checkpoint(ctx.env);
      const profiling = await startProfile(pair, true);
      ctx.step(`dbsync: starting the sidecar, applying ${rowChanges.toLocaleString("en-US")} row changes`);
      const cpu0 = cpuSample();
      sidecar = new SidecarProcess(pair.sourceUrl);
      const t0 = sidecar.spawnedAt;
      // Timed as the native side is: the markers' arrival on the target, one
      // connection polling every 10 ms. (wait_for_sync polls every 50 ms, and one
      // new connection per subscription would compete for the CPU being measured.)
      const markers = await waitMarkers(pair.targetUrl, groups.map((g) => g.marker), 1, t0, ctx.sizes.timeoutSeconds, () =>
        sidecar!.assertAlive(),
      );
      const sidecarCpuSeconds = processCpuSeconds(sidecar.nodePid);
      const busy = cpuBusy(cpu0, cpuSample());
      const profile = await profiling.finish();
      const per = Object.fromEntries(groups.map((g, i) => [subs[i], markers[g.marker]]));
      const seconds = Math.max(...Object.values(per)) / 1000;
      // Commit order: a marker applied means all before it is; checked all the same, untimed.
      await waitForSync(pair.sourceUrl, subs, t0, ctx.sizes.timeoutSeconds, sidecar);
      const mem = sidecar.memory();
      await stopSidecar(ctx, sidecar, `${label} dbsync`);
      const batches = sidecar.batchStats(); // after the stop: every log line is in
      const startup = sidecar.startup();
      sidecar = undefined;
      ctx.step(`dbsync: comparing source and target`);
      const bad = await mismatches(pair, compared.length ? compared : groups.flatMap((g) => g.tables));
      return {
        rowChanges, seconds, rowsPerSecond: rowChanges / seconds, loadSeconds, mismatches: bad, cpuBusy: busy,
        perSubscription: Object.fromEntries(Object.entries(per).map(([k, v]) => [k, v / 1000])),
        peakRssBytes: mem?.hwm, batches, startup, sidecarCpuSeconds, profile,
      };
    } catch (err) {
      const status = await statusRows(pair.sourceUrl);
      throw new Error(`${(err as Error).message}\ndbsync.status: ${JSON.stringify(status)}${sidecar ? `\nsidecar log:\n${sidecar.output(20)}` : ""}`);
    } finally {
      if (sidecar) await sidecar.stop();
      await pair.drop();
    }
  };

  const nativeSide = async (): Promise<ApplySide> => {
    ctx.step(`native: setting up`);
    const pair = await createDbPair(ctx.env, `${label}_native`);
    const subs: NativeSub[] = [];
    try {
      const { groups } = await setup(pair);
      for (const g of groups) {
        subs.push(await createNative(pair.sourceUrl, pair.targetUrl, g.name, [...g.tables, g.marker], { enabled: false }));
      }
      ctx.step(`native: loading the backlog (subscription disabled)`);
      const l0 = performance.now();
      const rowChanges = await load(pair.sourceUrl, "native");
      const loadSeconds = (performance.now() - l0) / 1000;
      await insertMarkers(pair.sourceUrl, groups.map((g) => g.marker), 1);
      await checkpoint(ctx.env);
      const profiling = await startProfile(pair, false);
      ctx.step(`native: applying ${rowChanges.toLocaleString("en-US")} row changes`);
      const t0 = performance.now();
      const cpu0 = cpuSample();
      await setEnabled(pair.targetUrl, subs, true);
      const per = await waitMarkers(pair.targetUrl, groups.map((g) => g.marker), 1, t0, ctx.sizes.timeoutSeconds);
      const busy = cpuBusy(cpu0, cpuSample());
      const profile = await profiling.finish();
      const seconds = Math.max(...Object.values(per)) / 1000;
      ctx.step(`native: comparing source and target`);
      const bad = await mismatches(pair, compared.length ? compared : groups.flatMap((g) => g.tables));
      return {
        rowChanges, seconds, rowsPerSecond: rowChanges / seconds, loadSeconds, mismatches: bad, cpuBusy: busy,
        perSubscription: Object.fromEntries(Object.entries(per).map(([k, v]) => [k, v / 1000])), profile,
      };
    } finally {
      await dropNative(pair.sourceUrl, pair.targetUrl, subs);
      await pair.drop();
    }
  };

  // Alternate which side goes first, so a drift over time does not favour one.
  let dbsync: ApplySide, native: ApplySide;
  if (ctx.run % 2 === 1) {
    dbsync = await dbsyncSide();
    native = await nativeSide();
  } else {
    native = await nativeSide();
    dbsync = await dbsyncSide();
  }
  for (const [who, side] of [["dbsync", dbsync], ["native", native]] as const) {
    if (side.mismatches.length) ctx.note(`${label} ${who}: target differs from source after catch-up: ${side.mismatches.join("; ")}`);
  }
  return { dbsync, native, ratio: dbsync.rowsPerSecond / native.rowsPerSecond };
}

/**
 * a. tpcb-like backlog in `sets` independent table sets (one group / subscription
 * each): the same workload split `sets` ways, each set with 1/sets of the branches
 * (and so of the tellers and accounts). Four full-size sets would hold four times
 * the rows for the same transactions: fewer changes to one key collapse within a
 * batch, and the 4-group figure would compare a different workload.
 */
export async function applyTpcb(ctx: Ctx, sets: number): Promise<ApplyResult> {
  const schemas = schemasOf(sets);
  const scale = { ...ctx.sizes.scale, branches: Math.max(1, Math.round(ctx.sizes.scale.branches / sets)) };
  return applyComparison(
    ctx,
    `apply_tpcb_${sets}`,
    (pair) => tpcbSetup(ctx, pair, schemas, scale),
    async (sourceUrl) => {
      const r = await runTpcb({
        url: sourceUrl, schemas, scale, clients: ctx.sizes.clients,
        transactions: ctx.sizes.backlogTransactions,
      });
      if (r.errors) ctx.note(`apply tpcb ${sets}: ${r.errors} transactions failed while loading, e.g. ${r.firstError}`);
      return r.transactions * TPCB_ROW_CHANGES;
    },
    [],
  );
}

/**
 * a. insert-only backlog: as many transactions as the tpcb-like backlog, each four
 * single-row INSERTs into history (workloads.ts), on one table set, one group.
 */
export async function applyInsert(ctx: Ctx): Promise<ApplyResult> {
  return applyComparison(
    ctx,
    "apply_insert",
    (pair) => tpcbSetup(ctx, pair, ["s1"]),
    async (sourceUrl) => {
      const r = await runTpcb({
        url: sourceUrl, schemas: ["s1"], scale: ctx.sizes.scale, clients: ctx.sizes.clients,
        transactions: ctx.sizes.backlogTransactions, transaction: insertOnlyTransaction,
      });
      if (r.errors) ctx.note(`apply insert: ${r.errors} transactions failed while loading, e.g. ${r.firstError}`);
      return r.transactions * INSERT_ONLY_ROW_CHANGES;
    },
    [],
  );
}

// ---- start-up: from `dbsync run` to the first batch applied ------------------------

export interface StartupSide {
  /** Per round: seconds from the start to the pending change visible on the target. */
  rounds: number[];
  /** Median of the rounds. */
  seconds: number;
  /** dbsync only: CPU seconds the sidecar used until then (median of the rounds). */
  cpuSeconds?: number | null;
  /** dbsync only: the median of each timeline point over the rounds (s from the spawn). */
  timeline?: StartupTimeline;
}

export interface StartupResult {
  dbsync: StartupSide;
  native: StartupSide;
}

/**
 * From `node bin/dbsync.js run` to the first batch visible on the target, as a DBA
 * restarting the sidecar sees it: one pending transaction (a marker row) on a
 * subscribed tpcb-like table set, no sidecar running; the sidecar is spawned and a
 * connection polls the target every 5 ms for the row. Then the sidecar is stopped,
 * and again, startupRounds times (each with a fresh process). The sidecar's debug
 * log gives where the time went (dbsync.ts, StartupTimeline). Native: the
 * subscription is disabled (and its worker gone), the row inserted, then
 * ALTER SUBSCRIPTION ... ENABLE and the same poll: the apply worker's start, its
 * connection to the walsender, decoding and the apply.
 */
export async function startup(ctx: Ctx): Promise<StartupResult> {
  const rounds = ctx.sizes.startupRounds;
  const dbsyncSide = async (): Promise<StartupSide> => {
    ctx.step("dbsync: setting up");
    const pair = await tpcbPair(ctx, "startup_dbsync", ["s1"]);
    let sidecar: SidecarProcess | undefined;
    try {
      await installDbsync(pair.sourceUrl);
      await subscribe(pair.sourceUrl, pair.targetUrl, "g_s1", tpcbTableNames("s1"), "sub_s1");
      const marker = `"s1"."bench_marker"`;
      const visible: number[] = [];
      const cpu: (number | null)[] = [];
      const timelines: StartupTimeline[] = [];
      for (let k = 1; k <= rounds; k++) {
        ctx.step(`dbsync: sidecar start ${k}/${rounds}`);
        await insertMarkers(pair.sourceUrl, [marker], k);
        sidecar = new SidecarProcess(pair.sourceUrl);
        const t0 = sidecar.spawnedAt;
        const seen = await waitMarkers(pair.targetUrl, [marker], k, t0, 60, () => sidecar!.assertAlive(), 5);
        cpu.push(processCpuSeconds(sidecar.nodePid));
        visible.push(seen[marker] / 1000);
        await stopSidecar(ctx, sidecar, "startup");
        timelines.push(sidecar.startup());
        sidecar = undefined;
      }
      const med = (f: (t: StartupTimeline) => number | null) => median(timelines.map(f));
      return {
        rounds: visible, seconds: median(visible)!, cpuSeconds: median(cpu),
        timeline: {
          loaded: med((t) => t.loaded), runnerStarted: med((t) => t.runnerStarted), running: med((t) => t.running),
          firstJob: med((t) => t.firstJob), firstBatchStart: med((t) => t.firstBatchStart),
          firstBatchEnd: med((t) => t.firstBatchEnd), firstBatchEvents: med((t) => t.firstBatchEvents),
          cpu: {
            loaded: med((t) => t.cpu.loaded), runnerStarted: med((t) => t.cpu.runnerStarted),
            running: med((t) => t.cpu.running), firstJob: med((t) => t.cpu.firstJob),
          },
        },
      };
    } catch (err) {
      const status = await statusRows(pair.sourceUrl);
      throw new Error(`${(err as Error).message}\ndbsync.status: ${JSON.stringify(status)}${sidecar ? `\nsidecar log:\n${sidecar.output(20)}` : ""}`);
    } finally {
      if (sidecar) await sidecar.stop();
      await pair.drop();
    }
  };
  const nativeSide = async (): Promise<StartupSide> => {
    ctx.step("native: setting up");
    const pair = await tpcbPair(ctx, "startup_native", ["s1"]);
    const subs: NativeSub[] = [];
    try {
      subs.push(await createNative(pair.sourceUrl, pair.targetUrl, "s1", tpcbTableNames("s1"), { enabled: false }));
      const marker = `"s1"."bench_marker"`;
      const visible: number[] = [];
      for (let k = 1; k <= rounds; k++) {
        ctx.step(`native: subscription enable ${k}/${rounds}`);
        await waitStopped(pair.targetUrl, subs);
        await insertMarkers(pair.sourceUrl, [marker], k);
        const t0 = performance.now();
        await setEnabled(pair.targetUrl, subs, true);
        const seen = await waitMarkers(pair.targetUrl, [marker], k, t0, 60, undefined, 5);
        visible.push(seen[marker] / 1000);
        await setEnabled(pair.targetUrl, subs, false);
      }
      return { rounds: visible, seconds: median(visible)! };
    } finally {
      await dropNative(pair.sourceUrl, pair.targetUrl, subs);
      await pair.drop();
    }
  };
  if (ctx.run % 2 === 1) {
    const dbsync = await dbsyncSide();
    return { dbsync, native: await nativeSide() };
  }
  const native = await nativeSide();
  return { dbsync: await dbsyncSide(), native };
}

export interface BulkResult {
  apply: ApplyResult;
  overhead: OverheadBulk;
}

/**
 * a. + b. for the bulk workload: one INSERT of bulkRows rows, then one UPDATE of all
 * of them, is the backlog of the apply comparison. The same statements, written once
 * into a captured table (dbsync side: group, paused subscription, no sidecar) and
 * once into a plain one (native side: a publication only), are also the bulk
 * capture-overhead figure: each statement is timed on its own, after a CHECKPOINT.
 */
export async function bulk(ctx: Ctx): Promise<BulkResult> {
  const n = ctx.sizes.bulkRows;
  const t: Record<string, number> = {};
  const apply = await applyComparison(
    ctx,
    "bulk",
    async (pair) => {
      await onBoth(pair, `${bulkDdl("public.bulk")}; create table public.bench_marker (id int primary key, at timestamptz default clock_timestamp());`);
      return { groups: [{ name: "bulk", tables: ["public.bulk"], marker: "public.bench_marker" }] };
    },
    async (sourceUrl, side) => {
      await withClient(sourceUrl, async (c) => {
        for (const [op, sql] of [["insert", bulkInsertSql("public.bulk", 1, n)], ["update", bulkUpdateSql("public.bulk")]]) {
          await checkpoint(ctx.env);
          ctx.step(`${side}: ${op} of ${n.toLocaleString("en-US")} rows (${side === "dbsync" ? "captured" : "no capture"})`);
          const t0 = performance.now();
          await c.query(sql);
          t[`${op}_${side}`] = (performance.now() - t0) / 1000;
        }
      });
      return 2 * n;
    },
    [],
  );
  return {
    apply,
    overhead: {
      insertPlainSeconds: t.insert_native, insertCapturedSeconds: t.insert_dbsync,
      insertRatio: t.insert_dbsync / t.insert_native,
      updatePlainSeconds: t.update_native, updateCapturedSeconds: t.update_dbsync,
      updateRatio: t.update_dbsync / t.update_native,
    },
  };
}

// ---- b. source overhead ---------------------------------------------------------

export interface OverheadTpcb {
  plainTps: number;
  capturedTps: number;
  /** Capture on, sidecar running and applying meanwhile. */
  capturedApplyingTps: number;
  ratio: number;
  ratioApplying: number;
  /** Server-side cost per transaction: no capture, dbsync, the least possible capture. */
  profile: CaptureProfile;
}

/**
 * Three identical table sets in one source database: p without capture, c captured
 * (group with a subscription, no sidecar: the capture triggers alone), r captured
 * while the sidecar runs and applies to the target (wake-up NOTIFYs included). Chunks run in the order p c r c p (half the time
 * each for p and c) so that drift over time (table growth, bloat) cancels out.
 * Then the capture profile (capture-profile.ts) on p, c and two reference sets.
 */
export async function overheadTpcb(ctx: Ctx): Promise<OverheadTpcb> {
  const profiled = Object.values(PROFILE_SETS).filter((s) => s !== PROFILE_SETS.plain && s !== PROFILE_SETS.dbsync);
  const pair = await tpcbPair(ctx, "overhead_tpcb", ["p", "c", "r", ...profiled]);
  let sidecar: SidecarProcess | undefined;
  try {
    await installDbsync(pair.sourceUrl);
    await subscribe(pair.sourceUrl, pair.targetUrl, "g_c", tpcbTableNames("c"), "sub_c");
    await subscribe(pair.sourceUrl, pair.targetUrl, "g_r", tpcbTableNames("r"), "sub_r");
    await setPaused(pair.sourceUrl, ["sub_c"], true); // the sidecar of chunk r leaves c's queue alone
    const total = { p: { tx: 0, s: 0 }, c: { tx: 0, s: 0 }, r: { tx: 0, s: 0 } };
    const half = (ctx.sizes.overheadSeconds * 1000) / 2;
    const chunk = async (schema: "p" | "c" | "r", ms: number) => {
      await checkpoint(ctx.env);
      ctx.step(`${{ p: "no capture", c: "capture on", r: "capture on, sidecar applying" }[schema]} (${Math.round(ms / 1000)} s)`);
      const res = await runTpcb({ url: pair.sourceUrl, schemas: [schema], scale: ctx.sizes.scale, clients: ctx.sizes.clients, durationMs: ms });
      if (res.errors) ctx.note(`overhead tpcb ${schema}: ${res.errors} failed transactions, e.g. ${res.firstError}`);
      total[schema].tx += res.transactions;
      total[schema].s += res.seconds;
    };
    await chunk("p", half);
    await chunk("c", half);
    sidecar = new SidecarProcess(pair.sourceUrl);
    await sidecar.ready();
    await chunk("r", 2 * half);
    await stopSidecar(ctx, sidecar, "overhead tpcb");
    sidecar = undefined;
    await chunk("c", half);
    await chunk("p", half);
    ctx.step("capture profile (server-side, no client)");
    const profile = await withClient(pair.sourceUrl, async (c) => {
      await installReference(c);
      return profileCapture(c, ctx.sizes.scale, ctx.sizes.profileTransactions, ctx.sizes.profileRounds);
    });
    const tps = (k: "p" | "c" | "r") => total[k].tx / total[k].s;
    return {
      plainTps: tps("p"), capturedTps: tps("c"), capturedApplyingTps: tps("r"),
      ratio: tps("c") / tps("p"), ratioApplying: tps("r") / tps("p"), profile,
    };
  } finally {
    if (sidecar) await sidecar.stop();
    await pair.drop();
  }
}

export interface OverheadBulk {
  insertPlainSeconds: number;
  insertCapturedSeconds: number;
  insertRatio: number;
  updatePlainSeconds: number;
  updateCapturedSeconds: number;
  updateRatio: number;
}

// ---- c. latency -----------------------------------------------------------------

export interface LatencySide {
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  samples: number;
  missing: number;
  achievedTps: number;
  probePolls: number;
  /** dbsync only: the sidecar's batches during the whole load. */
  batches?: BatchStats;
  /** dbsync only: where the rows' commit-to-visible time went (latency-breakdown.ts). */
  breakdown?: Breakdown;
  /** dbsync only: CPU per batch over the load and its catch-up (see measureLatency). */
  cpuPerBatch?: BatchCpu;
}

/**
 * CPU milliseconds per batch applied while the paced load ran and until its last
 * row was seen: the sidecar's node process, and the backends of its connections on
 * each server (application_name dbsync...; the load's and the probe's left out).
 * On a shared machine the latency stretches with the load, CPU time much less.
 */
export interface BatchCpu {
  batches: number;
  sidecarMs: number;
  sourceMs: number;
  targetMs: number;
}

export interface LatencyResult {
  rate: number;
  dbsync: LatencySide;
  native: LatencySide;
}

/** Writers of the paced load: 4 up to 500 tx/s, one more per 125 tx/s above (a commit waits for its flush at default durability). */
export function pacedClients(rate: number): number {
  return Math.max(4, Math.ceil(rate / 125));
}

/**
 * Paced tpcb-like load at `rate` tx/s; every history row's commit-to-visible time
 * (see LatencyProbe), and each measured row's commit and visible times (epoch ms).
 */
async function measureLatency(
  ctx: Ctx,
  pair: DbPair,
  label: string,
  rate: number,
  sidecar?: SidecarProcess,
): Promise<{ side: LatencySide; rows: LatencyRow[] }> {
  const { latencySeconds, latencyWarmupSeconds } = ctx.sizes;
  const target = await connect(pair.targetUrl, "bench");
  const source = await connect(pair.sourceUrl, "bench");
  try {
    const probe = new LatencyProbe(pair.targetUrl, "s1");
    await probe.start();
    const { rows } = await source.query("select (clock_timestamp() + make_interval(secs => $1))::text as ws", [latencyWarmupSeconds]);
    const windowStart: string = rows[0].ws;
    ctx.step(`${label}: ${rate} tx/s for ${latencyWarmupSeconds} + ${latencySeconds} s`);
    const cpu = async () => ({
      batches: sidecar!.batches.length, sidecar: processCpuSeconds(sidecar!.nodePid) ?? NaN,
      source: await backendCpuSeconds(source, "dbsync"), target: await backendCpuSeconds(target, "dbsync"),
    });
    const cpu0 = sidecar && (await cpu());
    const res = await runTpcb({
      url: pair.sourceUrl, schemas: ["s1"], scale: ctx.sizes.scale, clients: pacedClients(rate), ratePerSecond: rate,
      durationMs: (latencyWarmupSeconds + latencySeconds) * 1000,
    });
    if (res.errors) ctx.note(`latency ${label}: ${res.errors} failed transactions, e.g. ${res.firstError}`);
    const committed = (
      await source.query("select hid::float8 as h, (extract(epoch from mtime) * 1000)::float8 as ms from s1.history where mtime >= $1::timestamptz order by hid", [windowStart])
    ).rows as { h: number; ms: number }[];
    ctx.step(`${label}: waiting for the last rows`);
    const { latencies, missing, byHid } = await probe.finish(committed.map((r) => r.h), ctx.sizes.timeoutSeconds * 1000);
    if (missing) throw new Error(`latency ${label}: ${missing} of ${committed.length} rows never became visible on the target`);
    const cpu1 = cpu0 && (await cpu());
    const n = cpu0 && cpu1 && cpu1.batches - cpu0.batches;
    return {
      side: {
        p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: latencies.at(-1) ?? null,
        samples: latencies.length, missing, achievedTps: committed.length / latencySeconds, probePolls: probe.polls,
        cpuPerBatch: cpu0 && cpu1 && n ? {
          batches: n, sidecarMs: ((cpu1.sidecar - cpu0.sidecar) * 1000) / n,
          sourceMs: (backendCpuDelta(cpu0.source, cpu1.source) * 1000) / n, targetMs: (backendCpuDelta(cpu0.target, cpu1.target) * 1000) / n,
        } : undefined,
      },
      rows: committed.map((r) => ({ commitMs: r.ms, visibleMs: r.ms + byHid.get(r.h)! })),
    };
  } finally {
    await Promise.all([target.end(), source.end()]);
  }
}

/** The latency figure at each of the sizes' rates. */
export async function latency(ctx: Ctx): Promise<LatencyResult[]> {
  const out: LatencyResult[] = [];
  for (const rate of ctx.sizes.latencyRates) out.push(await latencyAt(ctx, rate));
  return out;
}

/**
 * The latency figure's dbsync side at `rate` tx/s, on fresh databases; `bin`: the
 * sidecar of another checkout (bench/latency-ab.ts), default this one's.
 */
export async function dbsyncLatency(ctx: Ctx, rate: number, bin?: string): Promise<LatencySide> {
  ctx.step("dbsync: setting up");
  const pair = await tpcbPair(ctx, "latency_dbsync", ["s1"]);
  let sidecar: SidecarProcess | undefined;
  try {
    await installDbsync(pair.sourceUrl);
    await subscribe(pair.sourceUrl, pair.targetUrl, "g_s1", tpcbTableNames("s1"), "sub_s1");
    // pg_stat_statements for the sidecar's sessions, printed per batch (bench/README.md, c.).
    const prof = process.env.BENCH_LATENCY_STATEMENTS ? await startProfile(pair, true) : undefined;
    sidecar = new SidecarProcess(pair.sourceUrl, undefined, bin);
    await sidecar.ready();
    let measured: { side: LatencySide; rows: LatencyRow[] };
    try {
      measured = await measureLatency(ctx, pair, "dbsync", rate, sidecar);
      if (prof) {
        const p = await prof.finish();
        const n = measured.side.cpuPerBatch?.batches ?? 1;
        for (const [side, gs] of [["source", p.sourceStatements], ["target", p.targetStatements]] as const) {
          for (const g of gs ?? []) {
            ctx.note(`latency statements, ${side}: ${(g.ms / n).toFixed(3)} ms and ${(g.calls / n).toFixed(2)} calls a batch: ${g.what}\n    ${g.examples.join("\n    ")}`);
          }
        }
      }
    } catch (err) {
      const status = await statusRows(pair.sourceUrl);
      throw new Error(`${(err as Error).message}\ndbsync.status: ${JSON.stringify(status)}\nsidecar log:\n${sidecar.output(20)}`);
    }
    sidecar.assertAlive();
    await stopSidecar(ctx, sidecar, "latency");
    const side = measured.side;
    side.batches = sidecar.batchStats();
    side.breakdown = breakdown(measured.rows, sidecar.batches);
    sidecar = undefined;
    return side;
  } finally {
    if (sidecar) await sidecar.stop();
    await pair.drop();
  }
}

async function latencyAt(ctx: Ctx, rate: number): Promise<LatencyResult> {
  const dbsyncSide = () => dbsyncLatency(ctx, rate);
  const nativeSide = async () => {
    ctx.step("native: setting up");
    const pair = await tpcbPair(ctx, "latency_native", ["s1"]);
    const subs: NativeSub[] = [];
    try {
      subs.push(await createNative(pair.sourceUrl, pair.targetUrl, "s1", tpcbTableNames("s1"), { enabled: true }));
      await waitStreaming(pair.targetUrl, subs);
      return (await measureLatency(ctx, pair, "native", rate)).side;
    } finally {
      await dropNative(pair.sourceUrl, pair.targetUrl, subs);
      await pair.drop();
    }
  };
  if (ctx.run % 2 === 1) {
    const dbsync = await dbsyncSide();
    return { rate, dbsync, native: await nativeSide() };
  }
  const native = await nativeSide();
  return { rate, dbsync: await dbsyncSide(), native };
}

// ---- d. sidecar memory ----------------------------------------------------------

export interface MemoryResult {
  backlogEvents: number;
  backlogTransactions: number;
  backlogPeakRssBytes: number;
  backlogApplySeconds: number;
  bigTransactionRows: number;
  bigTransactionPeakRssBytes: number;
  /** From the big transaction's commit on the source to wait_for_sync true. */
  bigTransactionApplySeconds: number;
  /** Peak RSS of a sidecar that started and idled, for reference. */
  idlePeakRssBytes: number;
  backlogBatches: BatchStats;
  bigTransactionBatches: BatchStats;
}

export async function memory(ctx: Ctx): Promise<MemoryResult> {
  const { memoryEvents: n, memoryRowsPerTransaction: per } = ctx.sizes;
  const pair = await createDbPair(ctx.env, "memory");
  let sidecar: SidecarProcess | undefined;
  try {
    await onBoth(pair, `${bulkDdl("public.backlog")}; ${bulkDdl("public.big")}`);
    await installDbsync(pair.sourceUrl);
    await subscribe(pair.sourceUrl, pair.targetUrl, "g_backlog", ["public.backlog"], "sub_backlog");
    await subscribe(pair.sourceUrl, pair.targetUrl, "g_big", ["public.big"], "sub_big");

    // 1. A backlog of n events in n / per transactions, written while no sidecar runs.
    await setPaused(pair.sourceUrl, ["sub_backlog"], true);
    ctx.step(`loading a backlog of ${n.toLocaleString("en-US")} events in ${Math.ceil(n / per)} transactions`);
    await withClient(pair.sourceUrl, (c) => c.query(manyTransactionsSql("public.backlog", n, per)));
    await checkpoint(ctx.env);
    sidecar = new SidecarProcess(pair.sourceUrl);
    await sidecar.ready();
    ctx.step("sidecar applying the backlog");
    let t0 = performance.now();
    await setPaused(pair.sourceUrl, ["sub_backlog"], false);
    await waitForSync(pair.sourceUrl, ["sub_backlog"], t0, ctx.sizes.timeoutSeconds, sidecar);
    const backlogApplySeconds = (performance.now() - t0) / 1000;
    const backlogPeak = sidecar.memory()!.hwm;
    await stopSidecar(ctx, sidecar, "memory backlog");
    const backlogBatches = sidecar.batchStats();

    // 2. One transaction of n rows, written while a fresh sidecar runs (idle).
    sidecar = new SidecarProcess(pair.sourceUrl);
    await sidecar.ready();
    await sleep(2000);
    const idlePeak = sidecar.memory()!.hwm;
    ctx.step(`one transaction of ${n.toLocaleString("en-US")} rows, sidecar running`);
    await withClient(pair.sourceUrl, (c) => c.query(bulkInsertSql("public.big", 1, n)));
    t0 = performance.now();
    await waitForSync(pair.sourceUrl, ["sub_big"], t0, ctx.sizes.timeoutSeconds, sidecar);
    const bigApplySeconds = (performance.now() - t0) / 1000;
    const bigPeak = sidecar.memory()!.hwm;
    await stopSidecar(ctx, sidecar, "memory big transaction");
    const bigBatches = sidecar.batchStats();
    sidecar = undefined;

    const bad = await mismatches(pair, ["public.backlog", "public.big"]);
    if (bad.length) ctx.note(`memory: target differs from source after catch-up: ${bad.join("; ")}`);
    return {
      backlogEvents: n, backlogTransactions: Math.ceil(n / per), backlogPeakRssBytes: backlogPeak,
      backlogApplySeconds, bigTransactionRows: n, bigTransactionPeakRssBytes: bigPeak,
      bigTransactionApplySeconds: bigApplySeconds, idlePeakRssBytes: idlePeak,
      backlogBatches, bigTransactionBatches: bigBatches,
    };
  } catch (err) {
    const status = await statusRows(pair.sourceUrl);
    throw new Error(`${(err as Error).message}\ndbsync.status: ${JSON.stringify(status)}${sidecar ? `\nsidecar log:\n${sidecar.output(20)}` : ""}`);
  } finally {
    if (sidecar) await sidecar.stop();
    await pair.drop();
  }
}

// ---- e. queue size under steady load --------------------------------------------

export interface QueueResult {
  minutes: number;
  maxBytes: number;
  finalBytes: number;
  /** After the load stopped, the sidecar caught up and upkeep ran for queueSettleSeconds. */
  settledBytes: number;
  settleSeconds: number;
  achievedTps: number;
  samples: { s: number; bytes: number; backlog: number }[];
}

/** Paced tpcb-like load at `rate` tx/s for steadyMinutes, sidecar running; queue size sampled every 5 s. */
export async function queue(ctx: Ctx): Promise<QueueResult> {
  const pair = await tpcbPair(ctx, "queue", ["s1"]);
  let sidecar: SidecarProcess | undefined;
  const source = await connect(pair.sourceUrl);
  try {
    await installDbsync(pair.sourceUrl);
    await subscribe(pair.sourceUrl, pair.targetUrl, "g_s1", tpcbTableNames("s1"), "sub_s1");
    sidecar = new SidecarProcess(pair.sourceUrl);
    await sidecar.ready();
    const samples: QueueResult["samples"] = [];
    const t0 = performance.now();
    const sample = async () => {
      const bytes = await queueBytes(source);
      const { rows } = await source.query("select coalesce(sum(backlog_events), 0)::float8 as b from dbsync.status");
      samples.push({ s: Math.round((performance.now() - t0) / 1000), bytes, backlog: rows[0].b });
    };
    await sample();
    const ms = ctx.sizes.steadyMinutes * 60_000;
    let stop = false;
    const sampler = (async () => {
      while (!stop) {
        await sleep(5000);
        if (stop) break;
        await sample();
        sidecar!.assertAlive();
        const last = samples[samples.length - 1];
        ctx.step(`${ctx.sizes.rate} tx/s for ${ctx.sizes.steadyMinutes} min: ${last.s} s, queue ${(last.bytes / 1048576).toFixed(1)} MB, backlog ${last.backlog} events`);
      }
    })();
    const res = await runTpcb({
      url: pair.sourceUrl, schemas: ["s1"], scale: ctx.sizes.scale, clients: pacedClients(ctx.sizes.rate), ratePerSecond: ctx.sizes.rate, durationMs: ms,
    });
    stop = true;
    await sampler;
    await sample();
    const finalBytes = samples[samples.length - 1].bytes;
    ctx.step("load stopped; letting the sidecar catch up and rotate");
    await waitForSync(pair.sourceUrl, ["sub_s1"], performance.now(), ctx.sizes.timeoutSeconds, sidecar);
    await sleep(ctx.sizes.queueSettleSeconds * 1000);
    await sample();
    const settledBytes = samples[samples.length - 1].bytes;
    await stopSidecar(ctx, sidecar, "queue");
    sidecar = undefined;
    return {
      minutes: ctx.sizes.steadyMinutes,
      maxBytes: Math.max(...samples.slice(0, -1).map((s) => s.bytes)),
      finalBytes, settledBytes, settleSeconds: ctx.sizes.queueSettleSeconds, achievedTps: res.transactions / res.seconds, samples,
    };
  } finally {
    await source.end().catch(() => undefined);
    if (sidecar) await sidecar.stop();
    await pair.drop();
  }
}
