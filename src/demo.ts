// `dbsync demo` (`npm run demo`): dbsync at work in well under two minutes.
// Starts two throwaway PostgreSQL servers from the embedded binaries (a development
// dependency), builds a small shop on both, seeds the source, then does what a DBA
// would: dbsync.add_table for each table (two groups: 'shop' and 'audit') and
// dbsync.add_subscription for each group, copying the existing rows. A write load
// runs while the sidecar (in this process) copies and streams; dbsync.status is
// shown every second. Then the load stops, dbsync.wait_for_sync waits for both
// subscriptions, and every target table is compared with the source, row by row.
// Exit code 0 when the target equals the source, 1 otherwise.
import type { Client } from "pg";
import { compareAll } from "./demo-compare";
import {
  StatusView, bold, connect, cyan, dim, embedded, green, more, num, red, runGuarded, say,
  sleep, startDemoSidecar, startLoad, startServer, t0, untilInterrupted,
} from "./demo-kit";
import { SHOP_DDL, SHOP_OPERATIONS, SHOP_TABLES, shopIds, shopSeedSql } from "./demo-shop";
import { migrate } from "./migrate";

export interface DemoOptions {
  /** Leave servers and sidecar running after the check, until Ctrl-C. */
  keep: boolean;
  /** How long the write load runs. */
  seconds: number;
  /** Concurrent writers. */
  clients?: number;
  /** Transactions per second the writers aim at together. */
  rate?: number;
}

const DB = "shop";

const TABLES: { name: string; group: string }[] = SHOP_TABLES.map((name) => ({
  name,
  group: name === "audit_log" ? "audit" : "shop",
}));
const SUBSCRIPTIONS = [
  { name: "shop_replica", group: "shop" },
  { name: "audit_replica", group: "audit" },
];

const SEED = { customers: 10_000, orders: 40_000, audit: 40_000 };

export const runDemo = (opts: DemoOptions): Promise<number> => runGuarded(() => demo(opts));

async function demo(opts: DemoOptions): Promise<number> {
  const clientsN = opts.clients ?? 4;
  const rate = opts.rate ?? 500;
  console.log(bold("dbsync demo") + ": two throwaway PostgreSQL servers, a shop, a write load, live replication.\n");

  // 1. Servers.
  const major = (await embedded("demo")).majorFromEnv();
  say(`starting PostgreSQL ${major} twice (embedded binaries, throwaway data folders) ...`);
  const [source, target] = await Promise.all([startServer("demo", major), startServer("demo", major)]);
  more(`source on port ${source.port}, target on port ${target.port}`);

  // 2. The shop, on both; data on the source only.
  for (const c of [source, target]) {
    const admin = await connect(c.url());
    await admin.query(`create database ${DB}`);
  }
  const sourceUrl = source.url(DB);
  const targetUrl = target.url(DB);
  const src = await connect(sourceUrl);
  const dst = await connect(targetUrl);
  await src.query(SHOP_DDL);
  await dst.query(SHOP_DDL);
  say(`created database "${DB}" on both: ${TABLES.map((t) => t.name).join(", ")}`);
  await src.query(shopSeedSql(SEED));
  const counts = await rowCounts(src);
  say(`seeded the source: ${TABLES.map((t) => `${num(counts[t.name])} ${t.name}`).join(", ")}`);

  // 3. dbsync, through its SQL API.
  const m = await migrate(sourceUrl);
  say(`dbsync migrate --source ${sourceUrl}  ${dim(`(${m.applied.length ? "schema dbsync installed" : "up to date"})`)}`);
  for (const t of TABLES) {
    await src.query("select dbsync.add_table($1, $2)", [t.name, t.group]);
    more(cyan(`select dbsync.add_table('${t.name}', '${t.group}');`));
  }
  for (const s of SUBSCRIPTIONS) {
    await src.query("select dbsync.add_subscription($1, $2, $3)", [s.name, s.group, targetUrl]);
    more(cyan(`select dbsync.add_subscription('${s.name}', '${s.group}', '${targetUrl}');`));
  }
  more(dim("(both subscriptions copy the existing rows first, then stream)"));

  // 4. Write load, then the sidecar.
  const load = startLoad(sourceUrl, clientsN, rate, SHOP_OPERATIONS, shopIds(SEED));
  await load.ready;
  say(`write load: ${clientsN} clients, up to ${rate} transactions/s (new orders, status changes, deletes, customers, audit)`);
  const sidecar = await startDemoSidecar(sourceUrl);
  say(`sidecar started in this process (what \`dbsync run --source ${sourceUrl}\` runs)\n`);

  // 5. Live status.
  const mon = await connect(sourceUrl);
  const status = new StatusView(mon, load);
  const loadStart = Date.now();
  // A first look at once, while the copies run; then every second.
  await sleep(400);
  await status.show();
  for (let i = 1; i <= opts.seconds; i++) {
    await sleep(loadStart + i * 1000 - Date.now());
    await status.show();
  }
  load.stop();
  await load.done;
  status.finish();
  const l = load.stats();
  say(`load stopped: ${num(l.committed)} transactions in ${l.seconds.toFixed(1)} s` +
    (l.failed ? dim(` (${num(l.failed)} failed and were skipped, as an application would: ${l.lastError})`) : ""));

  // 6. Wait, then compare.
  let ok = true;
  for (const s of SUBSCRIPTIONS) {
    const started = Date.now();
    const { rows } = await mon.query("select dbsync.wait_for_sync($1, '60 s') as ok", [s.name]);
    const took = ((Date.now() - started) / 1000).toFixed(1);
    say(`${cyan(`select dbsync.wait_for_sync('${s.name}');`)}  ${rows[0].ok ? green("true") : red("false")} ${dim(`(${took} s)`)}`);
    if (!rows[0].ok) ok = false;
  }
  if (!ok) {
    const { rows } = await mon.query("select name, state, backlog_events, last_error from dbsync.status order by name");
    for (const r of rows) more(`${r.name}: ${r.state}, backlog ${num(r.backlog_events)}${r.last_error ? `, last error: ${r.last_error}` : ""}`);
  }
  if (!(await compareAll(src, dst))) ok = false;
  const warnings = sidecar.warnings();
  if (warnings.length) {
    more(dim(`the sidecar logged ${warnings.length} warning(s)/error(s); last: ${warnings[warnings.length - 1]}`));
  }

  console.log(`\nLook at both with psql${opts.keep ? "" : dim(" (after `npm run demo -- --keep`, which keeps the servers up)")}:`);
  console.log(`  source:  psql ${source.url(DB)}`);
  console.log(dim("           select * from dbsync.status;  select * from dbsync.table_status;"));
  console.log(`  target:  psql ${target.url(DB)}`);
  console.log(dim("           select count(*) from orders;  select * from dbsync.applied;"));
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(
    "\n" + (ok ? green(bold("GREEN")) + ": the target equals the source." : red(bold("RED")) + ": the target differs from the source.") +
      dim(` (${secs} s)`) + "\n",
  );

  if (opts.keep) {
    console.log("The servers and the sidecar keep running: write to the source and watch it arrive on the target.");
    await untilInterrupted();
  }
  return ok ? 0 : 1;
}

async function rowCounts(c: Client): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of TABLES) out[t.name] = Number((await c.query(`select count(*) from ${t.name}`)).rows[0].count);
  return out;
}
