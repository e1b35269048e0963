// One subscription's applier: its connections, its lock, and the loop that takes a
// tick, reads the next batch and applies it until the target has caught up.
// The target is the truth: on (re)connect the session reads the target's position
// first and tells the source, so a crash between the target commit and the source
// update neither skips nor repeats a batch.
import { Client } from "pg";
import { closeQuietly, connect } from "../db";
import { Done, advance } from "../source/batches";
import { Subscription, loadSubscription } from "../source/catalog";
import { TargetState, applyBatch } from "../target/apply";
import { ensureTargetSchema, readAppliedTick } from "../target/progress";
import { SequenceSync } from "../target/sequences";
import { StageTables } from "../target/stage";
import { Log } from "../log";

// Key space of dbsync's session advisory locks ("dbsy"); the second key is sub_id.
export const APPLY_LOCK_CLASS = 0x64627379;

export type SyncOutcome = "caught_up" | "paused" | "busy" | "gone" | "stopped";

export interface SessionOptions {
  sourceUrl: string | undefined;
  maxBatchEvents: number;
  statementTimeoutMs: number;
  /** Called after each batch is committed on the target. */
  onBatch?: (subscription: string, events: number, seconds: number) => void;
}

export class SubscriptionSession {
  private source?: Client;
  private target?: Client;
  private sub?: Subscription;
  /** Created with the target connection: its stage tables are that session's. */
  private targetState?: TargetState;
  /** The batch being applied, for error reports. */
  currentTick?: number;

  constructor(
    readonly name: string,
    private readonly opts: SessionOptions,
    private readonly log: Log,
  ) {}

  get subscription(): Subscription | undefined {
    return this.sub;
  }

  /** Applies batches until caught up, paused, or `signal` fires. */
  async sync(signal: AbortSignal): Promise<SyncOutcome> {
    if (!this.source) {
      const source = await connect(this.opts.sourceUrl, {
        applicationName: `dbsync apply ${this.name}`.slice(0, 63),
        statementTimeoutMs: this.opts.statementTimeoutMs,
      });
      const sub = await loadSubscription(source, this.name);
      if (!sub) {
        await closeQuietly(source);
        return "gone";
      }
      // Held for the session's life; a crashed process loses it at once.
      const { rows } = await source.query("select pg_try_advisory_lock($1, $2) as ok", [APPLY_LOCK_CLASS, sub.sub_id]);
      if (!rows[0].ok) {
        await closeQuietly(source);
        return "busy";
      }
      this.source = source;
    }
    const source = this.source;
    const sub = await loadSubscription(source, this.name);
    this.sub = sub;
    if (!sub) return "gone";
    if (sub.paused) return "paused";

    if (!this.target) {
      const target = await connect(sub.target_conninfo, {
        applicationName: `dbsync apply ${this.name}`.slice(0, 63),
        statementTimeoutMs: this.opts.statementTimeoutMs,
      });
      try {
        await ensureTargetSchema(target);
        const at = await readAppliedTick(target, sub.sub_uuid, sub.name, sub.position_tick);
        if (at !== sub.position_tick) {
          this.log.info({ subscription: sub.name, source: sub.position_tick, target: at }, "position taken from the target");
          await source.query("select dbsync.record_progress($1, $2, 0, 0)", [sub.sub_id, at]);
        }
      } catch (err) {
        await closeQuietly(target);
        throw err;
      }
      this.target = target;
      this.targetState = { stages: new StageTables(), sequences: new SequenceSync() };
    }

    // Each batch's progress reaches the source with the request for the next one.
    let done: Done | undefined;
    for (;;) {
      const batch = await advance(source, sub.name, done, this.opts.maxBatchEvents);
      done = undefined;
      if (!batch) return "caught_up";
      if (signal.aborted) return "stopped";
      this.currentTick = batch.to;
      const started = process.hrtime.bigint();
      const { events } = await applyBatch(source, this.target, sub.sub_uuid, batch, this.targetState!);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      done = { tick: batch.to, events, seconds };
      this.currentTick = undefined;
      this.opts.onBatch?.(sub.name, events, seconds);
      this.log.debug({ subscription: sub.name, from: batch.from, to: batch.to, events, seconds }, "batch applied");
    }
  }

  async close() {
    const { source, target } = this;
    this.source = this.target = this.targetState = undefined;
    await Promise.all([closeQuietly(source), closeQuietly(target)]);
  }
}
