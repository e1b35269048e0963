// `dbsync run`: the sidecar. Wake-ups (wakeups.ts) turn into jobs (jobs.ts) that
// apply subscriptions, copies included (appliers.ts), or verify tables, on request
// or in the background (background-verify.ts). Ordering and
// mutual exclusion do not depend on the job queue: a session advisory lock on the
// source and a row lock on the target's dbsync.applied guard every apply.
import type { Server } from "node:http";
import { Pool } from "pg";
import { clientConfig } from "../db/connect";
import { newPool } from "../db/pool";
import { DbsyncError, isTransient, messageOf, sqlstateOf } from "../errors";
import { explainDenied } from "../privileges";
import { Log, Outages } from "../log";
import type { Finished } from "../verify/report";
import { ApplyCounters, Appliers, NO_COUNTERS } from "./appliers";
import { BackgroundVerify, VERIFY_DEFAULTS } from "./background-verify";
import { APPLY_JOB, createJobs } from "./jobs";
import { Wakeups } from "./wakeups";
import { activeSubscriptions, installation, sidecarStopped } from "../source/protocol";

export const DEFAULT_METRICS_HOST = "127.0.0.1";

/** At start-up, the job runner and LISTEN wait at most this many poll intervals for the first batches (see startSidecar). */
export const STARTUP_RUNNER_POLLS = 5;

export interface RunOptions {
  sourceUrl: string | undefined;
  concurrency: number;
  pollIntervalMs: number;
  rotateAfterSeconds: number;
  /** Rows copied per batch; bigger tables are copied in key-range chunks of this many rows. */
  copyChunkRows?: number;
  /** Serve /metrics, /healthz and /readyz on this port ... */
  metricsPort?: number;
  /** Background verification: one range of one table per subscription this often; 0: off. */
  verifyIntervalMs?: number;
  /** Source rows per background verification. */
  verifyChunkRows?: number;
  /** ... of this address (default 127.0.0.1: this host only). */
  metricsHost?: string;
  log: Log;
}

export interface Sidecar {
  /** Resolves when the sidecar has stopped: asked to, or because dbsync was uninstalled. */
  done: Promise<"stopped" | "uninstalled">;
  stop(): Promise<void>;
}

export async function startSidecar(opts: RunOptions): Promise<Sidecar> {
  const { log } = opts;
  // Start-up timeline (debug; the benchmark reads it): node's start and module
  // loading took this long, and this much CPU.
  log.debug({ uptimeMs: Math.round(process.uptime() * 1000), cpuMs: cpuMs() }, "sidecar starting");
  const pool = newPool({ ...clientConfig(opts.sourceUrl, { applicationName: "dbsync control", statementTimeoutMs: 60_000, catalogPath: true }), max: 4 });
  const outages = new Outages(log);
  pool.on("error", (err) => outages.fail("source", "source unreachable; retrying", { err: messageOf(err) }));
  // prom-client is loaded only when its metrics are served: it adds to every start.
  let counters: ApplyCounters & { verified(r: Finished): void } = { ...NO_COUNTERS, verified: () => undefined };
  let metricsServer: Server | undefined;
  let source: SourceAtStart;
  try {
    // First: a port in use is a mistake to report at once, before anything starts.
    if (opts.metricsPort) {
      const { Metrics, serveMetrics } = await import("./metrics");
      const metrics = new Metrics(pool);
      counters = metrics;
      metricsServer = await serveMetrics(opts.metricsHost ?? DEFAULT_METRICS_HOST, opts.metricsPort, metrics, pool, log);
    }
    // A source that is down (or starting) at start is waited for, as one that goes
    // down later is; a wrong password, database or a missing schema is an error.
    for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
      try {
        source = await readSource(pool);
        outages.ok("source", "source connection");
        break;
      } catch (err) {
        // (SIGTERM meanwhile ends the process: see cli.ts.)
        if (sqlstateOf(err) === "42501") throw await explainDenied(pool, err, "sidecar");
        if (!isTransient(sqlstateOf(err)) || err instanceof DbsyncError) throw err;
        outages.fail("source", "source unreachable at start; retrying", { err: messageOf(err) });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  } catch (err) {
    metricsServer?.close();
    await pool.end().catch(() => undefined);
    throw err;
  }
  const abort = new AbortController();
  const appliers = new Appliers(opts, pool, counters, log, abort.signal, outages);
  let wakeups: Wakeups | undefined;
  let background: BackgroundVerify | undefined;
  const jobs = createJobs(
    {
      sourceUrl: opts.sourceUrl,
      concurrency: opts.concurrency,
      pollIntervalMs: opts.pollIntervalMs,
      log,
      outages,
      onRestart: async () => wakeups?.scan(),
      tasks: {
        [APPLY_JOB]: async (payload) => appliers.run((payload as { subscription: string }).subscription),
        verify: async (payload) => {
          // Loaded with the first verification: the apply path does not need it.
          const { runVerify } = await import("../verify/jobs");
          // Leaves a worker free: a verification waits for an applier to reach its tick.
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
    },
    source.major,
  );
  appliers.jobs = jobs;
  let reason: "stopped" | "uninstalled" = "stopped";
  let resolveDone!: (r: "stopped" | "uninstalled") => void;
  const done = new Promise<"stopped" | "uninstalled">((r) => (resolveDone = r));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      abort.abort();
      background?.stop();
      await wakeups?.stop();
      await jobs.stop();
      await appliers.close();
      // Nobody listens now: writers should not pay for NOTIFY.
      await sidecarStopped(pool).catch(() => undefined);
      await new Promise((r) => (metricsServer ? metricsServer.close(r) : r(undefined)));
      await pool.end().catch(() => undefined);
      log.info("dbsync sidecar stopped");
      resolveDone(reason);
    })());
  // Once at start, every subscription reads its target's position, even with
  // nothing new to apply: a target that lost commits (or was restored) while no
  // sidecar ran is noticed now, not at the next write. Up to --concurrency of them
  // are applied from here at once; the others are wake-ups for the job queue (this
  // process's runner, or another process's). The job runner, LISTEN and the first
  // scan start once these have applied their first batch: their start-up
  // (graphile-worker's modules alone cost about 0.2 s of CPU) would otherwise
  // compete with the first batch for this process's one thread and the machine's
  // CPUs. They start sooner when something needs them: a subscription waits in the
  // job queue (after one poll interval, as a job would), a start-up loop caught
  // up (it lingers or ended: it waits for wake-ups now), and at the latest after
  // STARTUP_RUNNER_POLLS poll intervals (new work that only the job runner or a
  // scan would find waits that long at start-up: 5 s by default, which covers a
  // backlog of 400,000 changes on a 2-core machine). Nothing is missed meanwhile:
  // a loop applies until caught up, and the scan finds what came since.
  const starts: { firstBatch: Promise<void>; waiting: Promise<void> }[] = [];
  let queued = false;
  for (const name of source.subscriptions) {
    const applying = appliers.startNow(name);
    if (applying) starts.push(applying);
    else {
      queued = true;
      await jobs.wakeApplier(name);
    }
  }
  let timer: NodeJS.Timeout | undefined;
  const delayMs = opts.pollIntervalMs * (queued ? 1 : STARTUP_RUNNER_POLLS);
  await Promise.race([
    Promise.all(starts.map((s) => s.firstBatch)),
    ...starts.map((s) => s.waiting),
    new Promise((r) => (timer = setTimeout(r, delayMs))),
  ]);
  clearTimeout(timer);
  wakeups = new Wakeups({ ...opts, sourceMajor: source.major }, pool, jobs, appliers, log, outages, () => {
    // Nothing is left to apply, and every call would fail: stop, once, and say why.
    reason = "uninstalled";
    log.error(
      "dbsync was removed from the source (dbsync uninstall, or schema dbsync dropped): the sidecar stops. " +
        "Targets keep their data; run `dbsync migrate` to install dbsync again.",
    );
    void stop();
  });
  await Promise.all([
    jobs.start().then(() => log.debug({ cpuMs: cpuMs() }, "job runner started")),
    wakeups.start(),
  ]);
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

  return { done, stop };
}

/** CPU time this process has used so far (user + system), ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return Math.round((u.user + u.system) / 1000);
}

interface SourceAtStart {
  /** The server's major version. */
  major: number;
  /** Subscriptions not paused, in the order they were created. */
  subscriptions: string[];
}

/** What the start needs from the source; a source without dbsync is an error. */
async function readSource(pool: Pool): Promise<SourceAtStart> {
  const { major, installed } = await installation(pool);
  if (!installed) {
    throw new DbsyncError("the source has no dbsync schema", { hint: "Run `dbsync migrate --source URL` first." });
  }
  return { major, subscriptions: (await activeSubscriptions(pool)).map((r) => r.name) };
}
