// Logs (pino). Level: --log-level, else DBSYNC_LOG_LEVEL, else info. Format:
// --log-format, else DBSYNC_LOG_FORMAT, else "pretty" when stdout is a terminal and
// "json" (one object a line, for collectors) otherwise. Times are ISO 8601 (UTC).
// A problem that lasts (a link down, a subscription failing) is logged when it
// starts and when it ends ("recovered after 6.2 s"), not once per retry: Outages.
import pino from "pino";

export type Log = pino.Logger;

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Fields never logged as they are (demo-kit.ts's in-memory log uses them too). */
export const REDACT = { paths: ["*.password", "password", "*.target_conninfo", "target_conninfo"], censor: "***" };

export function createLog(level?: string, format?: string): Log {
  const chosen = (format || process.env.DBSYNC_LOG_FORMAT || (process.stdout.isTTY ? "pretty" : "json")) as LogFormat;
  const options: pino.LoggerOptions = {
    level: level || process.env.DBSYNC_LOG_LEVEL || "info",
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Conninfo never goes to the log as a field; this is the second line of defence.
    redact: REDACT,
  };
  return chosen === "pretty" ? pino(options, prettyStream(process.stdout)) : pino(options);
}

const LEVEL_NAMES: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };

/** One JSON line from pino as a line a person reads: time, level, message, then key=value. */
export function prettyLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json);
  } catch {
    return json.trimEnd();
  }
  const { time, level, msg, pid: _pid, ...rest } = o;
  const fields = Object.entries(rest)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === "string" && !/[\s"=]/.test(v) && v !== "" ? v : JSON.stringify(v)}`);
  const lvl = (LEVEL_NAMES[Number(level)] ?? String(level)).padEnd(5);
  return [String(time ?? ""), lvl, String(msg ?? ""), ...fields].filter(Boolean).join(" ");
}

function prettyStream(out: NodeJS.WritableStream): pino.DestinationStream {
  return {
    write(s: string) {
      for (const line of s.split("\n")) if (line) out.write(prettyLine(line) + "\n");
    },
  };
}

/**
 * Problems that last: each is logged when it starts (and when its message changes),
 * then at most once a minute while it goes on, and once when it is over with how
 * long it lasted. Keyed by what failed ("source", "listen", "subscription x").
 */
export class Outages {
  private open = new Map<string, { since: number; opened: number; message: string; attempts: number; lastLog: number }>();
  /** Outages opened so far: mark() and ok() order a success against the failures. */
  private opened = 0;

  constructor(
    private readonly log: Log,
    private readonly repeatMs = 60_000,
  ) {}

  /** `what` failed (again). Returns true when this call logged. */
  fail(key: string, message: string, fields: Record<string, unknown> = {}, level: "warn" | "error" = "warn"): boolean {
    const now = Date.now();
    const o = this.open.get(key);
    if (!o) {
      this.open.set(key, { since: now, opened: ++this.opened, message, attempts: 1, lastLog: now });
      this.log[level](fields, message);
      return true;
    }
    o.attempts++;
    if (o.message !== message || now - o.lastLog >= this.repeatMs) {
      o.message = message;
      o.lastLog = now;
      this.log[level]({ ...fields, failingFor: `${((now - o.since) / 1000).toFixed(1)} s`, attempts: o.attempts }, message);
      return true;
    }
    this.log.debug({ ...fields, attempts: o.attempts }, message);
    return false;
  }

  /** Where the failures are now: given to ok() by work that succeeds later (see there). */
  mark(): number {
    return this.opened;
  }

  /**
   * `what` works: if it had failed, say once that it recovered, and after how long.
   * `since` (a mark() taken when the work began): work begun before the outage
   * opened proves nothing. A source stopping terminates every connection at once,
   * and the result of a query it answered just before can be read after another
   * connection's loss: that closed the outage it had just opened ("recovered after
   * 0.0 s"), and the next link to notice opened a second one.
   */
  ok(key: string, what: string, fields: Record<string, unknown> = {}, since?: number) {
    const o = this.open.get(key);
    if (!o || (since !== undefined && since < o.opened)) return;
    this.open.delete(key);
    const seconds = (Date.now() - o.since) / 1000;
    this.log.info({ ...fields, seconds: Number(seconds.toFixed(1)), attempts: o.attempts }, `${what} recovered after ${seconds.toFixed(1)} s`);
  }

  failing(key: string): boolean {
    return this.open.has(key);
  }
}
