// dbsync's side of the benchmark: install it on a source database, put table sets
// into groups and subscribe them, run the sidecar as a child process (exactly as a
// user would: `node bin/dbsync.js run --source URL`, the built code), and wait for sync.
import { ChildProcess } from "node:child_process";
import { migrate } from "../src/migrate";
import { DbsyncProcess, spawnDbsync } from "../test/kit/dbsync";
import { connect, withClient } from "./clusters";
import { processMemory, sidecarNodePid } from "./measure";
import { sleep } from "./workloads";

/** The sidecar runs the compiled code in dist/ (`npm run bench` builds it first). */
export { assertBuilt, DBSYNC_BIN as SIDECAR_BIN } from "../test/kit/dbsync";

export async function installDbsync(sourceUrl: string): Promise<void> {
  await migrate(sourceUrl);
}

/** Adds `tables` to group `group` and subscribes the target (copy_data => false). */
export async function subscribe(sourceUrl: string, targetUrl: string, group: string, tables: string[], sub: string) {
  await withClient(sourceUrl, async (c) => {
    for (const t of tables) await c.query("select dbsync.add_table($1::regclass, $2)", [t, group]);
    await c.query("select dbsync.add_subscription($1, $2, $3, copy_data => false)", [sub, group, targetUrl]);
  });
}

export async function setPaused(sourceUrl: string, subs: string[], paused: boolean) {
  await withClient(sourceUrl, (c) =>
    c.query(`select dbsync.${paused ? "pause" : "resume"}(s) from unnest($1::text[]) s`, [subs]),
  );
}

export async function statusRows(sourceUrl: string): Promise<Record<string, unknown>[]> {
  return withClient(sourceUrl, async (c) => (await c.query("select * from dbsync.status order by name")).rows).catch(
    (err) => [{ error: (err as Error).message }],
  );
}

/**
 * Calls dbsync.wait_for_sync for every subscription in parallel (one connection
 * each); resolves with each one's elapsed ms from `t0`. Throws at the timeout, or
 * sooner when the subscription reports an error and has not moved for `stallS`
 * seconds (the sidecar retries errors with back-off; a persistent one would
 * otherwise only show at the timeout).
 */
export async function waitForSync(sourceUrl: string, subs: string[], t0: number, timeoutS: number, sidecar?: SidecarProcess, stallS = 60) {
  const elapsed: Record<string, number> = {};
  await Promise.all(
    subs.map(async (s) => {
      const c = await connect(sourceUrl, "bench wait");
      try {
        const deadline = performance.now() + timeoutS * 1000;
        let last = "";
        let movedAt = performance.now();
        for (;;) {
          // Short calls: a dead sidecar is noticed, and no transaction stays open for minutes.
          const { rows } = await c.query("select dbsync.wait_for_sync($1, '5 s') as ok", [s]);
          if (rows[0].ok) break;
          sidecar?.assertAlive();
          const st = (await c.query("select * from dbsync.status where name = $1", [s])).rows[0] ?? {};
          const pos = `${st.last_applied_tick}/${st.events_applied}`;
          if (pos !== last) {
            last = pos;
            movedAt = performance.now();
          }
          const stalled = st.last_error && performance.now() - movedAt > stallS * 1000;
          if (stalled || performance.now() > deadline) {
            throw new Error(
              `subscription ${s} not in sync after ${Math.round((performance.now() - t0) / 1000)} s` +
                `${stalled ? ` (stuck for ${stallS} s with an error)` : ""}; status: ${JSON.stringify(st)}`,
            );
          }
        }
        elapsed[s] = performance.now() - t0;
      } finally {
        await c.end().catch(() => undefined);
      }
    }),
  );
  return elapsed;
}

export const SIDECAR_ARGS: string[] = [];

export interface BatchStats {
  batches: number;
  events: number;
  /** Sum of the time spent inside applyBatch (read on the source, write on the target). */
  applySeconds: number;
  medianBatchSeconds: number | null;
  maxBatchSeconds: number | null;
  medianBatchEvents: number | null;
  /**
   * Milliseconds per phase summed over the batches, by the sidecar's clock (the
   * "batch applied" lines' phases: plan, stream, stage COPY, merge <table>, the
   * waits of each server for the other, commit ...; src/target/phases.ts).
   */
  phases: Record<string, number>;
}

/**
 * Where a sidecar's start went, in seconds from the spawn of `node bin/dbsync.js run`,
 * read from its debug log (pino's `time`, the same system clock as this process):
 *  - loaded: node started and the modules are loaded (the "sidecar starting" line
 *    carries the process's own uptime, which is more exact than its log time);
 *  - runnerStarted: graphile-worker's runner is up;
 *  - running: every subscription woken, LISTEN connected, first scan done;
 *  - firstJob: the first apply job started (graphile-worker picked up the wake-up);
 *  - firstBatchStart / firstBatchEnd: the first batch with events (its start is its
 *    end minus the seconds it reports: reader transaction, plan, apply, commit).
 * `cpu` holds the CPU seconds (user + system) the process had used at the first
 * four points (the lines carry process.cpuUsage()): on a busy machine wall times
 * stretch, CPU times much less. Null where a line was not seen (an older sidecar).
 */
export interface StartupTimeline {
  loaded: number | null;
  runnerStarted: number | null;
  running: number | null;
  firstJob: number | null;
  firstBatchStart: number | null;
  firstBatchEnd: number | null;
  firstBatchEvents: number | null;
  cpu: { loaded: number | null; runnerStarted: number | null; running: number | null; firstJob: number | null };
}

/** `dbsync run` (the built bin/dbsync.js) as a child process, with its log kept for error reports. */
export class SidecarProcess {
  readonly proc: ChildProcess;
  private readonly child: DbsyncProcess;
  private log: string[] = [];
  private readyLine = false;
  /**
   * Every "batch applied" debug line: events, seconds inside applyBatch, when it was
   * logged (s from spawn), and the moments it passed its steps (epoch ms; see
   * latency-breakdown.ts).
   */
  readonly batches: { events: number; seconds: number; at: number; phases: Record<string, number>; steps: Record<string, number> }[] = [];
  /** First time (s from spawn) each start-up line was seen; "loaded" from the child's own uptime. */
  private marks: Record<string, number> = {};
  private cpuMarks: Record<string, number> = {};
  /** performance.now() in this process at the spawn. */
  readonly spawnedAt: number;
  private readonly spawnedEpochMs: number;
  private exitInfo?: string;
  readonly exited: Promise<number | null>;

  constructor(readonly sourceUrl: string, args: string[] = SIDECAR_ARGS) {
    this.spawnedAt = performance.now();
    this.spawnedEpochMs = performance.timeOrigin + this.spawnedAt;
    this.child = spawnDbsync(["run", "--source", sourceUrl, ...args], {
      // debug: one "batch applied" line per batch (events, seconds) for the profile,
      // and the start-up lines for the timeline.
      env: { DBSYNC_LOG_LEVEL: "debug" },
      onLine: (line) => this.line(line),
    });
    this.proc = this.child.proc;
    this.exited = this.child.exited.then((code) => {
      this.exitInfo = `exited with code ${code}${this.proc.signalCode ? ` (signal ${this.proc.signalCode})` : ""}`;
      return code;
    });
  }

  private line(line: string) {
    if (!line) return;
    let j: Record<string, unknown> | undefined;
    if (line.startsWith("{")) {
      try {
        j = JSON.parse(line);
      } catch {
        /* not JSON after all */
      }
    }
    const at = j && typeof j.time === "number" ? (j.time - this.spawnedEpochMs) / 1000 : (performance.now() - this.spawnedAt) / 1000;
    const msg = j?.msg;
    if (msg === "batch applied") {
      const record = (v: unknown) => (typeof v === "object" && v ? (v as Record<string, number>) : {});
      this.batches.push({ events: Number(j!.events), seconds: Number(j!.seconds), at, phases: record(j!.phases), steps: record(j!.at) });
      return;
    }
    if (msg === "dbsync sidecar running") this.readyLine = true;
    if (msg === "sidecar starting" && typeof j!.uptimeMs === "number") this.marks.loaded ??= j!.uptimeMs / 1000;
    const mark = {
      "sidecar starting": "loaded", "job runner started": "runnerStarted", "dbsync sidecar running": "running", "apply job started": "firstJob",
    }[msg as string];
    if (mark && mark !== "loaded") this.marks[mark] ??= at;
    if (mark && typeof j!.cpuMs === "number") this.cpuMarks[mark] ??= j!.cpuMs / 1000;
    this.log.push(line);
    if (this.log.length > 400) this.log.splice(0, this.log.length - 300);
  }

  /** The node process that runs the sidecar (see sidecarNodePid). */
  get nodePid(): number {
    return sidecarNodePid(this.proc.pid!);
  }

  output(lines = 40): string {
    return this.log.slice(-lines).join("\n");
  }

  /** Batches applied so far: count, events, seconds inside applyBatch (sum, median, max). */
  batchStats(): BatchStats {
    const secs = this.batches.map((b) => b.seconds).sort((a, b) => a - b);
    const evs = this.batches.map((b) => b.events).sort((a, b) => a - b);
    const phases: Record<string, number> = {};
    for (const b of this.batches) for (const [k, v] of Object.entries(b.phases)) phases[k] = (phases[k] ?? 0) + Number(v);
    return {
      phases,
      batches: secs.length,
      events: evs.reduce((a, b) => a + b, 0),
      applySeconds: secs.reduce((a, b) => a + b, 0),
      medianBatchSeconds: secs.length ? secs[Math.floor(secs.length / 2)] : null,
      maxBatchSeconds: secs.length ? secs[secs.length - 1] : null,
      medianBatchEvents: evs.length ? evs[Math.floor(evs.length / 2)] : null,
    };
  }

  /** See StartupTimeline. Read it after stop(): every log line is in then. */
  startup(): StartupTimeline {
    const first = this.batches.find((b) => b.events > 0);
    const m = (k: string) => this.marks[k] ?? null;
    const c = (k: string) => this.cpuMarks[k] ?? null;
    return {
      loaded: m("loaded"), runnerStarted: m("runnerStarted"), running: m("running"), firstJob: m("firstJob"),
      firstBatchStart: first ? first.at - first.seconds : null,
      firstBatchEnd: first ? first.at : null,
      firstBatchEvents: first ? first.events : null,
      cpu: { loaded: c("loaded"), runnerStarted: c("runnerStarted"), running: c("running"), firstJob: c("firstJob") },
    };
  }

  /** Warnings and errors the sidecar logged (pino levels >= 40). */
  problems(): string[] {
    return this.log.filter((l) => /"level":(4|5|6)\d/.test(l) || !l.startsWith("{"));
  }

  assertAlive() {
    if (this.exitInfo) throw new Error(`the sidecar ${this.exitInfo}:\n${this.output()}`);
  }

  /** Resolves once the sidecar logged that it runs and its LISTEN connection is up. */
  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const db = new URL(this.sourceUrl).pathname.slice(1);
    for (;;) {
      this.assertAlive();
      if (this.readyLine) {
        const listening = await withClient(this.sourceUrl, async (c) =>
          (await c.query("select 1 from pg_stat_activity where datname = $1 and application_name = 'dbsync listen'", [db])).rowCount,
        );
        if (listening) return;
      }
      if (performance.now() > deadline) throw new Error(`the sidecar did not start in ${timeoutMs / 1000} s:\n${this.output()}`);
      await sleep(50);
    }
  }

  /** Peak and current resident set size of the sidecar's node process, bytes. */
  memory(): { hwm: number; rss: number } | null {
    return processMemory(this.nodePid);
  }

  /** SIGTERM (the sidecar drains and exits 0); SIGKILL after 20 s. Returns the exit code. */
  async stop(): Promise<number | null> {
    if (this.exitInfo) return this.proc.exitCode;
    const code = await this.child.stop("SIGTERM", 20_000);
    await this.exited;
    return code;
  }
}
