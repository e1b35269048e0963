// `npm run demo:upgrade`: a major-version upgrade with seconds of downtime, as the
// README's walkthrough does it, on two throwaway servers. The source is the
// oldest PostgreSQL that runs here (10 if it does) holding a web shop of a chosen
// size (--mb) with foreign keys, identity columns, a sequence of its own and a
// partitioned table, written to all along by the shop's load. Then, as a DBA:
// dbsync migrate; add_all_tables (and add_sequence for the sequence no table
// owns); the target, PostgreSQL 17, gets the schema from pg_dump --schema-only
// without dbsync's schemas and triggers (demo-pgdump.ts); add_subscription; the
// sidecar copies and streams. Cutover: the writes stop, wait_for_sync, the
// sequences are checked, drop_subscription; how long writes were stopped is
// printed. Then every table is compared row by row and the application writes on
// the target. Exit code 0 when the target equals the source and its sequences are
// ahead, 1 otherwise.
import { Command, InvalidArgumentError } from "commander";
import type { Client } from "pg";
import { compareAll, compareSequences } from "./demo-compare";
import {
  StatusView, bold, connect, cyan, dim, embedded, green, more, num, red, runGuarded, say, seconds, sleep,
  startDemoSidecar, startLoad, startServer, t0, untilInterrupted, yellow, type Operation,
} from "./demo-kit";
import { copySchema, findPgDump } from "./demo-pgdump";
import { SHOP_DDL, SHOP_OPERATIONS, SHOP_TABLES, shopIds, shopSeedSql, type ShopSize } from "./demo-shop";
import type { Cluster } from "./embedded/cluster";
import { messageOf } from "./errors";
import { migrate } from "./migrate";

export interface UpgradeOptions {
  /** About this many MB of data on the source. */
  mb: number;
  /** Source major; default: the oldest that runs here. */
  from?: number;
  to: number;
  /** How long the stream runs under load once the copy is done, before the cutover. */
  streamSeconds: number;
  clients: number;
  rate: number;
  keep: boolean;
}

const DB = "app";
const GROUP = "app";
const SUBSCRIPTION = "upgrade";
const CUTOVER_TARGET_MS = 5000;

/** Seed rows for about `mb` MB: per order about 880 bytes with its share of the other tables and the indexes. */
function sizeFor(mb: number): ShopSize & { views: number } {
  const orders = Math.max(1000, Math.round(mb * 1190));
  return { customers: Math.ceil(orders / 4), orders, audit: orders, views: orders * 2 };
}

/** Monthly partitions of page_views: five months back, this month and the next. */
function months(): string[] {
  const now = new Date();
  return Array.from({ length: 7 }, (_, i) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 5 + i, 1)))
    .map((d) => d.toISOString().slice(0, 10));
}

/**
 * The shop's tables, and: invoices numbered by a sequence no table owns, and page
 * views partitioned by month. PostgreSQL 10 has no key on a partitioned table, so
 * there each partition has its own.
 */
function schemaDdl(major: number): string {
  const key = "primary key (viewed_on, id)";
  const m = months();
  const parts = m.slice(0, -1).map((from, i) =>
    `create table page_views_${from.slice(0, 7).replace("-", "_")} partition of page_views` +
      `${major < 11 ? ` (${key})` : ""} for values from ('${from}') to ('${m[i + 1]}');`);
  return `${SHOP_DDL}
create sequence invoice_number start 100001;
create table invoices (
    number     bigint primary key default nextval('invoice_number'),
    order_id   bigint not null unique references orders on delete cascade,
    issued_at  timestamptz not null default now(),
    amount     numeric(12,2) not null
);
create table page_views (
    id           bigserial,
    viewed_on    date not null default current_date,
    customer_id  bigint,
    path         text not null,
    ms           int not null${major < 11 ? "" : `,\n    ${key}`}
) partition by range (viewed_on);
${parts.join("\n")}`;
}

function seedSql(n: ReturnType<typeof sizeFor>): string {
  return `${shopSeedSql(n)}
insert into invoices (order_id, amount, issued_at)
select id, total, created_at + interval '1 hour' from orders where status in ('paid', 'shipped', 'delivered') order by id;
insert into page_views (viewed_on, customer_id, path, ms)
select current_date - (g % 140), 1 + g % ${n.customers}, '/product/' || (g % 500), g % 900
  from generate_series(1, ${n.views}) g;
analyze;`;
}

/** The shop's load, plus invoices for paid orders and page views. */
const OPERATIONS: Operation[] = [
  ...SHOP_OPERATIONS,
  {
    weight: 8,
    run: ({ c, ids, rnd }) =>
      c.query(
        `insert into invoices (order_id, amount) select id, total from orders where id = $1 and status <> 'new'
         on conflict (order_id) do nothing`,
        [rnd(ids.order)],
      ),
  },
  {
    weight: 30,
    run: ({ c, ids, rnd }) =>
      c.query("insert into page_views (customer_id, path, ms) values ($1, $2, $3)",
        [rnd(ids.customer), `/product/${rnd(500)}`, rnd(900)]),
  },
];

export const runUpgradeDemo = (opts: UpgradeOptions): Promise<number> => runGuarded(() => upgrade(opts));

async function upgrade(opts: UpgradeOptions): Promise<number> {
  console.log(bold("dbsync demo:upgrade") + ": an old PostgreSQL to a current one, under write load, with seconds of downtime.\n");
  const pg = await findPgDump();

  // 1. Servers: the oldest source that runs here, and the target.
  const { SUPPORTED_MAJORS } = await embedded("demo:upgrade");
  const { source, target } = await servers(opts, SUPPORTED_MAJORS);
  if (pg.major < source.major) {
    throw new Error(`pg_dump ${pg.major} cannot read a PostgreSQL ${source.major} server: set DBSYNC_PG_DUMP to a pg_dump of major ${opts.to}`);
  }
  more(`source: PostgreSQL ${source.major} on port ${source.port}; target: PostgreSQL ${target.major} on port ${target.port}`);

  // 2. The application's database on the source, then its load.
  for (const c of [source, target]) await (await connect(c.url())).query(`create database ${DB}`);
  const sourceUrl = source.url(DB);
  const targetUrl = target.url(DB);
  const src = await connect(sourceUrl);
  const dst = await connect(targetUrl);
  await src.query(schemaDdl(source.major));
  const size = sizeFor(opts.mb);
  say(`seeding the source (about ${num(opts.mb)} MB: ${num(size.orders)} orders with their items, customers, invoices, page views) ...`);
  await src.query(seedSql(size));
  say(`source database "${DB}": ${await dbSize(src)} in ${[...SHOP_TABLES, "invoices", "page_views"].join(", ")}`);
  const load = startLoad(sourceUrl, opts.clients, opts.rate, OPERATIONS, shopIds(size));
  await load.ready;
  say(`the application writes: ${opts.clients} clients, up to ${opts.rate} transactions/s, until the cutover`);

  // 3. dbsync on the source.
  await migrate(sourceUrl);
  say(`dbsync migrate --source ${sourceUrl}`);
  if (source.major < 11) {
    // A partitioned table without a primary key: add_all_tables would refuse it.
    await src.query("select dbsync.add_table('public.page_views', $1, key_columns => array['viewed_on', 'id'])", [GROUP]);
    more(cyan(`select dbsync.add_table('public.page_views', '${GROUP}', key_columns => array['viewed_on', 'id']);`) +
      dim("  -- PostgreSQL 10: no key on a partitioned table"));
  }
  const added = await value(src, "select dbsync.add_all_tables('public', $1)", [GROUP]);
  more(cyan(`select dbsync.add_all_tables('public', '${GROUP}');`) + dim(`  -- ${added} tables, with the sequences they own`));
  await src.query("select dbsync.add_sequence('public.invoice_number', $1)", [GROUP]);
  more(cyan(`select dbsync.add_sequence('public.invoice_number', '${GROUP}');`) + dim("  -- a sequence no table owns"));

  // 4. The target's schema.
  const copy = await copySchema(pg, sourceUrl, targetUrl);
  say(`the target's schema, from pg_dump ${pg.major} of the source, without dbsync's schemas and its ${copy.removed.length} triggers:`);
  for (const c of copy.commands) more(cyan(c));
  const leftovers = await value(dst, `select (select count(*) from pg_trigger where tgname like 'dbsync%')
      + (select count(*) from pg_event_trigger) + (select count(*) from pg_namespace where nspname like 'dbsync%')`);
  if (Number(leftovers) !== 0) throw new Error(`the restored schema holds ${leftovers} dbsync objects`);

  // 5. Subscribe: copy, then stream.
  await src.query("select dbsync.add_subscription($1, $2, $3)", [SUBSCRIPTION, GROUP, targetUrl]);
  more(cyan(`select dbsync.add_subscription('${SUBSCRIPTION}', '${GROUP}', '${targetUrl}');`));
  const sidecar = await startDemoSidecar(sourceUrl);
  say(`sidecar started in this process (what \`dbsync run --source ${sourceUrl}\` runs)\n`);
  const mon = await connect(sourceUrl);
  const status = new StatusView(mon, load);
  const copyStart = Date.now();
  await waitStreaming(status);
  const copyMs = Date.now() - copyStart;
  for (let i = 0; i < opts.streamSeconds; i++) {
    await sleep(1000);
    await status.show();
  }
  status.finish();
  say(`copied in ${seconds(copyMs)}, then streamed for ${opts.streamSeconds} s under load`);

  // 6. Cutover.
  say(bold("cutover:") + " the application stops writing to the source ...");
  const stopAt = Date.now();
  load.stop();
  await load.done;
  const stoppedMs = Date.now() - stopAt;
  const synced = await value(mon, "select dbsync.wait_for_sync($1, '60 s')", [SUBSCRIPTION]);
  const syncedMs = Date.now() - stopAt - stoppedMs;
  const seqs = await compareSequences(src, dst);
  const seqMs = Date.now() - stopAt - stoppedMs - syncedMs;
  await mon.query("select dbsync.drop_subscription($1)", [SUBSCRIPTION]);
  const downMs = Date.now() - stopAt;
  more(`last transactions finished          ${seconds(stoppedMs)}`);
  more(`${cyan(`select dbsync.wait_for_sync('${SUBSCRIPTION}');`)}  ${synced ? green("true") : red("false")}  ${seconds(syncedMs)}`);
  const seqOk = seqs.every((s) => s.ok);
  more(`sequences on the target at least at the source's: ${seqOk ? green("yes") : red("NO")} ` +
    dim(`(${seqs.map((s) => `${s.name} ${num(s.source)} -> ${s.target === null ? "missing" : num(s.target)}`).join(", ")})`) +
    `  ${seconds(seqMs)}`);
  more(`${cyan(`select dbsync.drop_subscription('${SUBSCRIPTION}');`)}`);
  const l = load.stats();
  say(bold(`writes were stopped for ${seconds(downMs)}`) +
    ` (target: under ${CUTOVER_TARGET_MS / 1000} s ${downMs < CUTOVER_TARGET_MS ? green("met") : yellow("missed")}); ` +
    `the application committed ${num(l.committed)} transactions on the source` +
    (l.failed ? dim(` (${num(l.failed)} failed and were skipped, as an application would: ${l.lastError})`) : ""));
  more("from here the application writes to the target");

  // 7. The proof: neither side is written now.
  let ok = synced === true && seqOk;
  if (!(await compareAll(src, dst))) ok = false;
  const first = await value(dst, `with o as (insert into orders (customer_id, status, total) values (1, 'new', 9.99) returning id)
      insert into invoices (order_id, amount) select id, 9.99 from o returning number`);
  say(`the application's first order on the target got invoice number ${num(String(first))}: the carried sequences go on, no key collides`);
  const warnings = sidecar.warnings();
  if (warnings.length) more(dim(`the sidecar logged ${warnings.length} warning(s)/error(s); last: ${warnings[warnings.length - 1]}`));

  console.log(`\n  source:  psql ${sourceUrl}\n  target:  psql ${targetUrl}` +
    (opts.keep ? "" : dim("  (--keep keeps them up)")));
  console.log(
    "\n" + (ok ? green(bold("GREEN")) + `: PostgreSQL ${target.major} holds what PostgreSQL ${source.major} held.`
      : red(bold("RED")) + ": the target differs from the source.") + dim(` (${seconds(Date.now() - t0)})`) + "\n",
  );
  if (opts.keep) {
    console.log("The servers keep running.");
    await untilInterrupted();
  }
  return ok ? 0 : 1;
}

/** The source (the oldest major that runs here, unless --from) and the target. */
async function servers(opts: UpgradeOptions, supported: number[]): Promise<{ source: Cluster; target: Cluster }> {
  say(`starting the target, PostgreSQL ${opts.to}, and the source, ${opts.from ? `PostgreSQL ${opts.from}` : "the oldest PostgreSQL that runs here"} ...`);
  const targetP = startServer("demo:upgrade", opts.to);
  const candidates = opts.from ? [opts.from] : supported.filter((m) => m < opts.to);
  for (const [i, major] of candidates.entries()) {
    try {
      const source = await startServer("demo:upgrade", major);
      return { source, target: await targetP };
    } catch (err) {
      if (i === candidates.length - 1) {
        await targetP.catch(() => undefined);
        throw err;
      }
      more(yellow(`PostgreSQL ${major} does not run here: ${messageOf(err).split("\n")[0]}`));
    }
  }
  throw new Error(`no PostgreSQL older than ${opts.to} to upgrade from`);
}

/**
 * Shows the status every second until every table streams, less than 2 s behind;
 * on a machine too busy for that, at most 30 s after every table streams (the
 * cutover then waits for the lag, and says how long).
 */
async function waitStreaming(status: StatusView): Promise<void> {
  let failingSince: number | undefined;
  let streamingSince: number | undefined;
  for (;;) {
    await sleep(1000);
    const subs = await status.show();
    const s = subs[0];
    streamingSince = s.state === "streaming" ? streamingSince ?? Date.now() : undefined;
    if (streamingSince && (Number(s.lag_seconds) < 2 || Date.now() - streamingSince > 30_000)) return;
    failingSince = s.last_error ? failingSince ?? Date.now() : undefined;
    if (failingSince && Date.now() - failingSince > 60_000) throw new Error(`the subscription has failed for a minute: ${s.last_error}`);
  }
}

async function value(c: Client, sql: string, params: unknown[] = []): Promise<unknown> {
  const { rows } = await c.query({ text: sql, values: params, rowMode: "array" });
  return rows[0][0];
}

const dbSize = async (c: Client) => String(await value(c, "select pg_size_pretty(pg_database_size(current_database()))"));

// ---------------------------------------------------------------------------------

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("a positive integer");
  return n;
}

if (require.main === module) {
  const o = new Command("demo:upgrade")
    .description("a tested major-version upgrade: the oldest PostgreSQL that runs here -> 17, under write load (needs the dev dependencies, and pg_dump)")
    .option("--mb <n>", "about this many MB of data on the source (400: the README's figure)", positive, 50)
    .option("--from <major>", "source major (default: the oldest that runs here)", positive)
    .option("--to <major>", "target major", positive, 17)
    .option("--stream-seconds <n>", "how long the stream runs under load before the cutover", positive, 5)
    .option("--clients <n>", "the application's connections", positive, 4)
    .option("--rate <n>", "its transactions per second, together", positive, 200)
    .option("--keep", "leave the servers running until Ctrl-C")
    .addHelpText("after", "\nDBSYNC_PG_DUMP names the pg_dump to use (default: the one on PATH; pg_restore from the same folder).")
    .parse()
    .opts();
  void runUpgradeDemo({
    mb: o.mb, from: o.from, to: o.to, streamSeconds: o.streamSeconds, clients: o.clients, rate: o.rate, keep: !!o.keep,
  }).then((code) => process.exit(code));
}
