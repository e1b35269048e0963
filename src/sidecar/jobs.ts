// The graphile-worker runner and the wake-ups it carries. Jobs are only wake-ups
// ("sync subscription X", "verify V"); jobKey folds repeated wake-ups
// into one job, and nothing about ordering or exclusion depends on the queue.
import { Logger as WorkerLogger, Runner, Task, run as runWorker } from "graphile-worker";
import { Pool } from "pg";
import { clientConfig } from "../db";
import { isTransient, messageOf, sqlstateOf } from "../errors";
import { Log, Outages } from "../log";
import { WORKER_SCHEMA } from "../migrate";

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

export class Jobs {
  private runner!: Runner;
  private stopping = false;
  private readonly pool: Pool;
  private readonly logger: WorkerLogger;

  private constructor(private readonly opts: JobsOptions) {
    const { log } = opts;
    this.pool = new Pool({ ...clientConfig(opts.sourceUrl, { applicationName: "dbsync worker" }), max: opts.concurrency + 2 });
    this.pool.on("error", (err) => opts.outages.fail("source", "source unreachable; retrying", { err: messageOf(err) }));
    this.pool.on("connect", (client) => client.on("error", () => undefined));
    // graphile-worker's log metadata can hold whole client objects (with their
    // connection parameters): only the error's message and SQLSTATE go through.
    // A lost source makes graphile-worker log each of its retries (LISTEN, lock
    // resets ...): those are the "source" outage, logged once (log.ts, Outages).
    this.logger = new WorkerLogger((scope) => (level, message, meta) => {
      const fn = level === "error" ? "error" : level === "warning" ? "warn" : level === "info" ? "debug" : "trace";
      const error = (meta as { error?: { message?: string; code?: string } } | undefined)?.error;
      const fields = { component: "graphile-worker", task: scope.taskIdentifier, err: error?.message, sqlstate: error?.code };
      if ((fn === "error" || fn === "warn") && (error ? isTransient(sqlstateOf(error)) : /connection|not queryable/i.test(message))) {
        opts.outages.fail("source", "source unreachable; retrying", { ...fields, during: message });
        return;
      }
      log[fn](fields, message);
    });
  }

  static async start(opts: JobsOptions): Promise<Jobs> {
    const jobs = new Jobs(opts);
    await jobs.startRunner();
    return jobs;
  }

  private async startRunner() {
    this.runner = await runWorker({
      pgPool: this.pool,
      schema: WORKER_SCHEMA,
      concurrency: this.opts.concurrency,
      noHandleSignals: true,
      pollInterval: this.opts.pollIntervalMs,
      logger: this.logger,
      taskList: this.opts.tasks,
    });
    // The runner gives up when the source goes away; start it again until it stays.
    this.runner.promise.catch(async (err) => {
      if (this.stopping) return;
      const outages = this.opts.outages;
      outages.fail("jobs", "job runner stopped; restarting", { err: messageOf(err) });
      for (;;) {
        await new Promise((res) => setTimeout(res, 1000));
        if (this.stopping) return;
        try {
          await this.startRunner();
          outages.ok("jobs", "job runner");
          await this.opts.onRestart();
          return;
        } catch (e) {
          outages.fail("jobs", "job runner stopped; restarting", { err: messageOf(e) });
        }
      }
    });
  }

  async add(task: string, payload: object, jobKey: string, delayMs = 0) {
    if (this.stopping) return;
    await this.runner.addJob(task, payload, {
      jobKey,
      maxAttempts: 1,
      runAt: delayMs ? new Date(Date.now() + delayMs) : undefined,
    });
  }

  wakeSync(subscription: string, delayMs = 0) {
    return this.add("sync", { subscription }, `sync:${subscription}`, delayMs);
  }

  wakeVerify(verificationId: number) {
    return this.add("verify", { verificationId }, `verify:${verificationId}`);
  }

  /** Waits for running jobs to return, then closes the queue's connections. */
  async stop() {
    this.stopping = true;
    await this.runner.stop().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}
