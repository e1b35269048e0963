// The graphile-worker runner and the wake-ups it carries. Jobs are only wake-ups
// ("apply subscription X", "verify V"); jobKey folds repeated wake-ups
// into one job, and nothing about ordering or exclusion depends on the queue.
// graphile-worker needs PostgreSQL 12; on an older source the same wake-ups run
// from an in-process queue (LocalJobs, see WORKER_MIN_MAJOR).
// Wake-ups can be added before the runner starts (the start-up pass applies first
// and starts the runner after), and graphile-worker is loaded only then: loading
// it takes tens of milliseconds that the first batch does not wait for.
import { EventEmitter } from "node:events";
import type { Runner, Task, WorkerEvents } from "graphile-worker";
import { Pool } from "pg";
import { clientConfig } from "../db/connect";
import { newPool } from "../db/pool";
import { isTransient, messageOf, sqlstateOf } from "../errors";
import { loadGraphileWorker } from "../graphile-worker";
import { Log, Outages } from "../log";
import { WORKER_MIN_MAJOR, WORKER_SCHEMA } from "../migrate";

/**
 * The queue's name for "apply subscription X" (task identifier, and the prefix of
 * its jobKey): "sync", as every sidecar version queues and runs it. A new name
 * would split a source's processes during a rolling upgrade (same database, one
 * sidecar restarted at a time): jobs queued under one name are run only by the
 * processes that know it, and those left under the old name once every process is
 * upgraded would stay in the queue for good.
 */
export const APPLY_JOB = "sync";

export interface JobsOptions {
  sourceUrl: string | undefined;
  concurrency: number;
  pollIntervalMs: number;
  tasks: Record<string, Task>;
  log: Log;
  outages: Outages;
  /** Called after the runner had to be started again (wake-ups may be lost). */
  onRestart: () => Promise<void>;
}

/** Wake-ups for this process's tasks: APPLY_JOB (a subscription) and "verify" (a verification). */
export abstract class Jobs {
  /** Queues a wake-up; before start() too (it runs once a runner, here or elsewhere, takes it). */
  abstract add(task: string, payload: object, jobKey: string, delayMs?: number): Promise<void>;
  /**
   * The subscriptions whose applier's wake-up waits in the queue, due now, for a
   * runner (here or in another process) to take it: another would add nothing.
   */
  abstract dueAppliers(): Promise<Set<string>>;
  /** Starts running this process's share of the wake-ups. */
  abstract start(): Promise<void>;
  /** Waits for running jobs to return, then closes the queue's connections. */
  abstract stop(): Promise<void>;

  wakeApplier(subscription: string, delayMs = 0) {
    return this.add(APPLY_JOB, { subscription }, `${APPLY_JOB}:${subscription}`, delayMs);
  }

  wakeVerify(verificationId: number) {
    return this.add("verify", { verificationId }, `verify:${verificationId}`);
  }
}

/**
 * graphile-worker's queue in the source database (PostgreSQL 12+), else the
 * in-process queue: a version switch, see WORKER_MIN_MAJOR. `major` is the source's.
 */
export function createJobs(opts: JobsOptions, major: number): Jobs {
  if (major >= WORKER_MIN_MAJOR) return new WorkerJobs(opts);
  opts.log.info({ major }, `PostgreSQL ${major}: wake-ups run in this process (graphile-worker needs ${WORKER_MIN_MAJOR})`);
  return new LocalJobs(opts);
}

/**
 * A wake-up due this long, while one of this process's workers has been free for
 * RUNNER_FREE_POLLS poll intervals, means that the runner takes no job: it is
 * started again, at most once in this long (see watchDue).
 */
const RUNNER_STUCK_MS = 30_000;
const RUNNER_FREE_POLLS = 3;

/**
 * graphile-worker's workers each ask for a job every this many --poll-intervals
 * (at --poll-interval 1000: every 10 s), not every one: an idle sidecar's 4
 * workers asking every poll interval were most of its CPU (bench/HISTORY.md).
 * Nothing waits for that ask: a wake-up due now is a NOTIFY on "jobs:insert"
 * (add_job sends it), which sets an idle worker of every process asking at once;
 * one queued for later sends that NOTIFY when it falls due (WorkerJobs.add), and
 * the scans nudge the workers the same way when a wake-up has been due a poll
 * interval and not taken (its NOTIFY lost: the process that queued it stopped, or
 * a LISTEN link was down). The ask is only the last resort.
 */
export const WORKER_POLL_INTERVALS = 10;

class WorkerJobs extends Jobs {
  private runner?: Runner;
  private stopping = false;
  private readonly pool: Pool;
  /** What graphile-worker tells of its workers, for every runner this process starts. */
  private readonly events = new EventEmitter() as WorkerEvents;
  /** The last failure of a worker to take a job (see start). */
  private lastGetJobError?: unknown;
  /** Why the runner is being started again, once it has stopped; undefined while none is asked for. */
  private restartReason?: string;
  /** When the runner last started. */
  private runnerStarted = 0;
  /** Jobs this process's workers are running, and since when one of them is free (undefined: all busy). */
  private inFlight = 0;
  private freeSince: number | undefined = Date.now();
  /** The NOTIFY of each wake-up this process queued for later, by job key, at its due time (see nudge). */
  private readonly dueTimers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly opts: JobsOptions) {
    super();
    this.pool = newPool({ ...clientConfig(opts.sourceUrl, { applicationName: "dbsync worker", catalogPath: true }), max: opts.concurrency + 2 });
    this.pool.on("error", (err) => opts.outages.fail("source", "source unreachable; retrying", { err: messageOf(err) }));
    this.pool.on("connect", (client) => client.on("error", () => undefined));
    // graphile-worker 0.17 reads its task list once per runner, at a worker's first
    // attempt to take a job, and keeps a failure of that read (the source restarted
    // or a connection timed out just then): every later attempt of every worker
    // rethrows the very same error, which it logs at debug level only, and the
    // runner never takes a job again (seen: a sidecar alive, 32 events behind,
    // nothing logged). The same error object twice is that kept failure: a new
    // attempt that fails makes a new one.
    this.events.on("worker:getJob:error", ({ error }) => {
      if (error === this.lastGetJobError) {
        this.restart(`the job runner takes no wake-up: graphile-worker kept its failure to read its task list (${messageOf(error)})`);
      }
      this.lastGetJobError = error;
    });
  }

  /** The tasks, counted while they run (watchDue). */
  private counted(tasks: Record<string, Task>): Record<string, Task> {
    const counted: Record<string, Task> = {};
    for (const [name, task] of Object.entries(tasks)) {
      counted[name] = async (payload, helpers) => {
        if (++this.inFlight >= this.opts.concurrency) this.freeSince = undefined;
        try {
          return await task(payload, helpers);
        } finally {
          if (--this.inFlight < this.opts.concurrency) this.freeSince ??= Date.now();
        }
      };
    }
    return counted;
  }

  /**
   * Stops the runner, to be started again (startRunner's `stopped`), saying why as
   * an error (wake-ups were not being run), and once it is back that it recovered.
   */
  private restart(reason: string) {
    const runner = this.runner;
    if (this.stopping || this.restartReason !== undefined || !runner) return;
    this.restartReason = reason;
    this.opts.outages.fail("jobs", `${reason}; starting it again`, {}, "error");
    void runner.stop().catch(() => undefined);
  }

  async start() {
    const { Logger, run } = loadGraphileWorker();
    if (this.stopping) return;
    const { log, outages } = this.opts;
    // graphile-worker's log metadata can hold whole client objects (with their
    // connection parameters): only the error's message and SQLSTATE go through.
    // A lost source makes graphile-worker log each of its retries (LISTEN, lock
    // resets ...): those are the "source" outage, logged once (log.ts, Outages).
    const logger = new Logger((scope) => (level, message, meta) => {
      const fn = level === "error" ? "error" : level === "warning" ? "warn" : level === "info" ? "debug" : "trace";
      const error = (meta as { error?: { message?: string; code?: string } } | undefined)?.error;
      const fields = { component: "graphile-worker", task: scope.taskIdentifier, err: error?.message, sqlstate: error?.code };
      if ((fn === "error" || fn === "warn") && (error ? isTransient(sqlstateOf(error)) : /connection|not queryable/i.test(message))) {
        outages.fail("source", "source unreachable; retrying", { ...fields, during: message });
        return;
      }
      log[fn](fields, message);
    });
    const runWorker = () =>
      run({
        pgPool: this.pool,
        schema: WORKER_SCHEMA,
        concurrency: this.opts.concurrency,
        noHandleSignals: true,
        pollInterval: this.opts.pollIntervalMs * WORKER_POLL_INTERVALS,
        logger,
        events: this.events,
        taskList: this.counted(this.opts.tasks),
        // Without it graphile-worker reads the crontab file its load left as
        // default (see loadGraphileWorker) and schedules dbsync's tasks from it.
        parsedCronItems: [],
      });
    try {
      await this.startRunner(runWorker);
    } catch (err) {
      // The source went away while the runner started (a restart of the source in
      // the sidecar's first seconds): retry as for a runner that stopped, not exit.
      if (!isTransient(sqlstateOf(err))) throw err;
      outages.fail("jobs", "job runner could not start; retrying", { err: messageOf(err) });
      void this.restartUntilUp(runWorker);
    }
  }

  private async startRunner(runWorker: () => Promise<Runner>) {
    this.runner = await runWorker();
    this.restartReason = this.lastGetJobError = undefined;
    this.runnerStarted = Date.now();
    // Asked to stop while it started: stop() found no runner to stop.
    if (this.stopping) await this.runner.stop().catch(() => undefined);
    // The runner gives up when the source goes away, and stops cleanly on a NOTIFY
    // "worker:migrate" that says "breaking" (which any role that can connect may
    // send): start it again until it stays, or the wake-ups stop being run. A real
    // breaking migration by a newer graphile-worker makes the restart fail, loudly.
    const stopped = (err: unknown) => {
      if (this.stopping) return;
      // graphile-worker set it for that NOTIFY; this process has not failed.
      process.exitCode = undefined;
      const why = this.restartReason ?? (err === undefined ? "it stopped by itself" : messageOf(err));
      this.opts.outages.fail("jobs", "job runner stopped; restarting", { err: why });
      return this.restartUntilUp(runWorker);
    };
    this.runner.promise.then(() => stopped(undefined), stopped);
  }

  private async restartUntilUp(runWorker: () => Promise<Runner>) {
    for (;;) {
      await new Promise((res) => setTimeout(res, 1000));
      if (this.stopping) return;
      try {
        await this.startRunner(runWorker);
        this.opts.outages.ok("jobs", "job runner");
        await this.opts.onRestart();
        return;
      } catch (e) {
        this.opts.outages.fail("jobs", "job runner stopped; restarting", { err: messageOf(e) });
      }
    }
  }

  /**
   * graphile-worker's own SQL entry point (what its runner's addJob calls): no runner
   * needed. Its NOTIFY wakes the workers at once, also for a wake-up due later: that
   * one is nudged again when it falls due, timed from the server's clock (run_at is
   * its now() plus the delay, and the timer starts once the job is in).
   */
  async add(task: string, payload: object, jobKey: string, delayMs = 0) {
    if (this.stopping) return;
    clearTimeout(this.dueTimers.get(jobKey));
    this.dueTimers.delete(jobKey);
    await this.pool.query(
      `select from ${WORKER_SCHEMA}.add_job(identifier => $1, payload => $2::json, run_at => now() + $3 * interval '1 ms',
                                            max_attempts => 1, job_key => $4)`,
      [task, JSON.stringify(payload), delayMs, jobKey],
    );
    if (delayMs > 0 && !this.stopping) {
      this.dueTimers.set(
        jobKey,
        setTimeout(() => {
          this.dueTimers.delete(jobKey);
          void this.nudge();
        }, delayMs),
      );
    }
  }

  /**
   * graphile-worker's NOTIFY for a new job: one idle worker of every process asks for
   * a job now (the one that gets it is the first to ask), instead of at its next poll.
   */
  private async nudge() {
    if (this.stopping) return;
    await this.pool.query(`select pg_notify('jobs:insert', '{"count":1}')`).catch(() => undefined);
  }

  async dueAppliers() {
    // graphile-worker's jobs view; a job that failed for good (attempts used up)
    // keeps its key but is never run again.
    const { rows } = await this.pool.query<{ key: string; overdue_ms: number }>(
      `select j.key, extract(epoch from now() - j.run_at)::float8 * 1000 as overdue_ms from ${WORKER_SCHEMA}.jobs j
        where j.task_identifier = $1 and j.locked_at is null and j.run_at <= now()
          and j.attempts < j.max_attempts and j.key like $1 || ':%'`,
      [APPLY_JOB],
    );
    const overdueMs = Math.max(0, ...rows.map((r) => r.overdue_ms));
    if (overdueMs > this.opts.pollIntervalMs) void this.nudge();
    this.watchDue(overdueMs);
    return new Set(rows.map((r) => r.key.slice(APPLY_JOB.length + 1)));
  }

  /**
   * Whatever else may stop a runner from taking jobs, it does not stay silent: a
   * free worker asks for a job at every one of its polls (WORKER_POLL_INTERVALS) and
   * gets the one due the longest (jobs of one priority are taken by run_at), so that
   * one being due RUNNER_STUCK_MS while a worker here has been free for
   * RUNNER_FREE_POLLS of those polls means that this runner takes none, whatever other processes do
   * (started again, it is given RUNNER_STUCK_MS before the next such verdict). A
   * wake-up waits legitimately while every worker is busy (a long apply), and then
   * nothing is said. Looked at whenever the due wake-ups are read (the scans, the
   * appliers' turns); `overdueMs`: how long the oldest has been due.
   */
  private watchDue(overdueMs: number) {
    const free = this.freeSince;
    const now = Date.now();
    if (overdueMs < RUNNER_STUCK_MS || now - this.runnerStarted < RUNNER_STUCK_MS) return;
    if (free === undefined || now - free < RUNNER_FREE_POLLS * WORKER_POLL_INTERVALS * this.opts.pollIntervalMs) return;
    this.restart(`the job runner takes no wake-up: one has been due for ${Math.round(overdueMs / 1000)} s with a worker of this process free`);
  }

  /** Waits for running jobs to return, then closes the queue's connections. */
  async stop() {
    this.stopping = true;
    for (const t of this.dueTimers.values()) clearTimeout(t);
    this.dueTimers.clear();
    await this.runner?.stop().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}

/**
 * The wake-ups without a shared queue, for sources older than graphile-worker
 * supports. Correct for the same reason the shared queue is: a job is only a
 * wake-up, and a subscription's applier and a verification each hold an advisory
 * lock on the source, so a second process woken for the same work finds it "busy"
 * and returns. Per key at most one job waits (a new wake-up replaces its time, as
 * graphile-worker's jobKey does); at most `concurrency` run at once. A wake-up
 * delayed for a retry is lost if the process stops: the next process's start scan
 * finds the work again.
 */
class LocalJobs extends Jobs {
  private started = false;
  private stopping = false;
  /** Waiting jobs by key, with the time they may run. */
  private waiting = new Map<string, { task: string; payload: object; runAt: number }>();
  private timer?: NodeJS.Timeout;
  private running = new Set<Promise<void>>();

  constructor(private readonly opts: JobsOptions) {
    super();
  }

  async add(task: string, payload: object, jobKey: string, delayMs = 0) {
    if (this.stopping) return;
    this.waiting.set(jobKey, { task, payload, runAt: Date.now() + delayMs });
    this.pump();
  }

  async dueAppliers() {
    const now = Date.now();
    const due = [...this.waiting].filter(([, j]) => j.task === APPLY_JOB && j.runAt <= now);
    return new Set(due.map(([key]) => key.slice(APPLY_JOB.length + 1)));
  }

  async start() {
    this.started = true;
    this.pump();
  }

  /** Starts the due jobs that fit, oldest first, and sets a timer for the next one due. */
  private pump() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopping || !this.started) return;
    const now = Date.now();
    const due = [...this.waiting].filter(([, j]) => j.runAt <= now).sort((a, b) => a[1].runAt - b[1].runAt);
    for (const [key, job] of due) {
      if (this.running.size >= this.opts.concurrency) break;
      this.waiting.delete(key);
      const run: Promise<void> = this.run(job.task, job.payload).finally(() => {
        this.running.delete(run);
        this.pump();
      });
      this.running.add(run);
    }
    const next = Math.min(...[...this.waiting.values()].map((j) => j.runAt));
    if (Number.isFinite(next) && (next > now || this.running.size < this.opts.concurrency)) {
      this.timer = setTimeout(() => this.pump(), Math.max(0, next - now));
    }
  }

  private async run(task: string, payload: object) {
    const fn = this.opts.tasks[task];
    try {
      await fn(payload, undefined as never);
    } catch (err) {
      this.opts.log.error({ task, err: messageOf(err) }, "job failed");
    }
  }

  async stop() {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.waiting.clear();
    await Promise.all(this.running);
  }
}
