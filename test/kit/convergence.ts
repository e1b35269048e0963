// What the divergence, adversarial and apply tests share: a group "g" subscribed as "s",
// and the verdict "the target equals the source, or dbsync says it does not".
import assert from "node:assert/strict";
import { compareTables, differences, Queryable } from "../../src/embedded/compare";
import { Env, compat, startSidecar, until, value } from "../helpers";

export interface StatusRow {
  name: string;
  state: string;
  last_error: string | null;
  last_error_sqlstate: string | null;
  last_error_table?: string | null;
}

export async function status(env: Env, sub = "s"): Promise<StatusRow | undefined> {
  return (await env.source.query<StatusRow>("select * from dbsync.status where name = $1", [sub])).rows[0];
}

/**
 * Until `sub`'s last_error in dbsync.status matches `pattern`. Not a fixed wait: a
 * loaded machine (PostgreSQL 14's acceptance run) took more than 3 s to try the
 * batch at all, and wait_for_sync('s', '3 s') then found no error yet. A timeout
 * names the last error seen.
 */
export async function failsWith(env: Env, pattern: RegExp, sub = "s", timeoutMs = 60_000): Promise<void> {
  let seen: string | null | undefined;
  await until(`${sub}: an error matching ${pattern} in dbsync.status`, async () => pattern.test((seen = (await status(env, sub))?.last_error) ?? ""), timeoutMs)
    .catch((err: Error) => {
      throw new Error(`${err.message}; last_error: ${seen ?? "none"}`);
    });
}

/**
 * Same DDL on both sides (`targetDdl`: the target's own, where the majors differ in
 * what a table can declare), tables added to group g in this order, subscription s
 * (without a copy by default).
 */
export async function setup(
  env: Env,
  ddl: string,
  tables: string[],
  opts: { copyData?: boolean; keyColumns?: Record<string, string[] | null>; targetDdl?: string } = {},
): Promise<void> {
  await env.source.query(compat(ddl, "source"));
  await env.target.query(compat(opts.targetDdl ?? ddl, "target"));
  for (const t of tables) await env.source.query("select dbsync.add_table($1, 'g', $2)", [t, opts.keyColumns?.[t] ?? null]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => $2)", [env.targetUrl, opts.copyData ?? false]);
}

/**
 * Every table in `tables` holds the same rows on `target` as on `source`; a failure
 * names the rows that differ on each side (a whole-table deepEqual printed only the
 * last lines of 50,000 and hid which rows they were).
 */
export async function assertTablesEqual(source: Queryable, target: Queryable, tables: string[], label = ""): Promise<void> {
  const diffs = differences(await compareTables(source, target, tables), 12);
  assert.deepEqual(diffs, [], `${label}${label ? ": " : ""}target differs from source:\n${diffs.join("\n")}`);
}

/** The first sync; up to 120 s (it returns as soon as it is done): a busy machine may need more than 30. */
export async function synced(env: Env, sub = "s"): Promise<void> {
  assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '120 s')", [sub]), true,
    `initial sync failed: ${JSON.stringify(await status(env, sub))}`);
}

/** The sidecar started now (so that its first batch holds every change made before), the first sync, then every table equal. */
export async function firstBatchEqual(env: Env, tables: string[]): Promise<void> {
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    await assertTablesEqual(env.source, env.target, tables);
    assert.equal(await value(env.source, "select last_error from dbsync.status where name = 's'"), null);
  } finally {
    await sidecar.stop();
  }
}

/**
 * wait_for_sync(sub, '60 s') (30 s ran out at load 30 with the target already equal), then: the subscription is in state 'error' with its
 * last_error set (acceptable unless `errorOk` is false: the DBA sees it), or it is
 * in sync and every table in `tables` equals the source's, row by row.
 */
export async function convergedOrError(env: Env, tables: string[], opts: { sub?: string; errorOk?: boolean } = {}): Promise<void> {
  const sub = opts.sub ?? "s";
  const inSync = await value<boolean>(env.source, "select dbsync.wait_for_sync($1, '60 s')", [sub]);
  const st = await status(env, sub);
  assert.ok(st, `subscription ${sub} is missing from dbsync.status`);
  if (opts.errorOk !== false && st.state === "error" && st.last_error) {
    console.log(`# ${sub} in error (acceptable): ${st.last_error}`);
    return;
  }
  const diffs = differences(await compareTables(env.source, env.target, tables), 12);
  assert.deepEqual(diffs, [], `target differs from source (wait_for_sync=${inSync}, status ${st.state}, last_error ${st.last_error}):\n${diffs.join("\n")}`);
  assert.equal(inSync, true, `target equals source but wait_for_sync stayed false (status ${st.state}, last_error ${st.last_error})`);
}

/** The machine is shared and loaded: up to 150 s for the first batches, before the 30 s verdicts. */
export async function settle(env: Env, sub = "s"): Promise<void> {
  for (let i = 0; i < 15; i++) {
    if ((await value(env.source, "select dbsync.wait_for_sync($1, '10 s')", [sub])) === true) return;
    if ((await status(env, sub))?.last_error) return;
  }
}

/** convergedOrError without the error: settled, every table equal, and no error recorded on the subscription. */
export async function strictlyConverged(env: Env, tables: string[], sub = "s"): Promise<void> {
  await settle(env, sub);
  await convergedOrError(env, tables, { sub, errorOk: false });
  const st = await status(env, sub);
  assert.equal(st?.last_error ?? null, null, `no error expected: ${JSON.stringify(st)}`);
}

/** The target's counters for a table (pg_stat_user_tables), once the statistics collector has them. */
export async function targetCounts(env: Env, table: string): Promise<{ ins: number; upd: number; del: number }> {
  const q = `select n_tup_ins::int as ins, n_tup_upd::int as upd, n_tup_del::int as del
               from pg_stat_user_tables where relid = $1::regclass`;
  return (await env.target.query(q, [table])).rows[0];
}
