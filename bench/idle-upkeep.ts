// `npx tsx bench/idle-upkeep.ts`: what many idle groups cost, two builds of dbsync side
// by side (issue 19: most of 50 groups x 2 subscriptions are idle at any time).
//
//   npx tsx bench/idle-upkeep.ts --variant main=/path/to/checkout --variant branch=/path/to/checkout
//                                [--groups 50] [--targets 2] [--processes 2] [--seconds 60] [--rotate-after 30]
//
// Each variant is a built checkout (its bin/dbsync.js, dist/ built): it gets its own
// source database and --targets target databases on one pair of clusters, migrated
// by its own `dbsync migrate`, one table of 10 rows per group, every group subscribed
// by every target (no copy), and --processes `dbsync run` processes. All variants
// run at once, so they share the machine's load. Once every subscription is in sync
// and 10 s more have passed, nothing is written for --seconds, and this prints per
// variant: the CPU of the source's and the targets' backends of its databases (those
// connected at the start and end of the window), of its sidecars, the calls of
// dbsync.maintain and of the upkeep that ran (_unlogged_lost is called once per
// upkeep done: track_functions = pl), ticks and batches taken.
import { spawn, spawnSync, ChildProcess } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { connect, startClusters, stopClusters, withClient, withDatabase } from "./clusters";
import { processCpuSeconds } from "./measure";
import { sleep } from "./workloads";

interface Args {
  variants: { name: string; root: string }[];
  groups: number;
  targets: number;
  processes: number;
  seconds: number;
  rotateAfter: number;
}

function parseArgs(argv: string[]): Args {
  const o: Args = { variants: [], groups: 50, targets: 2, processes: 2, seconds: 60, rotateAfter: 30 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const n = () => Number(argv[++i]);
    if (a === "--variant") {
      const [name, root] = argv[++i].split("=");
      o.variants.push({ name, root: path.resolve(root) });
    } else if (a === "--groups") o.groups = n();
    else if (a === "--targets") o.targets = n();
    else if (a === "--processes") o.processes = n();
    else if (a === "--seconds") o.seconds = n();
    else if (a === "--rotate-after") o.rotateAfter = n();
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.variants.length) throw new Error("name at least one --variant name=/path/to/checkout");
  return o;
}

/** CPU seconds of the backends of database `db` connected now, by pid. */
async function backends(admin: Client, db: string): Promise<Map<number, number>> {
  const { rows } = await admin.query<{ pid: number }>("select pid from pg_stat_activity where datname = $1", [db]);
  const out = new Map<number, number>();
  for (const r of rows) {
    const s = processCpuSeconds(r.pid);
    if (s !== null) out.set(r.pid, s);
  }
  return out;
}

/** CPU used between two samples: pids in both, plus all of those new in the second. */
function used(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
  return sum;
}

interface Variant {
  name: string;
  bin: string;
  sourceDb: string;
  targetDbs: string[];
  sourceUrl: string;
  procs: ChildProcess[];
}

const COUNTERS = `select (select coalesce(sum(calls), 0)::int from pg_stat_user_functions where schemaname = 'dbsync' and funcname = 'maintain') as maintain,
       (select coalesce(sum(calls), 0)::int from pg_stat_user_functions where schemaname = 'dbsync' and funcname = '_unlogged_lost') as upkeep,
       (select sum(last_tick_id)::int from dbsync.groups) as ticks,
       (select sum(position_tick)::int from dbsync.subscriptions) as positions`;

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const env = await startClusters("off", { max_connections: 800, track_functions: "pl" });
  const variants: Variant[] = [];
  try {
    const srcAdmin = await connect(env.source.url());
    const tgtAdmin = await connect(env.target.url());
    for (const v of args.variants) {
      const sourceDb = `idle_${v.name}_src`;
      const targetDbs = Array.from({ length: args.targets }, (_, t) => `idle_${v.name}_t${t + 1}`);
      await srcAdmin.query(`create database ${sourceDb}`);
      for (const t of targetDbs) await tgtAdmin.query(`create database ${t}`);
      const sourceUrl = withDatabase(env.source.url(), sourceDb);
      const bin = path.join(v.root, "bin", "dbsync.js");
      const m = spawnSync(process.execPath, [bin, "migrate", "--source", sourceUrl], { encoding: "utf8" });
      if (m.status !== 0) throw new Error(`${v.name}: migrate failed: ${m.stderr}`);
      const ddl = Array.from({ length: args.groups }, (_, g) =>
        `create table t${g + 1} (id int primary key, val text); insert into t${g + 1} select i, 'x' from generate_series(1, 10) i;`).join("\n");
      await withClient(sourceUrl, async (c) => {
        await c.query(ddl);
        for (let g = 1; g <= args.groups; g++) {
          await c.query("select dbsync.add_table($1::regclass, $2)", [`t${g}`, `g${g}`]);
          for (const t of targetDbs) {
            await c.query("select dbsync.add_subscription($1, $2, $3, copy_data => false)", [`${t}_g${g}`, `g${g}`, withDatabase(env.target.url(), t)]);
          }
        }
      });
      for (const t of targetDbs) await withClient(withDatabase(env.target.url(), t), (c) => c.query(ddl));
      variants.push({ name: v.name, bin, sourceDb, targetDbs, sourceUrl, procs: [] });
    }
    for (const v of variants) {
      for (let p = 0; p < args.processes; p++) {
        v.procs.push(spawn(process.execPath, [v.bin, "run", "--source", v.sourceUrl, "--rotate-after", String(args.rotateAfter)], { stdio: "ignore" }));
      }
    }
    // One write per group, then every subscription in sync.
    for (const v of variants) {
      await withClient(v.sourceUrl, async (c) => {
        for (let g = 1; g <= args.groups; g++) await c.query(`update t${g} set val = 'y' where id = 1`);
        const { rows } = await c.query("select bool_and(dbsync.wait_for_sync(name, '300 s')) as ok from dbsync.subscriptions");
        if (!rows[0].ok) throw new Error(`${v.name}: not in sync after 300 s`);
      });
    }
    await sleep(10_000);
    const mark = async () => {
      const out = [];
      for (const v of variants) {
        const targets = [];
        for (const t of v.targetDbs) targets.push(await backends(tgtAdmin, t));
        out.push({
          source: await backends(srcAdmin, v.sourceDb),
          targets,
          sidecars: v.procs.map((p) => processCpuSeconds(p.pid!) ?? 0),
          counters: await withClient(v.sourceUrl, async (c) => (await c.query(COUNTERS)).rows[0]),
        });
      }
      return out;
    };
    const before = await mark();
    const load0 = os.loadavg()[0];
    await sleep(args.seconds * 1000);
    const after = await mark();
    const pct = (s: number) => `${((100 * s) / args.seconds).toFixed(1)}%`;
    console.log(`${args.groups} groups x ${args.targets} targets, ${args.processes} processes per variant, --rotate-after ${args.rotateAfter}, ${args.seconds} s idle; load average ${load0.toFixed(1)} -> ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores`);
    console.log("variant | source backends CPU | target backends CPU | sidecars CPU | maintain calls/min | upkeeps done/min | ticks/min | positions moved/min");
    variants.forEach((v, i) => {
      const b = before[i];
      const a = after[i];
      const perMin = (k: string) => (((Number(a.counters[k]) - Number(b.counters[k])) * 60) / args.seconds).toFixed(0);
      const targets = a.targets.reduce((s, m, t) => s + used(b.targets[t], m), 0);
      const sidecars = a.sidecars.reduce((s, x, p) => s + x - b.sidecars[p], 0);
      console.log([v.name, pct(used(b.source, a.source)), pct(targets), pct(sidecars), perMin("maintain"), perMin("upkeep"), perMin("ticks"), perMin("positions")].join(" | "));
    });
    await srcAdmin.end();
    await tgtAdmin.end();
  } finally {
    for (const v of variants) for (const p of v.procs) p.kill("SIGTERM");
    await sleep(2000);
    await stopClusters(env);
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
