// Prometheus metrics and health endpoints of `dbsync run --metrics-port`.
// Gauges are read from the source when scraped (dbsync.status is the truth, and
// several sidecars report the same figures); the batch duration histogram and the
// apply counters are this process's own.
import http from "node:http";
import { Client, Pool } from "pg";
import client from "prom-client";
import { clientConfig, closeQuietly } from "../db/connect";
import { DbsyncError, messageOf } from "../errors";
import { Log } from "../log";
import { Readiness, readiness as sourceReadiness } from "../source/protocol";
import type { Finished } from "../verify/report";

export class Metrics {
  readonly registry = new client.Registry();
  readonly batchSeconds = new client.Histogram({
    name: "dbsync_batch_duration_seconds",
    help: "Time to apply one batch on the target, by subscription",
    labelNames: ["subscription"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly batches = this.counter("dbsync_batches_applied_total", "Batches applied by this process", ["subscription"]);
  readonly rows = this.counter("dbsync_rows_applied_total", "Row changes applied by this process", ["subscription"]);
  readonly errors = this.counter("dbsync_apply_errors_total", "Failed batch or copy attempts in this process", ["subscription"]);

  readonly verifyRows = this.counter("dbsync_verify_rows_total", "Source rows compared with the target by background verification in this process", ["subscription", "table"]);
  readonly verifyFailures = this.counter("dbsync_verify_failures_total", "Background verifications that failed in this process (the error is in dbsync.table_status.last_verify_error)", ["subscription", "table"]);

  readonly refresh: () => Promise<void>;

  private counter(name: string, help: string, labelNames: string[]) {
    return new client.Counter({ name, help, labelNames, registers: [this.registry] });
  }

  constructor(private readonly pool: Pool) {
    const gauge = (name: string, help: string, labelNames: string[]) =>
      new client.Gauge({ name, help, labelNames, registers: [this.registry] });
    const backlog = gauge("dbsync_backlog_events", "Captured events not yet applied", ["subscription", "group"]);
    const paused = gauge("dbsync_paused", "1 when the subscription is paused", ["subscription"]);
    const failing = gauge("dbsync_error", "1 when the subscription's last batch failed or its target differs (dbsync.status.last_error)", [
      "subscription",
    ]);
    const copied = gauge("dbsync_copy_rows", "Rows copied so far by a table copy", ["subscription", "table"]);
    const estimated = gauge("dbsync_copy_rows_estimated", "Estimated rows of a table being copied", ["subscription", "table"]);
    const differing = gauge(
      "dbsync_verify_differences",
      "Rows background verification found differing on the target (dbsync.table_status.verify_differences)",
      ["subscription", "table"],
    );
    const verifiedAt = gauge(
      "dbsync_verify_last_timestamp_seconds",
      "When background verification last compared a range of the table (Unix time)",
      ["subscription", "table"],
    );
    const lag = gauge("dbsync_lag_seconds", "Age of the target's state when changes are pending (dbsync.status)", [
      "subscription",
      "group",
    ]);
    // Each scrape reads dbsync.status and table_status once and feeds every gauge.
    this.refresh = async () => {
        const { rows } = await this.pool.query(
          "select name, group_name, lag_seconds, backlog_events, paused, last_error is not null as failing from dbsync.status",
        );
        for (const g of [lag, backlog, paused, failing, copied, estimated, differing, verifiedAt]) g.reset();
        // This process's counters of subscriptions dropped since: their series go.
        const live = new Set(rows.map((r) => r.name as string));
        for (const m of [this.batches, this.rows, this.errors, this.batchSeconds] as const) {
          for (const v of (await m.get()).values) {
            const sub = v.labels.subscription;
            if (typeof sub === "string" && !live.has(sub)) m.remove({ subscription: sub });
          }
        }
        for (const r of rows) {
          lag.set({ subscription: r.name, group: r.group_name }, Number(r.lag_seconds));
          backlog.set({ subscription: r.name, group: r.group_name }, Number(r.backlog_events));
          paused.set({ subscription: r.name }, r.paused ? 1 : 0);
          failing.set({ subscription: r.name }, r.failing ? 1 : 0);
        }
        const { rows: copies } = await this.pool.query(
          "select subscription, table_name, rows_copied, rows_estimated from dbsync.table_status where state = 'copying'",
        );
        for (const c of copies) {
          copied.set({ subscription: c.subscription, table: c.table_name }, Number(c.rows_copied));
          if (c.rows_estimated !== null) estimated.set({ subscription: c.subscription, table: c.table_name }, Number(c.rows_estimated));
        }
        // Tables background verification has looked at (a 0 then means "compared, equal").
        const { rows: verified } = await this.pool.query(
          `select subscription, table_name, verify_differences, extract(epoch from last_verified_at)::float8 as at
             from dbsync.table_status where last_verified_at is not null`,
        );
        for (const v of verified) {
          differing.set({ subscription: v.subscription, table: v.table_name }, Number(v.verify_differences));
          verifiedAt.set({ subscription: v.subscription, table: v.table_name }, Number(v.at));
        }
    };
  }

  /** A verification ended in this process; only background ones are counted. */
  verified(r: Finished) {
    if (!r.background) return;
    const labels = { subscription: r.subscription, table: r.table };
    if (r.ok) this.verifyRows.inc(labels, r.rowsCompared);
    else this.verifyFailures.inc(labels);
  }
}

/**
 * Ready: the source answers, every active subscription's target accepts a
 * connection, and no active subscription is in error (dbsync.status: a batch that
 * fails, a table whose copy cannot start, rows found differing), so that a probe
 * or a load balancer sees what the DBA's alert query sees.
 */
async function readiness(pool: Pool): Promise<{ ok: boolean; problems: string[] }> {
  const problems: string[] = [];
  let targets: Readiness[] = [];
  try {
    targets = await sourceReadiness(pool);
    for (const f of targets.filter((t) => t.failing)) problems.push(`subscription ${f.name}: ${f.last_error_table ? `${f.last_error_table}: ` : ""}${f.last_error ?? "error"}`);
  } catch (err) {
    return { ok: false, problems: [`source: ${messageOf(err)}`] };
  }
  // One connection per target, however many subscriptions share it.
  const byTarget = new Map<string, string[]>();
  for (const t of targets) byTarget.set(t.target_conninfo, [...(byTarget.get(t.target_conninfo) ?? []), t.name]);
  await Promise.all(
    [...byTarget].map(async ([conninfo, names]) => {
      // A readiness probe answers within seconds, whatever the link does.
      const c = new Client({
        ...clientConfig(conninfo, { applicationName: "dbsync readyz", queryTimeoutMs: 3000 }),
        connectionTimeoutMillis: 3000,
      });
      c.on("error", () => undefined);
      try {
        await c.connect();
        await c.query("select 1");
      } catch (err) {
        problems.push(`target of ${names.join(", ")}: ${messageOf(err)}`);
      } finally {
        await closeQuietly(c); // bounded: a plain end() can wait for ever on a hung link
      }
    }),
  );
  return { ok: problems.length === 0, problems };
}

/**
 * Listens on host:port; resolves once listening. A port in use or an address the
 * host does not have is a DbsyncError naming the flag, not an unhandled 'error' event.
 */
export async function serveMetrics(host: string, port: number, metrics: Metrics, pool: Pool, log: Log): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        if (req.url === "/metrics") {
          await metrics.refresh();
          const body = await metrics.registry.metrics();
          res.writeHead(200, { "content-type": metrics.registry.contentType }).end(body);
        } else if (req.url === "/healthz") {
          res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
        } else if (req.url === "/readyz") {
          const r = await readiness(pool);
          res.writeHead(r.ok ? 200 : 503, { "content-type": "text/plain" }).end(r.ok ? "ready\n" : r.problems.join("\n") + "\n");
        } else {
          res.writeHead(404).end();
        }
      } catch (err) {
        res.writeHead(500, { "content-type": "text/plain" }).end(messageOf(err) + "\n");
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    if (err.code === "EADDRINUSE") {
      throw new DbsyncError(`--metrics-port ${port}: ${where} is already in use`, {
        hint: "Another process (another `dbsync run`?) listens there: pick a free port with --metrics-port, or stop that process.",
      });
    }
    if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") {
      throw new DbsyncError(`--metrics-host ${host}: not an address of this host (${err.code})`, {
        hint: "Use 127.0.0.1 (this host only, the default), 0.0.0.0 (every interface) or an address of one of its interfaces.",
      });
    }
    if (err.code === "EACCES") {
      throw new DbsyncError(`--metrics-port ${port}: permission denied to listen on ${where}`, {
        hint: "Ports below 1024 need privileges: use a higher port (9187 is customary for dbsync).",
      });
    }
    throw new DbsyncError(`--metrics-port ${port}: cannot listen on ${where}: ${err.message}`);
  });
  // Once listening, an error (rare) is logged; it never ends the process.
  server.on("error", (err) => log.error({ err: messageOf(err) }, "metrics endpoint failed"));
  log.info({ host, port }, "metrics and health endpoints listening");
  return server;
}
