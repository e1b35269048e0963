// Background verification (`dbsync run --verify-interval`): a divergence nobody
// caused through dbsync (a write on the target, a restored table, a bug) would
// otherwise stay unseen until the data is used. Every interval each subscription
// compares one bounded key range of one table with its target, through the verify
// job (one tick of the stream on both sides, see src/verify/snapshot.ts).
// Which table, which range and whether a subscription is due is decided in SQL
// (dbsync._verify_schedule) and remembered there, on the source: several
// sidecars share one rotation, and a restarted one goes on where the last stopped.
import { Pool } from "pg";
import { messageOf } from "../errors";
import { Log } from "../log";
import { Jobs } from "./jobs";
import { scheduleVerifications } from "../source/protocol";

export interface BackgroundVerifyOptions {
  /** 0: off. */
  intervalMs: number;
  /** Source rows per verification. */
  chunkRows: number;
  concurrency: number;
}

/**
 * 10,000 rows every 10 minutes per subscription: about 17 rows a second, a cost
 * nobody should notice, and a pause of the subscription's stream of a few hundred
 * milliseconds per interval (the verification's hold).
 */
export const VERIFY_DEFAULTS = { intervalMs: 10 * 60_000, chunkRows: 10_000 };

/** How often to ask whether a subscription is due: the schedule itself is in SQL. */
const MAX_CHECK_MS = 10_000;

export class BackgroundVerify {
  private timer?: NodeJS.Timeout;
  private busy = false;
  private lastWarning = "";

  constructor(
    private readonly opts: BackgroundVerifyOptions,
    private readonly pool: Pool,
    private readonly jobs: Jobs,
    private readonly log: Log,
  ) {}

  start() {
    if (this.opts.intervalMs <= 0) {
      this.log.info("background verification is off (--verify-interval 0)");
      return;
    }
    // A verify job waits for an applier to reach its tick: with one worker it would
    // wait for ever (runVerify keeps that last slot for appliers).
    if (this.opts.concurrency < 2) {
      this.log.warn("background verification needs --concurrency 2 or more; it is off in this process");
      return;
    }
    this.timer = setInterval(() => void this.check(), Math.min(this.opts.intervalMs, MAX_CHECK_MS));
    void this.check();
  }

  /** A background verification ended: the next subscription need not wait for the timer. */
  nudge() {
    if (this.timer) void this.check();
  }

  private async check() {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const id of await scheduleVerifications(this.pool, this.opts.intervalMs / 1000, this.opts.chunkRows)) await this.jobs.wakeVerify(id);
      this.lastWarning = "";
    } catch (err) {
      // Once per distinct cause (a missing grant would repeat every few seconds).
      const message = messageOf(err);
      if (message !== this.lastWarning) this.log.warn({ err: message }, "background verification could not be scheduled; will retry");
      this.lastWarning = message;
    } finally {
      this.busy = false;
    }
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
