// One subscription's applier: its connections, its lock, and the loop that takes a
// tick, reads the batch at that tick's snapshot and applies it until the target has
// caught up. Three connections: `control` on the source (the apply lock, ticks,
// progress), `reader` on the source (each batch's REPEATABLE READ transaction at
// the batch's snapshot), and the target.
// The target is the truth: on (re)connect the session reads the target's position
// first and tells the source (dbsync.target_position), so a crash between the target
// commit and the source update neither skips nor repeats a batch, and a target that
// went back in time is an error, never a skip.
import { Client, escapeIdentifier as ident } from "pg";
import { closeQuietly, connect } from "../db";
import { sqlstateOf } from "../errors";
import { Batch, Done, Plan, beginBatch, openReader } from "../source/batches";
import { Subscription, loadSubscription } from "../source/catalog";
import { TargetState, applyBatch } from "../target/apply";
import { Phases } from "../target/phases";
import { ensureTargetSchema, enterReplicaMode, readAppliedTick, setAppliedTick } from "../target/progress";
import { SequenceSync } from "../target/sequences";
import { StageTables } from "../target/stage";
import { Log } from "../log";
import { Backoff } from "../sidecar/backoff";

// Key space of dbsync's session advisory locks ("dbsy"); the second key is sub_id.
export const APPLY_LOCK_CLASS = 0x64627379;

/**
 * Estimated rows of the tables one batch copies (at least one table); a bigger
 * table is copied in key-range chunks of this many rows, one chunk per batch
 * (`dbsync run --copy-chunk-rows`).
 */
export const COPY_ROWS_PER_BATCH = 1_000_000;
/** Batches started again at once when a table was truncated under their snapshot. */
const PLAN_RETRIES = 5;

/** "waiting": caught up but for first copies that cannot start yet (each waits out its back-off). */
export type SyncOutcome = "caught_up" | "waiting" | "paused" | "busy" | "gone" | "stopped";

export interface SessionOptions {
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
}

export class SubscriptionSession {
  private control?: Client;
  private reader?: Client;
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
    const appName = `dbsync apply ${this.name}`.slice(0, 63);
    const link = { applicationName: appName, statementTimeoutMs: this.opts.statementTimeoutMs };
    if (!this.control) {
      const control = await connect(this.opts.sourceUrl, link);
      const sub = await loadSubscription(control, this.name);
      if (!sub) {
        await closeQuietly(control);
        return "gone";
      }
      // Held for the session's life; a crashed process loses it at once.
      const { rows } = await control.query("select pg_try_advisory_lock($1, $2) as ok", [APPLY_LOCK_CLASS, sub.sub_id]);
      if (!rows[0].ok) {
        await closeQuietly(control);
        return "busy";
      }
      this.control = control;
    }
    const control = this.control;
    // Read again under the lock: the last holder may have moved it since.
    const sub = await loadSubscription(control, this.name);
    this.sub = sub;
    if (!sub) return "gone";
    if (sub.paused) return "paused";

    // The reader's connection opens while the target's is set up: one wait, not two.
    const [opened, connected] = await Promise.allSettled([
      this.target ?? this.openTarget(sub, control, link),
      this.reader ?? connect(this.opts.sourceUrl, { ...link, applicationName: `dbsync read ${this.name}`.slice(0, 63) }),
    ]);
    // Kept even when the target failed: close() ends it with the session.
    if (connected.status === "fulfilled") this.reader = connected.value;
    if (opened.status === "rejected") throw opened.reason;
    if (connected.status === "rejected") throw connected.reason;
    const [target, reader] = [opened.value, connected.value];

    // Each batch's progress reaches the source with the request for the next one.
    let done: Done | undefined;
    for (let retries = 0; ; ) {
      if (signal.aborted) {
        if (done) await this.report(sub.sub_id, done);
        return "stopped";
      }
      const batch = await beginBatch(control, sub.name, sub.sub_id, done);
      done = undefined;
      if (!batch) return "caught_up";
      this.currentTick = batch.to;
      const started = process.hrtime.bigint();
      const phases = new Phases();
      let plan: Plan;
      try {
        plan = await phases.time("plan", () => openReader(control, reader, batch, this.opts.copyChunkRows ?? COPY_ROWS_PER_BATCH));
      } catch (err) {
        await reader.query("rollback").catch(() => undefined);
        // A table truncated or rewritten after the snapshot: take a new one.
        if (sqlstateOf(err) === "40001" && retries++ < PLAN_RETRIES) continue;
        throw err;
      }
      retries = 0;
      const planned = plan.tables.length;
      plan = await this.withoutUncopyable(batch, plan);
      const leftOut = planned - plan.tables.length;
      plan = await this.withoutSkippedDdl(sub.sub_id, plan);
      // The chunks of chunked copies this batch copies, recorded on the source
      // before the target commits them: if the batch's report (record_progress with
      // the next begin_batch) is lost, the position taken from the target moves
      // their boundaries too (see sql/functions/_copy_chunks.sql).
      const chunks = plan.tables.filter((t) => t.action === "copy" && t.chunk);
      if (chunks.length) {
        await control.query("select dbsync.copy_chunks($1, $2, $3)", [
          sub.sub_id,
          batch.to,
          JSON.stringify(chunks.map((t) => ({ table_id: t.table_id, copy_request: t.copy_request, chunk: t.chunk }))),
        ]);
      }
      const result = await applyBatch(control, reader, target, sub.sub_uuid, batch, plan, this.targetState!, {
        copyProgress: (t, rows) =>
          void control
            .query("select dbsync.copy_progress($1, $2, $3, $4, $5)", [
              sub.sub_id, t.table_id, t.copy_request, rows + (t.chunk?.rows_before ?? 0), t.rows_estimated,
            ])
            .catch(() => undefined),
        phases,
      });
      await reader.query("commit");
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      done = { tick: batch.to, events: result.events, seconds, copied: result.copied, sequences: result.sequences };
      this.currentTick = undefined;
      this.opts.onBatch?.(sub.name, result.events, seconds);
      this.log.debug({ from: batch.from, to: batch.to, events: result.events, copied: result.copied.length, seconds, phases }, "batch applied");
      // Nothing but copies left out: begin_batch would take batch after empty batch
      // for them (a table not streaming is work to it) as fast as the round trips go.
      if (leftOut && result.events === 0 && result.copied.length === 0) {
        await this.report(sub.sub_id, done);
        return "waiting";
      }
    }
  }

  /** A batch's progress, when no begin_batch follows to carry it. */
  private async report(subId: number, done: Done) {
    await this.control!.query("select dbsync.record_progress($1, $2, $3, $4, $5, $6)", [
      subId, done.tick, done.events, done.seconds, JSON.stringify(done.copied), JSON.stringify(done.sequences),
    ]);
  }

  /** The target's connection: its position is read first and told to the source (see the header). */
  private async openTarget(sub: Subscription, control: Client, link: { applicationName: string; statementTimeoutMs: number }): Promise<Client> {
    const target = await connect(sub.target_conninfo, link);
    try {
      await ensureTargetSchema(target);
      await enterReplicaMode(target);
      const at = await readAppliedTick(target, sub.sub_uuid, sub.name, sub.position_tick);
      const { rows } = await control.query("select dbsync.target_position($1, $2)::float8 as t", [sub.sub_id, at]);
      if (rows[0].t !== at) await setAppliedTick(target, sub.sub_uuid, rows[0].t);
      if (rows[0].t !== sub.position_tick || at !== sub.position_tick) {
        this.log.info({ source: sub.position_tick, target: at, continuing: rows[0].t }, "position taken from the target");
      }
    } catch (err) {
      await closeQuietly(target);
      throw err;
    }
    this.target = target;
    this.targetState = { stages: new StageTables(), sequences: new SequenceSync() };
    return target;
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
    const { rows } = await this.target!.query<{ target: string; missing: string[] | null; exists: boolean }>(
      `select x.target, pg_catalog.to_regclass(x.target) is not null as exists,
              (select pg_catalog.array_agg(c) from pg_catalog.unnest(x.columns) c
                where not exists (select from pg_catalog.pg_attribute a
                                   where a.attrelid = pg_catalog.to_regclass(x.target) and a.attname = c
                                     and a.attnum > 0 and not a.attisdropped)) as missing
         from pg_catalog.jsonb_to_recordset($1::pg_catalog.jsonb) as x(target text, columns text[])`,
      [JSON.stringify(copies.map((t) => ({ target: t.target, columns: t.columns })))],
    );
    const bad = new Map<string, string>();
    for (const r of rows) {
      if (!r.exists) {
        bad.set(r.target, `target table ${r.target} does not exist (hint: create it on the target with the source's columns; dbsync does not create tables, and the copy is retried by itself)`);
      } else if (r.missing?.length) {
        bad.set(r.target, `target table ${r.target} lacks column(s) ${r.missing.map((c) => ident(c)).join(", ")} that the source has (hint: add them on the target; the copy is retried by itself)`);
      }
    }
    for (const t of copies) if (!bad.has(t.target)) this.opts.copyRetries?.succeed(retryKey(t));
    if (!bad.size) return plan;
    const kept = [];
    for (const t of plan.tables) {
      const message = t.action === "copy" ? bad.get(t.target) : undefined;
      if (message === undefined) {
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
      this.log.warn({ table: t.target, retryInMs }, message);
      await this.control!.query("select dbsync.table_error($1, $2, $3)", [batch.subId, t.table_id, message]);
    }
    return { ...plan, tables: kept };
  }

  /** execute_ddl statements a DBA chose to skip on this target (dbsync.skip_ddl). */
  private async withoutSkippedDdl(subId: number, plan: Plan): Promise<Plan> {
    if (!plan.ddl.length) return plan;
    const { rows } = await this.control!.query<{ ids: string[] }>("select dbsync._skipped_ddl($1)::text[] as ids", [subId]);
    const skipped = new Set(rows[0].ids.map(Number));
    if (!skipped.size) return plan;
    const ddl = plan.ddl.filter((d) => !skipped.has(Number(d.ev_id)));
    for (const d of plan.ddl) if (skipped.has(Number(d.ev_id))) this.log.info({ event: d.ev_id }, "execute_ddl event skipped on this target (dbsync.skip_ddl)");
    return { ...plan, ddl };
  }

  async close() {
    const { control, reader, target } = this;
    this.control = this.reader = this.target = this.targetState = undefined;
    await Promise.all([closeQuietly(control), closeQuietly(reader), closeQuietly(target)]);
  }
}
