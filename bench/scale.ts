// `npm run bench:scale`: issue 19's shape. Many tables in many groups, each group
// delivered to several targets, served by several `dbsync run` processes:
//
//   npm run bench:scale -- [--tables 1000] [--groups 50] [--targets 2] [--rows 1000]
//                          [--processes 2] [--concurrency N] [--apply-rounds 3]
//                          [--durability default|off] [--no-kill] [--profile] [--native] [--out FILE]
//
// Prints a table and writes JSON (bench/results/scale-<time>.json) of:
//  - per-table and per-call costs as the number of tables grows (add_table, tick,
//    queue upkeep, execute_ddl and the relation locks it holds, dbsync.status,
//    dbsync.table_status, the sidecar's scan), measured while the tables are added;
//  - the initial copy of every table into every target, until all are streaming;
//  - one transaction touching every table, until every subscription's position
//    includes it (median of --apply-rounds);
//  - connections on source and target by application_name (max while copying,
//    applying, idle), the sidecars' RSS and CPU;
//  - every table copied again (resync_subscription) while one of the processes is
//    SIGKILLed at a third of the copies and started again: time until all are in
//    sync, how many table copies each target committed (an ALWAYS trigger on
//    TRUNCATE counts them: exactly one per table is expected), and a row-by-row
//    checksum of every table on every target against the source;
//  - with --native: PostgreSQL's own logical replication in the same shape, on a
//    second pair of clusters (one publication per group, one subscription per group
//    and target database), each of its rounds run right after dbsync's round of the
//    same number, so both are measured at the same load.
// See bench/README.md ("bench:scale").
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { stopAll } from "../src/embedded/cluster";
import { BenchEnv, connect, Durability, startClusters, stopClusters, withClient, withDatabase } from "./clusters";
import { assertBuilt, installDbsync, SidecarProcess } from "./dbsync";
import { NativeSub, subscribe, waitStreaming } from "./native";
import { median, processCpuSeconds, processMemory, serverCpuByPid, serverCpuSeconds } from "./measure";
import { Progress } from "./progress";
import { type GroupVerdict, pollWork } from "../src/source/protocol";
import { writeJson } from "./report";
import { sleep } from "./workloads";

interface Shape {
  tables: number;
  groups: number;
  targets: number;
  rows: number;
  processes: number;
  concurrency?: number;
  applyRounds: number;
  durability: Durability;
  kill: boolean;
  /** pg_stat_statements (nested statements too) over the apply rounds, on source and targets. */
  profile: boolean;
  /** Native logical replication in the same shape, round for round (second pair of clusters). */
  native: boolean;
  out?: string;
}

function parseArgs(argv: string[]): Shape {
  const o: Shape = { tables: 1000, groups: 50, targets: 2, rows: 1000, processes: 2, applyRounds: 3, durability: "default", kill: true, profile: false, native: false };
  const int = (a: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) usage(`${a} takes an integer >= ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--tables") o.tables = int(a, argv[++i], 1);
    else if (a === "--groups") o.groups = int(a, argv[++i], 1);
    else if (a === "--targets") o.targets = int(a, argv[++i], 1);
    else if (a === "--rows") o.rows = int(a, argv[++i], 0);
    else if (a === "--processes") o.processes = int(a, argv[++i], 1);
    else if (a === "--concurrency") o.concurrency = int(a, argv[++i], 1);
    else if (a === "--apply-rounds") o.applyRounds = int(a, argv[++i], 1);
    else if (a === "--durability") {
      const d = argv[++i];
      if (d !== "default" && d !== "off") usage("--durability is default or off");
      o.durability = d as Durability;
    } else if (a === "--no-kill") o.kill = false;
    else if (a === "--profile") o.profile = true;
    else if (a === "--native") o.native = true;
    else if (a === "--out") o.out = argv[++i];
    else if (a === "--help" || a === "-h") usage();
    else usage(`unknown argument ${a}`);
  }
  if (o.groups > o.tables) usage("--groups must not exceed --tables");
  if (o.targets > 26) usage("--targets: at most 26");
  return o;
}

function usage(msg?: string): never {
  if (msg) process.stderr.write(`bench:scale: ${msg}\n`);
  process.stderr.write(
    "usage: npm run bench:scale -- [--tables N] [--groups G] [--targets T] [--rows R] [--processes P]\n" +
      "                              [--concurrency C] [--apply-rounds K] [--durability default|off] [--no-kill] [--profile] [--native]\n" +
      "                              [--out FILE]\n",
  );
  process.exit(msg ? 2 : 0);
}

// ---- the shape -------------------------------------------------------------------

class Names {
  constructor(readonly shape: Shape) {}
  private pad(n: number, of: number) {
    return String(n).padStart(Math.max(2, String(of).length), "0");
  }
  table(i: number) {
    return `s.t${this.pad(i, this.shape.tables)}`;
  }
  group(g: number) {
    return `g${this.pad(g, this.shape.groups)}`;
  }
  /** Tables go round-robin over the groups: table i is in group ((i - 1) mod G) + 1. */
  groupOf(i: number) {
    return ((i - 1) % this.shape.groups) + 1;
  }
  target(t: number) {
    return String.fromCharCode(97 + t);
  }
  sub(g: number, t: number) {
    return `${this.group(g)}_${this.target(t)}`;
  }
  get subs(): string[] {
    const out: string[] = [];
    for (let g = 1; g <= this.shape.groups; g++) for (let t = 0; t < this.shape.targets; t++) out.push(this.sub(g, t));
    return out;
  }
}

/** The tables, on the source with their rows, on a target empty and with the copy counter. */
function tablesDdl(n: Names, withRows: boolean): string {
  const { tables, rows } = n.shape;
  const width = Math.max(2, String(tables).length);
  return `create schema s;
    do $$
    declare t text;
    begin
      for i in 1..${tables} loop
        t := format('s.%I', 't' || lpad(i::text, ${width}, '0'));
        execute format('create table %s (id int primary key, grp int not null, val text not null, at timestamptz not null default now())', t);
        ${withRows ? `execute format('insert into %s (id, grp, val) select g, g %% 10, md5(g::text) from generate_series(1, ${rows}) g', t);` : `
        execute format('create trigger bench_copy after truncate on %s for each statement execute function bench_copied()', t);
        execute format('alter table %s enable always trigger bench_copy', t);`}
      end loop;
    end $$;`;
}

/**
 * Every copy empties its target table (TRUNCATE) in the batch's transaction: an
 * ALWAYS trigger (it fires in dbsync's replica mode too) logs each one, and a copy
 * rolled back takes its row with it. So the log holds the copies targets committed.
 */
const COPY_LOG_DDL = `
  create table bench_copies (tbl text not null, at timestamptz not null default clock_timestamp());
  create function bench_copied() returns trigger language plpgsql as $$
  begin
    insert into public.bench_copies (tbl) values (tg_table_schema || '.' || tg_table_name);
    return null;
  end $$;`;

// ---- measurements ------------------------------------------------------------------

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const r = await fn();
  return [performance.now() - t0, r];
}

async function medianMs(times: number, fn: () => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < times; i++) ms.push((await timed(fn))[0]);
  return median(ms)!;
}

interface MicroOps {
  tables: number;
  tablesInGroup: number;
  addTableMs: number | null;
  tickMs: number;
  maintainMs: number;
  maintainPassMs: number;
  executeDdlMs: number;
  /** Relations locked by execute_ddl's transaction before it commits, and how many of them are replicated tables. */
  executeDdlLocks: number;
  executeDdlTableLocks: number;
  statusMs: number;
  tableStatusMs: number;
  scanMs: number;
}

/** The calls whose cost should not grow with tables of other groups, in group 1. */
async function microOps(c: Client, n: Names, tables: number, addTableMs: number[]): Promise<MicroOps> {
  const gid = Number((await c.query("select group_id from dbsync.groups where name = $1", [n.group(1)])).rows[0].group_id);
  const groups = (await c.query("select group_id from dbsync.groups order by 1")).rows.map((r) => Number(r.group_id));
  const tickMs = await medianMs(5, () => c.query("select dbsync.tick($1, true)", [gid]));
  // The sidecar's upkeep pass: every group, one call each (wakeups.ts).
  const perCall: number[] = [];
  const [maintainPassMs] = await timed(async () => {
    for (const g of groups) perCall.push((await timed(() => c.query("select dbsync.maintain($1, '30 s')", [g])))[0]);
  });
  const ddlTable = n.table(1);
  let locks = 0;
  let tableLocks = 0;
  const executeDdlMs = await medianMs(3, async () => {
    await c.query("begin");
    await c.query("select dbsync.execute_ddl($1, $2)", [n.group(1), `alter table ${ddlTable} alter column val set default 'x'`]);
    const { rows } = await c.query(
      `select count(*)::int as locks, count(*) filter (where l.relation in (select relid from dbsync.tables))::int as tables
         from pg_locks l where l.pid = pg_backend_pid() and l.locktype = 'relation'`,
    );
    await c.query("commit");
    locks = rows[0].locks;
    tableLocks = rows[0].tables;
  });
  const statusMs = await medianMs(3, () => c.query("select * from dbsync.status"));
  const tableStatusMs = await medianMs(3, () => c.query("select * from dbsync.table_status"));
  // As the sidecar polls: with the verdicts of the poll before.
  const verdicts = new Map<number, GroupVerdict>();
  await pollWork(c, verdicts);
  const scanMs = await medianMs(3, () => pollWork(c, verdicts));
  return {
    tables,
    tablesInGroup: Math.ceil(tables / n.shape.groups),
    addTableMs: median(addTableMs),
    tickMs,
    maintainMs: median(perCall)!,
    maintainPassMs,
    executeDdlMs,
    executeDdlLocks: locks,
    executeDdlTableLocks: tableLocks,
    statusMs,
    tableStatusMs,
    scanMs,
  };
}

interface ConnStats {
  /** Most connections seen at once, and per kind at their own peaks. */
  max: number;
  maxBy: Record<string, number>;
  samples: number;
}

/**
 * dbsync's connections on one cluster (pg_stat_activity by application_name, the
 * subscription's name dropped), sampled every 200 ms on a connection of its own.
 */
class ConnSampler {
  private samples: { at: number; by: Record<string, number> }[] = [];
  private timer?: NodeJS.Timeout;
  private busy = false;
  private constructor(private readonly c: Client) {}

  static async start(url: string): Promise<ConnSampler> {
    const s = new ConnSampler(await connect(url, "bench sampler"));
    s.timer = setInterval(() => void s.sample(), 200);
    return s;
  }

  private async sample() {
    if (this.busy) return;
    this.busy = true;
    try {
      const { rows } = await this.c.query(
        `select regexp_replace(application_name, '^(dbsync (apply|read|verify)) .*$', '\\1') as kind, count(*)::int as n
           from pg_stat_activity where application_name like 'dbsync%' group by 1`,
      );
      this.samples.push({ at: performance.now(), by: Object.fromEntries(rows.map((r) => [r.kind, r.n])) });
    } catch {
      // A sample lost while the machine is busy: the next one counts.
    } finally {
      this.busy = false;
    }
  }

  stats(from: number, to = performance.now()): ConnStats {
    const win = this.samples.filter((s) => s.at >= from && s.at <= to);
    const maxBy: Record<string, number> = {};
    let max = 0;
    for (const s of win) {
      let total = 0;
      for (const [k, v] of Object.entries(s.by)) {
        maxBy[k] = Math.max(maxBy[k] ?? 0, v);
        total += v;
      }
      max = Math.max(max, total);
    }
    return { max, maxBy, samples: win.length };
  }

  async stop() {
    clearInterval(this.timer);
    await this.c.end().catch(() => undefined);
  }
}

/**
 * A cluster's server CPU over a phase split by backend kind (--profile, --native):
 * client connections by application_name (dbsync's with the subscription's name
 * dropped), the others by backend_type (a walsender's application_name is its
 * subscription's); backends gone by the phase's end are "exited".
 */
class CpuByKind {
  private constructor(
    private readonly c: Client,
    private readonly dataDir: string,
  ) {}

  static async open(url: string, dataDir: string): Promise<CpuByKind> {
    return new CpuByKind(await connect(url, "bench cpu"), dataDir);
  }

  private async kinds(): Promise<Map<number, string>> {
    const { rows } = await this.c.query(
      `select pid, case when backend_type = 'client backend'
                         then coalesce(nullif(regexp_replace(application_name, '^(dbsync (apply|read|verify)) .*$', '\\1'), ''), backend_type)
                         else backend_type end as kind
         from pg_stat_activity`,
    );
    return new Map(rows.map((r) => [r.pid, r.kind]));
  }

  async mark(): Promise<{ cpu: Map<number | string, number>; kinds: Map<number, string> } | null> {
    const cpu = serverCpuByPid(this.dataDir);
    return cpu && { cpu, kinds: await this.kinds() };
  }

  /** CPU-seconds by kind since `before` (mark). */
  async since(before: Awaited<ReturnType<CpuByKind["mark"]>>): Promise<Record<string, number>> {
    const now = await this.mark();
    if (!before || !now) return {};
    const out: Record<string, number> = {};
    const add = (k: string, v: number) => (out[k] = round((out[k] ?? 0) + v, 2));
    for (const [pid, v] of now.cpu) {
      if (typeof pid === "string") add(pid, v - (before.cpu.get(pid) ?? 0));
      else add(now.kinds.get(pid) ?? before.kinds.get(pid) ?? "other", v - (before.cpu.get(pid) ?? 0));
    }
    // A backend gone since: its CPU before the phase is in the exited counter too.
    for (const [pid, v] of before.cpu) if (typeof pid === "number" && !now.cpu.has(pid)) add("exited", -v);
    return out;
  }

  async close() {
    await this.c.end().catch(() => undefined);
  }
}

/** Per subscription, ms from t0 until `done` first lists it; throws at the timeout, with what `stuck` finds. */
async function waitEach(
  stuck: () => Promise<unknown>,
  subs: string[],
  t0: number,
  timeoutS: number,
  done: () => Promise<string[]>,
  sidecars: () => SidecarProcess[],
  what: string,
  everyMs = 100,
): Promise<Record<string, number>> {
  const at: Record<string, number> = {};
  for (;;) {
    for (const s of await done()) at[s] ??= performance.now() - t0;
    if (subs.every((s) => s in at)) return at;
    for (const p of sidecars()) p.assertAlive();
    if (performance.now() - t0 > timeoutS * 1000) {
      throw new Error(`${what}: ${subs.filter((s) => !(s in at)).length} subscription(s) not done after ${timeoutS} s: ${JSON.stringify(await stuck())}`);
    }
    await sleep(everyMs);
  }
}

/** dbsync's subscriptions that are not streaming or have an error, for a timeout's message. */
const dbsyncStuck = (c: Client) => async () =>
  (await c.query("select name, state, last_error from dbsync.status where state <> 'streaming' or last_error is not null limit 5")).rows;

/** Subscriptions all of whose tables are copied (streaming). */
async function copiedSubs(c: Client): Promise<string[]> {
  const { rows } = await c.query(
    `select s.name from dbsync.subscriptions s
      where not exists (select from dbsync.subscription_tables st join dbsync.tables t using (table_id)
                         where st.sub_id = s.sub_id and t.removed_at is null and st.state <> 'streaming')`,
  );
  return rows.map((r) => r.name);
}

/** Subscriptions whose position includes transaction `xid`. */
async function subsPast(c: Client, xid: string): Promise<string[]> {
  const { rows } = await c.query(
    `select s.name from dbsync.subscriptions s
       join dbsync.ticks t on t.group_id = s.group_id and t.tick_id = s.position_tick
      where pg_visible_in_snapshot($1::xid8, t.snap)`,
    [xid],
  );
  return rows.map((r) => r.name);
}

interface ProcStats {
  cpuSeconds: (number | null)[];
  rssMB: (number | null)[];
  peakRssMB: (number | null)[];
}

function procStats(ps: SidecarProcess[], cpuBefore: (number | null)[]): ProcStats {
  const mem = ps.map((p) => processMemory(p.nodePid));
  return {
    cpuSeconds: ps.map((p, i) => {
      const now = processCpuSeconds(p.nodePid);
      return now === null || cpuBefore[i] === null ? null : round(now - cpuBefore[i]!, 2);
    }),
    rssMB: mem.map((m) => (m ? round(m.rss / 2 ** 20, 1) : null)),
    peakRssMB: mem.map((m) => (m ? round(m.hwm / 2 ** 20, 1) : null)),
  };
}

const cpuNow = (ps: SidecarProcess[]) => ps.map((p) => processCpuSeconds(p.nodePid));

/** The source's and the target cluster's server CPU seconds since `before` (serversCpu). */
const serversCpu = (env: BenchEnv) => [serverCpuSeconds(env.source.dataDir), serverCpuSeconds(env.target.dataDir)];
const serversCpuSince = (env: BenchEnv, before: (number | null)[]) =>
  serversCpu(env).map((x, i) => (x === null || before[i] === null ? null : round(x - before[i]!, 1)));

/**
 * The batches the processes logged since `from` (performance.now()): how many, the
 * seconds spent inside them (sum, and the longest), so that time outside batches
 * (waiting for a job, a connection, a lock) shows as the difference.
 */
function batchesSince(ps: SidecarProcess[], from: number) {
  const all = ps.flatMap((p) => p.batches.filter((b) => p.spawnedAt + b.at * 1000 >= from));
  const secs = all.map((b) => b.seconds);
  // Summed over the batches, per-table phases ("merge <table>", "COPY into <table>") as one each.
  const phases: Record<string, number> = {};
  for (const b of all) {
    for (const [k, v] of Object.entries(b.phases)) {
      const k1 = k.replace(/^(merge|COPY into) .*$/, "$1 <table>");
      phases[k1] = (phases[k1] ?? 0) + Number(v) / 1000;
    }
  }
  for (const k of Object.keys(phases)) phases[k] = round(phases[k], 2);
  return {
    phases,
    batches: all.length,
    events: all.reduce((a, b) => a + b.events, 0),
    insideS: round(secs.reduce((a, b) => a + b, 0), 2),
    longestS: round(Math.max(0, ...secs), 3),
    medianS: round(median(secs) ?? 0, 3),
  };
}

function round(v: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function spread(ms: Record<string, number>): { lastS: number; medianS: number } {
  const v = Object.values(ms);
  return { lastS: round(Math.max(...v) / 1000, 2), medianS: round(median(v)! / 1000, 2) };
}

/** Row count and checksum of every table, in one query. */
async function checksums(url: string, n: Names): Promise<Map<string, string>> {
  return withClient(url, async (c) => {
    const parts: string[] = [];
    for (let i = 1; i <= n.shape.tables; i++) {
      parts.push(`select '${n.table(i)}' as t, count(*)::text || ':' || coalesce(sum(hashtext(x::text)::bigint), 0)::text as s from ${n.table(i)} x`);
    }
    const out = new Map<string, string>();
    for (let i = 0; i < parts.length; i += 200) {
      const { rows } = await c.query(parts.slice(i, i + 200).join(" union all "));
      for (const r of rows) out.set(r.t, r.s);
    }
    return out;
  });
}

// ---- where the time goes (--profile) -----------------------------------------------------

/** pg_stat_statements for sessions opened from now on, nested statements included. */
async function profileOn(url: string) {
  await withClient(url, async (c) => {
    const db = (await c.query("select current_database() as d")).rows[0].d;
    await c.query("create extension if not exists pg_stat_statements");
    await c.query(`alter database "${db}" set compute_query_id = on`);
    await c.query(`alter database "${db}" set pg_stat_statements.track = 'all'`);
    await c.query(`alter database "${db}" set pg_stat_statements.track_planning = on`);
  });
}

async function profileReset(url: string) {
  await withClient(url, (c) => c.query("select pg_stat_statements_reset(0, (select oid from pg_database where datname = current_database()), 0)"));
}

/**
 * The statements that took most time since the reset, in this database: those that
 * differ only by the tables they name (a merge of each table, quoted "schema"."name",
 * and the stages, pg_temp."dbsync_stage_<n>") as one, their planning apart.
 */
async function profileTop(url: string, n = 25): Promise<{ ms: number; planMs: number; calls: number; query: string }[]> {
  return withClient(url, async (c) => {
    const { rows } = await c.query(
      `select round(sum(total_exec_time + total_plan_time))::int as ms, round(sum(total_plan_time))::int as "planMs", sum(calls)::int as calls, q as query
         from (select s.*, regexp_replace(left(regexp_replace(query, '(pg_temp|"[^"]*")\\."[^"]*"', '<rel>', 'g'), 160), '\\s+', ' ', 'g') as q
                 from pg_stat_statements s where dbid = (select oid from pg_database where datname = current_database())) x
        group by q order by 1 desc limit $1`,
      [n],
    );
    return rows;
  });
}

// ---- native logical replication, same shape (--native) ----------------------------------

/** One transaction updating 10 rows of every table; `last` is selected just before its commit. */
function touchEveryTable(n: Names, last: string): string {
  const sql = ["begin"];
  for (let i = 1; i <= n.shape.tables; i++) sql.push(`update ${n.table(i)} set val = val || '+' where id <= 10`);
  sql.push(`select ${last}`, "commit");
  return sql.join(";\n");
}

/**
 * What a DBA raises for S subscriptions (the defaults allow 10): on the source a slot
 * and a walsender each, on the target an apply worker and a replication origin
 * (counted by max_replication_slots) each, and background workers for all of them.
 */
function nativeSettings(subs: number): Record<string, number> {
  return { max_wal_senders: subs + 10, max_replication_slots: subs + 10, max_logical_replication_workers: subs + 10, max_worker_processes: subs + 20 };
}

interface NativeScale {
  env: BenchEnv;
  subs: NativeSub[];
  src: Client;
  tgt: Client;
  byKind: CpuByKind[];
  close(): Promise<void>;
}

/**
 * The same tables and rows on the native pair's source and every target database
 * (targets are copies of the first), one publication per group and one subscription
 * per group and target database, without a copy (the data is already there), all
 * streaming when this returns.
 */
async function nativeSetup(env: BenchEnv, n: Names, progress: Progress): Promise<NativeScale> {
  const { shape } = n;
  progress.step(`native: ${shape.tables} tables, ${n.subs.length} subscriptions`);
  const sourceUrl = withDatabase(env.source.url(), "scale");
  const targetUrls = Array.from({ length: shape.targets }, (_, t) => withDatabase(env.target.url(), `scale_${n.target(t)}`));
  await withClient(env.source.url(), (c) => c.query("create database scale"));
  await withClient(sourceUrl, (c) => c.query(tablesDdl(n, true)));
  await withClient(env.target.url(), (c) => c.query(`create database scale_${n.target(0)}`));
  await withClient(targetUrls[0], (c) => c.query(tablesDdl(n, true)));
  for (let t = 1; t < shape.targets; t++) {
    await withClient(env.target.url(), (c) => c.query(`create database scale_${n.target(t)} template scale_${n.target(0)}`));
  }
  const subs: NativeSub[] = [];
  for (let g = 1; g <= shape.groups; g++) {
    const tables = Array.from({ length: shape.tables }, (_, i) => i + 1).filter((i) => n.groupOf(i) === g).map((i) => n.table(i));
    const publication = `pub_${n.group(g)}`;
    await withClient(sourceUrl, (c) => c.query(`create publication ${publication} for table ${tables.join(", ")}`));
    for (let t = 0; t < shape.targets; t++) subs.push(await subscribe(sourceUrl, targetUrls[t], publication, n.sub(g, t), { enabled: true }));
  }
  await waitStreaming(targetUrls[0], subs, 300_000);
  const src = await connect(sourceUrl, "bench");
  const tgt = await connect(targetUrls[0], "bench wait");
  const byKind = [await CpuByKind.open(env.source.url(), env.source.dataDir), await CpuByKind.open(env.target.url(), env.target.dataDir)];
  return {
    env, subs, src, tgt, byKind,
    async close() {
      for (const c of [src, tgt]) await c.end().catch(() => undefined);
      for (const k of byKind) await k.close();
    },
  };
}

/**
 * Subscriptions that applied a transaction committed after `lsn`: a subscription's
 * replication origin (pg_<oid>) advances to a source transaction's commit in the
 * target transaction that applies it, and only transactions on its tables move it.
 */
async function nativeSubsPast(c: Client, lsn: string): Promise<string[]> {
  const { rows } = await c.query(
    `select s.subname from pg_subscription s
       join pg_replication_origin_status o on o.external_id = 'pg_' || s.oid::text
      where o.remote_lsn > $1::pg_lsn`,
    [lsn],
  );
  return rows.map((r) => r.subname);
}

/** dbsync's round r on the native pair: the same transaction, until every subscription applied it. */
async function nativeRound(ns: NativeScale, n: Names, r: number) {
  const srv = serversCpu(ns.env);
  const kinds0 = await Promise.all(ns.byKind.map((k) => k.mark()));
  const load = os.loadavg()[0];
  const results = (await ns.src.query(touchEveryTable(n, "pg_current_wal_insert_lsn()::text as lsn"))) as unknown as { rows: { lsn: string }[] }[];
  const t0 = performance.now();
  const lsn = results[results.length - 2].rows[0].lsn;
  const stuck = async () => (await ns.tgt.query("select * from pg_stat_subscription where pid is null or latest_end_lsn < $1::pg_lsn limit 5", [lsn])).rows;
  const at = await waitEach(stuck, n.subs, t0, 600, () => nativeSubsPast(ns.tgt, lsn), () => [], `native: one transaction, round ${r + 1}`, 20);
  return {
    ...spread(at), load, perSubS: at, serverCpuSeconds: serversCpuSince(ns.env, srv),
    serverCpuByKind: await Promise.all(ns.byKind.map((k, i) => k.since(kinds0[i]))),
  };
}

// ---- the run -------------------------------------------------------------------------

async function main() {
  const shape = parseArgs(process.argv.slice(2));
  assertBuilt();
  const n = new Names(shape);
  const progress = new Progress();
  progress.start();
  progress.phase(`scale ${shape.tables} tables / ${shape.groups} groups / ${n.subs.length} subscriptions`);
  // Connections are what this measures: room for a sidecar that opens too many.
  const env = await startClusters(shape.durability, { max_connections: 1000 });
  const result: Record<string, unknown> = { shape, machine: { cpus: os.cpus().length, memoryGB: round(os.totalmem() / 2 ** 30, 1), load: os.loadavg() }, settings: env.settings };
  const nativeEnv = shape.native ? await startClusters(shape.durability, nativeSettings(n.subs.length)) : null;
  if (nativeEnv) result.nativeSettings = nativeEnv.settings;
  const sidecars: SidecarProcess[] = [];
  try {
    const out = await run(env, nativeEnv, n, progress, sidecars, result);
    progress.stop();
    process.stdout.write(out + "\n");
  } finally {
    progress.stop();
    await Promise.all(sidecars.map((p) => p.stop()));
    await stopClusters(env);
    if (nativeEnv) await stopClusters(nativeEnv);
    const file = shape.out ?? path.join(__dirname, "results", `scale-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    process.stdout.write(`JSON: ${writeJson(file, result)}\n`);
  }
}

async function run(
  env: BenchEnv,
  nativeEnv: BenchEnv | null,
  n: Names,
  progress: Progress,
  sidecars: SidecarProcess[],
  result: Record<string, unknown>,
): Promise<string> {
  const { shape } = n;
  const db = "scale";
  const sourceUrl = withDatabase(env.source.url(), db);
  const targetUrls = Array.from({ length: shape.targets }, (_, t) => withDatabase(env.target.url(), `${db}_${n.target(t)}`));
  progress.step("creating the tables");
  await withClient(env.source.url(), (c) => c.query(`create database ${db}`));
  for (let t = 0; t < shape.targets; t++) await withClient(env.target.url(), (c) => c.query(`create database ${db}_${n.target(t)}`));
  await withClient(sourceUrl, async (c) => {
    await c.query(tablesDdl(n, true));
    await c.query("analyze");
  });
  for (const u of targetUrls) await withClient(u, (c) => c.query(COPY_LOG_DDL + tablesDdl(n, false)));
  await installDbsync(sourceUrl);
  if (shape.profile) for (const u of [sourceUrl, ...targetUrls]) await profileOn(u);

  // Subscriptions first, then the tables in steps, with the per-call costs after each.
  const src = await connect(sourceUrl, "bench");
  const micro: MicroOps[] = [];
  try {
    for (let g = 1; g <= shape.groups; g++) {
      await src.query("select dbsync.create_group($1)", [n.group(g)]);
      for (let t = 0; t < shape.targets; t++) await src.query("select dbsync.add_subscription($1, $2, $3)", [n.sub(g, t), n.group(g), targetUrls[t]]);
    }
    const steps = [...new Set([shape.groups, Math.round(shape.tables / 4), Math.round(shape.tables / 2), shape.tables])]
      .filter((s) => s >= shape.groups && s <= shape.tables)
      .sort((a, b) => a - b);
    let added = 0;
    for (const step of steps) {
      progress.step(`add_table up to ${step} tables`);
      const ms: number[] = [];
      for (; added < step; added++) {
        const i = added + 1;
        ms.push((await timed(() => src.query("select dbsync.add_table($1::regclass, $2)", [n.table(i), n.group(n.groupOf(i))])))[0]);
      }
      micro.push(await microOps(src, n, step, ms));
    }
    result.micro = micro;

    // The initial copy, by P processes at once.
    const sourceConns = await ConnSampler.start(env.source.url());
    const targetConns = await ConnSampler.start(env.target.url());
    try {
      const args = shape.concurrency ? ["--concurrency", String(shape.concurrency)] : [];
      progress.step(`initial copy: ${shape.tables} tables x ${shape.targets} targets by ${shape.processes} processes`);
      const t0 = performance.now();
      for (let p = 0; p < shape.processes; p++) sidecars.push(new SidecarProcess(sourceUrl, args));
      const copied = await waitEach(dbsyncStuck(src), n.subs, t0, 3600, () => copiedSubs(src), () => sidecars, "initial copy", 250);
      const copy = {
        ...spread(copied), perSubS: copied, ...procStats(sidecars, sidecars.map(() => 0)), batches: batchesSince(sidecars, t0),
        conns: { source: sourceConns.stats(t0), target: targetConns.stats(t0) },
      };
      result.copy = copy;
      progress.log(`initial copy: all ${n.subs.length} subscriptions in sync after ${copy.lastS} s`);

      // Idle: every subscription caught up, nothing to do.
      progress.step("idle");
      await sleep(5000);
      const idle0 = performance.now();
      const cpu0 = cpuNow(sidecars);
      const srv0 = serversCpu(env);
      await sleep(10_000);
      const idle = {
        seconds: 10, ...procStats(sidecars, cpu0), serverCpuSeconds: serversCpuSince(env, srv0),
        conns: { source: sourceConns.stats(idle0), target: targetConns.stats(idle0) },
      };
      result.idle = idle;
      const statusMs = await medianMs(5, () => src.query("select * from dbsync.status"));
      result.statusMsAfterCopy = statusMs;

      const native = nativeEnv && (await nativeSetup(nativeEnv, n, progress));
      const nativeRounds: Awaited<ReturnType<typeof nativeRound>>[] = [];
      // One transaction touching every table.
      if (shape.profile) for (const u of [sourceUrl, ...targetUrls]) await profileReset(u);
      const rounds: ({ lastS: number; medianS: number; cpuSeconds: (number | null)[] } & Record<string, unknown>)[] = [];
      const byKind = shape.profile ? [await CpuByKind.open(env.source.url(), env.source.dataDir), await CpuByKind.open(env.target.url(), env.target.dataDir)] : [];
      for (let r = 0; r < shape.applyRounds; r++) {
        progress.step(`one transaction touching all ${shape.tables} tables, round ${r + 1}/${shape.applyRounds}`);
        await sleep(3000);
        const sql = touchEveryTable(n, "pg_current_xact_id()::text as xid");
        const cpu = cpuNow(sidecars);
        const srv = serversCpu(env);
        const kinds0 = await Promise.all(byKind.map((k) => k.mark()));
        const load = os.loadavg()[0];
        const results = (await src.query(sql)) as unknown as { rows: { xid: string }[] }[];
        const t0 = performance.now();
        const xid = results[results.length - 2].rows[0].xid;
        const at = await waitEach(dbsyncStuck(src), n.subs, t0, 600, () => subsPast(src, xid), () => sidecars, "one transaction", 20);
        rounds.push({
          ...spread(at), load, perSubS: at, cpuSeconds: procStats(sidecars, cpu).cpuSeconds, serverCpuSeconds: serversCpuSince(env, srv),
          batches: batchesSince(sidecars, t0),
          conns: { source: sourceConns.stats(t0), target: targetConns.stats(t0) },
          ...(shape.profile ? { serverCpuByKind: await Promise.all(byKind.map((k, i) => k.since(kinds0[i]))) } : {}),
        });
        if (native) nativeRounds.push(await nativeRound(native, n, r));
      }
      for (const k of byKind) await k.close();
      result.apply = { rounds, medianLastS: median(rounds.map((r) => r.lastS)) };
      if (native) result.native = { rounds: nativeRounds, medianLastS: median(nativeRounds.map((r) => r.lastS)) };
      if (shape.profile) result.profile = { source: await profileTop(sourceUrl), target: await profileTop(targetUrls[0]) };
      progress.log(`one transaction: all in sync after ${rounds.map((r) => r.lastS).join(" / ")} s`);

      if (native) await native.close();
      if (shape.kill) result.kill = await killPhase(src, n, progress, sidecars, sourceUrl, targetUrls, args);
    } finally {
      await sourceConns.stop();
      await targetConns.stop();
    }

    // Every table on every target against the source.
    progress.step("comparing every table on every target");
    const want = await checksums(sourceUrl, n);
    const differ: string[] = [];
    for (const [t, u] of targetUrls.entries()) {
      const got = await checksums(u, n);
      for (const [tbl, s] of want) if (got.get(tbl) !== s) differ.push(`${n.target(t)}:${tbl} source ${s} target ${got.get(tbl)}`);
    }
    result.differences = differ;
    result.sidecarProblems = sidecars.map((p) => p.problems().slice(-20));
  } finally {
    await src.end().catch(() => undefined);
  }
  return report(result, n);
}

/**
 * Every table copied again while one process is SIGKILLed once a third of the
 * copies are done, and started again at once.
 */
async function killPhase(src: Client, n: Names, progress: Progress, sidecars: SidecarProcess[], sourceUrl: string, targetUrls: string[], args: string[]) {
  progress.step("resync of every subscription, one process killed at a third");
  const since = (await src.query("select clock_timestamp()::text as t")).rows[0].t as string;
  const t0 = performance.now();
  for (const s of n.subs) await src.query("select dbsync.resync_subscription($1)", [s]);
  const total = n.subs.length * Math.ceil(n.shape.tables / n.shape.groups);
  for (;;) {
    const { rows } = await src.query("select count(*) filter (where state = 'streaming')::int as done, count(*)::int as n from dbsync.subscription_tables");
    if (rows[0].done >= rows[0].n / 3) break;
    for (const p of sidecars) p.assertAlive();
    if (performance.now() - t0 > 3_600_000) throw new Error("resync: a third of the copies not done after an hour");
    await sleep(20);
  }
  const killedAt = performance.now();
  const doneAtKill = Number((await src.query("select count(*) filter (where state = 'streaming') as d from dbsync.subscription_tables")).rows[0].d);
  sidecars[0].proc.kill("SIGKILL");
  await sidecars[0].exited;
  sidecars[0] = new SidecarProcess(sourceUrl, args);
  const at = await waitEach(dbsyncStuck(src), n.subs, t0, 3600, () => copiedSubs(src), () => sidecars, "resync with a kill", 250);
  const copies: Record<string, { once: number; twice: number; none: number }> = {};
  for (const [t, u] of targetUrls.entries()) {
    copies[n.target(t)] = await withClient(u, async (c) => {
      const { rows } = await c.query(
        `select count(*) filter (where k = 1)::int as once, count(*) filter (where k > 1)::int as twice
           from (select tbl, count(*) as k from bench_copies where at > $1::timestamptz group by tbl) x`,
        [since],
      );
      return { once: rows[0].once, twice: rows[0].twice, none: n.shape.tables - rows[0].once - rows[0].twice };
    });
  }
  const r = { ...spread(at), killedAfterS: round((killedAt - t0) / 1000, 2), copiesDoneAtKill: doneAtKill, copiesTotal: total, copies };
  progress.log(`resync with a kill: all in sync after ${r.lastS} s; copies per target table: ${JSON.stringify(copies)}`);
  return r;
}

// ---- report ----------------------------------------------------------------------------

function report(r: Record<string, any>, n: Names): string {
  const { shape } = n;
  const lines: string[] = [];
  const sum = (xs: (number | null)[]) => round(xs.reduce<number>((a, b) => a + (b ?? 0), 0), 1);
  const serverCpu = (rounds: any[]) => rounds.map((x) => x.serverCpuSeconds.join(" + ")).join(" / ") + " s";
  const loads = (rounds: any[]) => rounds.map((x) => x.load.toFixed(1)).join(" / ");
  lines.push(
    `bench:scale, PostgreSQL ${r.settings.source.server_version}, ${shape.durability === "default" ? "initdb defaults (fsync on)" : "fsync off"}: ` +
      `${shape.tables} tables x ${shape.rows} rows, ${shape.groups} groups x ${shape.targets} targets = ${n.subs.length} subscriptions, ` +
      `${shape.processes} processes${shape.concurrency ? ` --concurrency ${shape.concurrency}` : ""}; ${r.machine.cpus} CPUs, load at start ${r.machine.load.map((x: number) => x.toFixed(1)).join(" ")}`,
    "",
  );
  const rows: [string, string, string][] = [];
  const c = r.copy;
  rows.push(["initial copy, until every subscription streams (last / median)", `${c.lastS} / ${c.medianS} s`, "<= 60 s"]);
  rows.push(["  per table copied (last / tables x targets)", `${round((c.lastS * 1000) / (shape.tables * shape.targets), 1)} ms`, "<= 20 ms"]);
  rows.push(["  sidecar CPU (sum of processes)", `${sum(c.cpuSeconds)} s`, ""]);
  const phasesOf = (b: any) =>
    Object.entries(b.phases as Record<string, number>)
      .sort((x, y) => y[1] - x[1])
      .slice(0, 6)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
  const inside = (b: any) => `${b.batches} batches, ${b.insideS} s inside them (median ${b.medianS} s, longest ${b.longestS} s)`;
  rows.push(["  batches", inside(c.batches), ""]);
  rows.push(["  their phases (s, summed; overlapping)", phasesOf(c.batches), ""]);
  if (r.apply) {
    rows.push(["one transaction touching every table, until all in sync (median of rounds)", `${r.apply.medianLastS} s (${r.apply.rounds.map((x: any) => x.lastS).join(" / ")})`, "<= 3 s"]);
    rows.push(["  sidecar CPU per round (sum of processes)", `${r.apply.rounds.map((x: any) => sum(x.cpuSeconds)).join(" / ")} s`, ""]);
    rows.push(["  server CPU per round, source + target cluster", serverCpu(r.apply.rounds), ""]);
    rows.push(["  load average (1 min) at each round's start", loads(r.apply.rounds), ""]);
    rows.push(["  batches (last round)", inside(r.apply.rounds.at(-1).batches), ""]);
    rows.push(["  their phases (s, summed; overlapping)", phasesOf(r.apply.rounds.at(-1).batches), ""]);
  }
  if (r.native) {
    rows.push(["native logical replication, the same transaction after each round, until all in sync", `${r.native.medianLastS} s (${r.native.rounds.map((x: any) => x.lastS).join(" / ")})`, "<= 3 s"]);
    rows.push(["  server CPU per round, source + target cluster", serverCpu(r.native.rounds), ""]);
    rows.push(["  load average (1 min) at each round's start", loads(r.native.rounds), ""]);
  }
  const conns = (s: ConnStats) => `${s.max} (${Object.entries(s.maxBy).map(([k, v]) => `${k.replace(/^dbsync /, "")} ${v}`).join(", ")})`;
  rows.push(["connections on the source, max: while copying", conns(c.conns.source), ""]);
  if (r.apply) rows.push(["  while applying (last round)", conns(r.apply.rounds.at(-1).conns.source), `<= a few + ${n.shape.processes} x concurrency`]);
  rows.push(["  idle", conns(r.idle.conns.source), ""]);
  rows.push(["connections on the target cluster, max: while copying", conns(c.conns.target), ""]);
  if (r.apply) rows.push(["  while applying (last round)", conns(r.apply.rounds.at(-1).conns.target), ""]);
  rows.push(["  idle", conns(r.idle.conns.target), "none, or one per target"]);
  rows.push(["sidecar RSS after the copy, per process (peak)", `${r.idle.rssMB.join(" / ")} MB (${c.peakRssMB.join(" / ")})`, "<= 300 MB"]);
  rows.push(["server CPU while idle, source / target cluster", r.idle.serverCpuSeconds.map((x: number | null) => (x === null ? "?" : `${round((x / r.idle.seconds) * 100, 1)}%`)).join(" / "), ""]);
  rows.push(["sidecar CPU while idle, per process", `${r.idle.cpuSeconds.map((x: number | null) => (x === null ? "?" : `${round((x / r.idle.seconds) * 100, 1)}%`)).join(" / ")}`, ""]);
  rows.push([`select * from dbsync.status, ${n.subs.length} subscriptions (after the copy)`, `${round(r.statusMsAfterCopy, 1)} ms`, "<= 100 ms"]);
  if (r.kill) {
    const k = r.kill;
    rows.push([`resync of everything, one process SIGKILLed after ${k.killedAfterS} s (${k.copiesDoneAtKill}/${k.copiesTotal} copies done): until all stream`, `${k.lastS} s`, ""]);
    rows.push(["  table copies committed per target table (once / twice or more / none)", Object.entries(k.copies).map(([t, x]: [string, any]) => `${t}: ${x.once}/${x.twice}/${x.none}`).join(", "), "all once"]);
  }
  rows.push(["tables differing from the source afterwards", String(r.differences.length), "0"]);
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(...rows.map((x) => x[1].length));
  for (const [a, b, t] of rows) lines.push(`${a.padEnd(w0)}  ${b.padEnd(w1)}  ${t}`);
  lines.push("", "per-call costs while tables were added (ms; upkeep: per group / a pass over all groups; locks: relations / replicated tables):");
  const head = ["tables", "in group", "add_table", "tick", "upkeep", "upkeep pass", "execute_ddl", "its locks", "status", "table_status", "scan"];
  const body = (r.micro as MicroOps[]).map((m) => [
    m.tables, m.tablesInGroup, m.addTableMs === null ? "" : m.addTableMs.toFixed(1), m.tickMs.toFixed(1), m.maintainMs.toFixed(1),
    m.maintainPassMs.toFixed(0), m.executeDdlMs.toFixed(1), `${m.executeDdlLocks}/${m.executeDdlTableLocks}`, m.statusMs.toFixed(1),
    m.tableStatusMs.toFixed(1), m.scanMs.toFixed(1),
  ].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  lines.push(head.map((h, i) => h.padStart(widths[i])).join("  "));
  for (const b of body) lines.push(b.map((x, i) => x.padStart(widths[i])).join("  "));
  const byKind = (title: string, rounds: any[]) => {
    lines.push("", `${title} per round by backend kind (s, rounds separated by /):`);
    for (const [i, side] of ["source", "target cluster"].entries()) {
      const kinds = [...new Set(rounds.flatMap((x) => Object.keys(x.serverCpuByKind[i])))] as string[];
      const per = kinds.map((k) => [k, rounds.map((x) => x.serverCpuByKind[i][k] ?? 0)] as [string, number[]]);
      per.sort((a, b) => median(b[1])! - median(a[1])!);
      lines.push(`  ${side}: ` + per.filter(([, v]) => v.some((x) => x >= 0.05)).map(([k, v]) => `${k} ${v.join("/")}`).join(", "));
    }
  };
  if (r.apply?.rounds[0]?.serverCpuByKind) byKind("server CPU", r.apply.rounds);
  if (r.native) byKind("native: server CPU", r.native.rounds);
  if (r.profile) {
    for (const side of ["source", "target"]) {
      lines.push("", `where the apply rounds' time went on the ${side}${side === "target" ? " (first target database)" : ""} (pg_stat_statements, nested statements included, those differing by their tables as one: ms, of it planning, calls, statement):`);
      for (const x of r.profile[side]) lines.push(`${String(x.ms).padStart(7)} ${String(x.planMs).padStart(6)} ${String(x.calls).padStart(7)}  ${x.query}`);
    }
  }
  if (r.differences.length) lines.push("", "differences:", ...r.differences.slice(0, 20));
  const problems = (r.sidecarProblems as string[][]).flat();
  if (problems.length) lines.push("", `sidecar warnings/errors (last ${problems.length}):`, ...problems.slice(-10).map((l) => l.slice(0, 300)));
  return lines.join("\n");
}

main().catch(async (err) => {
  process.stderr.write(`bench:scale failed: ${(err as Error).stack ?? err}\n`);
  await stopAll().catch(() => undefined);
  process.exit(1);
});
