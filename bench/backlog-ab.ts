// One backlog applied by two builds of the sidecar, side by side, on a shared
// machine: `npm run bench:backlog-ab -- <checkout> <checkout> [rounds] [--insert-only]`.
//
// `npm run bench` loads a fresh backlog for every run (2 to 5 minutes each at load
// 10 to 20 on the 2-vCPU development machine) and compares wall times, which
// that load swings by 2x from run to run. Here the backlog (the tpcb-like one of
// apply-tpcb-1: 100,000 transactions, 400,000 changes; with --insert-only, the
// insert-only one of apply-insert: as many transactions, each four INSERTs into
// history, 400,000 new rows of one table) is loaded once, kept as a
// template database on both clusters, and each apply starts from fresh copies of
// them, the builds taking turns, so a round of both costs about 20 s. Each apply
// prints, besides its wall time from the spawn, the CPU-seconds that the sidecar
// and each server used for it (/proc: the postmaster and its live and exited
// children, bench/measure.ts), which the load inflates far less than the wall
// time, and the big batch's phases from the sidecar's "batch applied" line
// (src/target/phases.ts). Medians per build at the end.
//
// Both checkouts must be built (npm run build) and read the same dbsync schema:
// the source is installed by this checkout's migrations.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { checkpoint, createDbPair, onBoth, startClusters, stopClusters, vacuumAnalyze, withClient } from "./clusters";
import { installDbsync, subscribe } from "./dbsync";
import { median, processCpuSeconds, serverCpuSeconds } from "./measure";
import { insertOnlyTransaction, runTpcb, sleep, tpcbDdl, tpcbPopulate, tpcbTableNames } from "./workloads";

const SCALE = { branches: 8, tellersPerBranch: 10, accountsPerBranch: 12500 };
const TRANSACTIONS = 100_000;
const CHANGES = 4 * TRANSACTIONS;
const TEMPLATE = "backlog_ab_template";
const COPY = "backlog_ab_apply";

interface Apply {
  build: string;
  load: number;
  seconds: number;
  cpu: { sidecar: number; source: number; target: number };
  phases: Record<string, number>;
}

/** A database's URL on the cluster of `url`. */
const onDb = (url: string, db: string) => url.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);

async function main() {
  const args = process.argv.slice(2);
  const insertOnly = args.includes("--insert-only");
  const [a, b, rounds = "3"] = args.filter((x) => x !== "--insert-only");
  if (!a || !b) throw new Error("usage: npm run bench:backlog-ab -- <checkout A> <checkout B> [rounds] [--insert-only]");
  const builds = [a, b].map((d) => path.resolve(d));
  for (const d of builds) if (!fs.existsSync(path.join(d, "dist"))) throw new Error(`${d}: not built (npm run build there)`);
  const env = await startClusters("default");
  try {
    const pair = await createDbPair(env, "backlog_ab");
    await onBoth(pair, tpcbDdl("s1") + tpcbPopulate("s1", SCALE));
    await Promise.all([pair.sourceUrl, pair.targetUrl].map((u) => vacuumAnalyze(u, tpcbTableNames("s1"))));
    await installDbsync(pair.sourceUrl);
    await subscribe(pair.sourceUrl, pair.targetUrl, "g_s1", tpcbTableNames("s1"), "sub_s1");
    console.log(`loading the backlog: ${TRANSACTIONS} ${insertOnly ? "insert-only" : "tpcb-like"} transactions, no sidecar`);
    await runTpcb({
      url: pair.sourceUrl, schemas: ["s1"], scale: SCALE, clients: 8, transactions: TRANSACTIONS,
      ...(insertOnly ? { transaction: insertOnlyTransaction } : {}),
    });
    for (const [cluster, db] of [[env.source, pair.name], [env.target, pair.name]] as const) {
      await withClient(cluster.url(), (c) => c.query(`create database ${TEMPLATE} template "${db}"`));
    }
    const applies: Apply[] = [];
    for (let r = 1; r <= Number(rounds); r++) {
      // Turns: A then B, then B then A, so that a drift of the load favours neither.
      for (const build of r % 2 ? builds : [...builds].reverse()) {
        const x = await applyOnce(env.source.url(), env.target.url(), env.source.dataDir, env.target.dataDir, build);
        applies.push(x);
        console.log(JSON.stringify(x));
      }
      await checkpoint(env);
    }
    for (const build of builds) {
      const mine = applies.filter((x) => x.build === build);
      const m = (f: (x: Apply) => number) => median(mine.map(f))!.toFixed(2);
      console.log(
        `${build}: ${mine.length} applies, median ${m((x) => x.seconds)} s from spawn (${Math.round(CHANGES / Number(m((x) => x.seconds)))} changes/s), ` +
          `CPU-s sidecar ${m((x) => x.cpu.sidecar)}, source ${m((x) => x.cpu.source)}, target ${m((x) => x.cpu.target)}, load ${m((x) => x.load)}`,
      );
    }
  } finally {
    await stopClusters(env);
  }
}

/** The backlog applied once by `build`'s sidecar, from fresh copies of the templates. */
async function applyOnce(sourceAdmin: string, targetAdmin: string, sourceDir: string, targetDir: string, build: string): Promise<Apply> {
  for (const admin of [sourceAdmin, targetAdmin]) {
    await withClient(admin, async (c) => {
      await c.query(`drop database if exists ${COPY} with (force)`);
      await c.query(`create database ${COPY} template ${TEMPLATE}`);
    });
  }
  const source = onDb(sourceAdmin, COPY);
  const target = onDb(targetAdmin, COPY);
  const last = await withClient(source, async (c) => {
    await c.query("update dbsync.subscriptions set target_conninfo = $1", [target]);
    return (await c.query("select max(hid)::int as m from s1.history")).rows[0].m as number;
  });
  await Promise.all([sourceAdmin, targetAdmin].map((u) => withClient(u, (c) => c.query("checkpoint"))));
  const poll = new Client({ connectionString: target });
  await poll.connect();
  const load = Number(fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  const [source0, target0] = [serverCpuSeconds(sourceDir)!, serverCpuSeconds(targetDir)!];
  const t0 = performance.now();
  const child = spawn(process.execPath, [path.join(build, "bin", "dbsync.js"), "run", "--source", source], {
    env: { ...process.env, DBSYNC_LOG_LEVEL: "debug" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d: Buffer) => (log += d.toString()));
  child.stderr.on("data", (d: Buffer) => (log += d.toString()));
  try {
    // The backlog's last history row on the target: the whole batch committed.
    // Looked up by its key: max(hid) walked back over the index entries of every
    // row the batch had inserted so far (not visible before its commit), each
    // poll: the target's CPU per apply was 2.8 to 3.4 s with that poll, 1.6 to
    // 2.3 s without (load 19 to 24), and its backend competed with the apply.
    for (;;) {
      const { rowCount } = await poll.query("select from s1.history where hid = $1", [last]).catch(() => ({ rowCount: 0 }));
      if (rowCount) break;
      if (performance.now() - t0 > 300_000) throw new Error(`${build}: not applied after 300 s\n${log.slice(-3000)}`);
      await sleep(5);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = {
      sidecar: processCpuSeconds(child.pid!)!,
      source: serverCpuSeconds(sourceDir)! - source0,
      target: serverCpuSeconds(targetDir)! - target0,
    };
    // The batch's line is logged after its commit, which the poll may see first.
    for (let i = 0; i < 200 && !log.includes('"batch applied"'); i++) await sleep(50);
    const round = (x: number) => Math.round(x * 1000) / 1000;
    return {
      build, load, seconds: round(seconds),
      cpu: { sidecar: round(cpu.sidecar), source: round(cpu.source), target: round(cpu.target) },
      phases: biggestBatchPhases(log),
    };
  } finally {
    await poll.end();
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
}

/** The phases (ms) of the batch of most events in the sidecar's debug log. */
function biggestBatchPhases(log: string): Record<string, number> {
  let best: { events: number; phases: Record<string, number> } = { events: -1, phases: {} };
  for (const line of log.split("\n")) {
    if (!line.includes('"batch applied"')) continue;
    const j = JSON.parse(line) as { events: number; phases: Record<string, number> };
    if (j.events > best.events) best = j;
  }
  return best.phases;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
