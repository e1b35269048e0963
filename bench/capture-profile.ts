// Where capture's cost goes, measured inside the source server: no client, no
// network, no concurrency, so the time per transaction is CPU spent by the
// backend. A procedure runs the tpcb-like transaction N times (COMMIT after each)
// on table sets that differ only in their triggers:
//   plain     no trigger;
//   dbsync    dbsync's capture;
//   least     a reference capture that does the least a trigger-based replicator
//             must: a row-level PL/pgSQL trigger that INSERTs one row per change
//             (every column as text, an event id from a sequence, the writer's
//             xid8) into a queue table indexed on xid8 (batches are read by xid);
//   no-index  the same into a queue table with no index at all.
// least - plain is the floor for any capture that writes one queue row per row
// change from PL/pgSQL, so plain / least bounds the throughput ratio such a
// capture can reach on a CPU-bound server.
import { Client } from "pg";
import { TPCB_ROW_CHANGES, TpcbScale } from "./workloads";

export const PROFILE_SETS = { plain: "p", dbsync: "c", least: "f", noIndex: "u" } as const;
type Variant = keyof typeof PROFILE_SETS;

export interface CaptureProfile {
  /** Server-side microseconds per tpcb-like transaction: the fastest round of each variant. */
  usPerTx: Record<Variant, number>;
  /** Every round's figure, per variant. */
  rounds: Record<Variant, number[]>;
  transactionsPerRound: number;
}

const REFERENCE_SQL = `
  create schema bench_ref;
  create sequence bench_ref.ev_seq;
  create table bench_ref.queue (ev_id bigint not null, txid xid8 not null default pg_current_xact_id(),
                                op "char" not null, row text[]);
  create index on bench_ref.queue (txid);
  create table bench_ref.queue_noindex (like bench_ref.queue including defaults);

  -- One trigger function per table: its columns, as text, into the given queue.
  create procedure bench_ref.add_trigger(tbl regclass, queue text) language plpgsql as $$
  declare
      fn text := format('bench_ref.%I', 'capture_' || tbl::oid);
  begin
      execute format($f$create function %s() returns trigger language plpgsql as $b$
          begin
              insert into bench_ref.%I (ev_id, op, row) values (nextval('bench_ref.ev_seq'), 'U', %s);
              return null;
          end $b$ $f$, fn, queue,
          (select 'array[' || string_agg(format('NEW.%I::text', attname), ', ' order by attnum) || ']'
           from pg_attribute where attrelid = tbl and attnum > 0 and not attisdropped));
      execute format('create trigger bench_capture after insert or update on %s for each row execute function %s()', tbl, fn);
  end $$;

  -- The tpcb-like transaction n times, committing each; returns microseconds per transaction.
  create procedure bench_ref.tpcb_loop(s text, n int, accounts int, tellers int, branches int,
                                       inout us double precision default 0) language plpgsql as $$
  declare
      t0 timestamptz := clock_timestamp();
      aid int; tid int; bid int; delta int;
  begin
      for i in 1..n loop
          aid := (i * 7919) % accounts + 1; tid := (i * 31) % tellers + 1; bid := i % branches + 1; delta := i % 10000 - 5000;
          execute format('update %I.accounts set abalance = abalance + $2 where aid = $1', s) using aid, delta;
          execute format('select abalance from %I.accounts where aid = $1', s) using aid;
          execute format('update %I.tellers set tbalance = tbalance + $2 where tid = $1', s) using tid, delta;
          execute format('update %I.branches set bbalance = bbalance + $2 where bid = $1', s) using bid, delta;
          execute format('insert into %I.history (tid, bid, aid, delta, mtime) values ($1, $2, $3, $4, clock_timestamp())', s)
              using tid, bid, aid, delta;
          commit;
      end loop;
      us := extract(epoch from clock_timestamp() - t0) * 1e6 / n;
  end $$;`;

/** Installs the reference triggers on the `least` and `no-index` table sets. */
export async function installReference(source: Client): Promise<void> {
  await source.query(REFERENCE_SQL);
  for (const [set, queue] of [[PROFILE_SETS.least, "queue"], [PROFILE_SETS.noIndex, "queue_noindex"]]) {
    for (const t of ["branches", "tellers", "accounts", "history"]) {
      await source.query("call bench_ref.add_trigger($1::regclass, $2)", [`${set}.${t}`, queue]);
    }
  }
}

/**
 * Rounds of `n` transactions per variant, interleaved; the fastest round of each
 * variant is its figure (on a shared machine, other processes only ever add time).
 */
export async function profileCapture(source: Client, scale: TpcbScale, n: number, rounds: number): Promise<CaptureProfile> {
  const variants = Object.keys(PROFILE_SETS) as Variant[];
  const all = Object.fromEntries(variants.map((v) => [v, [] as number[]])) as Record<Variant, number[]>;
  const args = [scale.branches * scale.accountsPerBranch, scale.branches * scale.tellersPerBranch, scale.branches];
  for (const v of variants) await source.query("call bench_ref.tpcb_loop($1, 50, $2, $3, $4)", [PROFILE_SETS[v], ...args]);
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const { rows } = await source.query("call bench_ref.tpcb_loop($1, $2, $3, $4, $5)", [PROFILE_SETS[v], n, ...args]);
      all[v].push(rows[0].us);
    }
  }
  const usPerTx = Object.fromEntries(variants.map((v) => [v, Math.min(...all[v])])) as Record<Variant, number>;
  return { usPerTx, rounds: all, transactionsPerRound: n };
}

/** One line for the log: the costs per row change and the bounds they imply. */
export function describeProfile(p: CaptureProfile): string {
  const { plain, dbsync, least, noIndex } = p.usPerTx;
  const perChange = (v: number) => ((v - plain) / TPCB_ROW_CHANGES).toFixed(1);
  return (
    `server-side µs per transaction (fastest of ${p.rounds.plain.length} rounds of ${p.transactionsPerRound}): ` +
    `no capture ${plain.toFixed(0)}, dbsync ${dbsync.toFixed(0)} (+${perChange(dbsync)} per row change), ` +
    `least possible ${least.toFixed(0)} (+${perChange(least)}), least without index ${noIndex.toFixed(0)} (+${perChange(noIndex)}); ` +
    `off/on time ratio: dbsync ${(plain / dbsync).toFixed(2)}, least ${(plain / least).toFixed(2)}, without index ${(plain / noIndex).toFixed(2)}`
  );
}
