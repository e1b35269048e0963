// What test files use: a fresh source (a copy of the migrated template) and target
// database per test file on the clusters test/run.ts started, SQL shortcuts, and the
// sidecar as a child process (bin/dbsync.js, see kit/dbsync.ts).
import { after } from "node:test";
import { Client, Pool } from "pg";
import { compatSql } from "../src/compat";
import { keepOnError } from "../src/db/pool";
import { tableRows } from "../src/embedded/compare";
import { migrate } from "../src/migrate";
import { createDatabase } from "./kit/databases";
import { DbsyncProcess, killAll, spawnDbsync } from "./kit/dbsync";

export { createDatabase, withDatabase } from "./kit/databases";
export { seeded } from "./kit/random";
export { orAfter, retrying, sleep, until } from "./kit/wait";

export interface Env {
  sourceUrl: string;
  targetUrl: string;
  source: Pool;
  target: Pool;
}

/** The majors of the clusters test/run.ts started (DBSYNC_PG_MAJOR, DBSYNC_PG_TARGET_MAJOR). */
export const SOURCE_MAJOR = Number(process.env.DBSYNC_TEST_SOURCE_MAJOR ?? 17);
export const TARGET_MAJOR = Number(process.env.DBSYNC_TEST_TARGET_MAJOR ?? SOURCE_MAJOR);

/** Which of a test's two clusters a statement is written for. */
export type Side = "source" | "target";

/** The major of `side`'s cluster. */
export const majorOf = (side: Side): number => (side === "source" ? SOURCE_MAJOR : TARGET_MAJOR);

/**
 * PostgreSQL 10 has no primary key on a partitioned table: there the key is declared
 * on each leaf partition instead (`partitionKey`, where `parentKey` is empty), and
 * add_table is told it (`partitionKeyColumns`), as README "PostgreSQL versions" says.
 * The same rows and the same uniqueness per partition, so what a test proves holds.
 * Each side is written for its own major: a source on 11 or later refuses
 * key_columns no unique index of the partitioned table backs (the 17 → 10 run failed
 * so when both sides took 10's shape), and 10 has no key on a partitioned table.
 */
export const partitionedKeys = (side: Side): boolean => majorOf(side) >= 11;

/** `, primary key (cols)` in a partitioned table's column list on `side`, from PostgreSQL 11. */
export function parentKey(cols: string, side: Side): string {
  return partitionedKeys(side) ? `, primary key (${cols})` : "";
}

/** ` (primary key (cols))` after `partition of parent` of a leaf on `side`, before PostgreSQL 11. */
export function partitionKey(cols: string, side: Side): string {
  return partitionedKeys(side) ? "" : ` (primary key (${cols}))`;
}

/** `, primary key (cols)` in the column list of a table made to be attached as a leaf on `side`, before 11. */
export function attachedKey(cols: string, side: Side): string {
  return partitionedKeys(side) ? "" : `, primary key (${cols})`;
}

/** add_table's key_columns (on the source) for a partitioned table keyed by `cols`: null (its primary key) from 11. */
export function partitionKeyColumns(cols: string[]): string[] | null {
  return partitionedKeys("source") ? null : cols;
}

/**
 * Test SQL written for current PostgreSQL as the source's (or the target's) major
 * spells it: the same rewrites migrate applies (src/compat.ts), e.g. `execute
 * procedure` before 11, txid_snapshot before 13.
 */
export function compat(sql: string, side: Side = "source"): string {
  const major = majorOf(side);
  return compatSql(sql, { major, bigintTxids: major < 13 });
}

/**
 * The committed events of group `group` (SQL: a value or a $n) as the batch readers
 * see them (dbsync._events_between): an 'M' event, the keys of one statement, comes
 * out as one 'K' event per key, with the 'M' event's id. For tests that read the
 * queue itself; as a FROM item.
 */
export function queueOf(group: string): string {
  return compat(`dbsync._events_between(${group}, '1:1:'::pg_snapshot, pg_current_snapshot())`);
}

function clusterUrl(which: "SOURCE" | "TARGET"): string {
  const url = process.env[`DBSYNC_TEST_${which}_URL`];
  if (!url) throw new Error("run the tests with `npm test`: it starts the PostgreSQL clusters");
  return url;
}

const pools: Pool[] = [];
after(async () => {
  await Promise.all(pools.splice(0).map((p) => p.end().catch(() => undefined)));
});

export function pool(url: string, max = 10): Pool {
  const p = new Pool({ connectionString: url, max });
  p.on("error", () => undefined); // a server restarted by a test
  // (copy-chunks' kill test opened 242 sessions for its writers' collisions in 62 s
  // before its refused inserts kept their connections.)
  keepOnError(p);
  pools.push(p);
  return p;
}

/**
 * Fresh source and target databases; the source is migrated unless told not to (a
 * copy of the template test/run.ts migrated, or migrated here without one).
 */
export async function freshEnv(label: string, opts: { migrate?: boolean } = {}): Promise<Env> {
  const template = opts.migrate === false ? undefined : process.env.DBSYNC_TEST_TEMPLATE;
  const [sourceUrl, targetUrl] = await Promise.all([
    createDatabase(clusterUrl("SOURCE"), label, { template }),
    createDatabase(clusterUrl("TARGET"), label),
  ]);
  if (opts.migrate !== false && !template) await migrate(sourceUrl);
  return { sourceUrl, targetUrl, source: pool(sourceUrl), target: pool(targetUrl) };
}

/** `ddl` run on both sides, `tables` added to group "g", subscription "s" to the target without a copy. */
export async function subscribeTables(env: Env, ddl: string, tables: string[]): Promise<void> {
  await env.source.query(compat(ddl, "source"));
  await env.target.query(compat(ddl, "target"));
  for (const t of tables) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
}

export async function rows<T = Record<string, unknown>>(p: Pool | Client, sql: string, params: unknown[] = []): Promise<T[]> {
  return (await p.query(sql, params)).rows as T[];
}

export async function value<T = unknown>(p: Pool | Client, sql: string, params: unknown[] = []): Promise<T> {
  const r = await p.query(sql, params);
  return (r.rows[0] ? Object.values(r.rows[0])[0] : undefined) as T;
}

/** The error a statement raises (fails the test if it succeeds). */
export async function sqlError(p: Pool | Client, sql: string, params: unknown[] = []) {
  try {
    await p.query(sql, params);
  } catch (err) {
    return err as Error & { code?: string; hint?: string; detail?: string };
  }
  throw new Error(`expected an error from: ${sql}`);
}

/** `dbsync run` (bin/dbsync.js) as a child process, killed at the end of the test file. */
export type Sidecar = DbsyncProcess;

export function startSidecar(sourceUrl: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Sidecar {
  return spawnDbsync(["run", "--source", sourceUrl, ...args], { env });
}
after(killAll);

/** Every row of a table as text, sorted: equal lists mean equal tables. */
export const tableText = tableRows;
