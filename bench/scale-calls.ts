// `npm run bench:scale-calls`: the CPU of the source's per-batch and per-DDL calls
// as the number of replicated tables grows, measured in the calling backend
// (/proc/<pid>/stat, so the load of a shared machine changes it little):
//   - dbsync.batch_plan of one group's batch that changed every table of the group,
//     given the tables' SQL an earlier call built (as the sidecar's process gives
//     it back: "batchPlan") and given none ("batchPlanBuilding");
//   - dbsync.execute_ddl of an ALTER TABLE ... SET DEFAULT on one table of group 1.
//
//   npm run bench:scale-calls -- [--tables 50,1000] [--groups 50] [--calls 20] [--keep]
//
// One source cluster (PostgreSQL 17, initdb's durability); tables as bench:scale's
// (id int primary key, grp int, val text, at timestamptz), 100 rows each, table i in
// group ((i - 1) mod G) + 1, one subscription per group (no copy: streaming).
import { Client } from "pg";
import { connect, startClusters, stopClusters, withClient, withDatabase } from "./clusters";
import { installDbsync } from "./dbsync";
import { median, processCpuSeconds } from "./measure";

interface Args {
  tables: number[];
  groups: number;
  calls: number;
  /** Leave the source running (its URL printed) until SIGINT, to try changes by hand. */
  keep: boolean;
}

function parseArgs(argv: string[]): Args {
  const o: Args = { tables: [50, 1000], groups: 50, calls: 20, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--tables") o.tables = argv[++i].split(",").map(Number);
    else if (a === "--groups") o.groups = Number(argv[++i]);
    else if (a === "--calls") o.calls = Number(argv[++i]);
    else if (a === "--keep") o.keep = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

/** CPU-seconds (user + system) of a server backend so far. */
function cpuOf(pid: number): number {
  const s = processCpuSeconds(pid);
  if (s === null) throw new Error(`no /proc/${pid}/stat: the server must run on this machine`);
  return s;
}

/** Per call: the median wall ms and the mean CPU ms of the backend over `calls` runs of fn on c. */
async function measure(c: Client, calls: number, fn: () => Promise<unknown>): Promise<{ wallMs: number; cpuMs: number }> {
  const pid = Number((await c.query("select pg_backend_pid() as p")).rows[0].p);
  await fn(); // warm: plans and caches of the session
  const walls: number[] = [];
  const cpu0 = cpuOf(pid);
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await fn();
    walls.push(performance.now() - t0);
  }
  return { wallMs: Math.round(median(walls)! * 10) / 10, cpuMs: Math.round(((cpuOf(pid) - cpu0) * 1000) / calls * 10) / 10 };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const env = await startClusters("default", { max_connections: 200 });
  try {
    const url = withDatabase(env.source.url(), "calls");
    await withClient(env.source.url(), (c) => c.query("create database calls"));
    await installDbsync(url);
    const c = await connect(url);
    const target = withDatabase(env.target.url(), "postgres");
    await c.query("create schema s");
    for (let g = 1; g <= args.groups; g++) {
      await c.query("select dbsync.create_group($1)", [`g${g}`]);
      await c.query("select dbsync.add_subscription($1, $2, $3, copy_data => false)", [`g${g}_a`, `g${g}`, target]);
    }
    let made = 0;
    for (const n of args.tables) {
      for (; made < n; made++) {
        const i = made + 1;
        await c.query(`create table s.t${i} (id int primary key, grp int not null, val text not null, at timestamptz not null default now());
          insert into s.t${i} (id, grp, val) select g, g % 10, md5(g::text) from generate_series(1, 100) g`);
        await c.query("select dbsync.add_table($1::regclass, $2)", [`s.t${i}`, `g${((i - 1) % args.groups) + 1}`]);
      }
      await c.query("analyze");
      const g1 = Number((await c.query("select group_id from dbsync.groups where name = 'g1'")).rows[0].group_id);
      const sub = Number((await c.query("select sub_id from dbsync.subscriptions where name = 'g1_a'")).rows[0].sub_id);
      const ddl = await measure(c, args.calls, async () => {
        await c.query("begin");
        await c.query("select dbsync.execute_ddl('g1', 'alter table s.t1 alter column val set default ''x''')");
        await c.query("commit");
      });
      const from = Number((await c.query("select dbsync.tick($1, true) as t", [g1])).rows[0].t);
      const inGroup = (await c.query("select relid::regclass::text as t from dbsync.tables where group_id = $1", [g1])).rows.map((r) => r.t);
      await c.query(inGroup.map((t) => `update ${t} set val = val || '+' where id <= 10`).join(";\n"));
      const to = Number((await c.query("select dbsync.tick($1, true) as t", [g1])).rows[0].t);
      await c.query("begin isolation level repeatable read");
      const planOf = (kept: unknown) => c.query("select dbsync.batch_plan($1, $2, $3, 1000000, 1000000, 1, null, false, $4) as p", [sub, from, to, kept]);
      const first = (await planOf(null)).rows[0].p;
      const plan = await measure(c, args.calls, () => planOf(first.kept));
      const building = await measure(c, args.calls, () => planOf(null));
      const planned = first.tables.length;
      await c.query("commit");
      process.stdout.write(JSON.stringify({ tables: n, tablesInGroup: inGroup.length, planned, executeDdl: ddl, batchPlan: plan, batchPlanBuilding: building }) + "\n");
    }
    await c.end();
    if (args.keep) {
      process.stdout.write(`source: ${url}\n`);
      await new Promise((resolve) => process.once("SIGINT", resolve));
    }
  } finally {
    await stopClusters(env);
  }
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e) + "\n");
  process.exit(1);
});
