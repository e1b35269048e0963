// Where capture's cost goes, measured inside the source server: no client, no
// network, no concurrency, so the time per transaction is CPU spent by the
// backend. A procedure runs the tpcb-like transaction N times (COMMIT after each:
// three single-row UPDATEs and one single-row INSERT) on table sets that differ
// only in their triggers:
//   plain       no trigger;
//   dbsync      dbsync's capture, as add_table installs it;
//   candidates  the same job done other ways, one lever changed at a time, written
//               here as the benchmark's own trigger functions (each queues the
//               changed keys as text into a queue of its own laid out as
//               dbsync.events: partitioned by group, then by slot, an xid8 index):
//     statement      statement triggers with transition tables for every operation
//                    (an UPDATE queues the union of old and new keys), the
//                    function with SET search_path, rows routed through the
//                    queue's parent: dbsync's capture before 2026-12;
//     no_path        the same without the SET search_path clause;
//     leaf           and inserting into the current slot's table directly;
//     split_update   and an UPDATE queuing its new keys from the new rows only,
//                    with a row trigger WHEN the key changed for the old key;
//     row            row triggers for every operation (no transition tables),
//                    otherwise as split_update;
//     row_no_index   the same into a queue without an index;
//   least       a reference capture that does the least a trigger-based replicator
//               must: a row-level PL/pgSQL trigger that INSERTs one row per change
//               (every column as text, an event id from a sequence, the writer's
//               xid8) into a queue table indexed on xid8 (batches are read by xid);
//   no_index    the same into a queue table with no index at all.
// least - plain is the floor for any capture that writes one queue row per row
// change from PL/pgSQL, so plain / least bounds the throughput ratio such a
// capture can reach on a CPU-bound server. Each statement of the transaction is
// also timed on its own, so that a capture's cost can be set against the least
// possible one statement kind by statement kind.
import { Client } from "pg";
import { TPCB_ROW_CHANGES, TpcbScale } from "./workloads";

export const PROFILE_SETS = {
  plain: "p",
  dbsync: "c",
  statement: "k_stmt",
  noPath: "k_nopath",
  leaf: "k_leaf",
  splitUpdate: "k_split",
  row: "k_row",
  rowNoIndex: "k_row_noidx",
  least: "f",
  noIndex: "u",
} as const;
export type Variant = keyof typeof PROFILE_SETS;

const LABEL: Record<Variant, string> = {
  plain: "no capture",
  dbsync: "dbsync",
  statement: "statement triggers, SET search_path, via the parent (before 2026-12)",
  noPath: "same without SET search_path",
  leaf: "and into the slot's table",
  splitUpdate: "and UPDATE: new keys + row trigger for a changed key",
  row: "row triggers",
  rowNoIndex: "row triggers, queue without index",
  least: "least possible",
  noIndex: "least possible without index",
};

/** The timed parts of the profile's transaction, in the order tpcb_loop times them. */
export const STATEMENTS = ["UPDATE accounts", "SELECT accounts", "UPDATE tellers", "UPDATE branches", "INSERT history", "COMMIT"] as const;

export interface CaptureProfile {
  /** Server-side microseconds per tpcb-like transaction: the fastest round of each variant. */
  usPerTx: Record<Variant, number>;
  /** Microseconds per transaction spent in each of STATEMENTS: the fastest round of each, per variant. */
  usPerStatement: Record<Variant, number[]>;
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

  -- The tpcb-like transaction n times, committing each; returns microseconds per
  -- transaction, and per statement of it (in STATEMENTS' order, the COMMIT last).
  create procedure bench_ref.tpcb_loop(s text, n int, accounts int, tellers int, branches int,
                                       inout us double precision default 0,
                                       inout parts double precision[] default null) language plpgsql as $$
  declare
      t0 timestamptz := clock_timestamp();
      t timestamptz;
      sums double precision[] := array[0, 0, 0, 0, 0, 0];
      aid int; tid int; bid int; delta int;
  begin
      for i in 1..n loop
          aid := (i * 7919) % accounts + 1; tid := (i * 31) % tellers + 1; bid := i % branches + 1; delta := i % 10000 - 5000;
          t := clock_timestamp();
          execute format('update %I.accounts set abalance = abalance + $2 where aid = $1', s) using aid, delta;
          sums[1] := sums[1] + extract(epoch from clock_timestamp() - t); t := clock_timestamp();
          execute format('select abalance from %I.accounts where aid = $1', s) using aid;
          sums[2] := sums[2] + extract(epoch from clock_timestamp() - t); t := clock_timestamp();
          execute format('update %I.tellers set tbalance = tbalance + $2 where tid = $1', s) using tid, delta;
          sums[3] := sums[3] + extract(epoch from clock_timestamp() - t); t := clock_timestamp();
          execute format('update %I.branches set bbalance = bbalance + $2 where bid = $1', s) using bid, delta;
          sums[4] := sums[4] + extract(epoch from clock_timestamp() - t); t := clock_timestamp();
          execute format('insert into %I.history (tid, bid, aid, delta, mtime) values ($1, $2, $3, $4, clock_timestamp())', s)
              using tid, bid, aid, delta;
          sums[5] := sums[5] + extract(epoch from clock_timestamp() - t); t := clock_timestamp();
          commit;
          sums[6] := sums[6] + extract(epoch from clock_timestamp() - t);
      end loop;
      us := extract(epoch from clock_timestamp() - t0) * 1e6 / n;
      parts := array(select x * 1e6 / n from unnest(sums) x);
  end $$;`;

/** How a candidate capture differs from dbsync's, one lever at a time. */
interface Candidate {
  searchPath: boolean;
  leaf: boolean;
  update: "union" | "split" | "row";
  index: boolean;
}

const CANDIDATES: Partial<Record<Variant, Candidate>> = {
  statement: { searchPath: true, leaf: false, update: "union", index: true },
  noPath: { searchPath: false, leaf: false, update: "union", index: true },
  leaf: { searchPath: false, leaf: true, update: "union", index: true },
  splitUpdate: { searchPath: false, leaf: true, update: "split", index: true },
  row: { searchPath: false, leaf: true, update: "row", index: true },
  rowNoIndex: { searchPath: false, leaf: true, update: "row", index: false },
};

/** A queue laid out as dbsync.events (group 1, slots 0..2), with its event and state sequences. */
function queueSql(q: string, index: boolean): string {
  let sql = `
    create schema ${q};
    create sequence ${q}.seq;
    create sequence ${q}.state minvalue 0 maxvalue 7;
    select setval('${q}.state', 0, true);
    create table ${q}.events (group_id int not null, slot int2 not null, ev_id int8 not null,
                              txid xid8 not null default pg_current_xact_id(), shape_id int, op "char" not null,
                              row text[]) partition by list (group_id);
    create table ${q}.events_1 partition of ${q}.events for values in (1) partition by list (slot);`;
  for (let s = 0; s < 3; s++) sql += `create table ${q}.events_1_${s} partition of ${q}.events_1 for values in (${s});`;
  if (index) sql += `create index on ${q}.events (txid);`;
  return sql;
}

/** The candidate's capture of one table whose key is `key` (column, output function). */
function candidateSql(set: string, table: string, key: [string, string][], c: Candidate): string {
  const q = `${set}_q`;
  const keyOf = (alias: string) => `array[${key.map(([col, out]) => `pg_catalog.textin(pg_catalog.${out}(${alias}.${col}))`).join(", ")}]`;
  const insert = (into: string, keys: string) =>
    `insert into ${into} (group_id, slot, ev_id, shape_id, op, row)
     select 1, v_slot, pg_catalog.nextval('${q}.seq'::pg_catalog.regclass), 1, 'K', x.k from ${keys}`;
  const routed = (keys: string) =>
    c.leaf
      ? `if v_slot operator(pg_catalog.=) 0 then ${insert(`${q}.events_1_0`, keys)};
         elsif v_slot operator(pg_catalog.=) 1 then ${insert(`${q}.events_1_1`, keys)};
         else ${insert(`${q}.events_1_2`, keys)}; end if;`
      : `${insert(`${q}.events`, keys)};`;
  const fn = (name: string, body: string) => `
    create function ${set}.${name}() returns trigger language plpgsql security definer
    ${c.searchPath ? "set search_path = pg_catalog, pg_temp" : ""} as $f$
    declare
        v_state pg_catalog.int8 := pg_catalog.pg_sequence_last_value('${q}.state'::pg_catalog.regclass);
        v_slot pg_catalog.int2 := (v_state operator(pg_catalog.%) 4)::pg_catalog.int2;
    begin
        ${body}
        if v_state operator(pg_catalog.>=) 4 and (pg_catalog.current_setting('dbsync.notify', true) is null
               or pg_catalog.current_setting('dbsync.notify', true) operator(pg_catalog.<>) 'off') then
            perform pg_catalog.pg_notify('dbsync', '1');
        end if;
        return null;
    end $f$;`;
  const t = `${set}.${table}`;
  const newKeys = `(select ${keyOf("n")} as k from dbsync_new n) x`;
  const oldKeys = `(select ${keyOf("o")} as k from dbsync_old o) x`;
  const changed = key.map(([col]) => `not (OLD.${col} operator(pg_catalog.=) NEW.${col})`).join(" or ");
  const f = (op: string) => `${set}.cap_${table}_${op}`;
  if (c.update === "row") {
    return (
      fn(`cap_${table}_new`, routed(`(select ${keyOf("NEW")} as k) x`)) +
      fn(`cap_${table}_old`, routed(`(select ${keyOf("OLD")} as k) x`)) +
      `create trigger c_new after insert or update on ${t} for each row execute function ${f("new")}();
       create trigger c_del after delete on ${t} for each row execute function ${f("old")}();
       create trigger c_key after update on ${t} for each row when (${changed}) execute function ${f("old")}();`
    );
  }
  let sql =
    fn(`cap_${table}_new`, routed(newKeys)) +
    fn(`cap_${table}_old`, routed(oldKeys)) +
    `create trigger c_ins after insert on ${t} referencing new table as dbsync_new for each statement execute function ${f("new")}();
     create trigger c_del after delete on ${t} referencing old table as dbsync_old for each statement execute function ${f("old")}();`;
  if (c.update === "union") {
    sql +=
      fn(`cap_${table}_upd`, routed(`(select ${keyOf("n")} as k from dbsync_new n union select ${keyOf("o")} from dbsync_old o) x`)) +
      `create trigger c_upd after update on ${t} referencing old table as dbsync_old new table as dbsync_new
       for each statement execute function ${f("upd")}();`;
  } else {
    sql +=
      fn(`cap_${table}_key`, routed(`(select ${keyOf("OLD")} as k) x`)) +
      `create trigger c_upd after update on ${t} referencing new table as dbsync_new for each statement execute function ${f("new")}();
       create trigger c_key after update on ${t} for each row when (${changed}) execute function ${f("key")}();`;
  }
  return sql;
}

/** Installs the reference triggers and the candidate captures on their table sets. */
export async function installReference(source: Client): Promise<void> {
  await source.query(REFERENCE_SQL);
  for (const [set, queue] of [[PROFILE_SETS.least, "queue"], [PROFILE_SETS.noIndex, "queue_noindex"]]) {
    for (const t of ["branches", "tellers", "accounts", "history"]) {
      await source.query("call bench_ref.add_trigger($1::regclass, $2)", [`${set}.${t}`, queue]);
    }
  }
  for (const [v, c] of Object.entries(CANDIDATES) as [Variant, Candidate][]) {
    const set = PROFILE_SETS[v];
    await source.query(queueSql(`${set}_q`, c.index));
    for (const t of ["branches", "tellers", "accounts", "history"]) {
      const { rows } = await source.query<{ col: string; out: string }>(
        `select a.attname as col, ty.typoutput::regproc::text as out
           from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
           join pg_type ty on ty.oid = a.atttypid
          where i.indrelid = $1::regclass and i.indisprimary order by a.attnum`,
        [`${set}.${t}`],
      );
      await source.query(candidateSql(set, t, rows.map((r) => [r.col, r.out]), c));
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
  const parts = Object.fromEntries(variants.map((v) => [v, STATEMENTS.map(() => Infinity)])) as Record<Variant, number[]>;
  const args = [scale.branches * scale.accountsPerBranch, scale.branches * scale.tellersPerBranch, scale.branches];
  for (const v of variants) await source.query("call bench_ref.tpcb_loop($1, 50, $2, $3, $4)", [PROFILE_SETS[v], ...args]);
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const { rows } = await source.query("call bench_ref.tpcb_loop($1, $2, $3, $4, $5)", [PROFILE_SETS[v], n, ...args]);
      all[v].push(rows[0].us);
      parts[v] = parts[v].map((us, i) => Math.min(us, rows[0].parts[i]));
    }
  }
  const usPerTx = Object.fromEntries(variants.map((v) => [v, Math.min(...all[v])])) as Record<Variant, number>;
  return { usPerTx, usPerStatement: parts, rounds: all, transactionsPerRound: n };
}

/**
 * Lines for the log: each variant's cost per single-row statement and the bound it
 * implies, then what capture adds to each statement of the transaction (its
 * fastest round against the fastest round without capture).
 */
export function describeProfile(p: CaptureProfile): string {
  const { plain } = p.usPerTx;
  const variants = Object.keys(PROFILE_SETS) as Variant[];
  const statements = STATEMENTS.map((_, i) => i).filter((i) => STATEMENTS[i] !== "SELECT accounts");
  return (
    `server-side µs per tpcb-like transaction (fastest of ${p.rounds.plain.length} rounds of ${p.transactionsPerRound}; ` +
    `capture µs per single-row statement; time ratio without / with):\n` +
    variants
      .map((v) => {
        const us = p.usPerTx[v];
        const per = v === "plain" ? "" : ` (+${((us - plain) / TPCB_ROW_CHANGES).toFixed(1)} per statement, ${(plain / us).toFixed(2)})`;
        return `    ${LABEL[v].padEnd(52)} ${us.toFixed(0).padStart(5)}${per}`;
      })
      .join("\n") +
    `\n  per statement (µs without capture, then what each capture adds):\n` +
    `    ${"".padEnd(52)} ${statements.map((i) => STATEMENTS[i].padStart(16)).join("")}\n` +
    variants
      .map((v) => {
        const cells = statements.map((i) => {
          const us = p.usPerStatement[v][i];
          return (v === "plain" ? us.toFixed(1) : `+${(us - p.usPerStatement.plain[i]).toFixed(1)}`).padStart(16);
        });
        return `    ${LABEL[v].padEnd(52)} ${cells.join("")}`;
      })
      .join("\n")
  );
}
