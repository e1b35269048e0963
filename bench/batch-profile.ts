// Where the time of an apply goes, seen from the servers: pg_stat_statements on the
// source and target databases (time, rows and WAL of each statement the sidecar
// ran, grouped by what it does) and the target's WAL over the timed apply
// (pg_current_wal_lsn before and after, and with pg_walinspect (PostgreSQL 15+) the
// bytes per resource manager: heap, btree, full-page images ...). Native
// replication's apply worker is not seen by pg_stat_statements, so its side only
// gets the WAL figures. Nothing in the sidecar is changed or instrumented for it.
//
// The clusters load pg_stat_statements with tracking off (clusters.ts); start()
// turns it on for this pair's databases only (ALTER DATABASE: sessions opened after
// it, i.e. the sidecar's), so nothing else measured pays for it.
import { Client } from "pg";
import { DbPair } from "./clusters";
import { ident } from "./workloads";

export interface StatementGroup {
  /** What the statements do (see classify). */
  what: string;
  calls: number;
  /** Execution time on the server, summed (pg_stat_statements.total_exec_time). */
  ms: number;
  rows: number;
  walBytes: number;
  /** Full-page images the statements wrote into the WAL. */
  walFpi: number;
  /** The costliest statements' text, shortened, with their time and calls: enough to see which ones they are. */
  examples: string[];
}

export interface WalKind {
  /** pg_walinspect's resource manager: Heap, Heap2, Btree, Transaction, XLOG ... */
  kind: string;
  records: number;
  /** Bytes of the records without their full-page images. */
  recordBytes: number;
  /** Bytes of full-page images. */
  fpiBytes: number;
}

export interface ApplyProfile {
  /** pg_current_wal_lsn() difference on the target over the timed apply. */
  targetWalBytes: number;
  /** The same on the source (dbsync's reads write its progress, ticks and job queue there). */
  sourceWalBytes: number;
  /** By resource manager (PostgreSQL 15+; null before). */
  targetWal: WalKind[] | null;
  /** The same for the source (the reader's COPYs prune pages: Heap2, with full-page images after a checkpoint). */
  sourceWal: WalKind[] | null;
  /** dbsync only: what the sidecar's statements cost on each server. */
  sourceStatements?: StatementGroup[];
  targetStatements?: StatementGroup[];
}

export interface ProfileHandle {
  finish(): Promise<ApplyProfile>;
}

const lsn = async (c: Client): Promise<string> => (await c.query("select pg_current_wal_lsn()::text as l")).rows[0].l;

/**
 * Call right before the clock starts (after the CHECKPOINT, before the sidecar
 * starts or the subscription is enabled); `finish` right after it stops.
 * `statements`: also turn on pg_stat_statements for the pair's databases.
 */
export async function startProfile(pair: DbPair, statements: boolean): Promise<ProfileHandle> {
  const source = new Client({ connectionString: pair.sourceUrl, application_name: "bench profile" });
  const target = new Client({ connectionString: pair.targetUrl, application_name: "bench profile" });
  await Promise.all([source.connect(), target.connect()]);
  const major = Number((await target.query("show server_version_num")).rows[0].server_version_num) / 10000;
  const walinspect = major >= 15;
  try {
    if (walinspect) for (const c of [source, target]) await c.query("create extension if not exists pg_walinspect");
    if (statements) {
      for (const c of [source, target]) {
        await c.query("create extension if not exists pg_stat_statements");
        await c.query(`alter database ${ident(pair.name)} set compute_query_id = on`);
        await c.query(`alter database ${ident(pair.name)} set pg_stat_statements.track = 'top'`);
        await c.query(
          "select pg_stat_statements_reset(0, (select oid from pg_database where datname = current_database()), 0)",
        );
      }
    }
    const [s0, t0] = await Promise.all([lsn(source), lsn(target)]);
    return {
      async finish() {
        try {
          const [s1, t1] = await Promise.all([lsn(source), lsn(target)]);
          const bytes = async (c: Client, a: string, b: string) =>
            Number((await c.query("select pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::float8 as d", [a, b])).rows[0].d);
          const profile: ApplyProfile = {
            targetWalBytes: await bytes(target, t0, t1),
            sourceWalBytes: await bytes(source, s0, s1),
            targetWal: walinspect ? await walKinds(target, t0, t1) : null,
            sourceWal: walinspect ? await walKinds(source, s0, s1) : null,
          };
          if (statements) {
            profile.sourceStatements = await groups(source, "source");
            profile.targetStatements = await groups(target, "target");
          }
          return profile;
        } finally {
          await Promise.all([source.end(), target.end()]).catch(() => undefined);
        }
      },
    };
  } catch (err) {
    await Promise.all([source.end(), target.end()]).catch(() => undefined);
    throw err;
  }
}

/** WAL between two LSNs by resource manager (the range must be flushed: PostgreSQL 15 checks). */
async function walKinds(c: Client, from: string, to: string): Promise<WalKind[]> {
  const { rows: ok } = await c.query("select least($2::pg_lsn, pg_current_wal_flush_lsn()) > $1::pg_lsn as ok", [from, to]);
  if (!ok[0].ok) return [];
  const { rows } = await c.query(
    `select "resource_manager/record_type" as kind, count::float8 as records, record_size::float8 as rb, fpi_size::float8 as fb
       from pg_get_wal_stats($1::pg_lsn, least($2::pg_lsn, pg_current_wal_flush_lsn()), false)
      where count > 0 order by combined_size desc`,
    [from, to],
  );
  return rows.map((r) => ({ kind: r.kind, records: r.records, recordBytes: r.rb, fpiBytes: r.fb }));
}

/** The sidecar's statements on one server, grouped by what they do. */
async function groups(c: Client, side: "source" | "target"): Promise<StatementGroup[]> {
  const { rows } = await c.query(
    `select query, calls::float8 as calls, total_exec_time::float8 as ms, rows::float8 as rows,
            wal_bytes::float8 as wal_bytes, wal_fpi::float8 as wal_fpi
       from pg_stat_statements
      where dbid = (select oid from pg_database where datname = current_database()) and toplevel
      order by total_exec_time desc`,
  );
  const out = new Map<string, StatementGroup>();
  for (const r of rows) {
    const what = classify(side, r.query);
    if (what === null) continue;
    const g = out.get(what) ?? { what, calls: 0, ms: 0, rows: 0, walBytes: 0, walFpi: 0, examples: [] };
    g.calls += r.calls;
    g.ms += r.ms;
    g.rows += r.rows;
    g.walBytes += r.wal_bytes;
    g.walFpi += r.wal_fpi;
    const text = String(r.query).replace(/\s+/g, " ").trim();
    if (g.examples.length < 3) {
      g.examples.push(`${r.ms.toFixed(1)} ms in ${r.calls} call(s): ${text.length > 160 ? text.slice(0, 157) + "..." : text}`);
    }
    out.set(what, g);
  }
  return [...out.values()].sort((a, b) => b.ms - a.ms);
}

/**
 * What a statement does, from its text; null for the benchmark's own statements.
 * By the first keyword and a few names, so that a changed apply (an UPDATE or a
 * MERGE from the stage) shows up under its own name without changes here.
 */
export function classify(side: "source" | "target", query: string): string | null {
  const q = query.replace(/\s+/g, " ").trim().toLowerCase();
  // The benchmark's marker probe, checksums, and this module's own statements.
  if (/bench_marker"? where id =/.test(q) || /hashtext|pg_stat_statements|pg_current_wal|pg_get_wal|pg_wal_lsn_diff|server_version_num|^alter database|^create extension/.test(q)) {
    return null;
  }
  if (/dbsync_worker/.test(q)) return "job queue (graphile-worker)";
  if (side === "source") {
    if (/^copy .* to stdout/.test(q)) return "reader: COPY rows out (read + send)";
    if (/dbsync\.(has_work|target_position|set_sleeping|_verify_todo|_verify_schedule|maintain|tick)\b|from dbsync\.(subscriptions|groups)\b|^select to_regclass\(/.test(q)) {
      return "control: scans, wake-ups, positions";
    }
    if (/dbsync\.begin_batch/.test(q)) return "begin_batch (tick, exported snapshot)";
    if (/^set transaction snapshot/.test(q)) return "reader: import the snapshot";
    if (/dbsync\.batch_plan/.test(q)) return "reader: batch_plan";
    if (/dbsync\.record_progress/.test(q)) return "record_progress";
    if (/^(begin|commit|rollback|start transaction)/.test(q)) return "begin / commit";
    if (/^(set |select (pg_catalog\.)?set_config|select pg_try_advisory_lock|select pg_backend_pid)/.test(q)) return "session set-up";
    return "other";
  }
  if (/^copy .*dbsync_stage.* from stdin/.test(q)) return "COPY into stage (receive + parse)";
  if (/^copy .* from stdin/.test(q)) return "COPY into table (table copy)";
  if (/^create (table|schema)|to_regnamespace|to_regclass|pg_advisory_xact_lock|enter_replica_mode|^insert into dbsync\.applied/.test(q)) {
    return "session set-up";
  }
  if (/dbsync\.applied|dbsync\.copied/.test(q)) return "position (dbsync.applied)";
  if (/^commit/.test(q)) return "commit (WAL flush)";
  if (/^(create temp table|with recursive base)|pg_catalog\.pg_attribute/.test(q)) return "stage creation";
  if (/^select setval\(/.test(q)) return "sequences";
  if (/^with\b/.test(q)) {
    // A data-modifying WITH (e.g. update in place, then insert the rest): by the verbs it holds.
    const verbs = ["delete", "update", "insert", "merge"].filter((v) => new RegExp(`\\b${v}\\b`).test(q));
    return verbs.length ? verbs.join(" + ") + " (one statement)" : "other";
  }
  const first = /^(delete|insert|update|merge|truncate)\b/.exec(q);
  if (first) return first[1];
  if (/^(begin|rollback|savepoint|release)/.test(q)) return "begin, savepoints";
  if (/^(set |select (pg_catalog\.)?set_config|select pg_backend_pid)/.test(q)) return "session set-up";
  return "other";
}

/** The statement groups of a profile as text lines (the log and the summary). */
export function describeStatements(groups: StatementGroup[] | undefined, rowChanges: number): string[] {
  if (!groups?.length) return [];
  const total = groups.reduce((a, g) => a + g.ms, 0);
  return groups
    .filter((g) => g.ms >= 0.5 || g.walBytes > 0)
    .map(
      (g) =>
        `${g.what}: ${(g.ms / 1000).toFixed(3)} s (${Math.round((100 * g.ms) / (total || 1))}%), ${g.calls} call(s), ` +
        `${Math.round(g.rows).toLocaleString("en-US")} rows, WAL ${(g.walBytes / rowChanges).toFixed(0)} B per row change` +
        (g.walFpi ? `, ${g.walFpi} full-page images` : ""),
    );
}

/** WAL by kind as text: "Heap 12.3 MB (FPI 4.0 MB), Btree ...". */
export function describeWal(kinds: WalKind[] | null, rowChanges: number): string {
  if (!kinds) return "(by kind: needs PostgreSQL 15+)";
  const total = kinds.reduce((a, k) => a + k.recordBytes + k.fpiBytes, 0);
  return kinds
    .filter((k) => (k.recordBytes + k.fpiBytes) / (total || 1) >= 0.01)
    .map(
      (k) =>
        `${k.kind} ${((k.recordBytes + k.fpiBytes) / rowChanges).toFixed(0)} B/row change` +
        (k.fpiBytes ? ` (of which full-page images ${(k.fpiBytes / rowChanges).toFixed(0)})` : ""),
    )
    .join(", ");
}
