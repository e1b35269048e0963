// `npm run bench:copy-memory`: peak RSS (VmHWM) of the sidecar while it copies a
// 1,000,000-row table into an empty target, sampled every 100 ms from /proc, and
// the copy's duration. The bound is 200 MB.
import fs from "node:fs";
import { Client } from "pg";
import { startCluster, stopAll } from "../src/embedded/cluster";
import { migrate } from "../src/migrate";
import { spawnDbsync } from "../test/kit/dbsync";
import { sleep } from "../test/kit/wait";

async function main() {
  const [s, t] = await Promise.all([startCluster(), startCluster()]);
  await migrate(s.url());
  const src = new Client({ connectionString: s.url() }); await src.connect();
  const tgt = new Client({ connectionString: t.url() }); await tgt.connect();
  const ddl = "create table big (id bigint primary key, a int, b text, c timestamptz default now(), d numeric)";
  await src.query(ddl); await tgt.query(ddl);
  await src.query("insert into big select g, g % 1000, repeat(md5(g::text), 3), now(), g * 1.5 from generate_series(1, 1000000) g");
  await src.query("analyze big");
  await src.query("select dbsync.add_table('big', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1)", [t.url()]);
  const t0 = Date.now();
  const sidecar = spawnDbsync(["run", "--source", s.url()], { onLine: () => undefined });
  let peak = 0;
  const timer = setInterval(() => {
    try {
      const st = fs.readFileSync(`/proc/${sidecar.proc.pid}/status`, "utf8");
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(st)![1]);
      peak = Math.max(peak, hwm);
    } catch {
      // The child exited between two samples.
    }
  }, 100);
  for (;;) {
    const r = await src.query("select state, rows_copied from dbsync.table_status");
    if (r.rows[0].state === "streaming" || r.rows[0].state === "catching_up") break;
    await sleep(200);
  }
  const secs = (Date.now() - t0) / 1000;
  clearInterval(timer);
  const n = (await tgt.query("select count(*) from big")).rows[0].count;
  console.log(JSON.stringify({ rows: Number(n), seconds: secs, peakRssMB: Math.round(peak / 1024) }));
  await sidecar.stop();
  await src.end(); await tgt.end(); await stopAll();
}
main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
