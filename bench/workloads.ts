// The write load the benchmark generates, with nothing but `pg`:
//  - tpcb-like: pgbench's TPC-B-like transaction (UPDATE accounts, SELECT it,
//    UPDATE tellers, UPDATE branches, INSERT history) from several concurrent
//    clients, for a fixed duration, a fixed number of transactions, or paced at a
//    fixed rate. Each transaction is sent as ONE simple-query string
//    (BEGIN; ...; COMMIT) with integer literals, so the driver costs one round trip
//    per transaction and little CPU: the database, not this process, is the
//    bottleneck. The history INSERT is the last statement before COMMIT and stamps
//    the row with clock_timestamp(): the source commit time to within the commit's
//    own duration (used by the latency figure).
//  - insert-only: four single-row INSERTs into history per transaction, otherwise
//    run as tpcb-like is.
//  - bulk: 1,000,000 rows inserted by one INSERT ... SELECT generate_series, then
//    updated by one UPDATE.
//  - many transactions: N rows inserted by a loop that commits every `perTxn` rows
//    (a backlog of many transactions without a client round trip per transaction).
// Every table set lives in its own schema (s1, s2, ...), so a database can hold
// several independent sets (one dbsync group, or one publication, per set).
import { newSeed, Rng } from "../src/embedded/random";
import { startWriters } from "../src/embedded/writers";
import { Client } from "pg";

export interface TpcbScale {
  branches: number;
  tellersPerBranch: number;
  accountsPerBranch: number;
}

export const TPCB_TABLES = ["branches", "tellers", "accounts", "history", "bench_marker"];

/** pgbench's tables (history with a key: dbsync needs one), plus a marker table. */
export function tpcbDdl(schema: string): string {
  const s = ident(schema);
  return `
    create schema if not exists ${s};
    create table ${s}.branches (bid int primary key, bbalance int not null, filler char(88));
    create table ${s}.tellers (tid int primary key, bid int not null, tbalance int not null, filler char(84));
    create table ${s}.accounts (aid int primary key, bid int not null, abalance int not null, filler char(84));
    create table ${s}.history (hid bigserial primary key, tid int not null, bid int not null, aid int not null,
                               delta int not null, mtime timestamptz not null, filler char(22));
    create table ${s}.bench_marker (id int primary key, at timestamptz not null default clock_timestamp());`;
}

/** Deterministic initial data: the same statement gives the same rows on both sides. */
export function tpcbPopulate(schema: string, scale: TpcbScale): string {
  const s = ident(schema);
  const { branches, tellersPerBranch: tpb, accountsPerBranch: apb } = scale;
  return `
    insert into ${s}.branches select b, 0, '' from generate_series(1, ${branches}) b;
    insert into ${s}.tellers select t, (t - 1) / ${tpb} + 1, 0, '' from generate_series(1, ${branches * tpb}) t;
    insert into ${s}.accounts select a, (a - 1) / ${apb} + 1, 0, '' from generate_series(1, ${branches * apb}) a;`;
}

export function tpcbTableNames(schema: string): string[] {
  return TPCB_TABLES.map((t) => `${ident(schema)}.${ident(t)}`);
}

/** One tpcb-like transaction as one simple-query string. */
export function tpcbTransaction(schema: string, scale: TpcbScale, rng: Rng): string {
  const rnd = (lo: number, hi: number) => rng.int(lo, hi);
  const s = ident(schema);
  const aid = rnd(1, scale.branches * scale.accountsPerBranch);
  const tid = rnd(1, scale.branches * scale.tellersPerBranch);
  const bid = rnd(1, scale.branches);
  const delta = rnd(-5000, 5000);
  return (
    `begin;` +
    `update ${s}.accounts set abalance = abalance + ${delta} where aid = ${aid};` +
    `select abalance from ${s}.accounts where aid = ${aid};` +
    `update ${s}.tellers set tbalance = tbalance + ${delta} where tid = ${tid};` +
    `update ${s}.branches set bbalance = bbalance + ${delta} where bid = ${bid};` +
    `insert into ${s}.history (tid, bid, aid, delta, mtime) values (${tid}, ${bid}, ${aid}, ${delta}, clock_timestamp());` +
    `commit;`
  );
}

/** Row changes made by one tpcb-like transaction: 3 updates + 1 insert. */
export const TPCB_ROW_CHANGES = 4;

/**
 * One insert-only transaction: the tpcb-like transaction's history INSERT, four
 * times (four single-row statements, four rows: as many row changes as a
 * tpcb-like transaction, none of them to an existing key).
 */
export function insertOnlyTransaction(schema: string, scale: TpcbScale, rng: Rng): string {
  const rnd = (lo: number, hi: number) => rng.int(lo, hi);
  const s = ident(schema);
  let sql = "begin;";
  for (let i = 0; i < INSERT_ONLY_ROW_CHANGES; i++) {
    const aid = rnd(1, scale.branches * scale.accountsPerBranch);
    const tid = rnd(1, scale.branches * scale.tellersPerBranch);
    const bid = rnd(1, scale.branches);
    sql += `insert into ${s}.history (tid, bid, aid, delta, mtime) values (${tid}, ${bid}, ${aid}, ${rnd(-5000, 5000)}, clock_timestamp());`;
  }
  return sql + "commit;";
}

export const INSERT_ONLY_ROW_CHANGES = 4;

export interface TpcbRunOptions {
  url: string;
  /** Client i writes to schemas[i % schemas.length]. */
  schemas: string[];
  scale: TpcbScale;
  clients: number;
  /** Stop after this long (ms) ... */
  durationMs?: number;
  /** ... or after this many transactions in all. */
  transactions?: number;
  /** Paced: start transaction k at t0 + k / rate (s); a late client runs at once. */
  ratePerSecond?: number;
  onProgress?: (done: number) => void;
  /** The transaction to run (default: tpcbTransaction). */
  transaction?: (schema: string, scale: TpcbScale, rng: Rng) => string;
}

export interface TpcbResult {
  transactions: number;
  errors: number;
  seconds: number;
  firstError?: string;
}

export async function runTpcb(o: TpcbRunOptions): Promise<TpcbResult> {
  const clients = await Promise.all(
    Array.from({ length: o.clients }, async () => {
      const c = new Client({ connectionString: o.url, application_name: "bench tpcb" });
      await c.connect();
      return c;
    }),
  );
  const options = {
    writers: o.clients,
    rng: new Rng(newSeed(), "tpcb"),
    ratePerSecond: o.ratePerSecond,
    durationMs: o.durationMs,
    transactions: o.transactions,
    tolerate: () => true,
  };
  const writers = startWriters(options, async ({ index, rng }) => {
    const c = clients[index];
    try {
      await c.query((o.transaction ?? tpcbTransaction)(o.schemas[index % o.schemas.length], o.scale, rng));
    } catch (err) {
      await c.query("rollback").catch(() => undefined);
      throw err;
    }
  });
  const progress = o.onProgress ? setInterval(() => o.onProgress!(writers.stats().committed), 500) : undefined;
  try {
    const r = await writers.done;
    return { transactions: r.committed, errors: r.failed, seconds: r.seconds, firstError: r.firstError };
  } finally {
    if (progress) clearInterval(progress);
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

// ---- bulk ------------------------------------------------------------------

export function bulkDdl(table: string): string {
  return `create table ${table} (id bigint primary key, grp int not null, val double precision not null,
                                 note text not null, created timestamptz not null)`;
}

/** Rows lo..hi, the same on every call. */
export function bulkInsertSql(table: string, lo: number, hi: number): string {
  return `insert into ${table}
          select g, g % 1000, g * 0.5, 'row ' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
            from generate_series(${lo}, ${hi}) g`;
}

export function bulkUpdateSql(table: string): string {
  return `update ${table} set val = val + 1, note = note || '!'`;
}

/** `total` rows inserted by `total / perTxn` transactions, from one server-side loop. */
export function manyTransactionsSql(table: string, total: number, perTxn: number): string {
  const n = Math.ceil(total / perTxn);
  return `do $$
    begin
      for i in 0..${n - 1} loop
        ${bulkInsertSql(table, 0, 0).replace("generate_series(0, 0)", `generate_series(i * ${perTxn} + 1, least((i + 1) * ${perTxn}, ${total}))`)};
        commit;
      end loop;
    end $$`;
}

// ---- helpers ---------------------------------------------------------------

export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
