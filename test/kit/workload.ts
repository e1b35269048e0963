// The write load of `npm run soak`, the fault tests (test/faults-*.test.ts) and the
// sidecar-kill test: inserters on an insert-only table (each transaction inserts a contiguous id range,
// so every acknowledged row can be checked for on the target) and churners on a
// key/value table (updates, deletes, upserts, key changes, multi-row updates).
// A transaction that meets a connection error (a server restarting) is retried; a
// COMMIT that got no answer is counted as "unsure" (it may or may not have committed).
import { Pool, PoolClient } from "pg";
import { compareTables, differences } from "../../src/embedded/compare";
import { Rng } from "../../src/embedded/random";
import { startWriters, Writers } from "../../src/embedded/writers";

export const SOURCE_DDL = (ins: string, kv: string) => `
  create table ${ins} (id bigint primary key, writer int not null, n int not null, payload text);
  create table ${kv} (k int primary key, v int not null, note text);
  insert into ${kv} select g, 0, 'seed' from generate_series(1, 300) g;`;

/**
 * On the target: every row version of a applied, logged by a trigger that fires in
 * replica mode too (a batch applied twice logs its versions twice).
 */
export const ROW_LOG = `create table a_log (id int, n int);
       create function a_log() returns trigger language plpgsql as $$
       begin insert into a_log values (new.id, new.n); return null; end $$;
       create trigger a_log after insert or update on a for each row execute function a_log();
       alter table a enable always trigger a_log;`;

/**
 * On the source: `body` (PL/pgSQL statements) runs at the commit of every new tick,
 * the control transaction of begin_batch that the sidecar commits beside the
 * batch's stream (a deferred constraint trigger on dbsync.ticks, as tick_fault).
 */
export function atTickCommit(body: string): string {
  return `create function tick_fault() returns trigger language plpgsql as $$
       begin
         ${body}
         return null;
       end $$;
       create constraint trigger tick_fault after insert on dbsync.ticks deferrable initially deferred
         for each row execute function tick_fault();`;
}

/**
 * Target only: every row insert that an apply transaction commits into `ins` is
 * counted in `${ins}_audit` (an ALWAYS trigger fires under session_replication_role =
 * replica), so a batch applied twice shows even though delete-then-insert would hide
 * it in the table itself (a TRUNCATE, as an initial copy or a resync does, starts the
 * count again). `sleepSeconds` slows each applied statement (a fault then
 * lands inside a batch). EXECUTE PROCEDURE: PostgreSQL 10 knows no EXECUTE FUNCTION.
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
    for each statement execute procedure ${ins}_audit_fn();
  alter table ${ins} enable always trigger audit;
  -- A (re)copy empties the table first: the count starts again with it.
  create function ${ins}_audit_reset() returns trigger language plpgsql as $$
  begin
    truncate ${ins}_audit;
    return null;
  end $$;
  create trigger audit_reset after truncate on ${ins} for each statement execute procedure ${ins}_audit_reset();
  alter table ${ins} enable always trigger audit_reset;`;

export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: string };
  if (typeof e.code === "string" && (/^(08|57)/.test(e.code) || /^E[A-Z]+$/.test(e.code))) return true;
  return /terminat|connection|ECONN|not queryable|shut ?down|starting up|recovery|timeout/i.test(e.message ?? "");
}

const SKIPPABLE = new Set(["40P01", "40001", "23505"]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WorkloadOptions {
  /** Where the writers draw their choices from (one stream each). */
  rng: Rng;
  insertTable?: string;
  kvTable?: string;
  inserters?: number;
  churners?: number;
  /** Key space of the kv churn. */
  kvKeys?: number;
  /** Churn transactions also insert a row into the insert table now and then: one transaction across both tables. */
  crossTable?: boolean;
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
  private readonly nextId: Record<number, number> = {};
  private crossRows = 0;
  /** Stop inserting (the churners go on). */
  pauseInserts = false;
  /** Stop churning (the inserters go on unless paused too). */
  pauseChurn = false;
  private stopping = false;
  private running: Writers[] = [];
  private readonly quiet = new WeakSet<PoolClient>();

  constructor(
    private readonly pool: Pool,
    private readonly opts: WorkloadOptions,
  ) {
    this.ins = opts.insertTable ?? "ins_only";
    this.kv = opts.kvTable ?? "kv";
  }

  start(): this {
    // A connection error is retried inside tx(); a conflict skips the transaction.
    const tolerate = (err: unknown) => {
      if (!this.opts.onError) return false;
      this.opts.onError(err);
      return true;
    };
    const common = { pauseMs: this.opts.pauseMs ?? [10, 40], tolerate };
    this.running.push(
      startWriters({ ...common, writers: this.opts.inserters ?? 2, rng: this.opts.rng.fork("inserters") }, (w) => this.insert(w.index + 1, w.rng)),
      startWriters({ ...common, writers: this.opts.churners ?? 2, rng: this.opts.rng.fork("churners") }, (w) => this.churn(w.rng)),
    );
    return this;
  }

  async stop() {
    this.stopping = true;
    await Promise.all(this.running.map((w) => w.stop()));
  }

  get transactions() {
    return this.insertTransactions + this.churnTransactions;
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

  /** One insert transaction of a contiguous id range of writer `writer`'s own. */
  private async insert(writer: number, rng: Rng) {
    if (this.pauseInserts) return sleep(50);
    const n = 1 + rng.below(20);
    const first = this.nextId[writer] ?? writer * 1_000_000_000;
    this.nextId[writer] = first + n;
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
  }

  /** 1-4 of: updates, deletes, upserts, key changes, range updates of the kv table. */
  private async churn(rng: Rng) {
    if (this.pauseChurn) return sleep(50);
    const keys = this.opts.kvKeys ?? 400;
    const kv = this.kv;
    const ops: [string, unknown[]][] = [];
    for (let i = 1 + rng.below(4); i > 0; i--) {
      const k = 1 + rng.below(keys);
      const r = rng.next();
      if (r < 0.4) ops.push([`update ${kv} set v = v + 1, note = 'upd' where k = $1`, [k]]);
      else if (r < 0.55) ops.push([`delete from ${kv} where k = $1`, [k]]);
      else if (r < 0.75) ops.push([`insert into ${kv} values ($1, 0, 'ins') on conflict (k) do update set v = ${kv}.v + 100, note = 'upsert'`, [k]]);
      else if (r < 0.9) ops.push([`update ${kv} set k = $2 where k = $1`, [k, 1 + rng.below(keys)]]); // key change (may collide)
      else ops.push([`update ${kv} set v = v - 1 where k between $1 and $1 + 10`, [k]]);
    }
    // A row of the insert table in the same transaction (writer -1, ids below -1e10).
    const cross = this.opts.crossTable && rng.chance(0.2) ? -10_000_000_000 - ++this.crossRows : undefined;
    if (cross !== undefined) ops.push([`insert into ${this.ins} values ($1, -1, 0, 'with kv')`, [cross]]);
    const unsure = () => {
      this.unsureTransactions++;
      if (cross !== undefined) this.unsureRows++;
    };
    if (!(await this.tx(ops, unsure))) return;
    this.churnTransactions++;
    if (cross !== undefined) {
      this.ranges.push([cross, 1]);
      this.insertedRows++;
    }
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

  /**
   * What is wrong on the target once the load has stopped and the subscriptions have
   * caught up (empty when nothing): tables that differ row by row, acknowledged
   * inserts missing on either side, a row count outside [acknowledged, acknowledged
   * + unanswered], rows a target apply inserted twice or never (the audit table of
   * TARGET_AUDIT).
   */
  async problems(source: Pool, target: Pool): Promise<string[]> {
    const out = differences(await compareTables(source, target, [this.ins, this.kv]));
    for (const [side, pool] of [["source", source], ["target", target]] as const) {
      const r = await this.checkInserts(pool);
      if (r.missingCount) out.push(`${this.ins}: ${r.missingCount} acknowledged rows missing on the ${side} (${r.missing.join(", ")})`);
      if (r.count < this.insertedRows || r.count > this.insertedRows + this.unsureRows) {
        out.push(`${this.ins}: ${r.count} rows on the ${side}, expected ${this.insertedRows} (+ up to ${this.unsureRows} unanswered)`);
      }
    }
    const { rows } = await target.query(
      `select count(*)::int8 as n, count(distinct id)::int8 as d, (select count(*) from ${this.ins})::int8 as t from ${this.ins}_audit`,
    );
    const [n, d, t] = [Number(rows[0].n), Number(rows[0].d), Number(rows[0].t)];
    if (n !== d) out.push(`${this.ins}: ${n - d} rows inserted on the target more than once`);
    if (d !== t) out.push(`${this.ins}: ${t} rows on the target but ${d} inserted by copies and batches`);
    return out;
  }
}
