// Turning per-run results into the summary: medians, ratios, targets, the printed
// table and the JSON file.
import fs from "node:fs";
import path from "node:path";
import type { ApplyResult, LatencyResult, MemoryResult, OverheadBulk, OverheadTpcb, QueueResult, Sizes } from "./figures";
import { median } from "./measure";

export interface RunResult {
  run: number;
  applyTpcb1?: ApplyResult;
  applyTpcb4?: ApplyResult;
  applyBulk?: ApplyResult;
  overheadTpcb?: OverheadTpcb;
  overheadBulk?: OverheadBulk;
  latency?: LatencyResult;
  memory?: MemoryResult;
  queue?: QueueResult;
}

export interface SummaryRow {
  id: string;
  figure: string;
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

function row(
  results: RunResult[],
  spec: {
    id: string; figure: string; unit: string; value: Pick; baseline?: Pick; baselineLabel?: string;
    ratio?: Pick; ratioLabel?: string; target?: string; check?: (value: number, ratio: number | null) => boolean;
  },
): SummaryRow | null {
  const have = results.filter((r) => spec.value(r) !== undefined && spec.value(r) !== null);
  if (!have.length) return null;
  const dbsync = median(have.map(spec.value));
  const ratio = spec.ratio ? median(have.map(spec.ratio)) : null;
  return {
    id: spec.id,
    figure: spec.figure,
    dbsync,
    baseline: spec.baseline ? median(have.map(spec.baseline)) : null,
    baselineLabel: spec.baselineLabel,
    unit: spec.unit,
    ratio,
    ratioLabel: spec.ratioLabel,
    target: spec.target,
    met: spec.check && dbsync !== null ? spec.check(dbsync, ratio) : undefined,
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

export function summarize(results: RunResult[], sizes: Sizes): SummaryRow[] {
  const rows = [
    row(results, {
      id: "apply_tpcb_1", figure: "a. apply, tpcb-like backlog, 1 group", unit: "row changes/s",
      value: (r) => r.applyTpcb1?.dbsync.rowsPerSecond, baseline: (r) => r.applyTpcb1?.native.rowsPerSecond,
      baselineLabel: "native, 1 subscription", ratio: (r) => r.applyTpcb1?.ratio, ratioLabel: "dbsync / native",
      target: ">= 1.0x native", check: (_, q) => q !== null && q >= 1.0,
    }),
    row(results, {
      id: "apply_tpcb_4", figure: "a. apply, tpcb-like backlog, 4 groups", unit: "row changes/s",
      value: (r) => r.applyTpcb4?.dbsync.rowsPerSecond, baseline: (r) => r.applyTpcb4?.native.rowsPerSecond,
      baselineLabel: "native, 4 subscriptions", ratio: (r) => r.applyTpcb4?.ratio, ratioLabel: "dbsync / native",
    }),
    row(results, {
      id: "apply_tpcb_4_vs_1", figure: "a. apply, 4 groups vs 1 group (dbsync)", unit: "row changes/s",
      value: (r) => (r.applyTpcb1 && r.applyTpcb4 ? r.applyTpcb4.dbsync.rowsPerSecond : undefined),
      baseline: (r) => r.applyTpcb1?.dbsync.rowsPerSecond, baselineLabel: "dbsync, 1 group",
      ratio: (r) => (r.applyTpcb1 && r.applyTpcb4 ? r.applyTpcb4.dbsync.rowsPerSecond / r.applyTpcb1.dbsync.rowsPerSecond : undefined),
      ratioLabel: "4 groups / 1 group", target: ">= 1.5x 1 group", check: (_, q) => q !== null && q >= 1.5,
    }),
    row(results, {
      id: "apply_bulk", figure: "a. apply, bulk backlog (1 INSERT + 1 UPDATE)", unit: "row changes/s",
      value: (r) => r.applyBulk?.dbsync.rowsPerSecond, baseline: (r) => r.applyBulk?.native.rowsPerSecond,
      baselineLabel: "native", ratio: (r) => r.applyBulk?.ratio, ratioLabel: "dbsync / native",
    }),
    row(results, {
      id: "overhead_tpcb", figure: "b. tpcb-like write throughput, capture on", unit: "tx/s",
      value: (r) => r.overheadTpcb?.capturedTps, baseline: (r) => r.overheadTpcb?.plainTps, baselineLabel: "no capture",
      ratio: (r) => r.overheadTpcb?.ratio, ratioLabel: "on / off", target: ">= 0.85x", check: (_, q) => q !== null && q >= 0.85,
    }),
    row(results, {
      id: "overhead_tpcb_applying", figure: "b. same, capture on + sidecar applying", unit: "tx/s",
      value: (r) => r.overheadTpcb?.capturedApplyingTps, baseline: (r) => r.overheadTpcb?.plainTps, baselineLabel: "no capture",
      ratio: (r) => r.overheadTpcb?.ratioApplying, ratioLabel: "on / off",
    }),
    row(results, {
      id: "capture_cost", figure: "b. capture CPU per tpcb-like tx, server-side", unit: "µs",
      value: (r) => (r.overheadTpcb ? r.overheadTpcb.profile.usPerTx.dbsync - r.overheadTpcb.profile.usPerTx.plain : undefined),
      baseline: (r) => (r.overheadTpcb ? r.overheadTpcb.profile.usPerTx.least - r.overheadTpcb.profile.usPerTx.plain : undefined),
      baselineLabel: "least possible", ratio: (r) => (r.overheadTpcb ? offOn(r.overheadTpcb, "dbsync") : undefined),
      ratioLabel: "off / on, server-side",
    }),
    row(results, {
      id: "capture_bound", figure: "b. off / on bound of the least possible capture", unit: "x",
      value: (r) => (r.overheadTpcb ? offOn(r.overheadTpcb, "least") : undefined),
      baseline: (r) => (r.overheadTpcb ? offOn(r.overheadTpcb, "noIndex") : undefined), baselineLabel: "same, queue without index",
    }),
    row(results, {
      id: "overhead_bulk_insert", figure: `b. bulk INSERT of ${count(sizes.bulkRows)} rows, time with capture`, unit: "s",
      value: (r) => r.overheadBulk?.insertCapturedSeconds, baseline: (r) => r.overheadBulk?.insertPlainSeconds,
      baselineLabel: "no capture", ratio: (r) => r.overheadBulk?.insertRatio, ratioLabel: "with / without",
      target: "<= 2.5x", check: (_, q) => q !== null && q <= 2.5,
    }),
    row(results, {
      id: "overhead_bulk_update", figure: `b. bulk UPDATE of ${count(sizes.bulkRows)} rows, time with capture`, unit: "s",
      value: (r) => r.overheadBulk?.updateCapturedSeconds, baseline: (r) => r.overheadBulk?.updatePlainSeconds,
      baselineLabel: "no capture", ratio: (r) => r.overheadBulk?.updateRatio, ratioLabel: "with / without",
    }),
    row(results, {
      id: "latency_p50", figure: `c. latency commit -> visible at ${sizes.rate} tx/s, p50`, unit: "ms",
      value: (r) => r.latency?.dbsync.p50Ms, baseline: (r) => r.latency?.native.p50Ms, baselineLabel: "native",
      target: "<= 50 ms", check: (v) => v <= 50,
    }),
    row(results, {
      id: "latency_p99", figure: `c. latency commit -> visible at ${sizes.rate} tx/s, p99`, unit: "ms",
      value: (r) => r.latency?.dbsync.p99Ms, baseline: (r) => r.latency?.native.p99Ms, baselineLabel: "native",
      target: "<= 500 ms", check: (v) => v <= 500,
    }),
    row(results, {
      id: "rss_backlog", figure: `d. sidecar peak RSS, ${count(sizes.memoryEvents)}-event backlog`, unit: "MB",
      value: (r) => (r.memory ? r.memory.backlogPeakRssBytes / MB : undefined),
      baseline: (r) => (r.memory ? r.memory.idlePeakRssBytes / MB : undefined), baselineLabel: "idle sidecar",
      target: "<= 200 MB", check: (v) => v <= 200,
    }),
    row(results, {
      id: "rss_big_transaction", figure: `d. sidecar peak RSS, one ${count(sizes.memoryEvents)}-row transaction`, unit: "MB",
      value: (r) => (r.memory ? r.memory.bigTransactionPeakRssBytes / MB : undefined),
      baseline: (r) => (r.memory ? r.memory.idlePeakRssBytes / MB : undefined), baselineLabel: "idle sidecar",
      target: "<= 200 MB", check: (v) => v <= 200,
    }),
    row(results, {
      id: "queue_max", figure: `e. queue on disk, ${sizes.steadyMinutes} min at ${sizes.rate} tx/s: max`, unit: "MB",
      value: (r) => (r.queue ? r.queue.maxBytes / MB : undefined),
    }),
    row(results, {
      id: "queue_final", figure: "e. queue on disk, at the end of that load", unit: "MB",
      value: (r) => (r.queue ? r.queue.finalBytes / MB : undefined),
    }),
    row(results, {
      id: "queue_settled", figure: `e. queue on disk, caught up + ${sizes.queueSettleSeconds} s idle`, unit: "MB",
      value: (r) => (r.queue ? r.queue.settledBytes / MB : undefined),
    }),
  ];
  return rows.filter((r): r is SummaryRow => r !== null);
}

function fmt(v: number | null, unit: string): string {
  if (v === null) return "-";
  if (unit === "s") return v.toFixed(2);
  if (unit === "ms") return v < 10 ? v.toFixed(1) : v.toFixed(0);
  if (unit === "MB") return v.toFixed(1);
  if (unit === "x") return v.toFixed(2);
  return Math.round(v).toLocaleString("en-US");
}

/** The readable table. */
export function table(rows: SummaryRow[]): string {
  const head = ["figure", "dbsync", "comparison", "ratio", "target", "met", "runs: dbsync"];
  const body = rows.map((r) => [
    r.figure,
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
