// Retry pacing for work that failed (a subscription's batch, a table copy):
// 1 s, 2 s, 4 s ... up to a minute, reset by the first success.
const MAX_BACKOFF_MS = 60_000;

export class Backoff {
  private entries = new Map<string, { failures: number; until: number }>();

  /** Records a failure; returns how long to wait before the next attempt. */
  fail(key: string): number {
    const failures = (this.entries.get(key)?.failures ?? 0) + 1;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
    this.entries.set(key, { failures, until: Date.now() + delay });
    return delay;
  }

  succeed(key: string) {
    this.entries.delete(key);
  }

  waiting(key: string): boolean {
    const e = this.entries.get(key);
    return !!e && e.until > Date.now();
  }
}
