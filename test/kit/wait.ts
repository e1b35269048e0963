// Waiting on a condition instead of for a fixed time: as short as the machine allows
// when it is idle, as long as it needs (up to the timeout) when it is loaded.
import os from "node:os";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/**
 * `ms` of slack for work the machine does (not a timer's wait), stretched by how much
 * busier than idle it is now (the 1-minute load average per CPU, at least 1), up to
 * `cap`. For time bounds that must hold while other test files run beside (load 15 on
 * 2 CPUs made 2 s of slack too little) and still fail when the mechanism they time
 * does not work: the cap is below what its absence would take.
 */
export function underLoad(ms: number, cap: number): number {
  return Math.min(ms * Math.max(1, os.loadavg()[0] / os.cpus().length), cap);
}

/** Polls `check` every `intervalMs` until it is true; throws after `timeoutMs`, naming `what`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(intervalMs);
  }
}

/** Runs `fn` until it succeeds (a server restarting refuses for a while); throws its last error after `timeoutMs`. */
export async function retrying<T>(fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

/**
 * What `p` settles to, or `late` if it has not settled within `ms`. The timer is
 * cleared once `p` settles: a timer left pending keeps the test file's process alive
 * for the rest of its `ms` after the last test (Promise.race with a sleep did that).
 */
export async function orAfter<T, U>(p: Promise<T>, ms: number, late: U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<U>((r) => (timer = setTimeout(() => r(late), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
