// Structured JSON logs (pino). Level: --log-level, else DBSYNC_LOG_LEVEL, else info.
import pino from "pino";

export type Log = pino.Logger;

export function createLog(level?: string): Log {
  return pino({
    level: level || process.env.DBSYNC_LOG_LEVEL || "info",
    base: { pid: process.pid },
    // Conninfo never goes to the log as a field; this is the second line of defence.
    redact: { paths: ["*.password", "password", "*.target_conninfo", "target_conninfo"], censor: "***" },
  });
}
