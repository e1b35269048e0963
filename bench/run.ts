// `npm run bench`: starts a source and a target cluster, runs every figure N times
// (the comparison in the same run), prints the table of medians and writes JSON.
//
//   npm run bench -- [--quick] [--runs N] [--only NAME[,NAME...]] [--durability default,off] [--out FILE]
//                    [--steady-minutes M] [--backlog-tx N] [--rates R[,R]]
//
// Every figure is measured at each durability (clusters.ts), on a pair of clusters
// started for it: first every run at initdb's defaults, then every run with fsync off.
//
// See bench/README.md for what each figure measures and how.
import os from "node:os";
import path from "node:path";
import { stopAll } from "../src/embedded/cluster";
import { BENCH_SETTINGS, DURABILITIES, Durability, DURABILITY_LABEL, startClusters, stopClusters } from "./clusters";
import { assertBuilt, BatchStats, SIDECAR_ARGS, SIDECAR_BIN, StartupTimeline } from "./dbsync";
import * as figures from "./figures";
import { Ctx, FULL, Sizes } from "./figures";
import { Progress } from "./progress";
import { describeProfile } from "./capture-profile";
import { breakdownText } from "./latency-breakdown";
import { RunResult, summarize, table, whereTimeGoes, writeJson } from "./report";

const QUICK: Sizes = {
  ...FULL,
  scale: { branches: 8, tellersPerBranch: 10, accountsPerBranch: 2_500 },
  backlogTransactions: 4_000,
  bulkRows: 100_000,
  overheadSeconds: 4,
  profileTransactions: 500,
  profileRounds: 3,
  latencySeconds: 8,
  latencyWarmupSeconds: 2,
  memoryEvents: 100_000,
  steadyMinutes: 0.5,
  queueSettleSeconds: 15,
  timeoutSeconds: 300,
  startupRounds: 3,
};

/** Figures in the order they run; --only matches these names by prefix. */
const FIGURES: { name: string; once?: boolean; run: (ctx: Ctx) => Promise<Partial<RunResult>> }[] = [
  { name: "startup", run: async (c) => ({ startup: await figures.startup(c) }) },
  { name: "apply-tpcb-1", run: async (c) => ({ applyTpcb1: await figures.applyTpcb(c, 1) }) },
  { name: "apply-tpcb-4", run: async (c) => ({ applyTpcb4: await figures.applyTpcb(c, 4) }) },
  { name: "apply-insert", run: async (c) => ({ applyInsert: await figures.applyInsert(c) }) },
  // The bulk backlog's loads are also the bulk capture-overhead figure.
  {
    name: "bulk",
    run: async (c) => {
      const r = await figures.bulk(c);
      return { applyBulk: r.apply, overheadBulk: r.overhead };
    },
  },
  { name: "overhead-tpcb", run: async (c) => ({ overheadTpcb: await figures.overheadTpcb(c) }) },
  { name: "latency", run: async (c) => ({ latency: await figures.latency(c) }) },
  { name: "memory", run: async (c) => ({ memory: await figures.memory(c) }) },
  // A bound over a long window rather than a rate: measured once, in the last run.
  { name: "queue", once: true, run: async (c) => ({ queue: await figures.queue(c) }) },
];

interface Options {
  quick: boolean;
  runs: number;
  only: string[];
  out?: string;
  steadyMinutes?: number;
  backlogTransactions?: number;
  latencyRates?: number[];
  durabilities: Durability[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, runs: 3, only: [], durabilities: [...DURABILITIES] };
  let runsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === "--quick") o.quick = true;
    else if (a === "--runs") {
      o.runs = Number(val());
      runsGiven = true;
      if (!Number.isInteger(o.runs) || o.runs < 1) usage("--runs takes a positive integer");
    } else if (a === "--only") o.only.push(...val().split(",").map((s) => s.trim()).filter(Boolean));
    else if (a === "--out") o.out = val();
    else if (a === "--durability") {
      const ds = val().split(",").map((d) => d.trim()).filter(Boolean);
      for (const d of ds) if (!DURABILITIES.includes(d as Durability)) usage(`--durability: ${d} is not one of ${DURABILITIES.join(", ")}`);
      o.durabilities = DURABILITIES.filter((d) => ds.includes(d));
    }
    else if (a === "--steady-minutes") {
      o.steadyMinutes = Number(val());
      if (!(o.steadyMinutes > 0)) usage("--steady-minutes takes a positive number");
    } else if (a === "--backlog-tx") {
      o.backlogTransactions = Number(val());
      if (!Number.isInteger(o.backlogTransactions) || o.backlogTransactions < 1) usage("--backlog-tx takes a positive integer");
    } else if (a === "--rates") {
      o.latencyRates = val().split(",").map(Number);
      if (!o.latencyRates.every((r) => Number.isInteger(r) && r > 0)) usage("--rates takes positive integers (tx/s)");
    } else if (a === "--help" || a === "-h") usage();
    else usage(`unknown argument ${a}`);
  }
  if (o.quick && !runsGiven) o.runs = 1;
  for (const n of o.only) {
    if (!FIGURES.some((f) => f.name.startsWith(n))) usage(`--only: no figure named ${n}`);
  }
  return o;
}

function usage(problem?: string): never {
  const text = `usage: npm run bench -- [--quick] [--runs N] [--only NAME[,NAME...]] [--durability D[,D]] [--out FILE] [--steady-minutes M] [--backlog-tx N] [--rates R[,R]]
  --quick             small sizes, 1 run (a smoke run)
  --runs N            runs per figure; every figure is the median of its runs (default 3)
  --only NAMES        figures to run, by name or prefix: ${FIGURES.map((f) => f.name).join(", ")}
  --durability D,D    server settings to measure at: default (initdb's: fsync on), off (fsync off); default both
  --out FILE          JSON output (default bench/results/<timestamp>.json)
  --steady-minutes M  length of the steady load of the queue-size figure (default 2; 0.5 with --quick)
  --backlog-tx N      tpcb-like transactions in the apply backlogs (default 100000; 4000 with --quick)
  --rates R,R         the latency figure's paced loads, tx/s (default 500,1000)`;
  (problem ? console.error : console.log)(problem ? `${problem}\n${text}` : text);
  process.exit(problem ? 2 : 0);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const sizes: Sizes = { ...(opts.quick ? QUICK : FULL) };
  if (opts.steadyMinutes !== undefined) sizes.steadyMinutes = opts.steadyMinutes;
  if (opts.backlogTransactions !== undefined) sizes.backlogTransactions = opts.backlogTransactions;
  if (opts.latencyRates !== undefined) sizes.latencyRates = opts.latencyRates;
  const selected = FIGURES.filter((f) => !opts.only.length || opts.only.some((n) => f.name.startsWith(n)));
  const startedAt = new Date();
  const progress = new Progress();
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-").replace("Z", "");
  const out = path.resolve(opts.out ?? path.join(__dirname, "results", `${stamp}.json`));

  assertBuilt();
  console.log(`dbsync benchmark: ${opts.quick ? "quick" : "full"} mode, ${opts.runs} run(s), figures: ${selected.map((f) => f.name).join(", ")}; durability: ${opts.durabilities.map((d) => DURABILITY_LABEL[d]).join(", ")}`);
  console.log(`machine: ${os.cpus().length} CPU (${os.cpus()[0]?.model ?? "?"}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GB RAM, node ${process.version}`);
  const load0 = os.loadavg();
  console.log(`load average before start: ${load0.map((v) => v.toFixed(2)).join(" ")}`);
  if (load0[0] > os.cpus().length / 2) {
    console.log(`WARNING: the machine is busy before the benchmark starts (1-min load average ${load0[0].toFixed(1)} on ${os.cpus().length} CPUs): other processes compete for the CPU and the figures will be noisy.`);
  }
  console.log(`sidecar: node ${path.relative(process.cwd(), SIDECAR_BIN) || SIDECAR_BIN} run --source URL ${SIDECAR_ARGS.join(" ")}`.trimEnd() + " (the built code, default options)");
  console.log(`sizes: ${JSON.stringify(sizes)}`);

  const results: RunResult[] = [];
  const notes: { durability: Durability; run: number; figure: string; text: string }[] = [];
  const errors: { durability: Durability; run: number; figure: string; message: string }[] = [];
  /** Per figure and run: how long it took and the machine's load average around it. */
  const timeline: { durability: Durability; run: number; figure: string; seconds: number; loadavgStart: number; loadavgEnd: number }[] = [];
  const postgres: Record<string, unknown> = {};
  progress.start();
  for (const durability of opts.durabilities) {
    progress.phase(`${durability} ·`);
    progress.step("starting the clusters");
    const env = await startClusters(durability);
    progress.log(`PostgreSQL ${env.source.major}, ${DURABILITY_LABEL[durability]}: source on port ${env.source.port}, target on port ${env.target.port}`);
    progress.log(`  settings added by the benchmark (both): ${Object.entries(BENCH_SETTINGS[durability]).map(([k, v]) => `${k}=${v}`).join(" ")}`);
    for (const side of ["source", "target"] as const) {
      progress.log(`  ${side}: ${Object.entries(env.settings[side]).map(([k, v]) => `${k}=${v}`).join(" ")}`);
    }
    postgres[durability] = { major: env.source.major, benchSettings: BENCH_SETTINGS[durability], source: env.settings.source, target: env.settings.target };
    for (let run = 1; run <= opts.runs; run++) {
      const result: RunResult = { durability, run };
      results.push(result);
      for (const f of selected) {
        if (f.once && run !== opts.runs) continue;
        progress.phase(`${durability} · run ${run}/${opts.runs} · ${f.name} ·`);
        const ctx: Ctx = {
          env, sizes, run,
          step: (t) => progress.step(t),
          note: (text) => {
            notes.push({ durability, run, figure: f.name, text });
            progress.log(`note (${durability}, run ${run}, ${f.name}): ${text}`);
          },
        };
        const t0 = Date.now();
        const loadStart = os.loadavg()[0];
        try {
          const got = await f.run(ctx);
          Object.assign(result, got);
          progress.log(`${durability} · run ${run}/${opts.runs}: ${f.name} done in ${Math.round((Date.now() - t0) / 1000)} s${brief(got)}`);
        } catch (err) {
          const message = (err as Error).stack ?? String(err);
          errors.push({ durability, run, figure: f.name, message });
          progress.log(`FAILED (${durability}, run ${run}, ${f.name}): ${message}`);
        }
        timeline.push({ durability, run, figure: f.name, seconds: Math.round((Date.now() - t0) / 1000), loadavgStart: loadStart, loadavgEnd: os.loadavg()[0] });
      }
    }
    await stopClusters(env);
  }
  progress.stop();

  const summary = summarize(results, sizes, opts.durabilities);
  console.log("");
  console.log(table(summary));
  const where = whereTimeGoes(results, opts.durabilities);
  if (where.length) console.log(`\nwhere the time goes (medians over the runs; see bench/README.md):\n${where.join("\n")}`);
  if (errors.length) {
    console.log(`\n${errors.length} measurement(s) failed:`);
    for (const e of errors) console.log(`- ${e.durability}, run ${e.run}, ${e.figure}: ${e.message.split("\n")[0]}`);
  }
  if (notes.length) {
    console.log(`\nnotes:`);
    for (const n of notes) console.log(`- ${n.durability}, run ${n.run}, ${n.figure}: ${n.text.split("\n")[0]}`);
  }
  const finishedAt = new Date();
  writeJson(out, {
    benchmark: "dbsync",
    startedAt, finishedAt, durationSeconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000),
    options: opts, sizes,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem(), node: process.version, platform: `${os.platform()} ${os.release()}` },
    postgres,
    sidecar: { command: "node bin/dbsync.js run --source URL", args: SIDECAR_ARGS },
    loadavgBeforeStart: load0, timeline,
    summary, whereTheTimeGoes: where, runs: results, notes, errors,
  });
  console.log(`\nJSON: ${out}  (${Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000)} s in all)`);
  await stopAll();
  process.exit(errors.length ? 1 : 0);
}

/** A one-line result after each figure, for the log. */
function brief(r: Partial<RunResult>): string {
  const n = (v: number) => Math.round(v).toLocaleString("en-US");
  const parts: string[] = [];
  if (r.startup) {
    const s = r.startup;
    parts.push(`dbsync run -> first batch visible ${s.dbsync.seconds.toFixed(3)} s (rounds ${s.dbsync.rounds.map((v) => v.toFixed(3)).join(" / ")}; sidecar CPU ${s.dbsync.cpuSeconds?.toFixed(2) ?? "-"} s; ${timelineText(s.dbsync.timeline)}), native enable -> visible ${s.native.seconds.toFixed(3)} s`);
  }
  for (const key of ["applyTpcb1", "applyTpcb4", "applyInsert", "applyBulk"] as const) {
    const a = r[key];
    const cpu = (side: { cpuBusy: number }) => `, CPUs ${Math.round(side.cpuBusy * 100)}% busy`;
    const wal = (side: { profile?: { targetWalBytes: number }; rowChanges: number }) =>
      side.profile ? `, target WAL ${(side.profile.targetWalBytes / side.rowChanges).toFixed(0)} B/row change` : "";
    if (a) parts.push(`dbsync ${n(a.dbsync.rowsPerSecond)} rows/s (${a.dbsync.seconds.toFixed(1)} s from spawn${cpu(a.dbsync)}${wal(a.dbsync)}; ${timelineText(a.dbsync.startup)}${batchText(a.dbsync.batches)}), native ${n(a.native.rowsPerSecond)} rows/s (${a.native.seconds.toFixed(1)} s${cpu(a.native)}${wal(a.native)}), ratio ${a.ratio.toFixed(2)}`);
  }
  if (r.overheadBulk) {
    const o = r.overheadBulk;
    parts.push(`insert ${o.insertPlainSeconds.toFixed(2)} s -> ${o.insertCapturedSeconds.toFixed(2)} s with capture (${o.insertRatio.toFixed(2)}x), update ${o.updatePlainSeconds.toFixed(2)} s -> ${o.updateCapturedSeconds.toFixed(2)} s (${o.updateRatio.toFixed(2)}x)`);
  }
  if (r.overheadTpcb) {
    const o = r.overheadTpcb;
    parts.push(`${n(o.plainTps)} tx/s without capture, ${n(o.capturedTps)} with (${o.ratio.toFixed(2)}), ${n(o.capturedApplyingTps)} with the sidecar applying (${o.ratioApplying.toFixed(2)}); ${describeProfile(o.profile)}`);
  }
  for (const l of r.latency ?? []) {
    parts.push(`${n(l.rate)} tx/s: dbsync p50 ${l.dbsync.p50Ms?.toFixed(1)} ms p99 ${l.dbsync.p99Ms?.toFixed(1)} ms (${l.dbsync.samples} rows, ${n(l.dbsync.achievedTps)} tx/s${batchText(l.dbsync.batches)}); native p50 ${l.native.p50Ms?.toFixed(1)} ms p99 ${l.native.p99Ms?.toFixed(1)} ms${l.dbsync.breakdown ? `; dbsync's path, mean ms: ${breakdownText(l.dbsync.breakdown.mean)}` : ""}`);
  }
  if (r.memory) {
    const m = r.memory;
    parts.push(`peak RSS ${(m.backlogPeakRssBytes / 2 ** 20).toFixed(0)} MB (backlog, applied in ${m.backlogApplySeconds.toFixed(1)} s${batchText(m.backlogBatches)}), ${(m.bigTransactionPeakRssBytes / 2 ** 20).toFixed(0)} MB (one big transaction, applied in ${m.bigTransactionApplySeconds.toFixed(1)} s${batchText(m.bigTransactionBatches)}), idle ${(m.idlePeakRssBytes / 2 ** 20).toFixed(0)} MB`);
  }
  if (r.queue) {
    const q = r.queue;
    parts.push(`max ${(q.maxBytes / 2 ** 20).toFixed(1)} MB, final ${(q.finalBytes / 2 ** 20).toFixed(1)} MB, settled ${(q.settledBytes / 2 ** 20).toFixed(1)} MB at ${n(q.achievedTps)} tx/s`);
  }
  return parts.length ? `: ${parts.join("; ")}` : "";
}

function timelineText(t: StartupTimeline | undefined): string {
  if (!t) return "no start-up timeline";
  const f = (v: number | null) => (v === null ? "-" : v.toFixed(3));
  return `start-up s from spawn (CPU s): loaded ${f(t.loaded)} (${f(t.cpu.loaded)}), job runner ${f(t.runnerStarted)} (${f(t.cpu.runnerStarted)}), running ${f(t.running)} (${f(t.cpu.running)}), first job ${f(t.firstJob)} (${f(t.cpu.firstJob)}), first batch ${f(t.firstBatchStart)}-${f(t.firstBatchEnd)}`;
}

function batchText(b: BatchStats | undefined): string {
  if (!b || !b.batches) return "";
  const ms = (v: number | null) => (v === null ? "-" : `${(v * 1000).toFixed(0)} ms`);
  return `; ${b.batches} batch(es), ${b.applySeconds.toFixed(2)} s inside applyBatch, median ${ms(b.medianBatchSeconds)} / ${b.medianBatchEvents} events, max ${ms(b.maxBatchSeconds)}`;
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    process.stderr.write(`\n${sig}: stopping the clusters\n`);
    // Work in flight fails once its server is gone; that is expected now.
    process.on("unhandledRejection", () => undefined);
    process.on("uncaughtException", () => undefined);
    void stopAll().finally(() => process.exit(130));
  });
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
