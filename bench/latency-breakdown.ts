// Where a change's commit-to-visible time goes. Each "batch applied" line of the
// sidecar carries the moments its batch passed its steps (src/target/phases.ts,
// epoch ms by the same system clock as the servers'); each row of the latency
// figure has its source commit time and the moment the probe saw it on the target.
// A row belongs to the first batch whose tick (begin_batch returned: its snapshot
// was taken just before) came after its commit. Its time is then cut at the steps
// of that batch, and at the end of the batch before it (the sidecar was still busy
// with that one): the pieces add up to the row's latency, so their means over the
// rows add up to the mean latency.

export interface BatchSteps {
  /** Step -> epoch ms (see Applier.apply and applyBatch). */
  steps: Record<string, number>;
}

export interface LatencyRow {
  /** Source commit (the row's mtime), epoch ms. */
  commitMs: number;
  /** Seen on the target by the probe, epoch ms. */
  visibleMs: number;
}

export interface Breakdown {
  /** Rows attributed to a batch (the rest committed after the last batch's tick). */
  rows: number;
  /** Mean ms per piece, over every row, in the order of a row's path. */
  mean: Record<string, number>;
  /** The same over the slowest 1% of the rows. */
  slowest: Record<string, number>;
}

/** The pieces of the path, in order: the step that ends each (in a batch's steps) and its label. */
const PIECES: [step: string, label: string][] = [
  ["previous end", "the batch before still running"],
  ["woke", "idle until woken (NOTIFY, poll)"],
  ["job", "wake-up -> apply loop (job queue)"],
  ["begin", "loop -> begin_batch (connections, lock, position)"],
  ["tick", "begin_batch (progress + tick)"],
  ["plan", "reader snapshot + batch_plan"],
  ["streamed", "stream + merge"],
  ["committing", "target: sequences, records"],
  ["applied", "target commit"],
];
const BETWEEN_BATCHES = "between batches (sidecar)";
const PROBE = "committed -> seen by the probe";

export function breakdown(rows: LatencyRow[], batches: BatchSteps[]): Breakdown {
  const ordered = batches.filter((b) => b.steps.tick !== undefined && b.steps.applied !== undefined).sort((a, b) => a.steps.tick - b.steps.tick);
  const cut: Record<string, number>[] = [];
  for (const r of rows) {
    const i = firstAtOrAfter(ordered, r.commitMs);
    if (i === ordered.length) continue;
    const steps: Record<string, number> = { ...ordered[i].steps };
    if (i > 0 && ordered[i - 1].steps.end !== undefined) steps["previous end"] = ordered[i - 1].steps.end;
    const pieces: Record<string, number> = {};
    let from = r.commitMs;
    for (const [step, label] of PIECES) {
      const at = steps[step];
      if (at === undefined) continue;
      const name = step === "begin" && steps.job === undefined ? BETWEEN_BATCHES : label;
      pieces[name] = (pieces[name] ?? 0) + Math.max(0, at - from);
      from = Math.max(from, at);
    }
    pieces[PROBE] = Math.max(0, r.visibleMs - from);
    cut.push({ ...pieces, total: r.visibleMs - r.commitMs });
  }
  const slowest = [...cut].sort((a, b) => a.total - b.total).slice(Math.floor(cut.length * 0.99));
  return { rows: cut.length, mean: means(cut), slowest: means(slowest) };
}

/** Index of the first batch whose tick is at or after `t` (batches sorted by tick). */
function firstAtOrAfter(batches: BatchSteps[], t: number): number {
  let lo = 0;
  let hi = batches.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (batches[mid].steps.tick < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function means(cut: Record<string, number>[]): Record<string, number> {
  const order = [...PIECES.map(([, l]) => l), BETWEEN_BATCHES, PROBE, "total"];
  const out: Record<string, number> = {};
  for (const label of order) {
    const sum = cut.reduce((s, c) => s + (c[label] ?? 0), 0);
    if (sum > 0 || label === "total") out[label] = cut.length ? sum / cut.length : 0;
  }
  return out;
}

/** "piece 1.2 ms, piece 3.4 ms ... = total 9.9 ms" */
export function breakdownText(ms: Record<string, number>): string {
  const { total, ...pieces } = ms;
  return `${Object.entries(pieces).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")} = ${(total ?? 0).toFixed(1)} ms`;
}
