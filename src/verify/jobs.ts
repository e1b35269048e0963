// The "verify" job: compares one table on the source with its copy on one
// subscription's target, both exactly as of one tick of the stream, while writes
// and replication go on, and optionally repairs the target.
// Its steps: the snapshot protocol puts both sides at tick T (snapshot.ts), the
// comparison runs between the two snapshots (compare.ts, with each side's SQL in
// side.ts), and report.ts says what it found.
//
// Background verification (dbsync._verify_schedule) asks for a bounded range: keys
// after key_after, row_limit source rows at most. The job reports the last key it
// compared (key_reached), or reached_end when the source ran out first: that last
// range is open at the top, so target rows past the source's last key are compared
// too, as the first range (key_after NULL) is open at the bottom. Then
// dbsync._verify_record books it.
import { Client, Pool } from "pg";
import { closeQuietly, connect } from "../db/connect";
import { Log } from "../log";
import { VerifyJob as Job, loadVerification, releaseVerification, tryLock, verifyComparing } from "../source/protocol";
import { ensureTargetSchema, enterReplicaMode } from "../target/progress";
import { Comparer } from "./compare";
import { SourceTable, targetLayout } from "./layout";
import { Finished, VerifyReport } from "./report";
import { MovedPast, Stopped, checkNotRewritten, holdTick, sourceTable, waitForTarget } from "./snapshot";

/** Fresh ticks taken when an applier's batch ended past the verification's tick. */
const TICK_ATTEMPTS = 3;

export interface VerifyOptions {
  /** Source rows per chunk. */
  chunkRows?: number;
  /** Give up if the target has not reached the verification's tick by then. */
  waitTimeoutMs?: number;
  /** The sidecar is stopping: give the verification back (queued) for a later run. */
  signal?: AbortSignal;
  /**
   * Verifications this process runs at once; beyond, the job returns "busy" at once
   * and the sidecar's next scan offers it again. A verify job waits for the applier
   * to reach its tick, so it must never take every worker slot: the sidecar passes
   * its concurrency - 1. Default: no limit.
   */
  maxConcurrent?: number;
  /**
   * Background verifications this process runs at once (default 1): they are a
   * safety net, never a reason for appliers to wait on verifications.
   */
  maxBackground?: number;
  /** Told when a verification ends, done or failed (for metrics). */
  onFinished?: (r: Finished) => void;
}

export type VerifyOutcome = "done" | "error" | "busy" | "nothing" | "stopped";

let active = 0;
let activeBackground = 0;
let warnedNoSlot = false;

export async function runVerify(
  sourceUrl: string | undefined,
  control: Pool,
  verificationId: number,
  log: Log,
  opts: VerifyOptions = {},
): Promise<VerifyOutcome> {
  const max = opts.maxConcurrent ?? Infinity;
  if (active >= max) {
    if (max <= 0 && !warnedNoSlot) {
      warnedNoSlot = true;
      log.warn("verifications need a worker slot besides the appliers': run the sidecar with --concurrency 2 or more");
    }
    return "busy";
  }
  active++;
  try {
    return await verifyOnce(sourceUrl, control, verificationId, log, opts);
  } finally {
    active--;
  }
}

async function verifyOnce(
  sourceUrl: string | undefined,
  control: Pool,
  verificationId: number,
  log: Log,
  opts: VerifyOptions,
): Promise<VerifyOutcome> {
  const load = () => loadVerification(control, verificationId);
  const job = await load();
  if (!job || (job.state !== "queued" && job.state !== "running")) return "nothing";
  if (!job.background) return verifyJob(sourceUrl, control, job, load, log, opts);
  if (activeBackground >= (opts.maxBackground ?? 1)) return "busy";
  activeBackground++;
  try {
    return await verifyJob(sourceUrl, control, job, load, log, opts);
  } finally {
    activeBackground--;
  }
}

async function verifyJob(
  sourceUrl: string | undefined,
  control: Pool,
  first: Job,
  load: () => Promise<Job | undefined>,
  log: Log,
  opts: VerifyOptions,
): Promise<VerifyOutcome> {
  const verificationId = first.verification_id;
  const chunkRows = opts.chunkRows ?? 10_000;
  // One background verification at a time per source: one stuck behind a slow
  // stream must not hold up every other subscription's for long.
  const waitTimeoutMs = opts.waitTimeoutMs ?? (first.background ? 120_000 : 600_000);
  let job: Job | undefined = first;
  const appName = `dbsync verify ${verificationId}`.slice(0, 63);
  const report = new VerifyReport(control, first, log, opts.onFinished);
  const { table, info } = report;

  let holder: Client | undefined, reader: Client | undefined, target: Client | undefined;
  let begun = false;
  try {
    holder = await connect(sourceUrl, { applicationName: appName });
    if (!(await tryLock(holder, "verify", verificationId))) return "busy";
    job = await load(); // another process may have finished it meanwhile
    if (!job || (job.state !== "queued" && job.state !== "running")) return "nothing";

    // Both sides print reg* values schema-qualified (only pg_catalog on the
    // search_path, as the applier's readers): their texts then name the same objects.
    target = await connect(job.target_conninfo, { applicationName: appName, catalogPath: true, ownPassword: !job.conninfo_by_owner });
    await ensureTargetSchema(target);
    // A repair writes as the applier does; outside any transaction, as the
    // fallback for roles that may not set the parameter needs it.
    if (job.repair) await enterReplicaMode(target);
    reader = await connect(sourceUrl, { applicationName: appName, catalogPath: true });
    // Idle while the target catches up to T; bounded by the wait's own timeout.
    await reader.query(`set idle_in_transaction_session_timeout = ${Math.ceil(waitTimeoutMs + 600_000)}`);
    await target.query("set idle_in_transaction_session_timeout = 600000");

    let tick = 0;
    let src: SourceTable | undefined;
    for (let attempt = 1; ; attempt++) {
      // 1. The source at tick T, held.
      begun = true;
      tick = await holdTick(holder, reader, verificationId);
      info({ tick, repair: job.repair }, "verification started");
      try {
        src = await sourceTable(reader, job.table_id, job.relid, table);
        // 2 + 3. The target at exactly T.
        await waitForTarget(control, target, job, tick, waitTimeoutMs, src.targetName, opts.signal);
        break;
      } catch (err) {
        if (!(err instanceof MovedPast) || attempt >= TICK_ATTEMPTS) throw err;
        info({ tick }, `${err.message}; starting over at a new tick`);
        await reader.query("rollback");
        await releaseVerification(control, verificationId);
      }
    }
    const layout = await targetLayout(target, src);
    await checkNotRewritten(target, "pg_catalog.to_regclass($1)", src.targetName, "the target");

    // 4. Without repair, let the stream go on.
    if (!job.repair) await releaseVerification(control, verificationId);
    await verifyComparing(control, verificationId);
    report.log.debug({ tick }, "both sides at the verification tick; comparing");

    const cmp = new Comparer(reader, target, src, job.partitioned, layout, job.repair, report.counts, opts.signal);
    // A start key of another shape (the table's key changed since it was stored)
    // means nothing here: the range starts at the first key.
    const after = job.key_after && job.key_after.length === src.keyCols.length ? job.key_after : null;
    const range = await cmp.run(chunkRows, () => report.progress(), after, job.row_limit ?? Infinity);
    await target.query("commit");
    await reader.query("commit");
    await report.done(tick, range);
    return "done";
  } catch (err) {
    if (err instanceof Stopped) {
      await report.stopped();
      return "stopped";
    }
    await report.failed(err);
    return "error";
  } finally {
    // The hold goes before the reader whose snapshot it names.
    if (begun) await releaseVerification(control, verificationId).catch(() => undefined);
    // Closing the holder also releases the advisory lock (and with it any hold).
    await Promise.all([closeQuietly(reader), closeQuietly(target), closeQuietly(holder)]);
  }
}
