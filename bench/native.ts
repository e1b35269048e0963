// The baseline: PostgreSQL's built-in logical replication between the same two
// clusters. One publication per table set on the source, one subscription per
// publication on the target, created with copy_data = false (both sides already
// hold identical data) and disabled while the backlog is written, so the
// replication slot retains it; then enabled and timed until the target has applied
// it. Subscriptions use PostgreSQL's defaults otherwise (synchronous_commit = off,
// streaming per the server version's default, one apply worker each).
import { Client } from "pg";
import { connect, withClient } from "./clusters";
import { ident, sleep } from "./workloads";

export interface NativeSub {
  publication: string;
  subscription: string;
}

export async function createNative(
  sourceUrl: string,
  targetUrl: string,
  name: string,
  tables: string[],
  opts: { enabled: boolean },
): Promise<NativeSub> {
  const publication = `pub_${name}`;
  await withClient(sourceUrl, (c) => c.query(`create publication ${ident(publication)} for table ${tables.join(", ")}`));
  return subscribe(sourceUrl, targetUrl, publication, `sub_${name}`, opts);
}

/** A subscription on the target to an existing publication of the source, its slot named after it. */
export async function subscribe(
  sourceUrl: string,
  targetUrl: string,
  publication: string,
  subscription: string,
  opts: { enabled: boolean },
): Promise<NativeSub> {
  const src = new URL(sourceUrl);
  const conninfo = `host=${src.hostname} port=${src.port} dbname=${decodeURIComponent(src.pathname.slice(1))} user=${decodeURIComponent(src.username)}`;
  await withClient(targetUrl, (c) =>
    c.query(
      `create subscription ${ident(subscription)} connection '${conninfo}' publication ${ident(publication)}
       with (copy_data = false, enabled = ${opts.enabled})`,
    ),
  );
  return { publication, subscription };
}

export async function setEnabled(targetUrl: string, subs: NativeSub[], enabled: boolean): Promise<void> {
  await withClient(targetUrl, async (c) => {
    for (const s of subs) await c.query(`alter subscription ${ident(s.subscription)} ${enabled ? "enable" : "disable"}`);
  });
}

/** Waits until no apply worker of these subscriptions runs (after DISABLE). */
export async function waitStopped(targetUrl: string, subs: NativeSub[], timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  await withClient(targetUrl, async (c) => {
    for (;;) {
      const { rows } = await c.query(
        "select count(*)::int as n from pg_stat_subscription where subname = any ($1) and pid is not null",
        [subs.map((s) => s.subscription)],
      );
      if (rows[0].n === 0) return;
      if (performance.now() > deadline) throw new Error("native apply workers did not stop after DISABLE");
      await sleep(20);
    }
  });
}

/** Waits until every subscription's apply worker runs and has heard from its walsender. */
export async function waitStreaming(targetUrl: string, subs: NativeSub[], timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  await withClient(targetUrl, async (c) => {
    for (;;) {
      const { rows } = await c.query(
        `select count(*)::int as n from pg_stat_subscription
          where subname = any ($1) and pid is not null and relid is null and last_msg_receipt_time is not null`,
        [subs.map((s) => s.subscription)],
      );
      if (rows[0].n === subs.length) return;
      if (performance.now() > deadline) throw new Error("native subscriptions did not start streaming");
      await sleep(50);
    }
  });
}

/**
 * Waits until the marker row `id` is visible in each `markerTables` on the target,
 * polling every `pollMs` (10 ms). The marker is inserted on the source after the backlog;
 * native subscriptions and dbsync both apply in commit order, so once the marker is
 * visible everything committed before it is too: both sides of the apply comparison
 * are timed this way. Resolves with each table's elapsed ms from t0. `check` runs on
 * every poll and throws to give up early.
 */
export async function waitMarkers(targetUrl: string, markerTables: string[], id: number, t0: number, timeoutS: number, check?: () => void, pollMs = 10) {
  const c: Client = await connect(targetUrl, "bench wait");
  const elapsed: Record<string, number> = {};
  try {
    const deadline = performance.now() + timeoutS * 1000;
    const pending = new Set(markerTables);
    while (pending.size) {
      for (const t of [...pending]) {
        const { rowCount } = await c.query(`select 1 from ${t} where id = $1`, [id]);
        if (rowCount) {
          elapsed[t] = performance.now() - t0;
          pending.delete(t);
        }
      }
      if (!pending.size) break;
      check?.();
      if (performance.now() > deadline) {
        const st = await c.query("select * from pg_stat_subscription");
        throw new Error(`markers not on the target after ${timeoutS} s: ${[...pending].join(", ")}; pg_stat_subscription: ${JSON.stringify(st.rows)}`);
      }
      await sleep(pollMs);
    }
  } finally {
    await c.end().catch(() => undefined);
  }
  return elapsed;
}

/** Drops the subscriptions (and with them their slots on the source) and publications. */
export async function dropNative(sourceUrl: string, targetUrl: string, subs: NativeSub[]): Promise<void> {
  await withClient(targetUrl, async (c) => {
    for (const s of subs) await c.query(`drop subscription if exists ${ident(s.subscription)}`);
  }).catch(() => undefined);
  await withClient(sourceUrl, async (c) => {
    for (const s of subs) await c.query(`drop publication if exists ${ident(s.publication)}`);
    // A slot left behind (subscription dropped while its worker could not reach the source).
    await c.query(
      "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = current_database() and not active",
    );
  }).catch(() => undefined);
}
