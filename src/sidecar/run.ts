// `dbsync run`: the sidecar. Wake-ups (wakeups.ts) turn into jobs (jobs.ts) that
// apply subscriptions, copies included (apply-tasks.ts), or verify tables. Ordering and
// mutual exclusion do not depend on the job queue: a session advisory lock on the
// source and a row lock on the target's dbsync.applied guard every apply.
import { Pool } from "pg";
import { clientConfig } from "../db";
import { DbsyncError, messageOf } from "../errors";
import { Log } from "../log";
import { runVerify } from "../verify/verify";
import { ApplyTasks } from "./apply-tasks";
import { Jobs } from "./jobs";
import { Metrics, serveMetrics } from "./metrics";
import { Wakeups } from "./wakeups";

export interface RunOptions {
  sourceUrl: string | undefined;
  concurrency: number;
  pollIntervalMs: number;
  rotateAfterSeconds: number;
  /** Rows copied per batch; bigger tables are copied in key-range chunks of this many rows. */
  copyChunkRows?: number;
  /** Serve /metrics, /healthz and /readyz on this port. */
  metricsPort?: number;
  log: Log;
}

export interface Sidecar {
  /** Resolves when the sidecar has stopped. */
  done: Promise<void>;
  stop(): Promise<void>;
}

export async function startSidecar(opts: RunOptions): Promise<Sidecar> {
  const { log } = opts;
  const pool = new Pool({ ...clientConfig(opts.sourceUrl, { applicationName: "dbsync control", statementTimeoutMs: 60_000 }), max: 4 });
  pool.on("error", (err) => log.warn({ err: messageOf(err) }, "source connection lost"));
  await assertMigrated(pool);

  const metrics = new Metrics(pool);
  const metricsServer = opts.metricsPort ? serveMetrics(opts.metricsPort, metrics, pool, log) : undefined;
  const abort = new AbortController();
  const tasks = new ApplyTasks(opts, pool, metrics, log, abort.signal);
  let wakeups: Wakeups | undefined;
  const jobs = await Jobs.start({
    sourceUrl: opts.sourceUrl,
    concurrency: opts.concurrency,
    pollIntervalMs: opts.pollIntervalMs,
    log,
    onRestart: async () => wakeups?.scan(),
    tasks: {
      sync: async (payload) => tasks.sync((payload as { subscription: string }).subscription),
      verify: async (payload) => {
        // Leaves a worker free: a verification waits for a sync job to reach its tick.
        await runVerify(opts.sourceUrl, pool, Number((payload as { verificationId: number }).verificationId), log, {
          signal: abort.signal,
          maxConcurrent: opts.concurrency - 1,
        });
      },
    },
  });
  tasks.jobs = jobs;
  wakeups = new Wakeups(opts, pool, jobs, tasks, log);
  await wakeups.start();
  log.info({ concurrency: opts.concurrency }, "dbsync sidecar running");

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      abort.abort();
      await wakeups?.stop();
      await jobs.stop();
      await tasks.close();
      // Nobody listens now: writers should not pay for NOTIFY.
      await pool.query("select dbsync.set_sleeping(group_id, false) from dbsync.groups where sleeping").catch(() => undefined);
      await new Promise((r) => (metricsServer ? metricsServer.close(r) : r(undefined)));
      await pool.end().catch(() => undefined);
      log.info("dbsync sidecar stopped");
      resolveDone();
    })());
  return { done, stop };
}

async function assertMigrated(pool: Pool) {
  const { rows } = await pool.query("select to_regclass('dbsync.subscriptions') is not null as ok");
  if (!rows[0].ok) {
    throw new DbsyncError("the source has no dbsync schema", { hint: "Run `dbsync migrate --source URL` first." });
  }
}
