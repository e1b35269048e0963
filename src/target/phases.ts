// Where a batch's time goes, phase by phase, as the sidecar sees it: the "batch
// applied" debug line carries it, and the benchmark prints it ("where the time
// goes"). Phases that overlap (the source streaming while the target merges) are
// each counted in full, so they may add up to more than the batch's time.
// The line also carries the moments the batch passed its steps (`at`, epoch ms):
// the benchmark cuts each change's commit-to-visible time at them.

/** Now, in milliseconds since the epoch with sub-millisecond precision (pino's `time` has whole ones). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export class Phases {
  private readonly ms = new Map<string, number>();
  private readonly marks: Record<string, number> = {};

  /** Runs `fn`, adding its wall time to `phase`. */
  async time<T>(phase: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.add(phase, performance.now() - t0);
    }
  }

  add(phase: string, ms: number) {
    this.ms.set(phase, (this.ms.get(phase) ?? 0) + ms);
  }

  /** The batch reached step `step` now (or at `at`, epoch ms). */
  mark(step: string, at = epochMs()) {
    this.marks[step] = at;
  }

  /** The steps' moments, epoch ms to a tenth, for the log. */
  get at(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.marks).map(([k, v]) => [k, Math.round(v * 10) / 10]));
  }

  /** Milliseconds per phase, rounded, for the log. */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.ms].map(([k, v]) => [k, Math.round(v)]));
  }
}
