// This process's appliers: a subscription's apply loop (src/apply/applier.ts, which
// also copies its tables: a copy is part of a batch) run for the apply job and at
// start-up, at most --concurrency at once; retries paced, and failures recorded
// where a DBA looks (dbsync.status / dbsync.table_status), not only in the log.
import { Pool } from "pg";
import { DbsyncError, PositionMoved, isTransient, messageOf, reportOf, sqlstateOf } from "../errors";
import { Log, Outages } from "../log";
import { Links } from "../apply/links";
import { KeptPlans } from "../source/kept-plans";
import { Applier, ApplyOutcome, LoopStart } from "../apply/applier";
import { Backoff } from "./backoff";
import { Jobs } from "./jobs";
import { hasWork, lingerLook, notApplying, recordError, setSleeping } from "../source/protocol";
import { epochMs } from "../target/phases";

/**
 * What the apply loop counts. With --metrics-port, prom-client's metrics
 * (metrics.ts, which only that option loads: prom-client costs start-up time);
 * otherwise nobody reads them, and NO_COUNTERS drops them.
 */
export interface ApplyCounters {
  batches: { inc(labels: { subscription: string }, value?: number): void };
  rows: { inc(labels: { subscription: string }, value?: number): void };
  batchSeconds: { observe(labels: { subscription: string }, value: number): void };
  errors: { inc(labels: { subscription: string }, value?: number): void };
}

const ignore = { inc: () => undefined, observe: () => undefined };
export const NO_COUNTERS: ApplyCounters = { batches: ignore, rows: ignore, batchSeconds: ignore, errors: ignore };

export interface AppliersOptions {
  sourceUrl: string | undefined;
  /** Subscriptions applied at once in this process (`dbsync run --concurrency`): the bound on its reader and target connections. */
  concurrency: number;
  /** Rows copied per batch; bigger tables are copied in chunks of this many rows. */
  copyChunkRows?: number;
}

/** A wake-up that found every apply slot of this process taken is queued again this much later. */
const NO_SLOT_RETRY_MS = 1000;
/**
 * Slots are taken in turns: an applier that has held its slot this long gives it
 * up after its next batch when another subscription waits for one, and its own
 * next wake-up waits behind that one (see run). Without turns, an applier under
 * writes that never pause (it never catches up) kept its slot for ever.
 */
const TURN_MS = 2000;
/** A subscription turned away for want of a slot counts as waiting this long: its wake-up comes back every NO_SLOT_RETRY_MS, here or in another process. */
const WAITING_MS = 5 * NO_SLOT_RETRY_MS;

/**
 * How long a subscription that caught up keeps its connections and apply lock,
 * waiting for a wake-up (see linger): one that comes meanwhile starts the next
 * batch at once, without a job, new sessions and the position read again.
 */
const LINGER_MS = 2000;
/**
 * Where capture sends no NOTIFY (the source allows prepared transactions: a
 * transaction that notified could not PREPARE), a lingering loop asks has_work this
 * often: a change committed meanwhile waits this long at most, not for the poll
 * (--poll-interval). A has_work takes about 0.4 ms, round trip (bench/HISTORY.md).
 */
const LINGER_POLL_MS = 50;

interface Running {
  /** Look again when the current pass is done. */
  again: boolean;
  loop?: Promise<void>;
  /** While the loop lingers: ends it, true to apply again, false to let go. */
  wake?: (again: boolean) => void;
}

export class Appliers {
  readonly backoff = new Backoff();
  /** First copies that cannot start, per subscription and table (see Applier). */
  private readonly copyRetries = new Backoff();
  private appliers = new Map<string, Applier>();
  /** Subscriptions this process is applying now, whether to look again after, and the loop. */
  private running = new Map<string, Running>();
  /** When a wake-up for a subscription not running here arrived (epoch ms): its next loop's first batch logs it. */
  private wokenAt = new Map<string, number>();
  /** Start-up: called at a subscription's first batch applied (see startNow). */
  private firstBatch = new Map<string, () => void>();
  /** When each subscription applying here took its slot; when each was last turned away, or last gave its slot up. */
  private turnStarted = new Map<string, number>();
  private turnedAway = new Map<string, number>();
  private yielded = new Map<string, number>();
  /** When each loop last asked the queue whether others wait (turnOver). */
  private asked = new Map<string, number>();
  /** Start-up: called when a subscription's loop waits for wake-ups: it ended, or lingers (see startNow). */
  private waitsForWakeups = new Map<string, () => void>();
  jobs!: Jobs;
  private readonly links: Links;
  /** The tables' SQL of this process's plans, for all its subscriptions' next batches. */
  private readonly plans = new KeptPlans();

  constructor(
    private readonly opts: AppliersOptions,
    private readonly pool: Pool,
    private readonly metrics: ApplyCounters,
    private readonly log: Log,
    private readonly signal: AbortSignal,
    private readonly outages: Outages = new Outages(log),
  ) {
    this.links = new Links({ sourceUrl: opts.sourceUrl, concurrency: opts.concurrency, statementTimeoutMs: 0, log });
  }

  /**
   * The apply job (APPLY_JOB): applies `name` until caught up. A wake-up for a
   * subscription this process is applying right now must not start a second loop
   * on the same connections: it asks the running one to look again.
   */
  async run(name: string) {
    const current = this.running.get(name);
    if (current) {
      current.again = true;
      return;
    }
    // Loops started at start-up (startNow) hold slots the job runner does not
    // count: a wake-up beyond --concurrency goes back to the queue, where another
    // process may take it, instead of waiting here. So does one whose turn just
    // ended while others wait: the slot it gave up is theirs (but not theirs that
    // gave theirs up after it: two such refused each other, and the slot stayed free).
    if (this.running.size >= this.opts.concurrency || (this.recently(this.yielded, name) && this.othersWaiting(name, this.yielded.get(name)))) {
      await this.waitForSlot(name);
      return;
    }
    this.turnedAway.delete(name);
    this.yielded.delete(name);
    const state: Running = { again: true };
    this.running.set(name, state);
    this.turnStarted.set(name, Date.now());
    // The last free slot taken: lingering loops let go of theirs.
    if (this.running.size >= this.opts.concurrency) this.endLingering();
    let since: LoopStart = { woke: this.wokenAt.get(name), job: epochMs() };
    this.wokenAt.delete(name);
    const cpu = process.cpuUsage();
    this.log.debug({ subscription: name, cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, "apply job started");
    state.loop = (async () => {
      try {
        while (state.again && !this.signal.aborted) {
          state.again = false;
          const outcome = await this.applyOnce(name, state, since);
          since = {};
          if (outcome === "yielded") {
            this.log.debug({ subscription: name }, "apply slot given up: another subscription waits");
            break;
          }
        }
      } finally {
        this.running.delete(name);
        this.turnStarted.delete(name);
        this.asked.delete(name);
      }
    })();
    await state.loop;
  }

  /**
   * Start-up: applies `name` from this process at once, without waiting for the
   * job runner (which starts after). As safe as a job: the applier takes the
   * subscription's advisory lock, and another process holding it makes this a
   * no-op ("busy"). `firstBatch` resolves when its first batch is applied or the
   * loop ended, `waiting` when the loop waits for wake-ups: it caught up and
   * lingers, or it ended (caught up, stopped or failed); the loop goes on until
   * caught up, like a job's. False: no free slot.
   */
  startNow(name: string): { firstBatch: Promise<void>; waiting: Promise<void> } | false {
    if (this.running.has(name) || this.running.size >= this.opts.concurrency) return false;
    let first!: () => void;
    const firstBatch = new Promise<void>((resolve) => (first = resolve));
    this.firstBatch.set(name, first);
    let waits!: () => void;
    const waiting = new Promise<void>((resolve) => (waits = resolve));
    this.waitsForWakeups.set(name, waits);
    void this.run(name)
      .catch((err) => this.log.error({ subscription: name, err: messageOf(err) }, "apply failed"))
      .finally(() => {
        this.firstBatch.delete(name);
        this.waitsForWakeups.delete(name);
        first();
        waits();
      });
    return { firstBatch, waiting };
  }

  /**
   * A wake-up for a subscription this process applies right now: its loop looks
   * again when it is done, so no job is needed (each costs the source a commit).
   * False when it is not running here. `at`: when the wake-up arrived.
   */
  poke(name: string, at = epochMs()): boolean {
    const current = this.running.get(name);
    if (current) {
      current.again = true;
      current.wake?.(true);
    } else if (!this.wokenAt.has(name)) this.wokenAt.set(name, at);
    return current !== undefined;
  }

  /**
   * Whether `name`'s turn is over: it has held its slot TURN_MS, and another
   * subscription waits for one: turned away here lately, or its wake-up due in the
   * queue and not taken (this process's job runner may be busy with the loops that
   * hold its slots, so nothing here turns it away), while no process applies it:
   * each process's poll queues a wake-up for every subscription with work, and one
   * that another process applied made this one give its slot up every 3 s, for
   * nobody (so did one turned away here while a start-up loop held the slot the job
   * runner did not count). Nor does one that had a batch applied within TURN_MS:
   * another process's loop of it found between two of its batches (its lock let go,
   * its next wake-up queued, for the few milliseconds until its runner takes it)
   * is served, not waiting (two processes of --concurrency 1, writes that never
   * pause: a slot given up now and then, at high load). One that waits for a slot
   * has had none for TURN_MS and more. Asked at most once a NO_SLOT_RETRY_MS per loop.
   */
  private async turnOver(name: string): Promise<boolean> {
    const started = this.turnStarted.get(name);
    if (started === undefined || Date.now() - started < TURN_MS) return false;
    if (this.recently(this.asked, name, NO_SLOT_RETRY_MS)) return false;
    this.asked.set(name, Date.now());
    try {
      const others = new Set(this.waitingOthers(name));
      for (const other of await this.jobs.dueAppliers()) if (other !== name && !this.running.has(other)) others.add(other);
      return others.size > 0 && (await notApplying(this.pool, [...others], TURN_MS)).length > 0;
    } catch {
      // (The source is unreachable: the batch after this one fails anyway.)
      return false;
    }
  }

  /** `name` waits for a slot: counted as waiting, its wake-up queued again NO_SLOT_RETRY_MS later (here or in another process). */
  private async waitForSlot(name: string) {
    this.turnedAway.set(name, Date.now());
    this.endLingering();
    await this.jobs.wakeApplier(name, NO_SLOT_RETRY_MS);
  }

  /** Whether another subscription was turned away here lately; with `yieldedAt`, one that has not given up its slot since. */
  private othersWaiting(name: string, yieldedAt?: number): boolean {
    return this.waitingOthers(name, yieldedAt).length > 0;
  }

  private waitingOthers(name: string, yieldedAt?: number): string[] {
    const waiting = [];
    for (const other of this.turnedAway.keys()) {
      if (!this.recently(this.turnedAway, other)) this.turnedAway.delete(other);
      else if (other !== name && !this.running.has(other) && !(yieldedAt !== undefined && (this.yielded.get(other) ?? -Infinity) >= yieldedAt)) waiting.push(other);
    }
    return waiting;
  }

  private recently(times: Map<string, number>, name: string, ms = WAITING_MS): boolean {
    const at = times.get(name);
    return at !== undefined && Date.now() - at < ms;
  }

  /** Lingering loops (see linger) let go of their slots: another subscription needs one. */
  private endLingering() {
    for (const r of this.running.values()) r.wake?.(false);
  }

  /**
   * A NOTIFY for group `groupId`: its subscriptions lingering here (see linger) go
   * on at once, before the wake-up's round trips (the sleeping flag cleared, the
   * group's subscriptions read) that follow it.
   */
  pokeGroup(groupId: number, at: number) {
    for (const [name, r] of this.running) if (r.wake && this.appliers.get(name)?.subscription?.group_id === groupId) this.poke(name, at);
  }

  private applier(name: string): Applier {
    let applier = this.appliers.get(name);
    if (!applier) {
      applier = new Applier(
        name,
        {
          sourceUrl: this.opts.sourceUrl,
          statementTimeoutMs: 0,
          copyChunkRows: this.opts.copyChunkRows,
          links: this.links,
          control: this.pool,
          plans: this.plans,
          copyRetries: this.copyRetries,
          turnOver: (sub) => this.turnOver(sub),
          onBatch: (sub, events, seconds) => {
            this.firstBatch.get(sub)?.();
            this.firstBatch.delete(sub);
            this.metrics.batches.inc({ subscription: sub });
            this.metrics.rows.inc({ subscription: sub }, events);
            this.metrics.batchSeconds.observe({ subscription: sub }, seconds);
          },
        },
        this.log.child({ subscription: name }),
      );
      this.appliers.set(name, applier);
    }
    return applier;
  }

  private async applyOnce(name: string, state: Running, since: LoopStart): Promise<ApplyOutcome | undefined> {
    if (this.backoff.waiting(name)) return;
    const applier = this.applier(name);
    try {
      const outcome = await applier.apply(this.signal, since);
      this.backoff.succeed(name);
      this.outages.ok(`subscription ${name}`, `subscription ${name}`, { subscription: name });
      if (outcome === "stopped") return outcome;
      const lingered = outcome === "caught_up" ? await this.linger(name, state, applier.subscription!.group_id) : undefined;
      if (lingered) return outcome;
      // Caught up (or nothing to do, or its turn is over): an idle subscription holds no connection.
      await this.drop(name, false);
      if (outcome === "yielded") {
        this.yielded.set(name, Date.now());
        await this.waitForSlot(name);
      }
      if ((outcome !== "caught_up" && outcome !== "waiting") || lingered === false) return outcome;
      const groupId = applier.subscription!.group_id;
      // Ask writers to notify from now on, then look once more: a change committed
      // before the flag was visible to them would otherwise wait for the next poll.
      await setSleeping(this.pool, groupId, true);
      // Tables waiting to retry their copy are work to has_work: the poll comes back
      // for them (and for a change committed meanwhile).
      if (outcome === "waiting") return;
      if (await hasWork(this.pool, name)) await this.jobs.wakeApplier(name);
    } catch (err) {
      const tick = applier.currentTick;
      await this.drop(name);
      if (err instanceof PositionMoved) {
        this.log.warn({ subscription: name, err: err.message }, "another applier moved the target; re-reading");
        await this.jobs.wakeApplier(name, 1000);
        return;
      }
      await this.reportError(name, err, tick);
    }
  }

  /**
   * A subscription that caught up waits up to LINGER_MS for a wake-up (poke: a
   * NOTIFY, the poll; where capture sends no NOTIFY, its own has_work every
   * LINGER_POLL_MS), its connections and apply lock kept, its writers asked to
   * notify first (and the queue looked at once more, for a change committed before
   * they saw that). True: apply again now (state.again is set). False: let go, as
   * when the time is up, the process stops, or another subscription took this
   * process's last free slot (the writers notify, and the queue was looked at).
   * Undefined: it did not linger, which would have taken that last free slot (one
   * is always left for the others' wake-ups). Waiting is a timer (and those has_work).
   */
  private async linger(name: string, state: Running, groupId: number): Promise<boolean | undefined> {
    if (this.running.size >= this.opts.concurrency || this.signal.aborted || this.othersWaiting(name)) return undefined;
    await setSleeping(this.pool, groupId, true);
    // At start-up, LISTEN and the poll start now: only they can cut the wait short.
    this.waitsForWakeups.get(name)?.();
    const look = await lingerLook(this.pool, name);
    if (look.more) state.again = true;
    const polls = !state.again && !look.notifies;
    return new Promise<boolean>((resolve) => {
      const done = (again: boolean) => {
        clearTimeout(timer);
        clearInterval(poll);
        this.signal.removeEventListener("abort", stop);
        state.wake = undefined;
        resolve(again);
      };
      const stop = () => done(false);
      const timer = setTimeout(stop, LINGER_MS);
      // One has_work at a time; a failed one is left to the poll.
      let asking = false;
      const ask = () => {
        if (asking) return;
        asking = true;
        hasWork(this.pool, name).then(
          (work) => {
            asking = false;
            if (work && state.wake === done) {
              state.again = true;
              done(true);
            }
          },
          () => (asking = false),
        );
      };
      const poll = polls ? setInterval(ask, LINGER_POLL_MS) : undefined;
      this.signal.addEventListener("abort", stop);
      state.wake = done;
      // A wake-up that came during the round trips above.
      if (state.again) done(true);
    });
  }

  /** Ends the subscription's applier: its connections back to the pools, or closed when `broken`. */
  private async drop(name: string, broken = true) {
    const applier = this.appliers.get(name);
    this.appliers.delete(name);
    await applier?.close(broken);
  }

  private async reportError(name: string, err: unknown, tick: number | undefined) {
    this.metrics.errors.inc({ subscription: name });
    const delay = this.backoff.fail(name);
    const ctx = err instanceof DbsyncError ? err.context : {};
    const sqlstate = ctx.sqlstate ?? sqlstateOf(err);
    const message = reportOf(err);
    // Logged when it starts or changes (then once a minute): the retries of one
    // cause are one story, and dbsync.status has the latest.
    // A lost link (transient) is a warning: it heals by itself.
    const transient = isTransient(sqlstate);
    this.outages.fail(
      `subscription ${name}`,
      message,
      { subscription: name, table: ctx.table, tick, sqlstate, retryInMs: delay, transient },
      transient ? "warn" : "error",
    );
    try {
      await recordError(this.pool, name, { message, sqlstate, table: ctx.table, tick });
    } catch (e) {
      if (isTransient(sqlstateOf(e))) this.outages.fail("source", "source unreachable; retrying", { err: messageOf(e) });
      else this.log.warn({ subscription: name, err: messageOf(e) }, "could not record the error on the source");
    }
    await this.jobs.wakeApplier(name, delay).catch(() => undefined);
  }

  /** After the abort signal: the loops finish their batch (those of jobs and of startNow), then the connections close. */
  async close() {
    await Promise.all([...this.running.values()].map((r) => r.loop));
    await Promise.all([...this.appliers.values()].map((a) => a.close()));
    this.appliers.clear();
    await this.links.close();
  }
}
