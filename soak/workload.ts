// The write load shared by `npm run soak` and the fault tests (test/faults-*.test.ts):
// inserters on an insert-only table (each transaction inserts a contiguous id range,
// so every acknowledged row can be checked for on the target) and churners on a
// key/value table (updates, deletes, upserts, key changes, multi-row updates).
// A transaction that meets a connection error (a server restarting) is retried; a
// COMMIT that got no answer is counted as "unsure" (it may or may not have committed).
import { Pool, PoolClient } from "pg";

export const SOURCE_DDL = (ins: string, kv: string) => `
  create table ${ins} (id bigint primary key, writer int not null, n int not null, payload text);
  create table ${kv} (k int primary key, v int not null, note text);
  insert into ${kv} select g, 0, 'seed' from generate_series(1, 300) g;`;

/**
 * Target only: every row insert that an apply transaction commits into `ins` is
 * counted in `${ins}_audit` (an ALWAYS trigger fires under session_replication_role =
 * replica), so a batch applied twice shows even though delete-then-insert would hide
 * it in the table itself (a TRUNCATE, as an initial copy or a resync does, starts the
 * count again). `sleepSeconds` slows each applied statement (a fault then
 * lands inside a batch).
 */
export const TARGET_AUDIT = (ins: string, sleepSeconds = 0) => `
  create table ${ins}_audit (id bigint not null);
  create function ${ins}_audit_fn() returns trigger language plpgsql as $$
  begin
    insert into ${ins}_audit select id from new_rows;
    ${sleepSeconds > 0 ? `perform pg_sleep(${sleepSeconds});` : ""}
    return null;
  end $$;
  create trigger audit after insert on ${ins} referencing new table as new_rows
    for each statement execute function ${ins}_audit_fn();
  alter table ${ins} enable always trigger audit;
  -- A (re)copy empties the table first: the count starts again with it.
  create function ${ins}_audit_reset() returns trigger language plpgsql as $$
  begin
    truncate ${ins}_audit;
    return null;
  end $$;
  create trigger audit_reset after truncate on ${ins} for each statement execute function ${ins}_audit_reset();
  alter table ${ins} enable always trigger audit_reset;`;

export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: string };
  if (typeof e.code === "string" && (/^(08|57)/.test(e.code) || /^E[A-Z]+$/.test(e.code))) return true;
  return /terminat|connection|ECONN|not queryable|shut ?down|starting up|recovery|timeout/i.test(e.message ?? "");
}

const SKIPPABLE = new Set(["40P01", "40001", "23505"]);
const rnd = (n: number) => Math.floor(Math.random() * n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WorkloadOptions {
  insertTable?: string;
  kvTable?: string;
  inserters?: number;
  churners?: number;
  /** Key space of the kv churn. */
  kvKeys?: number;
  /** Pause between transactions of one writer: min and max ms. */
  pauseMs?: [number, number];
  /** Called for errors that are neither connection errors nor expected conflicts. */
  onError?: (err: unknown) => void;
}

export class Workload {
  readonly ins: string;
  readonly kv: string;
  /** Acknowledged insert transactions: [first id, rows] each. */
  readonly ranges: [number, number][] = [];
  insertedRows = 0;
  insertTransactions = 0;
  churnTransactions = 0;
  /** Transactions whose COMMIT got no answer, and their rows (insert-only). */
  unsureTransactions = 0;
  unsureRows = 0;
  retries = 0;
  /** Stop inserting (the churners go on). */
  pauseInserts = false;
  private stopping = false;
  private running: Promise<void>[] = [];
  private readonly quiet = new WeakSet<PoolClient>();

  constructor(
    private readonly pool: Pool,
    private readonly opts: WorkloadOptions = {},
  ) {
    this.ins = opts.insertTable ?? "ins_only";
    this.kv = opts.kvTable ?? "kv";
  }

  start(): this {
    const inserters = this.opts.inserters ?? 2;
    const churners = this.opts.churners ?? 2;
    for (let i = 1; i <= inserters; i++) this.running.push(this.inserter(i));
    for (let i = 0; i < churners; i++) this.running.push(this.churner());
    return this;
  }

  async stop() {
    this.stopping = true;
    await Promise.all(this.running);
  }

  get transactions() {
    return this.insertTransactions + this.churnTransactions;
  }

  private pause() {
    const [lo, hi] = this.opts.pauseMs ?? [10, 40];
    return sleep(lo + rnd(hi - lo));
  }

  /** One transaction; true if committed, false if skipped (conflict); retries after connection errors. */
  private async tx(statements: [string, unknown[]][], unsure: () => void): Promise<boolean> {
    for (;;) {
      let client: PoolClient | undefined;
      let committing = false;
      try {
        client = await this.pool.connect();
        if (!this.quiet.has(client)) {
          client.on("error", () => undefined); // a server restart while checked out
          this.quiet.add(client);
        }
        await client.query("begin");
        for (const [sql, params] of statements) await client.query(sql, params);
        committing = true;
        await client.query("commit");
        client.release();
        return true;
      } catch (err) {
        const conn = isConnectionError(err);
        if (client) {
          if (!conn) await client.query("rollback").catch(() => undefined);
          client.release(conn ? true : undefined);
        }
        if (conn) {
          if (committing) {
            unsure();
            return false; // maybe committed: never retried, counted as unsure
          }
          this.retries++;
          if (this.stopping) return false;
          await sleep(200);
          continue;
        }
        if (SKIPPABLE.has((err as { code?: string }).code ?? "")) return false;
        throw err;
      }
    }
  }

  private async inserter(writer: number) {
    let next = writer * 1_000_000_000;
    while (!this.stopping) {
      if (this.pauseInserts) {
        await sleep(50);
        continue;
      }
      const n = 1 + rnd(20);
      const first = next;
      next += n;
      try {
        const ok = await this.tx(
          [[`insert into ${this.ins} select $1::int8 + g, $2, g, md5(g::text) from generate_series(1, $3::int) g`, [first, writer, n]]],
          () => {
            this.unsureTransactions++;
            this.unsureRows += n;
          },
        );
        if (ok) {
          this.ranges.push([first + 1, n]);
          this.insertedRows += n;
          this.insertTransactions++;
        }
      } catch (err) {
        this.fail(err);
      }
      await this.pause();
    }
  }

  private async churner() {
    const keys = this.opts.kvKeys ?? 400;
    const kv = this.kv;
    while (!this.stopping) {
      const ops: [string, unknown[]][] = [];
      for (let i = 1 + rnd(4); i > 0; i--) {
        const k = 1 + rnd(keys);
        const r = Math.random();
        if (r < 0.4) ops.push([`update ${kv} set v = v + 1, note = 'upd' where k = $1`, [k]]);
        else if (r < 0.55) ops.push([`delete from ${kv} where k = $1`, [k]]);
        else if (r < 0.75) ops.push([`insert into ${kv} values ($1, 0, 'ins') on conflict (k) do update set v = ${kv}.v + 100, note = 'upsert'`, [k]]);
        else if (r < 0.9) ops.push([`update ${kv} set k = $2 where k = $1`, [k, 1 + rnd(keys)]]); // key change (may collide)
        else ops.push([`update ${kv} set v = v - 1 where k between $1 and $1 + 10`, [k]]);
      }
      try {
        if (await this.tx(ops, () => this.unsureTransactions++)) this.churnTransactions++;
      } catch (err) {
        this.fail(err);
      }
      await this.pause();
    }
  }

  private fail(err: unknown) {
    if (this.opts.onError) this.opts.onError(err);
    else throw err;
  }

  /**
   * Acknowledged insert rows missing from `table` of `pool` (at most `limit` ids),
   * and the row count there. Counted in SQL from the acknowledged id ranges.
   */
  async checkInserts(pool: Pool, limit = 10): Promise<{ missing: string[]; missingCount: number; count: number }> {
    const firsts = this.ranges.map((r) => r[0]);
    const ns = this.ranges.map((r) => r[1]);
    const { rows } = await pool.query(
      `with acked as (select f + g - 1 as id from unnest($1::int8[], $2::int4[]) r(f, n), generate_series(1, r.n) g),
            miss as (select a.id from acked a where not exists (select from ${this.ins} t where t.id = a.id))
       select (select count(*) from miss)::int8 as missing_count,
              (select array_agg(id::text) from (select id from miss order by id limit $3) x) as missing,
              (select count(*) from ${this.ins})::int8 as count`,
      [firsts, ns, limit],
    );
    return { missing: rows[0].missing ?? [], missingCount: Number(rows[0].missing_count), count: Number(rows[0].count) };
  }
}

/** Every row of every table as text on both sides: rows compared and differences (0 when equal). */
export async function compareTables(
  source: Pool,
  target: Pool,
  tables: string[],
): Promise<{ rows: number; differences: number; detail: string[] }> {
  let rows = 0;
  let differences = 0;
  const detail: string[] = [];
  for (const table of tables) {
    const [a, b] = await Promise.all([rowText(source, table), rowText(target, table)]);
    rows += a.length;
    const bs = new Set(b);
    const as = new Set(a);
    const onlySource = a.filter((r) => !bs.has(r));
    const onlyTarget = b.filter((r) => !as.has(r));
    const d = onlySource.length + onlyTarget.length;
    differences += d;
    if (d) {
      detail.push(
        `${table}: ${onlySource.length} rows only on the source (${onlySource.slice(0, 3).join(" ")}), ` +
          `${onlyTarget.length} only on the target (${onlyTarget.slice(0, 3).join(" ")})`,
      );
    }
  }
  return { rows, differences, detail };
}

async function rowText(p: Pool, table: string): Promise<string[]> {
  const r = await p.query(`select t::text as r from ${table} t order by 1`);
  return r.rows.map((x) => x.r as string);
}
