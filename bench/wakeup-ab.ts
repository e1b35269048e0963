// Wake-up latency and what an idle group costs, two dbsync checkouts side by side:
// `npm run bench:wakeup-ab -- DIR_A DIR_B [--max-prepared N] [--rates R,R] [--seconds S]`
// (each DIR a checkout whose dist/ is built). One source cluster (its
// max_prepared_transactions N, 0 by default: where it is above 0, capture sends no
// NOTIFY, see _capture_notifies) and one target; per checkout a database pair,
// migrated by that checkout's `bin/dbsync.js migrate`, and its own `dbsync run`
// (default settings: --poll-interval 1 s). Per rate, in alternating order: single-row
// INSERTs paced at R a second for S seconds, each timed from its commit to its
// arrival on the target (an ALWAYS trigger there stamps clock_timestamp(); one
// machine, one clock); then S seconds without writes, the CPU of the source's
// backends of its database (/proc) over that time: what a sleeping group costs.
import fs from "node:fs";
import path from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { Client } from "pg";
import { startCluster } from "../src/embedded/cluster";

function option(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

/** CPU ms so far of each of the server's backends of database `db` (Linux /proc, 10 ms ticks; their titles name it). */
function backendsCpuMs(postmaster: number, db: string): Map<string, number> {
  const ms = new Map<string, number>();
  for (const d of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const f = fs.readFileSync(`/proc/${d}/stat`, "utf8").split(") ")[1].split(" ");
      if (Number(f[1]) === postmaster && fs.readFileSync(`/proc/${d}/cmdline`, "utf8").includes(` ${db} `)) ms.set(d, (Number(f[11]) + Number(f[12])) * 10);
    } catch {
      // gone meanwhile
    }
  }
  return ms;
}

/** CPU ms between two readings: the backends alive at the second (one gone between is not counted). */
function cpuBetween(a: Map<string, number>, b: Map<string, number>): number {
  let ms = 0;
  for (const [pid, v] of b) ms += v - (a.get(pid) ?? 0);
  return ms;
}

async function client(url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  c.on("error", (err) => console.error(`${url}: ${err.message}`));
  await c.connect();
  return c;
}

async function main() {
  const dirs = process.argv.slice(2, 4).map((d) => path.resolve(d));
  if (dirs.length !== 2) throw new Error("usage: wakeup-ab.ts DIR_A DIR_B [--max-prepared N] [--rates R,R] [--seconds S]");
  const maxPrepared = Number(option("max-prepared", "0"));
  const rates = option("rates", "20,2,0.3").split(",").map(Number);
  const seconds = Number(option("seconds", "20"));
  const [source, target] = await Promise.all([startCluster({ settings: { max_prepared_transactions: maxPrepared } }), startCluster()]);
  const sides: { name: string; db: string; src: Client; dst: Client; stop: () => void }[] = [];
  try {
    for (const [i, dir] of dirs.entries()) {
      const db = `wakeup_ab_${i}`;
      for (const cl of [source, target]) {
        const admin = await client(cl.url());
        await admin.query(`create database ${db}`);
        await admin.end();
      }
      const [sourceUrl, targetUrl] = [source.url(db), target.url(db)];
      execFileSync(process.execPath, [path.join(dir, "bin/dbsync.js"), "migrate", "--source", sourceUrl], { stdio: "ignore" });
      const src = await client(sourceUrl);
      const dst = await client(targetUrl);
      await src.query("create table t (id bigint primary key, at timestamptz not null)");
      await dst.query(`create table t (id bigint primary key, at timestamptz not null, arrived timestamptz);
        create function arrived() returns trigger language plpgsql as $$ begin new.arrived := clock_timestamp(); return new; end $$;
        create trigger arrived before insert on t for each row execute procedure arrived();
        alter table t enable always trigger arrived`);
      await src.query("select dbsync.add_table('t', 'g'), dbsync.add_subscription('s', 'g', $1, copy_data => false)", [targetUrl]);
      const proc = spawn(process.execPath, [path.join(dir, "bin/dbsync.js"), "run", "--source", sourceUrl], { stdio: "ignore" });
      const version = (await src.query("select dbsync._capture_version() as v")).rows[0].v;
      sides.push({ name: `${path.basename(dir)} (capture v${version})`, db, src, dst, stop: () => proc.kill("SIGTERM") });
    }
    // The source's postmaster: the parent of a backend.
    const backend = (await sides[0].src.query("select pg_backend_pid() as p")).rows[0].p;
    const postmaster = Number(fs.readFileSync(`/proc/${backend}/stat`, "utf8").split(") ")[1].split(" ")[1]);
    await sleep(5000);
    const results = new Map<string, string[]>();
    for (const [r, rate] of rates.entries()) {
      for (const s of r % 2 ? [...sides].reverse() : sides) {
        console.error(`${s.name} at ${rate} tx/s`);
        const from = (await s.src.query("select coalesce(max(id), 0) as m from t")).rows[0].m;
        const n = Math.max(3, Math.round(rate * seconds));
        const t0 = Date.now();
        for (let k = 0; k < n; k++) {
          await sleep(t0 + (k * 1000) / rate - Date.now());
          await s.src.query("insert into t values ($1, clock_timestamp())", [Number(from) + k + 1]);
        }
        while ((await s.dst.query("select count(*)::int as n from t where id > $1", [from])).rows[0].n < n) await sleep(50);
        const all = (await s.dst.query("select extract(epoch from arrived - at) * 1000 as ms from t where id > $1 order by id", [from])).rows.map((x) => Number(x.ms));
        // The first write after the idle time apart: the others' loop may linger.
        const [first, ms] = [all[0], all.slice(1)];
        // Idle: the group asleep, nothing written.
        await sleep(3000);
        const cpu0 = backendsCpuMs(postmaster, s.db);
        await sleep(seconds * 1000);
        const idle = cpuBetween(cpu0, backendsCpuMs(postmaster, s.db)) / seconds;
        results.set(s.name, [...(results.get(s.name) ?? []),
          `${rate} tx/s: first ${first.toFixed(0)} ms, then p50 ${pct(ms, 0.5).toFixed(0)} ms, p90 ${pct(ms, 0.9).toFixed(0)}, max ${Math.max(...ms).toFixed(0)} (${ms.length} tx); idle source CPU ${idle.toFixed(1)} ms/s`]);
      }
    }
    console.log(`max_prepared_transactions ${maxPrepared}, load average ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}:`);
    for (const [name, lines] of results) for (const l of lines) console.log(`  ${name.padEnd(32)} ${l}`);
  } finally {
    for (const s of sides) {
      s.stop();
      await Promise.all([s.src.end(), s.dst.end()]);
    }
    await sleep(2000);
    await Promise.all([source.stop(), target.stop()]);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
