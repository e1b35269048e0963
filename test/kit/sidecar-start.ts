// What the tests of a sidecar's start share: a subscription to start it on, its
// JSON debug log read back as messages, and whether graphile-worker runs at all.
import { WORKER_MIN_MAJOR } from "../../src/migrate";
import { Env, freshEnv, SOURCE_MAJOR, until } from "../helpers";
import type { DbsyncProcess } from "./dbsync";

/** The sidecar's environment for a log the tests read: every message, one JSON object a line. */
export const DEBUG_JSON = { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" };

/** A test's skip reason where graphile-worker does not run: before PostgreSQL 12 the wake-ups run in the sidecar (src/sidecar/jobs.ts). */
export const NO_WORKER = SOURCE_MAJOR < WORKER_MIN_MAJOR && `graphile-worker needs PostgreSQL ${WORKER_MIN_MAJOR}`;

/** The messages of a JSON log, in order (whole lines only). */
export function logMessages(p: DbsyncProcess): string[] {
  return p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.endsWith("}"))
    .map((l) => JSON.parse(l).msg as string);
}

/** A fresh source and target with table t (id, v) on both, in group g, and subscription s without a copy. */
export async function oneSubscription(label: string): Promise<Env> {
  const env = await freshEnv(label);
  const ddl = "create table t (id int primary key, v int not null)";
  await Promise.all([env.source.query(ddl), env.target.query(ddl)]);
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  return env;
}

/**
 * Until `p` logs that it runs, or exits: up to a minute, where 20 s ran out for a
 * sidecar starting at load 26 on 2 CPUs (PostgreSQL 14's faults-listen run).
 */
export async function running(p: DbsyncProcess, timeoutMs = 60_000): Promise<void> {
  await until("sidecar running", () => p.output().includes("dbsync sidecar running") || p.proc.exitCode !== null, timeoutMs);
}
