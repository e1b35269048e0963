// `dbsync run`: the sidecar. Wake-ups come from NOTIFY (pg-listen), from a
// modest poll (so a lost notification only delays), and from the sync jobs
// themselves; graphile-worker runs one "sync" job per subscription at a time
// (jobKey) across all processes. Ordering and mutual exclusion do not depend on
// graphile-worker: a session advisory lock on the source and a row lock on the
// target's dbsync.applied guard every apply.
import createSubscriber from "pg-listen";
import { Logger as WorkerLogger, Runner, run as runWorker } from "graphile-worker";
import { Pool } from "pg";
import { clientConfig } from "../db";
import { isTransient, messageOf, sqlstateOf, DbsyncError } from "../errors";
import { Log } from "../log";
import { WORKER_SCHEMA } from "../migrate";
import { copyTable } from "../copy/table-copy";
import { runVerify } from "../verify/verify";
import { PositionMoved } from "../target/progress";
import { SubscriptionSession } from "../sync/session";
import { Metrics, serveMetrics } from "./metrics";

export interface RunOptions {
  sourceUrl: string | undefined;
  concurrency: number;
  /** Table copies running at once in this process. */
  copyConcurrency: number;
  pollIntervalMs: number;
  maxBatchEvents: number;
  rotateAfterSeconds: number;
  /** Serve /metrics, /healthz and /readyz on this port. */
  metricsPort?: number;
  log: Log;
}

export interface Sidecar {
  /** Resolves when the sidecar has stopped. */
  done: Promise<void>;
  stop(): Promise<void>;
}

const MAX_BACKOFF_MS = 60_000;

export async function startSidecar(opts: RunOptions): Promise<Sidecar> {
  const { log } = opts;
  const pool = new Pool({ ...clientConfig(opts.sourceUrl, { applicationName: "dbsync control", statementTimeoutMs: 60_000 }), max: 4 });
  pool.on("error", (err) => log.warn({ err: messageOf(err) }, "source connection lost"));
  await assertMigrated(pool);

  const metrics = new Metrics(pool);
  const metricsServer = opts.metricsPort ? serveMetrics(opts.metricsPort, metrics, pool, log) : undefined;
  const abort = new AbortController();
  const sessions = new Map<string, SubscriptionSession>();
  const backoff = new Map<string, { failures: number; until: number }>();
  let stopping = false;

  // graphile-worker's log metadata can hold whole client objects (with their
  // connection parameters): only the error's message and SQLSTATE go through.
  const workerLogger = new WorkerLogger((scope) => (level, message, meta) => {
    const fn = level === "error" ? "error" : level === "warning" ? "warn" : level === "info" ? "debug" : "trace";
    const error = (meta as { error?: { message?: string; code?: string } } | undefined)?.error;
    log[fn]({ component: "graphile-worker", task: scope.taskIdentifier, err: error?.message, sqlstate: error?.code }, message);
  });
  const workerPool = new Pool({ ...clientConfig(opts.sourceUrl, { applicationName: "dbsync worker" }), max: opts.concurrency + 2 });
  workerPool.on("error", (err) => log.warn({ err: messageOf(err) }, "job queue connection lost"));
  workerPool.on("connect", (client) => client.on("error", () => undefined));

  const runWorkers = () =>
    runWorker({
    pgPool: workerPool,
    schema: WORKER_SCHEMA,
    concurrency: opts.concurrency,
    noHandleSignals: true,
    pollInterval: opts.pollIntervalMs,
    logger: workerLogger,
    taskList: {
      sync: async (payload) => {
        await syncTask((payload as { subscription: string }).subscription);
      },
      copy: async (payload) => {
        await copyTask(payload as { subscription: string; tableId: number });
      },
      verify: async (payload) => {
        // Leaves a worker free: a verification waits for a sync job to reach its tick.
        await runVerify(opts.sourceUrl, pool, Number((payload as { verificationId: number }).verificationId), log, {
          signal: abort.signal,
          maxConcurrent: opts.concurrency - 1,
        });
      },
    },
  });
  let runner: Runner = await runWorkers();
  // The job runner gives up when the source goes away; start it again until it stays.
  const watchRunner = (r: Runner) =>
    r.promise.catch(async (err) => {
      if (stopping) return;
      log.warn({ err: messageOf(err) }, "job runner stopped; restarting");
      for (;;) {
        await new Promise((res) => setTimeout(res, 1000));
        if (stopping) return;
        try {
          runner = await runWorkers();
          watchRunner(runner);
          await scan();
          return;
        } catch (e) {
          log.warn({ err: messageOf(e) }, "job runner restart failed; retrying");
        }
      }
    });
  watchRunner(runner);

  async function wake(subscription: string, delayMs = 0) {
    if (stopping) return;
    await runner.addJob("sync", { subscription }, {
      jobKey: `sync:${subscription}`,
      maxAttempts: 1,
      runAt: delayMs ? new Date(Date.now() + delayMs) : undefined,
    });
  }

  // A wake-up for a subscription this process is applying right now must not start
  // a second loop on the same connections: it asks the running one to look again.
  const running = new Map<string, { again: boolean }>();
  async function syncTask(name: string) {
    const current = running.get(name);
    if (current) {
      current.again = true;
      return;
    }
    const state = { again: true };
    running.set(name, state);
    try {
      while (state.again && !stopping) {
        state.again = false;
        await syncOnce(name);
      }
    } finally {
      running.delete(name);
    }
  }

  async function syncOnce(name: string) {
    const b = backoff.get(name);
    if (b && b.until > Date.now()) return;
    let session = sessions.get(name);
    if (!session) {
      session = new SubscriptionSession(name, {
        sourceUrl: opts.sourceUrl,
        maxBatchEvents: opts.maxBatchEvents,
        statementTimeoutMs: 0,
        onBatch: (sub, events, seconds) => {
          metrics.batches.inc({ subscription: sub });
          metrics.rows.inc({ subscription: sub }, events);
          metrics.batchSeconds.observe({ subscription: sub }, seconds);
        },
      }, log.child({ subscription: name }));
      sessions.set(name, session);
    }
    try {
      const outcome = await session.sync(abort.signal);
      backoff.delete(name);
      if (outcome !== "caught_up") {
        if (outcome !== "stopped") {
          sessions.delete(name);
          await session.close();
        }
        return;
      }
      const groupId = session.subscription!.group_id;
      // Ask writers to notify from now on, then look once more: a change committed
      // before the flag was visible to them would otherwise wait for the next poll.
      await pool.query("update dbsync.groups set sleeping = true where group_id = $1 and not sleeping", [groupId]);
      const more = await pool.query("select 1 from dbsync.next_batch($1, 1)", [name]);
      if (more.rowCount) await wake(name);
    } catch (err) {
      sessions.delete(name);
      const tick = session.currentTick;
      await session.close();
      if (err instanceof PositionMoved) {
        log.warn({ subscription: name, err: err.message }, "another applier moved the target; re-reading");
        await wake(name, 1000);
        return;
      }
      await reportError(name, err, tick);
    }
  }

  const copying = new Set<string>();
  async function wakeCopy(subscription: string, tableId: number, delayMs = 0) {
    if (stopping) return;
    await runner.addJob("copy", { subscription, tableId }, {
      jobKey: `copy:${subscription}:${tableId}`,
      maxAttempts: 1,
      runAt: delayMs ? new Date(Date.now() + delayMs) : undefined,
    });
  }

  async function copyTask(job: { subscription: string; tableId: number }) {
    const key = `${job.subscription}:${job.tableId}`;
    const b = backoff.get(key);
    if (stopping || copying.has(key) || (b && b.until > Date.now())) return;
    if (copying.size >= opts.copyConcurrency) {
      await wakeCopy(job.subscription, job.tableId, 1000);
      return;
    }
    copying.add(key);
    try {
      const outcome = await copyTable(opts.sourceUrl, pool, job, log.child({ subscription: job.subscription }));
      backoff.delete(key);
      if (outcome !== "nothing" && outcome !== "busy") await wake(job.subscription);
    } catch (err) {
      metrics.errors.inc({ subscription: job.subscription });
      const failures = (backoff.get(key)?.failures ?? 0) + 1;
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
      backoff.set(key, { failures, until: Date.now() + delay });
      await wakeCopy(job.subscription, job.tableId, delay).catch(() => undefined);
    } finally {
      copying.delete(key);
    }
  }

  async function reportError(name: string, err: unknown, tick: number | undefined) {
    metrics.errors.inc({ subscription: name });
    const failures = (backoff.get(name)?.failures ?? 0) + 1;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
    backoff.set(name, { failures, until: Date.now() + delay });
    const ctx = err instanceof DbsyncError ? err.context : {};
    const sqlstate = ctx.sqlstate ?? sqlstateOf(err);
    let message = messageOf(err);
    if (ctx.hint) message += ` (hint: ${ctx.hint})`;
    log.error({ subscription: name, table: ctx.table, tick, sqlstate, retryInMs: delay, transient: isTransient(sqlstate) }, message);
    try {
      await pool.query(
        "select dbsync.record_error(s.sub_id, $2, $3, $4, $5) from dbsync.subscriptions s where s.name = $1",
        [name, message, sqlstate ?? null, ctx.table ?? null, tick ?? null],
      );
    } catch (e) {
      log.warn({ subscription: name, err: messageOf(e) }, "could not record the error on the source");
    }
    await wake(name, delay).catch(() => undefined);
  }

  /** Tick every group that has news, and wake every subscription with work. */
  async function scan() {
    if (stopping) return;
    try {
      const { rows: groups } = await pool.query<{ group_id: number }>("select group_id from dbsync.groups");
      for (const g of groups) await pool.query("select dbsync.tick($1)", [g.group_id]);
      const { rows } = await pool.query<{ name: string }>(`
        select s.name
          from dbsync.subscriptions s
          join dbsync.groups g using (group_id)
         where not s.paused and s.position_tick < g.last_tick_id`);
      for (const r of rows) {
        const b = backoff.get(r.name);
        if (!b || b.until <= Date.now()) await wake(r.name);
      }
      const { rows: copies } = await pool.query<{ name: string; table_id: number }>(`
        select s.name, st.table_id
          from dbsync.subscription_tables st
          join dbsync.subscriptions s using (sub_id)
          join dbsync.tables t using (table_id)
         where not s.paused and t.removed_at is null and st.state in ('pending', 'copying', 'error')`);
      for (const c of copies) {
        const key = `${c.name}:${c.table_id}`;
        const b = backoff.get(key);
        if (!copying.has(key) && (!b || b.until <= Date.now())) await wakeCopy(c.name, c.table_id);
      }
      const { rows: verifications } = await pool.query<{ id: string }>("select id::text from dbsync._verify_todo() id");
      for (const v of verifications) {
        await runner.addJob("verify", { verificationId: Number(v.id) }, { jobKey: `verify:${v.id}`, maxAttempts: 1 });
      }
    } catch (err) {
      log.warn({ err: messageOf(err) }, "scan failed; will retry");
    }
  }

  async function maintain() {
    if (stopping) return;
    try {
      const { rows } = await pool.query<{ group_id: number }>("select group_id from dbsync.groups");
      for (const g of rows) {
        const { rows: m } = await pool.query("select dbsync.maintain($1, make_interval(secs => $2)) as wants_tick", [
          g.group_id,
          opts.rotateAfterSeconds,
        ]);
        // An idle group's positions must move past a rotated slot before it can go.
        if (m[0].wants_tick) await pool.query("select dbsync.tick($1, true)", [g.group_id]);
      }
    } catch (err) {
      log.warn({ err: messageOf(err) }, "queue upkeep failed; will retry");
    }
  }

  const subscriber = createSubscriber(clientConfig(opts.sourceUrl, { applicationName: "dbsync listen" }), {
    retryLimit: Infinity,
    retryTimeout: Infinity,
    retryInterval: (attempt) => Math.min(5000, 250 * attempt),
    parse: (s: string) => s, // payloads are group ids, not JSON
  });
  subscriber.events.on("error", (err) => log.warn({ err: messageOf(err) }, "LISTEN connection error"));
  subscriber.events.on("reconnect", (attempt) => log.info({ attempt }, "LISTEN reconnecting"));
  // NOTIFYs sent while we were away are lost: look at everything after each connect.
  subscriber.events.on("connected", () => void scan());
  subscriber.notifications.on("dbsync", (payload: string) => void onNotify(payload));
  async function onNotify(payload: string) {
    const groupId = Number(payload);
    if (!Number.isInteger(groupId)) return;
    try {
      await pool.query("update dbsync.groups set sleeping = false where group_id = $1 and sleeping", [groupId]);
      const { rows } = await pool.query<{ name: string }>(
        "select name from dbsync.subscriptions where group_id = $1 and not paused",
        [groupId],
      );
      for (const r of rows) await wake(r.name);
    } catch (err) {
      log.warn({ err: messageOf(err) }, "wake-up failed; the poll will catch up");
    }
  }
  await subscriber.connect();
  await subscriber.listenTo("dbsync");

  const pollTimer = setInterval(() => void scan(), opts.pollIntervalMs);
  const maintainTimer = setInterval(() => void maintain(), 5000);
  await scan();
  log.info({ concurrency: opts.concurrency }, "dbsync sidecar running");

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopPromise: Promise<void> | undefined;
  const stop = () =>
    (stopPromise ??= (async () => {
      stopping = true;
      abort.abort();
      clearInterval(pollTimer);
      clearInterval(maintainTimer);
      await subscriber.close().catch(() => undefined);
      await runner.stop().catch(() => undefined);
      await Promise.all([...sessions.values()].map((s) => s.close()));
      // Nobody listens now: writers should not pay for NOTIFY.
      await pool.query("update dbsync.groups set sleeping = false where sleeping").catch(() => undefined);
      await new Promise((r) => (metricsServer ? metricsServer.close(r) : r(undefined)));
      await pool.end().catch(() => undefined);
      await workerPool.end().catch(() => undefined);
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
