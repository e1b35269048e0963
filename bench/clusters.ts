// The benchmark's two throwaway clusters (the test harness's embedded binaries),
// fresh databases per measurement, and small connection helpers.
import crypto from "node:crypto";
import { Client } from "pg";
import { Cluster, reapOrphans, startCluster } from "../src/embedded/cluster";

/**
 * Settings on top of the harness's (fsync and full_page_writes off, wal_level =
 * logical ...), the same on both clusters:
 *  - synchronous_commit = on (PostgreSQL's default; the harness turns it off). With
 *    it off, committed WAL reaches disk only when the WAL writer wakes up
 *    (wal_writer_delay, 200 ms), and a walsender streams only flushed WAL: native
 *    replication would show ~100 ms of latency that is an artefact of the setting.
 *    fsync stays off, so a commit costs a write() into the page cache, not a disk flush.
 *  - more memory than the harness's 128MB;
 *  - no checkpoint triggered by WAL volume in the middle of a timed phase (each
 *    timed phase starts with an explicit CHECKPOINT instead).
 */
export const BENCH_SETTINGS: Record<string, string | number> = {
  synchronous_commit: "on",
  shared_buffers: "1GB",
  max_wal_size: "16GB",
  checkpoint_timeout: "1h",
  work_mem: "16MB",
  maintenance_work_mem: "256MB",
};

/** Settings printed with the results. */
const SHOWN = [
  "server_version", "wal_level", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "work_mem",
  "maintenance_work_mem", "max_wal_size", "checkpoint_timeout", "max_connections", "max_wal_senders",
  "max_replication_slots", "max_logical_replication_workers", "max_worker_processes", "logical_decoding_work_mem",
  "autovacuum", "wal_writer_delay", "track_commit_timestamp",
];

export interface BenchEnv {
  source: Cluster;
  target: Cluster;
  settings: { source: Record<string, string>; target: Record<string, string> };
}

export async function startClusters(): Promise<BenchEnv> {
  reapOrphans();
  const [source, target] = await Promise.all([
    startCluster({ settings: BENCH_SETTINGS }),
    startCluster({ settings: BENCH_SETTINGS }),
  ]);
  const [s, t] = await Promise.all([readSettings(source.url()), readSettings(target.url())]);
  return { source, target, settings: { source: s, target: t } };
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

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await connect(url);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function connect(url: string, applicationName = "bench"): Promise<Client> {
  const c = new Client({ connectionString: url, application_name: applicationName });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = "/" + encodeURIComponent(db);
  return u.toString();
}

/** A fresh pair of databases, one on each cluster, with the same name. */
export interface DbPair {
  name: string;
  sourceUrl: string;
  targetUrl: string;
  drop(): Promise<void>;
}

export async function createDbPair(env: BenchEnv, label: string): Promise<DbPair> {
  const name = `${label.replace(/[^a-z0-9]+/gi, "_").toLowerCase().slice(0, 40)}_${crypto.randomBytes(2).toString("hex")}`;
  await Promise.all([env.source, env.target].map((cl) => withClient(cl.url(), (c) => c.query(`create database "${name}"`))));
  return {
    name,
    sourceUrl: withDatabase(env.source.url(), name),
    targetUrl: withDatabase(env.target.url(), name),
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
