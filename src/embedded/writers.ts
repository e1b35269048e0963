// Write loads: a number of writers, each running one transaction after another
// until stopped (or for a time, or for a number of transactions in all), paced to a
// rate or as fast as they go, each drawing its random choices from its own stream
// of one seed (see random.ts). What a transaction does is the caller's: the tests,
// the torture run, the soak, the benchmark and the demo each write their own.
import { Rng } from "./random";

export interface WriterStats {
  /** Transactions the step finished (and did not report as skipped). */
  committed: number;
  /** Transactions that failed with a tolerated error, or that the step skipped. */
  failed: number;
  seconds: number;
  /** Tolerated errors by SQLSTATE ("no-code" for others). */
  errors: Record<string, number>;
  firstError?: string;
  lastError?: string;
}

export interface WritersOptions {
  writers: number;
  /** Writer i draws from rng.fork(`writer${i}`). */
  rng: Rng;
  /** All writers together: transaction k is due at k / rate seconds after the start; a late one starts at once. */
  ratePerSecond?: number;
  durationMs?: number;
  /** Stop after this many transactions in all. */
  transactions?: number;
  /** A pause of [min, max] ms (drawn from the writer's stream) after each transaction. */
  pauseMs?: [number, number];
  /**
   * Errors a writer counts and goes on after (a unique violation of a random key...).
   * Any other error stops every writer, and `done` rejects with it.
   */
  tolerate?: (err: unknown) => boolean;
}

export interface WriterContext {
  index: number;
  rng: Rng;
  /** This transaction's number in the whole load, from 0. */
  n: number;
}

export interface Writers {
  /** Settles once every writer has stopped. */
  done: Promise<WriterStats>;
  stop(): Promise<WriterStats>;
  stats(): WriterStats;
}

/** The SQLSTATE of a pg error, or "no-code". */
export function sqlstate(err: unknown): string {
  const c = (err as { code?: unknown })?.code;
  return typeof c === "string" ? c : "no-code";
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * Starts the writers. `step` runs one transaction; returning false counts it as
 * skipped (failed) rather than committed.
 */
export function startWriters(opts: WritersOptions, step: (w: WriterContext) => Promise<unknown>): Writers {
  const t0 = performance.now();
  const deadline = opts.durationMs !== undefined ? t0 + opts.durationMs : Infinity;
  const s: WriterStats = { committed: 0, failed: 0, seconds: 0, errors: {} };
  let issued = 0;
  let stopping = false;
  let ended: number | undefined;
  const more = () => !stopping && performance.now() < deadline && (opts.transactions === undefined || issued < opts.transactions);

  const writer = async (index: number) => {
    const rng = opts.rng.fork(`writer${index}`);
    while (more()) {
      const n = issued++;
      if (opts.ratePerSecond) {
        await sleep(t0 + (n * 1000) / opts.ratePerSecond - performance.now());
        if (!more()) return;
      }
      try {
        if ((await step({ index, rng, n })) === false) s.failed++;
        else s.committed++;
      } catch (err) {
        if (!opts.tolerate?.(err)) {
          stopping = true;
          throw err;
        }
        s.failed++;
        const code = sqlstate(err);
        s.errors[code] = (s.errors[code] ?? 0) + 1;
        s.firstError ??= (err as Error).message;
        s.lastError = (err as Error).message;
      }
      if (opts.pauseMs) await sleep(rng.int(opts.pauseMs[0], opts.pauseMs[1]));
    }
  };

  const stats = (): WriterStats => ({ ...s, errors: { ...s.errors }, seconds: ((ended ?? performance.now()) - t0) / 1000 });
  // Settled once every writer has stopped (not at the first error: the others may
  // still be in a transaction on a connection the caller is about to close).
  const done = Promise.allSettled(Array.from({ length: opts.writers }, (_, i) => writer(i))).then((results) => {
    ended = performance.now();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    return stats();
  });
  // A rejection is the caller's to see through done or stop(); unobserved meanwhile.
  done.catch(() => undefined);
  return {
    done,
    stop() {
      stopping = true;
      return done;
    },
    stats,
  };
}
