// `dbsync run`: the sidecar. Wake-ups (wakeups.ts) turn into jobs (jobs.ts) that
// apply subscriptions, copies included (apply-tasks.ts), or verify tables, on request
// or in the background (background-verify.ts). Ordering and
// mutual exclusion do not depend on the job queue: a session advisory lock on the
// source and a row lock on the target's dbsync.applied guard every apply.
import { Pool } from "pg";
import { clientConfig } from "../db";
import { DbsyncError, messageOf } from "../errors";
import { Log } from "../log";
import { type Finished, runVerify } from "../verify/verify";
import { ApplyCounters, ApplyTasks, NO_COUNTERS } from "./apply-tasks";
import { BackgroundVerify, VERIFY_DEFAULTS } from "./background-verify";
import { Jobs } from "./jobs";
import { Wakeups } from "./wakeups";

export interface RunOptions {
  sourceUrl: string | undefined;
  concurrency: number;
  pollIntervalMs: number;
  rotateAfterSeconds: number;
  /** Serve /metrics, /healthz and /readyz on this port. */
  metricsPort?: number;
  /** Background verification: one range of one table per subscription this often; 0: off. */
  verifyIntervalMs?: number;
  /** Source rows per background verification. */
  verifyChunkRows?: number;
  log: Log;
}

export interface Sidecar {
  /** Resolves when the sidecar has stopped. */
  done: Promise<void>;
  stop(): Promise<void>;
}

export async function startSidecar(opts: RunOptions): Promise<Sidecar> {
  const { log } = opts;
  // Start-up timeline (debug; the benchmark reads it): node's start and module
  // loading took this long, and this much CPU.
  log.debug({ uptimeMs: Math.round(process.uptime() * 1000), cpuMs: cpuMs() }, "sidecar starting");
  const pool = new Pool({ ...clientConfig(opts.sourceUrl, { applicationName: "dbsync control", statementTimeoutMs: 60_000 }), max: 4 });
  pool.on("error", (err) => log.warn({ err: messageOf(err) }, "source connection lost"));
  await assertMigrated(pool);

  // prom-client is loaded only when its metrics are served: it adds to every start.
  let counters: ApplyCounters & { verified(r: Finished): void } = { ...NO_COUNTERS, verified: () => undefined };
  let metricsServer: import("node:http").Server | undefined;
  if (opts.metricsPort) {
    const { Metrics, serveMetrics } = await import("./metrics");
    const metrics = new Metrics(pool);
    counters = metrics;
    metricsServer = serveMetrics(opts.metricsPort, metrics, pool, log);
  }
  const abort = new AbortController();
  const tasks = new ApplyTasks(opts, pool, counters, log, abort.signal);
  let wakeups: Wakeups | undefined;
  let background: BackgroundVerify | undefined;
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
          onFinished: (r) => {
            counters.verified(r);
            if (r.background) background?.nudge();
          },
        });
      },
    },
  });
  log.debug({ cpuMs: cpuMs() }, "job runner started");
  tasks.jobs = jobs;
  wakeups = new Wakeups(opts, pool, jobs, tasks, log);
  await wakeups.start();
  background = new BackgroundVerify(
    {
      intervalMs: opts.verifyIntervalMs ?? VERIFY_DEFAULTS.intervalMs,
      chunkRows: opts.verifyChunkRows ?? VERIFY_DEFAULTS.chunkRows,
      concurrency: opts.concurrency,
    },
    pool,
    jobs,
    log,
  );
  background.start();
  log.info({ concurrency: opts.concurrency, cpuMs: cpuMs() }, "dbsync sidecar running");

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      abort.abort();
      background?.stop();
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

/** CPU time this process has used so far (user + system), ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return Math.round((u.user + u.system) / 1000);
}

async function assertMigrated(pool: Pool) {
  const { rows } = await pool.query("select to_regclass('dbsync.subscriptions') is not null as ok");
  if (!rows[0].ok) {
    throw new DbsyncError("the source has no dbsync schema", { hint: "Run `dbsync migrate --source URL` first." });
  }
}
