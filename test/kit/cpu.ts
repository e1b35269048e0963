// Where a run's CPU goes, from /proc (Linux; elsewhere nothing is counted): the
// suite is bound by CPU, not by its waits, so its CPU-seconds say more than its
// minutes on a machine shared with other work. A process's own CPU, and that of the
// children it has waited for: a test file's sidecars, `dbsync` commands and private
// clusters (with their backends); test/run.ts's servers, once stopped.
import fs from "node:fs";
import path from "node:path";

/** USER_HZ, the unit of /proc's times: 100 on every Linux build node runs on. */
const TICKS_PER_SECOND = 100;

export interface Cpu {
  /** This process's user + system CPU-seconds. */
  self: number;
  /** Those of its children that have ended and been waited for (and of their own, waited for by them). */
  children: number;
}

/** This process's CPU-seconds so far; undefined without /proc. */
export function cpuSeconds(): Cpu | undefined {
  try {
    const stat = fs.readFileSync("/proc/self/stat", "utf8");
    // After "pid (comm) ": state is field 0, utime 11, stime 12, cutime 13, cstime 14 (proc(5) numbers them 3, 14-17).
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    return { self: (f[11] + f[12]) / TICKS_PER_SECOND, children: (f[13] + f[14]) / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

/** What a test file's process leaves in DBSYNC_TEST_CPU_DIR at its exit, read by kit/durations.mjs. */
export interface FileCpu extends Cpu {
  file: string;
}

/**
 * At the exit of a test file's process, its CPU-seconds go to DBSYNC_TEST_CPU_DIR
 * (`<pid>.json`). Required into every file's process (kit/file-cpu.ts). A sidecar
 * still running at the exit (killed by the kit's exit hook) is not counted: it has
 * not been waited for.
 */
export function recordAtExit(dir: string | undefined, file: string | undefined): void {
  if (!dir || !file?.endsWith(".test.ts")) return;
  process.once("exit", () => {
    const cpu = cpuSeconds();
    if (!cpu) return;
    const record: FileCpu = { file, ...cpu };
    fs.writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify(record));
  });
}
