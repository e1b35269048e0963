// `npm run soak -- --minutes N`: a steady write load on a source with two groups, a
// sidecar (`dbsync run` as a child process) reaching both servers through fault
// proxies, and random faults, one after another, for N minutes:
//   blackhole-target / blackhole-source   the link hangs (no RST) for a few seconds
//   blackhole-listen                      only the LISTEN connection hangs
//   delay-target / delay-source           every chunk late by 50-300 ms for a while
//   drop-target / drop-source             every connection reset (RST) or closed (FIN)
//   sigkill-sidecar                       SIGKILL, then a new sidecar
//   restart-target / restart-source       server stopped (fast or immediate) and started
//   long-transaction                      a source transaction open for 20-90 s (many
//                                         ticks and queue rotations), then committed
//   resync-table                          dbsync.resync_table: a copy under the faults
// It prints a running tally (transactions written, faults by kind, lag); at the end it
// stops the faults and the load, waits for sync, compares every table row by row,
// checks that each acknowledged insert is on the target exactly once, and exits 1 on
// any difference (or if the sidecar died by itself: that is a bug too).
//
//   npm run soak -- --minutes 15 [--seed N] [--fault-gap 8-20] [--only kind,...] [--keep-logs]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client, Pool } from "pg";
import { Cluster, reapOrphans, startCluster, stopAll } from "../src/embedded/cluster";
import { Rng } from "../src/embedded/random";
import { migrate } from "../src/migrate";
import { FaultProxy, startFaultProxy } from "../test/harness/fault-proxy";
import { createDatabase } from "../test/kit/databases";
import { DbsyncProcess, ensureBuilt, spawnDbsync } from "../test/kit/dbsync";
import { runSeed } from "../test/kit/random";
import { sleep } from "../test/kit/wait";
import { SOURCE_DDL, TARGET_AUDIT, Workload, isConnectionError } from "../test/kit/workload";

// ---------- options ----------
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const MINUTES = Number(arg("minutes") ?? 15);
if (arg("seed") !== undefined) process.env.DBSYNC_SEED = arg("seed");
const SEED = runSeed();
const [GAP_MIN, GAP_MAX] = (arg("fault-gap") ?? "8-20").split("-").map((x) => Number(x) * 1000);
const KEEP_LOGS = process.argv.includes("--keep-logs");
/** Only these fault kinds (comma-separated), e.g. --only resync-table,sigkill-sidecar. */
const ONLY = arg("only")?.split(",").map((k) => k.trim()).filter(Boolean);
if (!(MINUTES > 0) || !(GAP_MIN > 0) || !(GAP_MAX >= GAP_MIN)) {
  console.error("usage: npm run soak -- --minutes N [--seed N] [--fault-gap MIN-MAX seconds] [--only kind,...] [--keep-logs]");
  process.exit(2);
}

// The fault sequence and the writers' choices replay with --seed (or DBSYNC_SEED).
const rng = new Rng(SEED, "soak");
const faultRng = rng.fork("faults");
const between = (lo: number, hi: number) => faultRng.int(lo, hi);
const pick = <T>(xs: T[]) => faultRng.pick(xs);

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-soak-"));
const SIDECAR_LOG = path.join(WORK, "sidecar.log");
const t0 = Date.now();
const stamp = () => {
  const s = Math.floor((Date.now() - t0) / 1000);
  return `[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}]`;
};
const say = (msg: string) => console.log(`${stamp()} ${msg}`);

// The sidecar notices a hung link within a few seconds (src/db/liveness.ts).
const SIDECAR_ENV = {
  DBSYNC_QUERY_TIMEOUT_MS: "3000",
  DBSYNC_CONNECT_TIMEOUT_MS: "3000",
  DBSYNC_LOG_LEVEL: "info",
};
const SIDECAR_ARGS = ["--poll-interval", "500", "--rotate-after", "10"];

const GROUPS = [
  { group: "ga", sub: "sa", ins: "ins_a", kv: "kv_a" },
  { group: "gb", sub: "sb", ins: "ins_b", kv: "kv_b" },
];
const TABLES = GROUPS.flatMap((g) => [g.ins, g.kv]);

// ---------- state ----------
let source!: Cluster;
let target!: Cluster;
let sourceProxy!: FaultProxy;
let targetProxy!: FaultProxy;
let sourceUrl = "";
let targetUrl = "";
const faults = new Map<string, number>();
const count = (kind: string) => faults.set(kind, (faults.get(kind) ?? 0) + 1);
let sidecar: DbsyncProcess | undefined;
let sidecarStarts = 0;
let unexpectedExits = 0;
const exitNotes: string[] = [];
let expectingExit = false;
let longTx: Promise<void> | undefined;
const longTxStats = { committed: 0, rows: 0, lost: 0 };
let stopping = false;

function startSidecar() {
  const child = spawnDbsync(["run", "--source", sourceProxy.url(sourceUrl), ...SIDECAR_ARGS], { env: SIDECAR_ENV, logFile: SIDECAR_LOG });
  sidecarStarts++;
  sidecar = child;
  child.proc.once("exit", (code, signal) => {
    if (sidecar !== child) return;
    sidecar = undefined;
    if (expectingExit || stopping) return;
    unexpectedExits++;
    const tail = fs.readFileSync(SIDECAR_LOG, "utf8").split("\n").slice(-12).join("\n");
    exitNotes.push(`${stamp()} exit code ${code} signal ${signal}:\n${tail}`);
    say(`!! the sidecar exited by itself (code ${code}, signal ${signal}); starting a new one. Last lines:\n${tail}`);
    setTimeout(() => {
      if (!stopping && !sidecar) startSidecar();
    }, 1000);
  });
}

async function killSidecar(signal: NodeJS.Signals) {
  const child = sidecar;
  if (!child) return;
  expectingExit = true;
  await child.stop(signal);
  expectingExit = false;
}

async function restartServer(c: Cluster, mode: "fast" | "immediate") {
  await c.stop(mode);
  await sleep(between(200, 2000));
  await c.start();
}

/** A source transaction held open across many ticks and queue rotations, then committed. */
function longTransaction(w: Workload, seconds: number) {
  const client = new Client({ connectionString: sourceUrl });
  client.on("error", () => undefined);
  const first = 7_000_000_000 + Date.now() * 10;
  const n = between(50, 500);
  return (async () => {
    let committing = false;
    try {
      await client.connect();
      await client.query("begin");
      await client.query(`insert into ${w.ins} select $1::int8 + g, 7, g, 'long' from generate_series(1, $2::int) g`, [first, Math.floor(n / 2)]);
      await client.query(`update ${w.kv} set note = 'long' where k in (select k from ${w.kv} order by random() limit 5)`);
      const until = Date.now() + seconds * 1000;
      while (Date.now() < until && !stopping) await sleep(500);
      await client.query(
        `insert into ${w.ins} select $1::int8 + g, 7, g, 'long' from generate_series($2::int + 1, $3::int) g`,
        [first, Math.floor(n / 2), n],
      );
      committing = true;
      await client.query("commit");
      w.ranges.push([first + 1, n]);
      w.insertedRows += n;
      w.insertTransactions++;
      longTxStats.committed++;
      longTxStats.rows += n;
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      if (committing) {
        w.unsureTransactions++;
        w.unsureRows += n;
      }
      longTxStats.lost++;
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
}

// ---------- faults ----------
type Fault = { kind: string; weight: number; run: (note: (s: string) => void) => Promise<void> };

function faultList(loads: Workload[]): Fault[] {
  const isListen = (c: { applicationName?: string }) => c.applicationName === "dbsync listen";
  return [
    { kind: "blackhole-target", weight: 3, run: async (note) => {
      const ms = between(2000, 12000);
      note(`${ms} ms`);
      targetProxy.blackhole();
      await sleep(ms);
      targetProxy.pass();
    } },
    { kind: "blackhole-source", weight: 3, run: async (note) => {
      const ms = between(2000, 12000);
      note(`${ms} ms`);
      sourceProxy.blackhole();
      await sleep(ms);
      sourceProxy.pass();
    } },
    { kind: "blackhole-listen", weight: 1, run: async (note) => {
      const ms = between(5000, 40000);
      note(`${ms} ms`);
      sourceProxy.blackhole(isListen);
      await sleep(ms);
      sourceProxy.pass();
    } },
    { kind: "delay-target", weight: 1, run: async (note) => {
      const [d, ms] = [between(50, 300), between(3000, 15000)];
      note(`${d} ms per chunk for ${ms} ms`);
      targetProxy.delay(d);
      await sleep(ms);
      targetProxy.pass();
    } },
    { kind: "delay-source", weight: 1, run: async (note) => {
      const [d, ms] = [between(50, 300), between(3000, 15000)];
      note(`${d} ms per chunk for ${ms} ms`);
      sourceProxy.delay(d);
      await sleep(ms);
      sourceProxy.pass();
    } },
    { kind: "drop-target", weight: 2, run: async (note) => {
      const how = pick(["rst", "fin"] as const);
      note(`${how}, ${targetProxy.drop(how)} connections`);
    } },
    { kind: "drop-source", weight: 2, run: async (note) => {
      const how = pick(["rst", "fin"] as const);
      note(`${how}, ${sourceProxy.drop(how)} connections`);
    } },
    { kind: "sigkill-sidecar", weight: 3, run: async (note) => {
      const ms = between(0, 2000);
      note(`restarted after ${ms} ms`);
      await killSidecar("SIGKILL");
      await sleep(ms);
      if (!sidecar) startSidecar();
    } },
    { kind: "restart-target", weight: 2, run: async (note) => {
      const mode = pick(["fast", "immediate"] as const);
      note(mode);
      await restartServer(target, mode);
    } },
    { kind: "restart-source", weight: 2, run: async (note) => {
      const mode = pick(["fast", "immediate"] as const);
      note(mode);
      await restartServer(source, mode);
    } },
    { kind: "long-transaction", weight: 2, run: async (note) => {
      if (longTx) {
        note("one is still open: skipped");
        return;
      }
      const seconds = between(20, 90);
      const w = pick(loads);
      note(`${seconds} s on ${w.ins}`);
      longTx = longTransaction(w, seconds).finally(() => (longTx = undefined));
    } },
    { kind: "resync-table", weight: 2, run: async (note) => {
      const g = pick(GROUPS);
      const table = pick([g.ins, g.kv]);
      note(`${g.sub} ${table}`);
      await withSource((c) => c.query("select dbsync.resync_table($1, $2::regclass)", [g.sub, table]));
    } },
  ];
}

function pickFault(list: Fault[]): Fault {
  const total = list.reduce((n, f) => n + f.weight, 0);
  let r = faultRng.next() * total;
  for (const f of list) if ((r -= f.weight) < 0) return f;
  return list[list.length - 1];
}

// ---------- monitoring ----------
let monitor: Pool;
async function withSource<T>(fn: (c: Pool) => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn(monitor);
    } catch (err) {
      if (!isConnectionError(err) || Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

async function tally(loads: Workload[], final = false) {
  let lag = "status unavailable";
  try {
    const { rows } = await monitor.query(
      "select name, state, backlog_events, round(lag_seconds::numeric, 1) as lag, last_error from dbsync.status order by name",
    );
    lag = rows.map((r) => `${r.name} ${r.state} lag ${r.lag} s backlog ${r.backlog_events}`).join(", ");
  } catch {
    /* the source is restarting */
  }
  const tx = loads.reduce((n, w) => n + w.transactions, 0);
  const rowsIns = loads.reduce((n, w) => n + w.insertedRows, 0);
  const unsure = loads.reduce((n, w) => n + w.unsureTransactions, 0);
  const fl = [...faults.entries()].sort().map(([k, n]) => `${k} ${n}`).join(", ");
  const total = [...faults.values()].reduce((a, b) => a + b, 0);
  say(
    `${final ? "FINAL " : ""}tally: ${tx} transactions written (${rowsIns} rows inserted, ${unsure} unanswered commits), ` +
      `${total} faults [${fl}], sidecar starts ${sidecarStarts}, unexpected exits ${unexpectedExits}; ${lag}`,
  );
}

// ---------- main ----------
async function main() {
  reapOrphans();
  ensureBuilt();
  say(`soak: ${MINUTES} min, seed ${SEED}, a fault every ${GAP_MIN / 1000}-${GAP_MAX / 1000} s; logs in ${WORK}`);
  // Acknowledged commits on the source must survive an immediate stop. The target
  // keeps asynchronous commit: an immediate stop may lose its last applied batches,
  // which the sidecar must notice (the target is the truth) and apply again.
  [source, target] = await Promise.all([startCluster({ settings: { synchronous_commit: "on" } }), startCluster()]);
  [sourceUrl, targetUrl] = await Promise.all([source, target].map((c) => createDatabase(c.url(), "soak", { name: "soak" })));
  await migrate(sourceUrl);
  sourceProxy = await startFaultProxy({ port: () => source.port });
  targetProxy = await startFaultProxy({ port: () => target.port });

  const setup = new Client({ connectionString: sourceUrl });
  const tsetup = new Client({ connectionString: targetUrl });
  await setup.connect();
  await tsetup.connect();
  for (const g of GROUPS) {
    await setup.query(SOURCE_DDL(g.ins, g.kv));
    await tsetup.query(SOURCE_DDL(g.ins, g.kv) + TARGET_AUDIT(g.ins));
    // Rows before the subscription: an initial copy to start with.
    await setup.query(`insert into ${g.ins} select -g, 0, g, 'before' from generate_series(1, 50000) g`);
    await setup.query("select dbsync.add_table($1::regclass, $3), dbsync.add_table($2::regclass, $3)", [g.ins, g.kv, g.group]);
    await setup.query("select dbsync.add_subscription($1, $2, $3)", [g.sub, g.group, targetProxy.url(targetUrl)]);
  }
  await setup.end();
  await tsetup.end();

  monitor = new Pool({ connectionString: sourceUrl, max: 2 });
  monitor.on("error", () => undefined);
  const loadPool = new Pool({ connectionString: sourceUrl, max: 12 });
  loadPool.on("error", () => undefined);
  const loads = GROUPS.map((g) => new Workload(loadPool, { rng: rng.fork(g.group), insertTable: g.ins, kvTable: g.kv, inserters: 2, churners: 2 }));
  for (const w of loads) {
    // The 50,000 rows written before are acknowledged inserts too.
    w.ranges.push([-50000, 50000]);
    w.insertedRows += 50000;
  }

  startSidecar();
  for (const w of loads) w.start();
  const list = faultList(loads).filter((f) => !ONLY || ONLY.includes(f.kind));
  if (!list.length) throw new Error(`--only ${ONLY?.join(",")}: no such fault kind`);
  const end = t0 + MINUTES * 60_000;
  const tallyTimer = setInterval(() => void tally(loads), 30_000);
  await sleep(5000);
  while (Date.now() < end) {
    const gap = between(GAP_MIN, GAP_MAX);
    await sleep(Math.min(gap, Math.max(0, end - Date.now())));
    if (Date.now() >= end) break;
    const f = pickFault(list);
    let detail = "";
    const started = Date.now();
    try {
      await f.run((s) => (detail = s));
      count(f.kind);
      say(`fault ${f.kind}${detail ? ` (${detail})` : ""} done in ${Date.now() - started} ms`);
    } catch (err) {
      say(`fault ${f.kind} failed to inject: ${(err as Error).message}`);
    }
  }
  clearInterval(tallyTimer);

  // ---------- the end: no more faults, no more load, then compare ----------
  say("stopping the faults and the load");
  sourceProxy.pass();
  targetProxy.pass();
  if (longTx) await longTx;
  for (const w of loads) await w.stop();
  if (!sidecar) startSidecar();
  await tally(loads);
  const waitStarted = Date.now();
  for (const g of GROUPS) {
    const ok = await withSource(async (c) => (await c.query("select dbsync.wait_for_sync($1, '600 s') as ok", [g.sub])).rows[0].ok, 700_000);
    if (!ok) say(`!! ${g.sub} not in sync after 600 s`);
  }
  say(`in sync ${Date.now() - waitStarted} ms after the load stopped`);
  stopping = true;
  await killSidecar("SIGTERM");

  const src = new Pool({ connectionString: sourceUrl, max: 2 });
  const dst = new Pool({ connectionString: targetUrl, max: 2 });
  src.on("error", () => undefined);
  dst.on("error", () => undefined);
  const problems: string[] = [];
  for (const w of loads) problems.push(...(await w.problems(src, dst)));
  const { rows: st } = await src.query("select name, state, last_error from dbsync.status order by name");
  for (const s of st) if (s.last_error) problems.push(`${s.name}: still in error: ${s.last_error}`);
  await Promise.all([src.end(), dst.end(), monitor.end(), loadPool.end()]);

  await tally(loads, true);
  say(
    `${TABLES.length} tables compared row by row; problems: ${problems.length}; ` +
      `long transactions committed ${longTxStats.committed} (${longTxStats.rows} rows), lost to restarts ${longTxStats.lost}`,
  );
  if (unexpectedExits) {
    problems.push(`the sidecar exited by itself ${unexpectedExits} time(s):\n${exitNotes.join("\n")}`);
  }
  if (problems.length) {
    say(`FAILED:\n  ${problems.join("\n  ")}\nsidecar log: ${SIDECAR_LOG}`);
    return 1;
  }
  say(`OK: target == source, every acknowledged insert applied exactly once.${KEEP_LOGS ? ` Logs: ${WORK}` : ""}`);
  if (!KEEP_LOGS) fs.rmSync(WORK, { recursive: true, force: true });
  return 0;
}

let exiting = false;
async function shutdown(code: number) {
  if (exiting) return;
  exiting = true;
  stopping = true;
  sidecar?.proc.kill("SIGKILL");
  await Promise.allSettled([sourceProxy?.close(), targetProxy?.close()]);
  await stopAll().catch(() => undefined);
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(130));
process.on("SIGTERM", () => void shutdown(143));
main().then(
  (code) => shutdown(code),
  (err) => {
    console.error(err);
    void shutdown(1);
  },
);
