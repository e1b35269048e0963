// Where a batch's time goes, phase by phase, as the sidecar sees it: the "batch
// applied" debug line carries it, and the benchmark prints it ("where the time
// goes"). Phases that overlap (the source streaming while the target merges) are
// each counted in full, so they may add up to more than the batch's time.

export class Phases {
  private readonly ms = new Map<string, number>();

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

  /** Milliseconds per phase, rounded, for the log. */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.ms].map(([k, v]) => [k, Math.round(v)]));
  }
}
