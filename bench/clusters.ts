// The benchmark's two throwaway clusters (the test harness's embedded binaries),
// fresh databases per measurement, and small connection helpers.
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { Cluster, reapOrphans, startCluster } from "../src/embedded/cluster";
import { createDatabase, databaseName, withClient } from "../test/kit/databases";

export { withClient, withDatabase } from "../test/kit/databases";

/**
 * The durabilities the benchmark measures at. Each gets its own pair of clusters,
 * started when its figures begin and stopped when they end. On top of the test
 * harness's settings (wal_level = logical, max_connections 300, replication
 * slots and workers; fsync, synchronous_commit and full_page_writes off,
 * shared_buffers 128MB):
 *
 *  - `default`: what initdb gives a DBA: fsync, synchronous_commit and
 *    full_page_writes on, shared_buffers 128MB, and PostgreSQL's defaults for
 *    everything else (max_wal_size 1GB, checkpoint_timeout 5min, work_mem 4MB).
 *    A commit waits for its WAL to reach the disk (of /tmp here), the first change
 *    to a page after a checkpoint logs the whole page, and a checkpoint may start
 *    in the middle of a timed phase, as on a DBA's server.
 *  - `off`: the CPU-bound case, the settings of runs before 2026-12: fsync and
 *    full_page_writes off, synchronous_commit on (with it off, a walsender only
 *    sees committed WAL when the WAL writer flushes it, every 200 ms, which would
 *    add ~100 ms to native replication's latency; fsync off makes a commit a
 *    write() into the page cache, not a disk flush), more memory, and no
 *    checkpoint triggered by WAL volume during a timed phase (each timed phase
 *    starts with an explicit CHECKPOINT instead).
 *
 * Both load pg_stat_statements (with tracking off: compute_query_id = off and
 * pg_stat_statements.track = none, so it costs nothing) because the apply figures
 * turn it on for their own databases to show where a batch's time goes.
 */
export type Durability = "default" | "off";

export const DURABILITIES: Durability[] = ["default", "off"];

export const DURABILITY_LABEL: Record<Durability, string> = {
  default: "initdb defaults (fsync on)",
  off: "fsync off",
};

const PROFILING: Record<string, string | number> = {
  shared_preload_libraries: "pg_stat_statements",
  compute_query_id: "off",
  "pg_stat_statements.track": "none",
};

export const BENCH_SETTINGS: Record<Durability, Record<string, string | number>> = {
  default: {
    fsync: "on",
    synchronous_commit: "on",
    full_page_writes: "on",
    shared_buffers: "128MB",
    ...PROFILING,
  },
  off: {
    fsync: "off",
    synchronous_commit: "on",
    full_page_writes: "off",
    shared_buffers: "1GB",
    max_wal_size: "16GB",
    checkpoint_timeout: "1h",
    work_mem: "16MB",
    maintenance_work_mem: "256MB",
    ...PROFILING,
  },
};

/** Settings printed with the results. */
const SHOWN = [
  "server_version", "wal_level", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "work_mem",
  "maintenance_work_mem", "max_wal_size", "checkpoint_timeout", "max_connections", "max_wal_senders",
  "max_replication_slots", "max_logical_replication_workers", "max_worker_processes", "logical_decoding_work_mem",
  "autovacuum", "wal_writer_delay", "track_commit_timestamp", "shared_preload_libraries",
];

export interface BenchEnv {
  durability: Durability;
  source: Cluster;
  target: Cluster;
  settings: { source: Record<string, string>; target: Record<string, string> };
}

/** `extra` settings go over the durability's (bench:scale raises max_connections). */
export async function startClusters(durability: Durability, extra: Record<string, string | number> = {}): Promise<BenchEnv> {
  reapOrphans();
  const settings = { ...BENCH_SETTINGS[durability], ...extra };
  const [source, target] = await Promise.all([startCluster({ settings }), startCluster({ settings })]);
  const [s, t] = await Promise.all([readSettings(source.url()), readSettings(target.url())]);
  return { durability, source, target, settings: { source: s, target: t } };
}

/** Stops a pair of clusters and removes their files (WAL of a full run: gigabytes). */
export async function stopClusters(env: BenchEnv): Promise<void> {
  for (const cl of [env.source, env.target]) {
    await cl.stop("fast").catch(() => undefined);
    // dataDir is <the cluster's own temp folder>/data; stopAll() removes the folder too.
    fs.rmSync(path.dirname(cl.dataDir), { recursive: true, force: true });
  }
}

async function readSettings(url: string): Promise<Record<string, string>> {
  return withClient(url, async (c) => {
    const { rows } = await c.query(
      `select name, setting, unit from pg_settings where name = any ($1) order by array_position($1, name)`,
      [SHOWN],
    );
    const out: Record<string, string> = {};
    for (const r of rows) out[r.name] = formatSetting(r.setting, r.unit);
    return out;
  });
}

function formatSetting(v: string, unit: string | null): string {
  if (!unit) return v;
  const n = Number(v);
  const m = /^(\d+)?(kB|MB|B|s|ms|min)$/.exec(unit);
  if (!m) return `${v}${unit}`;
  const mult = Number(m[1] ?? 1);
  if (m[2] === "kB" || m[2] === "MB" || m[2] === "B") {
    const bytes = n * mult * (m[2] === "kB" ? 1024 : m[2] === "MB" ? 1024 * 1024 : 1);
    return bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0 ? `${bytes / 1024 ** 3}GB`
      : bytes >= 1024 ** 2 ? `${Math.round(bytes / 1024 ** 2)}MB` : `${Math.round(bytes / 1024)}kB`;
  }
  return `${n * mult}${m[2]}`;
}

export async function connect(url: string, applicationName = "bench"): Promise<Client> {
  const c = new Client({ connectionString: url, application_name: applicationName });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

/** A fresh pair of databases, one on each cluster, with the same name. */
export interface DbPair {
  name: string;
  sourceUrl: string;
  targetUrl: string;
  drop(): Promise<void>;
}

export async function createDbPair(env: BenchEnv, label: string): Promise<DbPair> {
  const name = databaseName(label);
  const [sourceUrl, targetUrl] = await Promise.all([env.source, env.target].map((cl) => createDatabase(cl.url(), label, { name })));
  return {
    name,
    sourceUrl,
    targetUrl,
    async drop() {
      for (const cl of [env.target, env.source]) {
        await withClient(cl.url(), (c) => c.query(`drop database if exists "${name}" with (force)`)).catch(() => undefined);
      }
    },
  };
}

/** The same SQL on both sides of a pair (DDL and deterministic data). */
export async function onBoth(pair: DbPair, sql: string): Promise<void> {
  await Promise.all([pair.sourceUrl, pair.targetUrl].map((u) => withClient(u, (c) => c.query(sql))));
}

/** CHECKPOINT both clusters: a timed phase should not pay for the previous one's writes. */
export async function checkpoint(env: BenchEnv): Promise<void> {
  await Promise.all([env.source, env.target].map((cl) => withClient(cl.url(), (c) => c.query("checkpoint"))));
}

export async function vacuumAnalyze(url: string, tables: string[]): Promise<void> {
  await withClient(url, async (c) => {
    for (const t of tables) await c.query(`vacuum analyze ${t}`);
  });
}
