// Shared test helpers: a fresh source and target database per test file on the
// clusters that test/run.ts started, SQL shortcuts, and the sidecar as a child process.
import { ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import path from "node:path";
import { after } from "node:test";
import { Client, Pool } from "pg";
import { compatSql } from "../src/compat";
import { migrate } from "../src/migrate";

export interface Env {
  sourceUrl: string;
  targetUrl: string;
  source: Pool;
  target: Pool;
}

/** The majors of the clusters test/run.ts started (DBSYNC_PG_MAJOR, DBSYNC_PG_TARGET_MAJOR). */
export const SOURCE_MAJOR = Number(process.env.DBSYNC_TEST_SOURCE_MAJOR ?? 17);
export const TARGET_MAJOR = Number(process.env.DBSYNC_TEST_TARGET_MAJOR ?? SOURCE_MAJOR);

/**
 * Test SQL written for current PostgreSQL as the source's (or the target's) major
 * spells it: the same rewrites migrate applies (src/compat.ts), e.g. `execute
 * procedure` before 11, txid_snapshot before 13.
 */
export function compat(sql: string, side: "source" | "target" = "source"): string {
  const major = side === "source" ? SOURCE_MAJOR : TARGET_MAJOR;
  return compatSql(sql, { major, bigintTxids: major < 13 });
}

function clusterUrl(which: "SOURCE" | "TARGET"): string {
  const url = process.env[`DBSYNC_TEST_${which}_URL`];
  if (!url) throw new Error("run the tests with `npm test`: it starts the PostgreSQL clusters");
  return url;
}

export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = "/" + encodeURIComponent(db);
  return u.toString();
}

/** A new, empty database on a cluster; returns its URL. */
export async function createDatabase(clusterAdminUrl: string, label: string): Promise<string> {
  const name = `${label.toLowerCase().replace(/[^a-z0-9]+/g, "_").slice(0, 40)}_${crypto.randomBytes(3).toString("hex")}`;
  const c = new Client({ connectionString: clusterAdminUrl });
  await c.connect();
  try {
    await c.query(`create database "${name}"`);
  } finally {
    await c.end();
  }
  return withDatabase(clusterAdminUrl, name);
}

const pools: Pool[] = [];
after(async () => {
  await Promise.all(pools.splice(0).map((p) => p.end().catch(() => undefined)));
});

export function pool(url: string, max = 10): Pool {
  const p = new Pool({ connectionString: url, max });
  p.on("error", () => undefined); // a server restarted by a test
  pools.push(p);
  return p;
}

/** Fresh source and target databases; the source is migrated unless told not to. */
export async function freshEnv(label: string, opts: { migrate?: boolean } = {}): Promise<Env> {
  const [sourceUrl, targetUrl] = await Promise.all([
    createDatabase(clusterUrl("SOURCE"), label),
    createDatabase(clusterUrl("TARGET"), label),
  ]);
  if (opts.migrate !== false) await migrate(sourceUrl);
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

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(100);
  }
}

const ROOT = path.join(__dirname, "..");

export interface Sidecar {
  proc: ChildProcess;
  output: () => string;
  /** The exit code, once the process has exited by itself or was stopped. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `dbsync run` as a real child process. */
export function startSidecar(sourceUrl: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Sidecar {
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src", "cli.ts"), "run", "--source", sourceUrl, ...args], {
    env: { ...process.env, DBSYNC_LOG_LEVEL: process.env.DBSYNC_LOG_LEVEL ?? "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (b) => (out += b));
  proc.stderr!.on("data", (b) => (out += b));
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  sidecars.add(proc);
  proc.once("exit", () => sidecars.delete(proc));
  return {
    proc,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
const sidecars = new Set<ChildProcess>();
after(() => {
  for (const p of sidecars) p.kill("SIGKILL");
});
process.once("exit", () => {
  for (const p of sidecars) p.kill("SIGKILL");
});

/** Every row of a table as text, sorted: equal sets mean equal tables. */
export async function tableText(p: Pool | Client, table: string): Promise<string[]> {
  const r = await p.query(`select t::text as r from ${table} t order by 1`);
  return r.rows.map((x) => x.r as string);
}
