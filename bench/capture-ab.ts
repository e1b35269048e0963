// Capture's CPU cost, two dbsync checkouts side by side: `npm run bench:capture-ab --
// DIR_A DIR_B [--updates N] [--bulk-rows N] [--rounds N]` (each DIR a checkout whose
// dist/ is built: `npm run build` there). One throwaway PostgreSQL cluster (fsync off:
// the CPU-bound case) with a database per checkout, migrated by that checkout's
// `bin/dbsync.js migrate`; in each, a pgbench-like accounts table and the bench's bulk
// table, captured (add_table), and in A's database the same two uncaptured. Per round,
// in alternating order: N single-row UPDATEs of accounts, each its own transaction (a
// procedure, COMMIT after each), and one UPDATE of every bulk row. Figures are the
// backend's CPU (utime + stime of /proc/<pid>/stat, 10 ms ticks) per UPDATE and per
// bulk row: unlike the wall clock, it does not count the time other processes of a
// shared machine take (bench/HISTORY.md, capture version 6 trial).
// --sleeping: every captured group flagged asleep (as while the sidecar waits for
// work: the path where capture may NOTIFY), with a session LISTENing in each
// database; --max-prepared N: the server's max_prepared_transactions (0 by default,
// PostgreSQL's: with more, capture does not notify, see _capture_notifies).
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { Client } from "pg";
import { startCluster } from "../src/embedded/cluster";
import { bulkDdl, bulkUpdateSql } from "./workloads";

function option(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

/** The backend's CPU time so far, ms (Linux, same machine). */
function cpuMs(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function main() {
  const dirs = process.argv.slice(2, 4).map((d) => path.resolve(d));
  if (dirs.length !== 2) throw new Error("usage: capture-ab.ts DIR_A DIR_B [--updates N] [--bulk-rows N] [--rounds N] [--sleeping] [--max-prepared N]");
  const updates = option("updates", 5_000);
  const bulkRows = option("bulk-rows", 200_000);
  const rounds = option("rounds", 5);
  const sleeping = process.argv.includes("--sleeping");
  const maxPrepared = option("max-prepared", 0);
  const cluster = await startCluster({ settings: { fsync: "off", full_page_writes: "off", shared_buffers: "512MB", max_prepared_transactions: maxPrepared } });
  const sides: { name: string; c: Client; pid: number; tables: string[] }[] = [];
  const listeners: Client[] = [];
  try {
    for (const [i, dir] of dirs.entries()) {
      const db = `capture_ab_${i}`;
      const admin = new Client({ connectionString: cluster.url() });
      await admin.connect();
      await admin.query(`create database ${db}`);
      await admin.end();
      execFileSync(process.execPath, [path.join(dir, "bin/dbsync.js"), "migrate", "--source", cluster.url(db)], { stdio: "ignore" });
      const c = new Client({ connectionString: cluster.url(db) });
      await c.connect();
      const plain = i === 0 ? ["acc_plain", "bulk_plain"] : [];
      const sets: { acc: string; bulk: string; capture: boolean }[] = [{ acc: "acc", bulk: "bulk", capture: true }];
      if (plain.length) sets.push({ acc: plain[0], bulk: plain[1], capture: false });
      for (const { acc, bulk, capture } of sets) {
        await c.query(`create table ${acc} (aid int primary key, bid int, abalance int, filler char(84));
          insert into ${acc} select g, 1, 0, '' from generate_series(1, 100000) g;
          ${bulkDdl(bulk)};
          insert into ${bulk} select g, g % 100, g, 'note ' || g, now() from generate_series(1, ${bulkRows}) g;
          create procedure ${acc}_loop(n int) language plpgsql as $$ begin
            for i in 1..n loop update ${acc} set abalance = abalance + 1 where aid = 1 + (i * 7919) % 100000; commit; end loop; end $$`);
        if (capture) await c.query(`select dbsync.add_table('${acc}', 'ab'); select dbsync.add_table('${bulk}', 'ab')`);
        await c.query(`vacuum analyze ${acc}, ${bulk}`);
      }
      if (sleeping) {
        await c.query("select dbsync.set_sleeping(group_id, true) from dbsync.groups");
        const l = new Client({ connectionString: cluster.url(db) });
        await l.connect();
        await l.query("listen dbsync");
        listeners.push(l);
      }
      const version = (await c.query("select dbsync._capture_version() as v")).rows[0].v;
      const pid = (await c.query("select pg_backend_pid() as p")).rows[0].p;
      sides.push({ name: `${path.basename(dir)} (capture v${version})`, c, pid, tables: ["acc", "bulk"] });
      if (plain.length) sides.push({ name: "no capture", c, pid, tables: plain });
    }
    const perUpdate = new Map<string, number[]>();
    const perRow = new Map<string, number[]>();
    for (let r = 0; r < rounds; r++) {
      for (const s of r % 2 ? [...sides].reverse() : sides) {
        const [acc, bulk] = s.tables;
        let t = cpuMs(s.pid);
        await s.c.query(`call ${acc}_loop(${updates})`);
        perUpdate.set(s.name, [...(perUpdate.get(s.name) ?? []), ((cpuMs(s.pid) - t) * 1000) / updates]);
        t = cpuMs(s.pid);
        await s.c.query(bulkUpdateSql(bulk));
        perRow.set(s.name, [...(perRow.get(s.name) ?? []), ((cpuMs(s.pid) - t) * 1000) / bulkRows]);
        await s.c.query(`vacuum ${acc}, ${bulk}`);
      }
    }
    const base = sides.find((s) => s.name === "no capture")!;
    const u0 = median(perUpdate.get(base.name)!);
    const b0 = median(perRow.get(base.name)!);
    console.log(`${sleeping ? "groups asleep, " : ""}max_prepared_transactions ${maxPrepared}; backend CPU, median of ${rounds} rounds (load average ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}):`);
    for (const s of sides) {
      const u = median(perUpdate.get(s.name)!);
      const b = median(perRow.get(s.name)!);
      console.log(`  ${s.name.padEnd(40)} single-row UPDATE + COMMIT ${u.toFixed(1)} µs (capture ${(u - u0).toFixed(1)})` +
        ` | UPDATE of ${bulkRows} rows ${b.toFixed(2)} µs a row (${(b / b0).toFixed(2)}×)`);
    }
  } finally {
    for (const c of [...listeners, ...sides.filter((s) => s.name !== "no capture").map((s) => s.c)]) await c.end();
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
