// dbsync's side of the benchmark: install it on a source database, put table sets
// into groups and subscribe them, run the sidecar as a child process (exactly as a
// user would: `node --import tsx src/cli.ts run --source URL`), and wait for sync.
import { ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { migrate } from "../src/migrate";
import { connect, withClient } from "./clusters";
import { processMemory, sidecarNodePid } from "./measure";
import { sleep } from "./workloads";

const ROOT = path.join(__dirname, "..");

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
}

/** `dbsync run` as a child process, with its log kept for error reports. */
export class SidecarProcess {
  readonly proc: ChildProcess;
  private log: string[] = [];
  private readyLine = false;
  /** Every "batch applied" debug line: events and seconds inside applyBatch. */
  readonly batches: { events: number; seconds: number }[] = [];
  private exitInfo?: string;
  readonly exited: Promise<number | null>;

  constructor(readonly sourceUrl: string, args: string[] = SIDECAR_ARGS) {
    this.proc = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src", "cli.ts"), "run", "--source", sourceUrl, ...args], {
      cwd: ROOT,
      // debug: one "batch applied" line per batch (events, seconds) for the profile.
      env: { ...process.env, DBSYNC_LOG_LEVEL: "debug" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const collect = (b: Buffer) => {
      for (const line of b.toString().split("\n")) {
        if (!line) continue;
        if (line.includes("dbsync sidecar running")) this.readyLine = true;
        if (line.includes('"msg":"batch applied"')) {
          try {
            const j = JSON.parse(line);
            this.batches.push({ events: Number(j.events), seconds: Number(j.seconds) });
          } catch {
            /* not JSON after all */
          }
          continue;
        }
        this.log.push(line);
        if (this.log.length > 400) this.log.splice(0, this.log.length - 300);
      }
    };
    this.proc.stdout!.on("data", collect);
    this.proc.stderr!.on("data", collect);
    // "close": the process exited and its stdout/stderr are read to the end.
    this.exited = new Promise((r) =>
      this.proc.once("close", (code, sig) => {
        this.exitInfo = `exited with code ${code}${sig ? ` (signal ${sig})` : ""}`;
        r(code);
      }),
    );
    live.add(this.proc);
    this.proc.once("exit", () => live.delete(this.proc));
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
    return {
      batches: secs.length,
      events: evs.reduce((a, b) => a + b, 0),
      applySeconds: secs.reduce((a, b) => a + b, 0),
      medianBatchSeconds: secs.length ? secs[Math.floor(secs.length / 2)] : null,
      maxBatchSeconds: secs.length ? secs[secs.length - 1] : null,
      medianBatchEvents: evs.length ? evs[Math.floor(evs.length / 2)] : null,
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
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 20_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});
