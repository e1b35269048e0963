// One subscription's applier: its connections, its lock, and the loop that takes a
// tick, reads the batch at that tick's snapshot and applies it until the target has
// caught up. While it applies it holds two connections, leased from the process's
// Links (links.ts) and given back once it has caught up: `reader` on the source
// (the apply lock, and each batch's REPEATABLE READ transaction at the batch's
// snapshot) and the target. Ticks, progress and errors go through the process's
// control pool: a batch's tick is exported by a control connection held only until
// the reader has imported it.
// The target is the truth: on (re)connect the session reads the target's position
// first and tells the source (dbsync.target_position), so a crash between the target
// commit and the source update neither skips nor repeats a batch, and a target that
// went back in time is an error, never a skip.
import { Pool, PoolClient } from "pg";
import { reportOf, sqlstateOf } from "../errors";
import { Batch, Done, Plan, beginBatch, openReader, splitEvents } from "../source/batches";
import { KeptPlans } from "../source/kept-plans";
import { Subscription, TargetPosition, copyChunks, copyLostUnlogged, copyProgress, loadSubscription, recordProgress, skippedDdl, tableError, targetPosition, tryLock, unlock } from "../source/protocol";
import { TargetState, applyBatch } from "../target/apply";
import { Phases } from "../target/phases";
import { unreadyTargetTables } from "../target/tables";
import { beginApply, commitApply, flushTarget, lostUnloggedTables, markUnloggedIntact, readAppliedTick, setAppliedTick, startAppliedTick } from "../target/progress";
import { Log } from "../log";
import { Backoff } from "../sidecar/backoff";
import { Links } from "./links";


/**
 * Estimated rows of the tables one batch copies (at least one table); a bigger
 * table is copied in key-range chunks of this many rows, one chunk per batch
 * (`dbsync run --copy-chunk-rows`).
 */
export const COPY_ROWS_PER_BATCH = 1_000_000;
/** Copies of fewer estimated rows report no progress when they start (see apply). */
const SMALL_COPY_ROWS = 100_000;
/**
 * Source readers a big batch reads with at most (src/target/readers.ts), its own
 * included, when the process has that many free (--concurrency bounds them all).
 */
const READERS_PER_BATCH = 2;
/** Batches started again at once when a table was truncated under their snapshot. */
const PLAN_RETRIES = 5;

/**
 * "waiting": caught up but for first copies that cannot start yet (each waits out its back-off);
 * "yielded": not caught up, but its turn is over (ApplierOptions.turnOver).
 */
export type ApplyOutcome = "caught_up" | "waiting" | "yielded" | "paused" | "busy" | "gone" | "stopped";

/** When the wake-up that started a loop arrived, and when the loop started (epoch ms): its first batch's log line. */
export interface LoopStart {
  woke?: number;
  job?: number;
}

export interface ApplierOptions {
  sourceUrl: string | undefined;
  statementTimeoutMs: number;
  /** Rows copied per batch, and the size of a chunk of a big table's copy (default COPY_ROWS_PER_BATCH). */
  copyChunkRows?: number;
  /**
   * Retry pacing of first copies that cannot start (target table missing or short
   * of columns), per subscription and table; kept by the caller across sessions.
   */
  copyRetries?: Backoff;
  /** Called after each batch is committed on the target. */
  onBatch?: (subscription: string, events: number, seconds: number) => void;
  /**
   * Asked after each batch: true when this applier should give its slot to another
   * subscription before it has caught up (under writes that never pause, it never does).
   */
  turnOver?: (subscription: string) => Promise<boolean>;
  /** The process's reader and target connections. */
  links: Links;
  /** The process's control pool on the source: ticks, progress, errors. */
  control: Pool;
  /** The process's tables' SQL from earlier plans (src/source/kept-plans.ts). */
  plans?: KeptPlans;
}

/** A batch begun (undefined: nothing to apply), its reader at its snapshot with its plan (see Applier.open). */
interface Opened {
  batch: Batch | undefined;
  plan?: Plan;
  stale?: unknown;
  phases: Phases;
  /** When its tick came (process.hrtime). */
  started: bigint;
  /** The commit of its tick (see OpenedReader), when the reader was opened. */
  tickCommitted?: Promise<void>;
}

export class Applier {
  private reader?: PoolClient;
  /** The sub_id whose apply lock the reader holds. */
  private locked?: number;
  private target?: PoolClient;
  private sub?: Subscription;
  /** Created with the target connection: its stage tables are that session's. */
  private targetState?: TargetState;
  /** The batch being applied, for error reports. */
  currentTick?: number;
  /** A batch was read (and so maybe applied) since the connections were leased: they ran others' code (Links.release). */
  private readBatch = false;

  constructor(
    readonly name: string,
    private readonly opts: ApplierOptions,
    private readonly log: Log,
  ) {}

  get subscription(): Subscription | undefined {
    return this.sub;
  }

  /** Applies batches until caught up, paused, or `signal` fires (`since`: see LoopStart). */
  async apply(signal: AbortSignal, since: LoopStart = {}): Promise<ApplyOutcome> {
    const { links, control } = this.opts;
    if (!this.reader) {
      const reader = await links.reader(this.name);
      try {
        const sub = await loadSubscription(reader, this.name);
        if (!sub) {
          links.release(reader, false, true);
          return "gone";
        }
        // Held until the session closes; a crashed process loses it at once.
        const ok = await tryLock(reader, "apply", sub.sub_id);
        if (!ok) {
          links.release(reader, false, true);
          return "busy";
        }
        this.locked = sub.sub_id;
      } catch (err) {
        links.release(reader, true);
        throw err;
      }
      this.reader = reader;
    }
    const reader = this.reader;
    // Read again under the lock: the last holder may have moved it since.
    const sub = await loadSubscription(reader, this.name);
    this.sub = sub;
    if (!sub) return "gone";
    if (sub.paused) return "paused";

    // The target is read at every lease: another process may have applied since.
    if (!this.target) {
      const { client: target, state } = await links.target(sub.target_conninfo, this.name, sub.conninfo_by_owner);
      try {
        const at = await readAppliedTick(target, sub.sub_uuid);
        // (Where both agree, target_position would only take a row lock: a commit
        // that waits for a WAL flush, at every apply job.) A target without a record
        // is new to the subscription only if the source says so: else it lost it.
        // Agreeing is on the tick's key too, where both know it: a source that failed
        // over to a standby that lagged has made ticks again under the same ids.
        const keysDiffer = at?.key != null && sub.position_key !== null && at.key !== sub.position_key;
        if (at?.tick !== sub.position_tick || keysDiffer || sub.reset_target) {
          const continuing = await targetPosition(control, sub.sub_id, at);
          // (The key of the source's position, for that tick; else unknown until the next batch.)
          const to = { tick: continuing, key: continuing === sub.position_tick ? sub.position_key : null };
          if (at === undefined) await startAppliedTick(target, sub.sub_uuid, sub.name, to);
          else if (continuing !== at.tick) await setAppliedTick(target, sub.sub_uuid, to);
          if (continuing !== sub.position_tick || at?.tick !== sub.position_tick) {
            this.log.info({ source: sub.position_tick, target: at?.tick, continuing }, "position taken from the target");
          }
        }
        const lost = await lostUnloggedTables(target, sub.sub_uuid);
        if (lost) {
          if (lost.length) {
            await copyLostUnlogged(control, sub.sub_id, lost);
            this.log.warn({ tables: lost.map((t) => `${t.schema}.${t.name}`) }, "the target's unlogged tables were emptied (crash recovery): copying them again");
          }
          await markUnloggedIntact(target, sub.sub_uuid);
        }
      } catch (err) {
        links.release(target, true);
        throw err;
      }
      this.target = target;
      this.targetState = state;
    }

    // Each batch's progress reaches the source with the request for a later one.
    let done: Done | undefined;
    // The next batch, opened while the target commits this one (see sourceRead below).
    let next: Promise<Opened> | undefined;
    try {
      for (let retries = 0; ; ) {
        if (signal.aborted) {
          await this.discard(next);
          if (done) await this.report(sub.sub_id, done);
          return "stopped";
        }
        let opened = await next;
        next = undefined;
        // Nothing for the batch opened early: ask again, with the last report (the
        // early request did not look at sequences, which that report moves).
        if (!opened?.batch) {
          const phases = new Phases();
          for (const [step, at] of Object.entries(since)) if (at !== undefined) phases.mark(step, at);
          since = {};
          opened = await this.open(sub, done, phases);
          done = undefined;
        }
        const { batch, phases } = opened;
        let { plan } = opened;
        if (!batch) return "caught_up";
        // begin_batch finds the subscription by name: one dropped and added again
        // under it is another subscription (its own lock, position and target row).
        if (batch.subId !== sub.sub_id) {
          if (plan) await reader.query("rollback");
          return "gone";
        }
        if (opened.stale !== undefined) {
          if (retries++ < PLAN_RETRIES) continue;
          throw opened.stale;
        }
        const { started } = opened;
        if (batch.snapshot === null) {
          // Nothing to read: the target's position only moves to the group's latest tick.
          await moveTarget(this.target, sub.sub_uuid, batch.from, { tick: batch.to, key: batch.key });
          if (done) await this.report(sub.sub_id, done);
          done = { tick: batch.to, events: 0, seconds: Number(process.hrtime.bigint() - started) / 1e9, copied: [], sequences: [] };
          continue;
        }
        if (!plan) continue;
        this.currentTick = batch.to;
        retries = 0;
        const planned = plan.tables.length;
        plan = await this.withoutUncopyable(batch, plan);
        const leftOut = planned - plan.tables.length;
        plan = await this.withoutSkippedDdl(sub.sub_id, plan);
        // The copies (and chunks of chunked copies) this batch makes, recorded on the
        // source before the target commits them: if the batch's report (record_progress
        // with the next begin_batch) is lost, the position taken from the target ends
        // those copies and moves those boundaries too, instead of copying again (see
        // sql/functions/_copy_chunks.sql).
        const copies = plan.tables.filter((t) => t.action === "copy");
        if (copies.length) {
          await copyChunks(
            control,
            sub.sub_id,
            batch.to,
            copies.map((t) => ({ table_id: t.table_id, copy_request: t.copy_request, chunk: t.chunk ?? { whole: true } })),
          );
        }
        let result;
        try {
          result = await applyBatch(reader, this.target, sub.sub_uuid, batch, plan, this.targetState!, {
            copyProgress: (t, rows) => {
              // A small table's copy is over before anyone could watch it: no report (a
              // source commit each) at its start; one that lasts reports every 250 ms.
              if (rows === 0 && !t.chunk && (t.rows_estimated ?? 0) < SMALL_COPY_ROWS) return;
              void copyProgress(control, sub.sub_id, t.table_id, t.copy_request, rows + (t.chunk?.rows_before ?? 0), t.rows_estimated).catch(
                () => undefined,
              );
            },
            phases,
            tickCommitted: opened.tickCommitted,
            sourceRead: () => {
              const read = reader.query("commit");
              // The next batch's tick, the reader's snapshot and plan (about half of a
              // small batch's cycle) while the target commits this one. Not after a
              // batch that copies: its report ends copies and moves chunk boundaries,
              // which the next plan must see, and begin_batch clears the chunks
              // recorded for batches not committed. Nor after a batch that left tables
              // out (copies that cannot start yet): the next one would take another tick
              // for them, only to be discarded when this loop returns "waiting".
              // The tick is taken on the control connection while the reader ends its
              // transaction: one round trip less before the next batch's rows.
              if (!copies.length && !leftOut) {
                const report = done;
                done = undefined;
                next = this.open(sub, report, new Phases(), batch.to, read);
                next.catch(() => undefined);
              }
              return read;
            },
            helpers: { take: (n) => links.spareReader(this.name, n), release: (c, broken) => links.release(c, broken) },
          });
        } catch (err) {
          // A batch opened on the position this one would have reached is of no use.
          await this.discard(next);
          throw err;
        }
        phases.mark("applied");
        phases.mark("end");
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        // (The report of the batch before, if the next batch's request did not take it,
        // goes first: reports come in order.)
        if (done) await this.report(sub.sub_id, done);
        // The commit did not wait for its flush (about 2 ms at initdb's durability, in
        // every change's path): the target flushes it now, on the same connection,
        // before the next batch's statements, and the report waits for it.
        const flushed = flushTarget(this.target, sub.sub_uuid);
        flushed.catch(() => undefined);
        done = { tick: batch.to, events: result.events, seconds, copied: result.copied, sequences: result.sequences, flushed };
        this.currentTick = undefined;
        this.opts.onBatch?.(sub.name, result.events, seconds);
        this.log.debug({ from: batch.from, to: batch.to, events: result.events, copied: result.copied.length, seconds, phases, at: phases.at }, "batch applied");
        // Nothing but copies left out: begin_batch would take batch after empty batch
        // for them (a table not streaming is work to it) as fast as the round trips go.
        if (leftOut && result.events === 0 && result.copied.length === 0) {
          await this.discard(next);
          await this.report(sub.sub_id, done);
          return "waiting";
        }
        if (await this.opts.turnOver?.(sub.name)) {
          await this.discard(next);
          await this.report(sub.sub_id, done);
          return "yielded";
        }
      }
    } catch (err) {
      // The target committed the batch of `done`: its report goes before the error.
      // (A failure of the batch after it, opened early, left it unreported, and the
      // source's position one batch behind the target's, dbsync.status's too.)
      if (done) await this.report(sub.sub_id, done).catch(() => undefined);
      throw err;
    }
  }

  /**
   * begin_batch (with `report`, the last batch's progress) and, when the batch has
   * something to read, the reader's transaction at its snapshot with its plan.
   * `from`: the batch starts there (the batch ending there is being committed).
   * `readerFree`: the end of the reader's transaction of that batch, awaited before
   * the reader is used (begin_batch runs meanwhile).
   * `stale`: the plan failed with a serialization failure (a table truncated or
   * rewritten after the snapshot): the caller may start again with a new tick.
   */
  private async open(sub: Subscription, report: Done | undefined, phases: Phases, from?: number, readerFree?: Promise<unknown>): Promise<Opened> {
    const reader = this.reader!;
    // (Flushed by now but right after a commit when no batch was opened early.)
    await report?.flushed;
    // The tick's exporting transaction lives until the reader has imported it.
    const exporter = await this.opts.control.connect();
    let started = process.hrtime.bigint();
    phases.mark("begin");
    try {
      const batch = await beginBatch(exporter, sub.name, sub.sub_id, report, from);
      phases.mark("tick");
      await readerFree;
      let plan: Plan | undefined;
      let stale: unknown;
      let tickCommitted: Promise<void> | undefined;
      if (batch?.snapshot === null) await exporter.query("commit");
      else if (batch) {
        // (An early batch's errors come when the loop takes it.)
        if (from === undefined) this.currentTick = batch.to;
        started = process.hrtime.bigint();
        const limits = {
          copyRows: this.opts.copyChunkRows ?? COPY_ROWS_PER_BATCH,
          readers: Math.min(READERS_PER_BATCH, 1 + this.opts.links.spareReaders()),
          splitEvents: splitEvents(),
        };
        this.readBatch = true;
        const read = await phases.time("plan", () => openReader(exporter, reader, batch, limits, this.opts.plans)).catch(async (err) => {
          await reader.query("rollback").catch(() => undefined);
          if (sqlstateOf(err) !== "40001") throw err;
          stale = err;
          return undefined;
        });
        phases.mark("plan");
        plan = read?.plan;
        tickCommitted = read?.tickCommitted;
      }
      // The tick's commit may still be on its way (see openReader): the connection
      // goes back once it has settled.
      if (tickCommitted) {
        tickCommitted.then(
          () => exporter.release(),
          () => exporter.release(true),
        );
      } else exporter.release();
      return { batch, plan, stale, phases, started, tickCommitted };
    } catch (err) {
      exporter.release(true);
      throw err;
    }
  }

  /** Waits for a batch opened early and ends its reader's transaction: it will not be applied. */
  private async discard(next: Promise<Opened> | undefined) {
    const opened = await next?.catch(() => undefined);
    if (opened?.plan) await this.reader?.query("rollback").catch(() => undefined);
  }

  /** A batch's progress, when no begin_batch follows to carry it. */
  private async report(subId: number, done: Done) {
    await done.flushed;
    await recordProgress(this.opts.control, subId, done);
  }

  /**
   * A table waiting for its first copy whose target table is missing or lacks
   * columns is left out of the batch with the error on the table (table_status,
   * status), so that it does not stop the other tables. A table whose copy its
   * events need (a key change), or whose chunked copy is under way, stays in, and
   * the batch fails on it. A table left out is looked at again after a back-off
   * (1 s, 2 s ... a minute: opts.copyRetries), and left out unseen meanwhile.
   */
  private async withoutUncopyable(batch: Batch, plan: Plan): Promise<Plan> {
    const retryKey = (t: Plan["tables"][number]) => `${this.name}/${t.table_id}`;
    const optional = (t: Plan["tables"][number]) => t.action === "copy" && !t.forced && !(t.chunk && !t.chunk.first);
    const waiting = new Set(plan.tables.filter((t) => optional(t) && this.opts.copyRetries?.waiting(retryKey(t))));
    if (waiting.size) plan = { ...plan, tables: plan.tables.filter((t) => !waiting.has(t)) };
    const copies = plan.tables.filter((t) => t.action === "copy");
    if (!copies.length) return plan;
    const bad = await unreadyTargetTables(this.target!, copies);
    for (const t of copies) if (!bad.has(t.target)) this.opts.copyRetries?.succeed(retryKey(t));
    if (!bad.size) return plan;
    const kept = [];
    for (const t of plan.tables) {
      const unready = t.action === "copy" ? bad.get(t.target) : undefined;
      if (unready === undefined) {
        kept.push(t);
        continue;
      }
      // A later chunk of a chunked copy stays too: the target holds the table up to
      // its boundary (and this batch's DDL may add the column it lacks yet).
      if (t.forced || (t.chunk && !t.chunk.first)) {
        kept.push(t);
        continue;
      }
      const retryInMs = this.opts.copyRetries?.fail(retryKey(t));
      const message = reportOf(unready);
      this.log.warn({ table: t.target, retryInMs }, message);
      await tableError(this.opts.control, batch.subId, t.table_id, message);
    }
    return { ...plan, tables: kept };
  }

  /** execute_ddl statements a DBA chose to skip on this target (dbsync.skip_ddl). */
  private async withoutSkippedDdl(subId: number, plan: Plan): Promise<Plan> {
    if (!plan.ddl.length) return plan;
    const skipped = await skippedDdl(this.opts.control, subId);
    if (!skipped.size) return plan;
    const ddl = plan.ddl.filter((d) => !skipped.has(Number(d.ev_id)));
    for (const d of plan.ddl) if (skipped.has(Number(d.ev_id))) this.log.info({ event: d.ev_id }, "execute_ddl event skipped on this target (dbsync.skip_ddl)");
    return { ...plan, ddl };
  }

  /**
   * Gives the connections back, the apply lock released; `broken` (after an error:
   * their state is unknown) closes them instead, which releases the lock too.
   */
  async close(broken = true) {
    const { reader, target, locked, readBatch } = this;
    const { links } = this.opts;
    this.reader = this.target = this.targetState = this.locked = undefined;
    this.readBatch = false;
    if (target) links.release(target, broken, !readBatch);
    if (!reader) return;
    if (!broken) {
      try {
        if (locked !== undefined) await unlock(reader, "apply", locked);
      } catch {
        broken = true;
      }
    }
    links.release(reader, broken, !readBatch);
  }
}

/** The target's position from `from` to `to`, in a transaction of its own (compare-and-set, as a batch's). */
async function moveTarget(target: PoolClient, subUuid: string, from: number, to: TargetPosition) {
  try {
    await beginApply(target, subUuid, from);
    await commitApply(target, subUuid, to);
  } catch (err) {
    await target.query("rollback").catch(() => undefined);
    throw err;
  }
}
