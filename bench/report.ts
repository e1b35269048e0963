// Turning per-run results into the summary: medians, ratios, targets, the printed
// table and the JSON file.
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import { describeStatements, describeWal } from "./batch-profile";
import type { Durability } from "./clusters";
import type { StartupTimeline } from "./dbsync";
import type { ApplyResult, ApplySide, LatencyResult, MemoryResult, OverheadBulk, OverheadTpcb, QueueResult, Sizes, StartupResult } from "./figures";
import { breakdownText } from "./latency-breakdown";
import { median } from "./measure";

export interface RunResult {
  durability: Durability;
  run: number;
  startup?: StartupResult;
  applyTpcb1?: ApplyResult;
  applyTpcb4?: ApplyResult;
  applyInsert?: ApplyResult;
  applyBulk?: ApplyResult;
  overheadTpcb?: OverheadTpcb;
  overheadBulk?: OverheadBulk;
  latency?: LatencyResult[];
  memory?: MemoryResult;
  queue?: QueueResult;
}

export interface SummaryRow {
  id: string;
  figure: string;
  durability: Durability;
  /** Median of the runs (unit below). */
  dbsync: number | null;
  /** The comparison measured in the same runs (native replication, or capture off). */
  baseline: number | null;
  baselineLabel?: string;
  unit: string;
  /** Median of the per-run ratios. */
  ratio: number | null;
  ratioLabel?: string;
  target?: string;
  met?: boolean | null;
  runs: number;
  perRun: (number | null)[];
}

type Pick = (r: RunResult) => number | null | undefined;

interface Spec {
  id: string; figure: string; unit: string; value: Pick; baseline?: Pick; baselineLabel?: string;
  ratio?: Pick; ratioLabel?: string;
  /** A target the same at every durability, or one per durability (issue 15's capture targets). */
  target?: string | Partial<Record<Durability, string>>;
  check?: (value: number, ratio: number | null, durability: Durability) => boolean;
}

function row(results: RunResult[], durability: Durability, spec: Spec): SummaryRow | null {
  const have = results.filter((r) => spec.value(r) !== undefined && spec.value(r) !== null);
  if (!have.length) return null;
  const dbsync = median(have.map(spec.value));
  const ratio = spec.ratio ? median(have.map(spec.ratio)) : null;
  const target = typeof spec.target === "string" ? spec.target : spec.target?.[durability];
  return {
    id: spec.id,
    figure: spec.figure,
    durability,
    dbsync,
    baseline: spec.baseline ? median(have.map(spec.baseline)) : null,
    baselineLabel: spec.baselineLabel,
    unit: spec.unit,
    ratio,
    ratioLabel: spec.ratioLabel,
    target,
    met: spec.check && target && dbsync !== null ? spec.check(dbsync, ratio, durability) : undefined,
    runs: have.length,
    perRun: have.map((r) => spec.value(r) ?? null),
  };
}

const MB = 1024 * 1024;

/** Server-side time without capture / with the given capture (capture-profile.ts). */
function offOn(o: OverheadTpcb, v: "dbsync" | "least" | "noIndex"): number {
  return o.profile.usPerTx.plain / o.profile.usPerTx[v];
}

/** 1000000 -> "1M", 100000 -> "100k". */
function count(n: number): string {
  return n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : String(n);
}

/** CPU-seconds of every process on the machine per 100,000 row changes applied (cpuBusy over the apply). */
function cpuPer100k(side: ApplySide | undefined): number | undefined {
  if (!side) return undefined;
  return (side.cpuBusy * side.seconds * os.cpus().length * 100_000) / side.rowChanges;
}

const walPerRow = (side: ApplySide | undefined) => (side?.profile ? side.profile.targetWalBytes / side.rowChanges : undefined);

export function summarize(results: RunResult[], sizes: Sizes, durabilities: Durability[]): SummaryRow[] {
  const specs: Spec[] = [
    {
      id: "startup", figure: "a. `dbsync run` -> first batch visible on the target", unit: "s",
      value: (r) => r.startup?.dbsync.seconds, baseline: (r) => r.startup?.native.seconds,
      baselineLabel: "native: ENABLE -> visible", target: "<= 0.3 s", check: (v) => v <= 0.3,
    },
    {
      id: "apply_tpcb_1", figure: "a. apply, tpcb-like backlog, 1 group (from spawn)", unit: "row changes/s",
      value: (r) => r.applyTpcb1?.dbsync.rowsPerSecond, baseline: (r) => r.applyTpcb1?.native.rowsPerSecond,
      baselineLabel: "native, 1 subscription", ratio: (r) => r.applyTpcb1?.ratio, ratioLabel: "dbsync / native",
      target: ">= 2.0x native", check: (_, q) => q !== null && q >= 2.0,
    },
    {
      id: "apply_tpcb_1_startup", figure: "a. same: spawn -> first batch starts", unit: "s",
      value: (r) => r.applyTpcb1?.dbsync.startup?.firstBatchStart,
      baseline: (r) => r.applyTpcb1?.dbsync.seconds, baselineLabel: "whole apply, from spawn",
    },
    {
      id: "apply_tpcb_1_wal", figure: "a. same: target WAL per row change", unit: "B",
      value: (r) => walPerRow(r.applyTpcb1?.dbsync), baseline: (r) => walPerRow(r.applyTpcb1?.native), baselineLabel: "native",
      ratio: (r) => { const a = walPerRow(r.applyTpcb1?.dbsync), b = walPerRow(r.applyTpcb1?.native); return a !== undefined && b ? a / b : undefined; },
      ratioLabel: "dbsync / native",
    },
    {
      id: "apply_tpcb_4", figure: "a. apply, tpcb-like backlog, 4 groups (from spawn)", unit: "row changes/s",
      value: (r) => r.applyTpcb4?.dbsync.rowsPerSecond, baseline: (r) => r.applyTpcb4?.native.rowsPerSecond,
      baselineLabel: "native, 4 subscriptions", ratio: (r) => r.applyTpcb4?.ratio, ratioLabel: "dbsync / native",
    },
    {
      id: "apply_tpcb_4_vs_1", figure: "a. apply, 4 groups vs 1 group (dbsync)", unit: "row changes/s",
      value: (r) => (r.applyTpcb1 && r.applyTpcb4 ? r.applyTpcb4.dbsync.rowsPerSecond : undefined),
      baseline: (r) => r.applyTpcb1?.dbsync.rowsPerSecond, baselineLabel: "dbsync, 1 group",
      ratio: (r) => (r.applyTpcb1 && r.applyTpcb4 ? r.applyTpcb4.dbsync.rowsPerSecond / r.applyTpcb1.dbsync.rowsPerSecond : undefined),
      ratioLabel: "4 groups / 1 group",
    },
    {
      id: "apply_tpcb_4_cpu", figure: "a. apply CPU-s (all processes) per 100k changes, 4 groups", unit: "CPU-s",
      value: (r) => (r.applyTpcb1 && r.applyTpcb4 ? cpuPer100k(r.applyTpcb4.dbsync) : undefined),
      baseline: (r) => cpuPer100k(r.applyTpcb1?.dbsync), baselineLabel: "dbsync, 1 group",
      ratio: (r) => { const a = cpuPer100k(r.applyTpcb4?.dbsync), b = cpuPer100k(r.applyTpcb1?.dbsync); return a !== undefined && b ? a / b : undefined; },
      ratioLabel: "4 groups / 1 group", target: "<= 1.15x 1 group", check: (_, q) => q !== null && q <= 1.15,
    },
    {
      id: "apply_insert", figure: "a. apply, insert-only backlog (from spawn)", unit: "row changes/s",
      value: (r) => r.applyInsert?.dbsync.rowsPerSecond, baseline: (r) => r.applyInsert?.native.rowsPerSecond,
      baselineLabel: "native", ratio: (r) => r.applyInsert?.ratio, ratioLabel: "dbsync / native",
      target: ">= 1.0x native", check: (_, q) => q !== null && q >= 1.0,
    },
    {
      id: "apply_insert_wal", figure: "a. same: target WAL per row change", unit: "B",
      value: (r) => walPerRow(r.applyInsert?.dbsync), baseline: (r) => walPerRow(r.applyInsert?.native), baselineLabel: "native",
      ratio: (r) => { const a = walPerRow(r.applyInsert?.dbsync), b = walPerRow(r.applyInsert?.native); return a !== undefined && b ? a / b : undefined; },
      ratioLabel: "dbsync / native",
    },
    {
      id: "apply_bulk", figure: "a. apply, bulk backlog (1 INSERT + 1 UPDATE, from spawn)", unit: "row changes/s",
      value: (r) => r.applyBulk?.dbsync.rowsPerSecond, baseline: (r) => r.applyBulk?.native.rowsPerSecond,
      baselineLabel: "native", ratio: (r) => r.applyBulk?.ratio, ratioLabel: "dbsync / native",
    },
    {
      id: "overhead_tpcb", figure: "b. tpcb-like write throughput, capture on", unit: "tx/s",
      value: (r) => r.overheadTpcb?.capturedTps, baseline: (r) => r.overheadTpcb?.plainTps, baselineLabel: "no capture",
      ratio: (r) => r.overheadTpcb?.ratio, ratioLabel: "on / off",
      target: { default: ">= 0.85x", off: ">= 0.75x" }, check: (_, q, d) => q !== null && q >= (d === "default" ? 0.85 : 0.75),
    },
    {
      id: "overhead_tpcb_applying", figure: "b. same, capture on + sidecar applying", unit: "tx/s",
      value: (r) => r.overheadTpcb?.capturedApplyingTps, baseline: (r) => r.overheadTpcb?.plainTps, baselineLabel: "no capture",
      ratio: (r) => r.overheadTpcb?.ratioApplying, ratioLabel: "on / off",
    },
    {
      id: "capture_cost", figure: "b. capture time per tpcb-like tx, server-side", unit: "µs",
      value: (r) => (r.overheadTpcb ? r.overheadTpcb.profile.usPerTx.dbsync - r.overheadTpcb.profile.usPerTx.plain : undefined),
      baseline: (r) => (r.overheadTpcb ? r.overheadTpcb.profile.usPerTx.least - r.overheadTpcb.profile.usPerTx.plain : undefined),
      baselineLabel: "least possible", ratio: (r) => (r.overheadTpcb ? offOn(r.overheadTpcb, "dbsync") : undefined),
      ratioLabel: "off / on, server-side",
    },
    {
      id: "capture_bound", figure: "b. off / on bound of the least possible capture", unit: "x",
      value: (r) => (r.overheadTpcb ? offOn(r.overheadTpcb, "least") : undefined),
      baseline: (r) => (r.overheadTpcb ? offOn(r.overheadTpcb, "noIndex") : undefined), baselineLabel: "same, queue without index",
    },
    {
      id: "overhead_bulk_insert", figure: `b. bulk INSERT of ${count(sizes.bulkRows)} rows, time with capture`, unit: "s",
      value: (r) => r.overheadBulk?.insertCapturedSeconds, baseline: (r) => r.overheadBulk?.insertPlainSeconds,
      baselineLabel: "no capture", ratio: (r) => r.overheadBulk?.insertRatio, ratioLabel: "with / without",
      target: "<= 1.5x", check: (_, q) => q !== null && q <= 1.5,
    },
    {
      id: "overhead_bulk_update", figure: `b. bulk UPDATE of ${count(sizes.bulkRows)} rows, time with capture`, unit: "s",
      value: (r) => r.overheadBulk?.updateCapturedSeconds, baseline: (r) => r.overheadBulk?.updatePlainSeconds,
      baselineLabel: "no capture", ratio: (r) => r.overheadBulk?.updateRatio, ratioLabel: "with / without",
      target: "<= 1.5x", check: (_, q) => q !== null && q <= 1.5,
    },
    ...[...new Set(results.flatMap((r) => (r.latency ?? []).map((l) => l.rate)))].sort((a, b) => a - b).flatMap((rate): Spec[] => {
      const at = (r: RunResult) => r.latency?.find((l) => l.rate === rate);
      // Issue 5's targets at 500 tx/s, issue 15's at 1,000.
      const [p50, p99] = rate >= 1000 ? [20, 100] : [50, 500];
      return [
        {
          id: `latency_p50_${rate}`, figure: `c. latency commit -> visible at ${rate} tx/s, p50`, unit: "ms",
          value: (r) => at(r)?.dbsync.p50Ms, baseline: (r) => at(r)?.native.p50Ms, baselineLabel: "native",
          target: `<= ${p50} ms`, check: (v) => v <= p50,
        },
        {
          id: `latency_p99_${rate}`, figure: `c. latency commit -> visible at ${rate} tx/s, p99`, unit: "ms",
          value: (r) => at(r)?.dbsync.p99Ms, baseline: (r) => at(r)?.native.p99Ms, baselineLabel: "native",
          target: `<= ${p99} ms`, check: (v) => v <= p99,
        },
      ];
    }),
    {
      id: "rss_backlog", figure: `d. sidecar peak RSS, ${count(sizes.memoryEvents)}-event backlog`, unit: "MB",
      value: (r) => (r.memory ? r.memory.backlogPeakRssBytes / MB : undefined),
      baseline: (r) => (r.memory ? r.memory.idlePeakRssBytes / MB : undefined), baselineLabel: "idle sidecar",
      target: "<= 200 MB", check: (v) => v <= 200,
    },
    {
      id: "rss_big_transaction", figure: `d. sidecar peak RSS, one ${count(sizes.memoryEvents)}-row transaction`, unit: "MB",
      value: (r) => (r.memory ? r.memory.bigTransactionPeakRssBytes / MB : undefined),
      baseline: (r) => (r.memory ? r.memory.idlePeakRssBytes / MB : undefined), baselineLabel: "idle sidecar",
      target: "<= 200 MB", check: (v) => v <= 200,
    },
    {
      id: "queue_max", figure: `e. queue on disk, ${sizes.steadyMinutes} min at ${sizes.rate} tx/s: max`, unit: "MB",
      value: (r) => (r.queue ? r.queue.maxBytes / MB : undefined),
    },
    {
      id: "queue_final", figure: "e. queue on disk, at the end of that load", unit: "MB",
      value: (r) => (r.queue ? r.queue.finalBytes / MB : undefined),
    },
    {
      id: "queue_settled", figure: `e. queue on disk, caught up + ${sizes.queueSettleSeconds} s idle`, unit: "MB",
      value: (r) => (r.queue ? r.queue.settledBytes / MB : undefined),
    },
  ];
  // Each figure's rows at every durability next to each other.
  const rows: (SummaryRow | null)[] = [];
  for (const spec of specs) {
    for (const d of durabilities) rows.push(row(results.filter((r) => r.durability === d), d, spec));
  }
  return rows.filter((r): r is SummaryRow => r !== null);
}

/** A start-up timeline as one line: wall seconds from the spawn, and the sidecar's CPU seconds by then. */
export function startupLine(t: StartupTimeline): string {
  const f = (v: number | null | undefined) => (v === null || v === undefined ? "-" : v.toFixed(3));
  return (
    `start-up, s from the spawn (sidecar CPU s by then): node started + modules loaded ${f(t.loaded)} (${f(t.cpu.loaded)}), ` +
    `job runner up ${f(t.runnerStarted)} (${f(t.cpu.runnerStarted)}), wake-ups + listening + first scan ${f(t.running)} (${f(t.cpu.running)}), ` +
    `first apply job ${f(t.firstJob)} (${f(t.cpu.firstJob)}), first batch starts ${f(t.firstBatchStart)} and commits ${f(t.firstBatchEnd)} ` +
    `(${t.firstBatchEvents ?? "-"} events)`
  );
}

/**
 * "Where the time goes" for each apply figure and durability, from the run whose
 * dbsync time is the median: the sidecar's start-up, its batches, the statements'
 * server-side time (pg_stat_statements), and the target's WAL against native's.
 */
export function whereTimeGoes(results: RunResult[], durabilities: Durability[]): string[] {
  const out: string[] = [];
  const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined ? "-" : v.toFixed(d));
  const figs = [
    ["applyTpcb1", "tpcb-like backlog, 1 group"],
    ["applyTpcb4", "tpcb-like backlog, 4 groups"],
    ["applyInsert", "insert-only backlog"],
    ["applyBulk", "bulk backlog"],
  ] as const;
  for (const d of durabilities) {
    for (const rate of [...new Set(results.flatMap((r) => (r.durability === d ? (r.latency ?? []) : []).map((l) => l.rate)))].sort((a, b) => a - b)) {
      const runs = results
        .map((r) => (r.durability === d ? r.latency?.find((l) => l.rate === rate) : undefined))
        .filter((l): l is LatencyResult => !!l?.dbsync.breakdown && l.dbsync.p50Ms !== null)
        .sort((a, b) => a.dbsync.p50Ms! - b.dbsync.p50Ms!);
      if (!runs.length) continue;
      const l = runs[Math.floor((runs.length - 1) / 2)];
      const b = l.dbsync.breakdown!;
      out.push(`[${d}] latency at ${rate} tx/s (the run of the median p50, ${f(l.dbsync.p50Ms, 1)} ms; ${b.rows} rows): mean per piece of a change's path, ms`);
      out.push(`  all rows: ${breakdownText(b.mean)}`, `  slowest 1%: ${breakdownText(b.slowest)}`);
      if (l.dbsync.batches) out.push(`  ${l.dbsync.batches.batches} batches, median ${f((l.dbsync.batches.medianBatchSeconds ?? 0) * 1000, 1)} ms / ${l.dbsync.batches.medianBatchEvents} events; per phase: ${phasesLine(l.dbsync.batches.phases)}`);
      const cpus = runs.map((r) => r.dbsync.cpuPerBatch).filter((c) => !!c);
      if (cpus.length) {
        const med = (k: "sidecarMs" | "sourceMs" | "targetMs") => `${f(median(cpus.map((c) => c[k])), 2)} (${cpus.map((c) => f(c[k], 2)).join(" / ")})`;
        out.push(`  CPU ms per batch, medians of ${cpus.length} runs (runs): sidecar ${med("sidecarMs")}, source backends ${med("sourceMs")}, target backends ${med("targetMs")}; batches ${cpus.map((c) => c.batches).join(" / ")}`);
      }
    }
    const su = results.filter((r) => r.durability === d && r.startup).sort((a, b) => a.startup!.dbsync.seconds - b.startup!.dbsync.seconds);
    if (su.length) {
      const r = su[Math.floor((su.length - 1) / 2)];
      const s = r.startup!;
      out.push(`[${d}] start-up with one pending transaction (run ${r.run}, medians of ${s.dbsync.rounds.length} starts): dbsync ${f(s.dbsync.seconds)} s from the spawn to the row on the target, sidecar CPU ${f(s.dbsync.cpuSeconds, 2)} s; native ${f(s.native.seconds)} s from ENABLE`);
      if (s.dbsync.timeline) out.push(`  ${startupLine(s.dbsync.timeline)}`);
    }
    for (const [key, label] of figs) {
      const runs = results.filter((r) => r.durability === d && r[key]).sort((a, b) => a[key]!.dbsync.seconds - b[key]!.dbsync.seconds);
      if (!runs.length) continue;
      const r = runs[Math.floor((runs.length - 1) / 2)];
      const a = r[key]!;
      const ds = a.dbsync;
      const t = ds.startup;
      const inBatches = ds.batches?.applySeconds;
      out.push(`[${d}] ${label} (run ${r.run}): dbsync ${f(ds.seconds, 2)} s from the spawn to the markers on the target, native ${f(a.native.seconds, 2)} s from ENABLE`);
      if (t) out.push(`  ${startupLine(t)}`);
      if (ds.batches) {
        out.push(
          `  ${ds.batches.batches} batch(es), ${f(inBatches, 2)} s inside them (reader transaction, plan, COPY, target statements, commit); ` +
            `sidecar CPU ${f(ds.sidecarCpuSeconds, 2)} s; CPUs busy ${Math.round(ds.cpuBusy * 100)}% (dbsync) / ${Math.round(a.native.cpuBusy * 100)}% (native)`,
        );
        const phases = phasesLine(ds.batches.phases);
        if (phases) out.push(`  per phase, by the sidecar's clock: ${phases}`);
      }
      const p = ds.profile;
      if (p) {
        const src = describeStatements(p.sourceStatements, ds.rowChanges);
        const tgt = describeStatements(p.targetStatements, ds.rowChanges);
        if (src.length) out.push(`  source, server-side time of the sidecar's statements:`, ...src.map((l) => `    ${l}`));
        if (tgt.length) out.push(`  target, server-side time of the sidecar's statements:`, ...tgt.map((l) => `    ${l}`));
        const np = a.native.profile;
        out.push(
          `  target WAL per row change: dbsync ${f(p.targetWalBytes / ds.rowChanges, 0)} B, native ${np ? f(np.targetWalBytes / a.native.rowChanges, 0) : "-"} B` +
            ` (source WAL meanwhile: dbsync ${f(p.sourceWalBytes / ds.rowChanges, 0)} B, native ${np ? f(np.sourceWalBytes / a.native.rowChanges, 0) : "-"} B)`,
        );
        out.push(`    dbsync: ${describeWal(p.targetWal, ds.rowChanges)}`);
        if (np) out.push(`    native: ${describeWal(np.targetWal, a.native.rowChanges)}`);
        if (p.sourceWal?.length) out.push(`    source, dbsync: ${describeWal(p.sourceWal, ds.rowChanges)}`);
      }
    }
  }
  return out;
}

/**
 * The batches' phases (src/target/phases.ts) as text: the reader's plan, then the
 * stream (the source reading and sending while the target copies each piece into
 * its stage and merges it, or copies it straight into its table: the two overlap),
 * with what the target did in it and how long each server waited for the other,
 * then the rest.
 */
export function phasesLine(ms: Record<string, number> | undefined): string {
  if (!ms || !Object.keys(ms).length) return "";
  const s = (k: string) => `${((ms[k] ?? 0) / 1000).toFixed(2)} s`;
  const merges = Object.keys(ms).filter((k) => k.startsWith("merge ") || k.startsWith("COPY into "));
  const inStream = ["stage COPY", ...merges, "target waited for the source", "source waited for the target"];
  const rest = Object.keys(ms).filter((k) => k !== "plan" && k !== "stream" && !inStream.includes(k) && ms[k] >= 5);
  return (
    `plan (reader) ${s("plan")}, stream ${s("stream")} (in it, the target: stage COPY ${s("stage COPY")}` +
    merges.map((k) => `, ${k.replace(/"/g, "")} ${s(k)}`).join("") +
    `; the target waited for the source ${s("target waited for the source")}, the source for the target ${s("source waited for the target")})` +
    rest.map((k) => `, ${k} ${s(k)}`).join("")
  );
}

function fmt(v: number | null, unit: string): string {
  if (v === null) return "-";
  if (unit === "s") return v < 1 ? v.toFixed(3) : v.toFixed(2);
  if (unit === "CPU-s") return v.toFixed(2);
  if (unit === "ms") return v < 10 ? v.toFixed(1) : v.toFixed(0);
  if (unit === "MB") return v.toFixed(1);
  if (unit === "x") return v.toFixed(2);
  return Math.round(v).toLocaleString("en-US");
}

/** The readable table. */
export function table(rows: SummaryRow[]): string {
  const head = ["figure", "durability", "dbsync", "comparison", "ratio", "target", "met", "runs: dbsync"];
  const body = rows.map((r, i) => [
    i > 0 && rows[i - 1].id === r.id ? "" : r.figure,
    r.durability === "default" ? "default" : "fsync off",
    `${fmt(r.dbsync, r.unit)} ${r.unit}`,
    r.baseline !== null ? `${fmt(r.baseline, r.unit)} (${r.baselineLabel})` : "",
    r.ratio !== null ? `${r.ratio.toFixed(2)}x ${r.ratioLabel ?? ""}`.trim() : "",
    r.target ?? "",
    r.met === undefined || r.met === null ? "" : r.met ? "yes" : "NO",
    r.perRun.map((v) => fmt(v, r.unit)).join(" / "),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
  return [line(head), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...body.map(line)].join("\n");
}

export function writeJson(file: string, data: unknown): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + "\n");
  return file;
}
