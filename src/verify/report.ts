// What a verification tells, and where: its counts on dbsync.verifications while it
// runs, its outcome there and in the log, a background verification's booking into
// its table's walk (dbsync._verify_record), and the caller's onFinished (metrics).
import type { LogFn } from "pino";
import { Pool, escapeIdentifier as ident } from "pg";
import { DbsyncError, messageOf, sqlstateOf, withHint } from "../errors";
import { Log } from "../log";
import {
  VerifyCounts as Counts,
  VerifyJob as Job,
  recordBackgroundVerification,
  verifyCounts,
  verifyDone,
  verifyFailed,
  verifyRequeue,
} from "../source/protocol";
import type { Key } from "./side";

export interface Finished {
  subscription: string;
  /** As dbsync.table_status names it. */
  table: string;
  background: boolean;
  ok: boolean;
  rowsCompared: number;
  differing: number;
}

/** Counts reach dbsync.verifications at most this often while the comparison runs (ms). */
const PROGRESS_EVERY_MS = 250;

export class VerifyReport {
  readonly counts: Counts = { rowsCompared: 0, chunks: 0, chunksDiffering: 0, missing: 0, extra: 0, different: 0, repaired: 0, keys: [] };
  /** The verification's log: every line names it, its subscription and table. */
  readonly log: Log;
  /** Background verifications run every interval, for every subscription: not news unless they find something. */
  readonly info: LogFn;
  /** The table as the log and the resync hint name it. */
  readonly table: string;
  private lastProgress = 0;

  constructor(
    private readonly control: Pool,
    private readonly job: Job,
    log: Log,
    private readonly onFinished?: (r: Finished) => void,
  ) {
    this.table = `${ident(job.schema_name)}.${ident(job.table_name)}`;
    this.log = log.child({ verification: job.verification_id, subscription: job.subscription, table: this.table, background: job.background });
    this.info = job.background ? this.log.debug.bind(this.log) : this.log.info.bind(this.log);
  }

  private get differing() {
    return this.counts.missing + this.counts.extra + this.counts.different;
  }

  /** The counts so far, on dbsync.verifications (now when `force`, else at most every PROGRESS_EVERY_MS). */
  async progress(force = false) {
    if (!force && Date.now() - this.lastProgress < PROGRESS_EVERY_MS) return;
    this.lastProgress = Date.now();
    await verifyCounts(this.control, this.job.verification_id, this.counts);
  }

  /** Compared up to `range.reached` (or the end of the table) at `tick`. */
  async done(tick: number, range: { reached: Key | null; end: boolean }) {
    const { job, control, log } = this;
    await this.progress(true);
    await verifyDone(control, job.verification_id, range.reached, range.end);
    const differing = this.differing;
    const outcome = { tick, rows: this.counts.rowsCompared, chunks: this.counts.chunks, differing, repaired: this.counts.repaired };
    if (job.background) {
      // The verification is done whatever happens here; _verify_schedule books it later.
      await recordBackgroundVerification(control, job.verification_id).catch((e) =>
        log.warn({ err: messageOf(e) }, "could not book the background verification yet"),
      );
      if (differing > 0) {
        log.warn(
          { ...outcome, keys: this.counts.keys.slice(0, 10) },
          `background verification found ${differing} row(s) of ${this.table} that differ on the target; ` +
            `see dbsync.table_status, and copy it again with select dbsync.resync_table('${job.subscription}', '${this.table}')`,
        );
      } else this.info(outcome, "verification done");
    } else log.info(outcome, "verification done");
    this.finished(true);
  }

  /** The sidecar is stopping: the verification goes back to the queue. */
  async stopped() {
    this.log.info("verification interrupted: the sidecar is stopping; it will start over");
    await verifyRequeue(this.control, this.job.verification_id).catch(() => undefined);
  }

  async failed(err: unknown) {
    const { job, control, log } = this;
    const ctx = err instanceof DbsyncError ? err.context : {};
    const message = withHint(messageOf(err), ctx.hint);
    log.error({ sqlstate: ctx.sqlstate ?? sqlstateOf(err) }, `verification failed: ${message}`);
    await verifyFailed(control, job.verification_id, message, this.counts.rowsCompared, this.counts.chunks).catch((e) =>
      log.warn({ err: messageOf(e) }, "could not record the verification's error"),
    );
    if (job.background) {
      await recordBackgroundVerification(control, job.verification_id).catch((e) =>
        log.warn({ err: messageOf(e) }, "could not book the background verification's error"),
      );
    }
    this.finished(false);
  }

  private finished(ok: boolean) {
    const { job, counts } = this;
    this.onFinished?.({
      subscription: job.subscription,
      table: job.verified_name,
      background: job.background,
      ok,
      rowsCompared: counts.rowsCompared,
      differing: this.differing,
    });
  }
}
