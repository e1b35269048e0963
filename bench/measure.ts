// Measurement: statistics, process memory, queue size, and the
// commit-to-visible latency probe.
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { ident, sleep } from "./workloads";

export function median(xs: (number | null | undefined)[]): number | null {
  const v = xs.filter((x): x is number => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Nearest-rank percentile of an already sorted array. */
export function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export function now(): number {
  return performance.now();
}

// ---- CPU use -------------------------------------------------------------------

export interface CpuSample {
  busy: number;
  total: number;
}

/** The machine's CPU time counters (/proc/stat, all CPUs): busy and total jiffies. */
export function cpuSample(): CpuSample {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}

/** Share of all CPUs busy between two samples (0..1), whoever used them. */
export function cpuBusy(a: CpuSample, b: CpuSample): number {
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

// ---- process memory ----------------------------------------------------------

/**
 * The process whose memory is the sidecar's. `node bin/dbsync.js run` runs the CLI
 * in that very node process, so normally this is `pid` itself. If a wrapper ever
 * forks a node child instead, follow it down to the node process that has no node
 * child.
 */
export function sidecarNodePid(pid: number): number {
  for (let depth = 0; depth < 4; depth++) {
    const kids = childrenOf(pid).filter((k) => /node/.test(readCmd(k)));
    if (!kids.length) return pid;
    pid = kids[0];
  }
  return pid;
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const s = fs.readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (s) out.push(...s.split(/\s+/).map(Number));
    }
  } catch {
    /* gone */
  }
  return out;
}

function readCmd(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

/** VmHWM (peak resident set size) and VmRSS of a live process, in bytes. */
export function processMemory(pid: number): { hwm: number; rss: number } | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
    return { hwm: kb("VmHWM"), rss: kb("VmRSS") };
  } catch {
    return null;
  }
}

/**
 * The fields of /proc/<pid>/stat after the command name (which is in parentheses
 * and may hold spaces): [0] is field 3 of proc(5), state. Null when the process is gone.
 */
function procStat(pid: number | string): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** Clock ticks (USER_HZ: 100 on Linux) of the stat fields at these indexes, summed. */
const ticksOf = (f: string[], ...at: number[]) => at.reduce((sum, i) => sum + Number(f[i]), 0);

/** CPU time (user + system) a live process has used so far, seconds (clock ticks of 10 ms). */
export function processCpuSeconds(pid: number): number | null {
  const f = procStat(pid);
  return f && ticksOf(f, 11, 12) / 100; // utime, stime (fields 14 and 15)
}

/**
 * CPU time (user + system) a PostgreSQL server has used so far, seconds: its
 * postmaster's, its live backends' and, through the postmaster's children
 * counters, those of the backends that have exited.
 */
export function serverCpuSeconds(dataDir: string): number | null {
  const byPid = serverCpuByPid(dataDir);
  return byPid && [...byPid.values()].reduce((sum, s) => sum + s, 0);
}

/**
 * A PostgreSQL server's CPU time so far, seconds, per live child of its postmaster
 * (by pid), and what its exited children used ("exited", the postmaster's children
 * counters) and the postmaster itself: to split a phase's server CPU by backend.
 */
export function serverCpuByPid(dataDir: string): Map<number | "exited" | "postmaster", number> | null {
  let pm: number;
  try {
    pm = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return null;
  }
  const f = procStat(pm);
  if (!f) return null;
  const out = new Map<number | "exited" | "postmaster", number>([
    ["postmaster", ticksOf(f, 11, 12) / 100],
    ["exited", ticksOf(f, 13, 14) / 100],
  ]);
  for (const kid of childrenOf(pm)) {
    const g = procStat(kid);
    if (g) out.set(kid, ticksOf(g, 11, 12) / 100);
  }
  return out;
}

/**
 * CPU time (user + system, seconds) of each live backend of the database `client`
 * is connected to whose application_name starts with `prefix`, by pid: a server's
 * share of the work of one program (the sidecar's connections) while other
 * sessions (the paced load, the probe) use the same server.
 */
export async function backendCpuSeconds(client: Client, prefix: string): Promise<Map<number, number>> {
  const { rows } = await client.query<{ pid: number }>(
    "select pid from pg_stat_activity where datname = current_database() and application_name like $1 || '%'",
    [prefix],
  );
  const out = new Map<number, number>();
  for (const { pid } of rows) {
    const s = processCpuSeconds(pid);
    if (s !== null) out.set(pid, s);
  }
  return out;
}

/** CPU seconds used between two backendCpuSeconds samples (a backend new since the first: all of its time). */
export function backendCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
  return sum;
}

// ---- queue size ----------------------------------------------------------------

/** On-disk bytes of every leaf partition of dbsync.events (heap, TOAST, indexes). */
export async function queueBytes(source: Client): Promise<number> {
  const { rows } = await source.query(
    `select coalesce(sum(pg_total_relation_size(relid)), 0)::float8 as b
       from pg_partition_tree('dbsync.events') where isleaf`,
  );
  return rows[0].b;
}

// ---- latency probe -----------------------------------------------------------------

/**
 * Commit-to-visible latency of the history rows of one schema, observed on the target.
 *
 * Method: every history row carries `mtime = clock_timestamp()` taken by the source in
 * the transaction's last statement, right before COMMIT (same round trip), so mtime is
 * the source commit time to within the commit's own duration (well under 1 ms here,
 * synchronous_commit = off). A probe session on the target polls every `intervalMs`
 * for rows it has not seen yet and stamps each with the target's clock_timestamp(),
 * evaluated while the query runs, i.e. after its snapshot was taken: a row it returns
 * became visible at or before that moment, and after the previous poll's snapshot,
 * which did not see it. latency = seen - mtime is therefore an upper bound that
 * overstates the true value by less than one poll interval plus one poll query.
 * The polls run inside the server, in one DO block that commits after each (no
 * snapshot held between polls: the target's tables stay prunable) and sends what it
 * saw as NOTICEs: no round trip and no wake-up of this process per poll. (Polled from
 * here, a poll waited for this process's event loop, busy with the paced load's
 * clients, and for three wake-ups on a busy machine: 45 polls a second of the 200
 * asked for at load 14, 23 ms of a change's mean path.) It ends when this process
 * gives up the advisory lock that its other session holds, or closes that session.
 * Both servers run on this machine and read the same system clock, so the two
 * timestamps are directly comparable. (Commit timestamps on the target are not used:
 * native logical replication stamps an applied transaction with the origin's commit
 * time, which would make it look instantaneous.) Rows are found by key above a
 * low-water mark that advances over the contiguous seen prefix, so rows committed out
 * of key order are neither missed nor counted twice; a key that never arrives (a
 * rolled-back insert's sequence value) is passed after 10 s without progress.
 * Needs PostgreSQL 11 (COMMIT in a DO block).
 */
export class LatencyProbe {
  private seen = new Map<number, number>(); // hid -> latency ms
  private poller?: Client;
  private stopper?: Client;
  private loop?: Promise<unknown>;
  private error?: unknown;
  polls = 0;

  constructor(
    private readonly url: string,
    private readonly schema: string,
    private readonly intervalMs = 1,
  ) {}

  async start(): Promise<void> {
    this.stopper = await connectProbe(this.url, "bench probe stop");
    this.poller = await connectProbe(this.url, "bench probe");
    await this.stopper.query("select pg_advisory_lock($1)", [PROBE_LOCK]);
    const { rows } = await this.poller.query(`select coalesce(max(hid), 0)::bigint::text as m from ${ident(this.schema)}.history`);
    this.poller.on("notice", (n) => {
      const [kind, ...words] = (n.message ?? "").split(" ");
      if (kind === "polls") this.polls = Number(words[0]);
      if (kind !== "seen") return;
      for (const w of words) {
        const [hid, ms] = w.split(":").map(Number);
        if (!this.seen.has(hid)) this.seen.set(hid, ms);
      }
    });
    this.loop = this.poller.query(probeLoop(this.schema, rows[0].m, this.intervalMs)).catch((err: unknown) => {
      this.error = err;
    });
  }

  /**
   * Waits until every hid in `expected` was seen, then stops. Gives up at the
   * timeout, or when no new row arrived for `stallMs`.
   */
  async finish(expected: number[], timeoutMs: number, stallMs = 60_000): Promise<{ latencies: number[]; missing: number; byHid: Map<number, number> }> {
    const deadline = now() + timeoutMs;
    let count = -1;
    let movedAt = now();
    try {
      while (now() < deadline && !this.error && !expected.every((h) => this.seen.has(h))) {
        if (this.seen.size !== count) {
          count = this.seen.size;
          movedAt = now();
        } else if (now() - movedAt > stallMs) break;
        await sleep(50);
      }
      await this.stopper!.query("select pg_advisory_unlock($1)", [PROBE_LOCK]);
      await this.loop;
    } finally {
      await Promise.all([this.stopper!.end(), this.poller!.end()].map((p) => p.catch(() => undefined)));
    }
    if (this.error) throw this.error;
    const latencies: number[] = [];
    const byHid = new Map<number, number>();
    let missing = 0;
    for (const h of expected) {
      const v = this.seen.get(h);
      if (v === undefined) missing++;
      else {
        latencies.push(v);
        byHid.set(h, v);
      }
    }
    return { latencies: latencies.sort((a, b) => a - b), missing, byHid };
  }
}

/** The advisory lock whose holder keeps the probe's loop polling (one probe per database). */
const PROBE_LOCK = 4_150_015;

async function connectProbe(url: string, applicationName: string): Promise<Client> {
  const c = new Client({ connectionString: url, application_name: applicationName });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

/**
 * The probe's polls, in the server: each sends the rows above `low` it has not seen as
 * one NOTICE "seen hid:ms ...", then commits and sleeps; the last NOTICE is "polls n".
 * `v_above`: the keys seen above the low-water mark, which moves up over the ones that
 * follow it without a gap.
 */
function probeLoop(schema: string, low: string, intervalMs: number): string {
  if (!/^[0-9]+$/.test(low)) throw new Error(`not a key: ${low}`);
  return `do $probe$
declare
  v_low bigint := ${low};
  v_above bigint[] := '{}';
  v_hids bigint[];
  v_text text;
  v_next bigint;
  v_polls bigint := 0;
  v_moved timestamptz := clock_timestamp();
begin
  while not pg_try_advisory_lock_shared(${PROBE_LOCK}) loop
    select array_agg(x.hid), string_agg(x.hid || ':' || x.ms, ' ') into v_hids, v_text
    from (select h.hid, extract(epoch from clock_timestamp() - h.mtime) * 1000 as ms
          from ${ident(schema)}.history h where h.hid > v_low and h.hid <> all (v_above)) x;
    v_polls := v_polls + 1;
    if v_hids is not null then
      raise notice 'seen %', v_text;
      v_above := v_above || v_hids;
      select coalesce(max(y.x), v_low) into v_next
      from (select u.x, u.x - row_number() over (order by u.x) as gap from unnest(v_above) u(x)) y where y.gap = v_low;
      if v_next > v_low then
        v_low := v_next;
        v_above := array(select u.x from unnest(v_above) u(x) where u.x > v_low);
        v_moved := clock_timestamp();
      end if;
    end if;
    if cardinality(v_above) > 0 and clock_timestamp() - v_moved > interval '10 s' then
      v_low := (select min(u.x) from unnest(v_above) u(x)) - 1;
      v_moved := clock_timestamp();
    end if;
    commit;
    perform pg_sleep(${intervalMs / 1000});
  end loop;
  raise notice 'polls %', v_polls;
end
$probe$`;
}
