// Stage tables on a target connection: one temp table per replicated table and
// column list, with the target table's column types (text from the source parses
// into them) and an op column. A stage lives as long as its connection, so it is
// created once, not per batch; one created in a transaction that rolled back is
// gone, so a stage only counts as there once its transaction committed. A stage
// keeps its rows after a commit (not ON COMMIT DELETE ROWS: that empties every
// such table of the session at every commit of a transaction that touched any,
// so a connection that had applied 200 tables paid about 90 ms at each commit,
// whatever its batch held): a batch empties the stages it uses before it copies
// into them (emptyReused), so the cost follows the batch's tables only. The target
// table's columns are read at each batch (one query for all its tables): a type or
// typmod changed by DDL, in the batch or by hand, makes a new stage, so that no value
// is parsed into an old type (numeric(10,2) would round a numeric(12,4) value). A
// column of a domain type is staged as the domain's base type: the stage holds keys
// with NULLs beside them, which a NOT NULL or CHECK domain would refuse; the target
// table checks its domains when the rows reach it.
import { Client, escapeIdentifier as ident } from "pg";
import { forServer } from "../compat";

/** What a batch needs to know of a target table (TargetTables.describe). */
export interface TargetTable {
  /** Partitioned on the target: DELETE/UPDATE ONLY would touch no row of its partitions. */
  partitioned: boolean;
  /** Its columns' names, types and typmods: a stage is made for one signature. */
  signature: string;
  /**
   * The key columns of its unique indexes that refuse a duplicate at once (not
   * deferrable, not partial, no expressions): rows may be copied straight into the
   * table when one of them is within the rows' key (see merge.ts).
   */
  uniqueKeys: string[][];
}

export interface Stage {
  /** The temp table, qualified and quoted. */
  name: string;
  /** Its op column ('U': a row to write, 'D' or 'K<shape>': a key to delete), quoted. */
  op: string;
  /** SQL matching target row t to stage row s on these key columns, per column. */
  keyMatch(columns: string[]): string;
  /**
   * Whether staged rows may be written over the target's rows of the same key by
   * an UPDATE: every column it sets may be set (an identity column GENERATED
   * ALWAYS may not, unless it is in the key: then it is not set, being equal).
   */
  mayUpdate(key: string[]): boolean;
  /** The columns an UPDATE matching on `key` sets (key columns too: equal is not always identical, 1.0 = 1.00). */
  updateSet(key: string[]): string[];
  /** The target refused such an UPDATE for a reason that data will not change. */
  updateRefused: boolean;
  /**
   * Lines copied in since its last TRUNCATE, at most (committed or not): beyond
   * TRUNCATE_AFTER_ROWS it is emptied by TRUNCATE, else by DELETE (see emptyReused).
   */
  written: number;
}

/**
 * A stage written more lines than this since its last TRUNCATE is emptied by
 * TRUNCATE (new files for the table, its TOAST table and index: about 1.5 ms,
 * little beside writing that many rows), below by DELETE (of a few rows: far
 * less). This bounds what a connection's stages keep between batches, live rows
 * and the dead ones DELETE leaves (autovacuum does not vacuum temp tables), to
 * that many lines a stage.
 */
const TRUNCATE_AFTER_ROWS = 1_000;

interface ColumnType {
  attname: string;
  /** The column's (base) type is one of pg_catalog's: compare values. */
  builtin: boolean;
  /** Qualified output function of the base type, for comparing other types as text. */
  outfn: string;
  /** The base type, qualified, when the column's type is a domain over it. */
  basetype: string | null;
  /** A domain's base type with the domain's typmod (format_type), which the stage holds instead. */
  stagedAs: string | null;
}

export class StageTables {
  private ready = new Map<string, Stage>();
  private pending = new Map<string, Stage>();
  /** Stages of earlier transactions handed out in this one, which may hold their rows: emptyReused. */
  private reused = new Set<Stage>();
  /** Stages emptied in this transaction, with `written` before: a rollback brings their rows back. */
  private emptied = new Map<Stage, number>();
  /** Stages handed out in this transaction: trim. */
  private used = new Set<Stage>();
  private next = 0;

  /** The target tables as they are now, in one query; a table missing there is not in the map. */
  async describe(target: Client, tables: string[]): Promise<Map<string, TargetTable>> {
    // forServer: pg_index.indnkeyatts is indnatts before PostgreSQL 11.
    const { rows } = await target.query<{ name: string; partitioned: boolean; signature: string; unique_keys: string[][] }>(
      await forServer(target, `select x.name, c.relkind = 'p' as partitioned,
              (select pg_catalog.string_agg(pg_catalog.format('%s %s %s', a.attname, a.atttypid, a.atttypmod), ', ' order by a.attnum)
                 from pg_catalog.pg_attribute a
                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as signature,
              (select coalesce(pg_catalog.jsonb_agg(k.cols), '[]')
                 from (select pg_catalog.array_agg(a.attname::pg_catalog.text) as cols
                         from pg_catalog.pg_index i
                         cross join pg_catalog.unnest((i.indkey::pg_catalog.int2[])[0:i.indnkeyatts - 1]) u(attnum)
                         join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = u.attnum
                        where i.indrelid = c.oid and i.indisunique and i.indimmediate and i.indisvalid
                          and i.indpred is null and i.indexprs is null
                        group by i.indexrelid) k) as unique_keys
         from pg_catalog.unnest($1::pg_catalog.text[]) x(name)
         join pg_catalog.pg_class c on c.oid = pg_catalog.to_regclass(x.name)`),
      [tables],
    );
    return new Map(rows.map((r) => [r.name, { partitioned: r.partitioned, signature: r.signature, uniqueKeys: r.unique_keys }]));
  }

  /**
   * The stage of `table` with these columns, created if need be. A stage of an
   * earlier transaction may still hold that batch's rows: emptyReused must run
   * before anything is copied into this transaction's stages.
   */
  async ensure(target: Client, table: string, columns: string[], now: TargetTable | undefined): Promise<Stage> {
    const key = JSON.stringify([table, columns, now?.signature]);
    const pending = this.pending.get(key);
    if (pending) return pending;
    const ready = this.ready.get(key);
    if (ready) {
      if (!this.emptied.has(ready)) this.reused.add(ready);
      this.used.add(ready);
      return ready;
    }
    let op = "dbsync_op";
    while (columns.includes(op)) op += "_";
    const name = `pg_temp.${ident(`dbsync_stage_${this.next++}`)}`;
    const types = await columnTypes(target, table);
    const staged = (c: string) => {
      const t = types.get(c);
      return t?.stagedAs ? `(t.${ident(c)})::${t.stagedAs}` : `t.${ident(c)}`;
    };
    await target.query(
      `create temp table ${name.slice("pg_temp.".length)} as
         select null::pg_catalog.text as ${ident(op)}, ${columns.map((c) => `${staged(c)} as ${ident(c)}`).join(", ")}
           from ${table} t with no data`,
    );
    const always = await identityAlways(target, table);
    const stage: Stage = {
      name,
      op: ident(op),
      keyMatch: (keys) => keys.map((k) => match(types.get(k)!, k)).join(" and "),
      mayUpdate: (keys) => !stage.updateRefused && columns.every((c) => !always.has(c) || keys.includes(c)),
      updateSet: (keys) => columns.filter((c) => !(always.has(c) && keys.includes(c))),
      updateRefused: false,
      written: 0,
    };
    this.pending.set(key, stage);
    this.used.add(stage);
    return stage;
  }

  /**
   * Empties the stages of earlier transactions that ensure() handed out since the
   * last call, in one round trip: the rows of the batch that last used one are
   * still there.
   */
  async emptyReused(target: Client) {
    if (!this.reused.size) return;
    const statements = [...this.reused].map((s) => (this.truncates(s) ? `truncate ${s.name}` : `delete from ${s.name}`));
    this.reused.clear();
    await target.query(statements.join(";\n"));
  }

  /**
   * Before the commit: the stages of this transaction that were written more than
   * TRUNCATE_AFTER_ROWS lines are emptied (a big batch's rows would otherwise stay
   * on disk until the stage's next batch); none in a small batch.
   */
  async trim(target: Client) {
    const big = [...this.used].filter((s) => s.written > TRUNCATE_AFTER_ROWS && this.truncates(s));
    if (big.length) await target.query(`truncate ${big.map((s) => s.name).join(", ")}`);
  }

  /** Whether `s` is emptied by TRUNCATE (else DELETE); its count as of this transaction's start is kept for a rollback. */
  private truncates(s: Stage): boolean {
    if (!this.emptied.has(s)) this.emptied.set(s, s.written);
    if (s.written <= TRUNCATE_AFTER_ROWS) return false;
    s.written = 0;
    return true;
  }

  committed() {
    for (const [k, s] of this.pending) this.ready.set(k, s);
    this.pending.clear();
    this.reused.clear();
    this.emptied.clear();
    this.used.clear();
  }

  rolledBack() {
    this.pending.clear();
    this.reused.clear();
    // A TRUNCATE rolled back with the rest: the rows before it are back.
    for (const [s, written] of this.emptied) s.written = Math.max(s.written, written);
    this.emptied.clear();
    this.used.clear();
  }

  /** After DDL the target tables' types may differ from their stages'. */
  forget() {
    this.ready.clear();
    this.pending.clear();
    this.reused.clear();
    this.used.clear();
  }
}

/**
 * Equality that runs no code a table owner wrote: OPERATOR(pg_catalog.=) between
 * pg_catalog types, else the output texts (a table owner can define operators and
 * casts for their own types, but not output functions).
 */
function match(t: ColumnType, column: string): string {
  const c = ident(column);
  if (t.builtin) return `t.${c} OPERATOR(pg_catalog.=) s.${c}`;
  // A domain's value becomes its base type's first (casts from domains are built in).
  const text = (v: string) => `pg_catalog.textin(${t.outfn}(${t.basetype ? `(${v})::${t.basetype}` : v}))`;
  return `${text(`t.${c}`)} OPERATOR(pg_catalog.=) ${text(`s.${c}`)}`;
}

/** Identity columns GENERATED ALWAYS of the target table: an UPDATE may not set them. */
async function identityAlways(target: Client, table: string): Promise<Set<string>> {
  const { rows } = await target.query<{ attname: string }>(
    `select a.attname::text as attname from pg_catalog.pg_attribute a
      where a.attrelid = $1::pg_catalog.regclass and a.attnum > 0 and not a.attisdropped and a.attidentity = 'a'`,
    [table],
  );
  return new Set(rows.map((r) => r.attname));
}

async function columnTypes(target: Client, table: string): Promise<Map<string, ColumnType>> {
  // Down the chain of domains to the base type; the typmod that applies to each
  // level is the one of the level above (the column's, then each domain's).
  const { rows } = await target.query<ColumnType>(
    `with recursive base(attname, typ, basetype, typmod, domain) as (
         select a.attname::text, a.atttypid, t.typbasetype, a.atttypmod, false
           from pg_catalog.pg_attribute a join pg_catalog.pg_type t on t.oid = a.atttypid
          where a.attrelid = $1::pg_catalog.regclass and a.attnum > 0 and not a.attisdropped
         union all
         select b.attname, t.oid, t.typbasetype, d.typtypmod, true
           from base b
           join pg_catalog.pg_type d on d.oid = b.typ
           join pg_catalog.pg_type t on t.oid = b.basetype
          where b.basetype <> 0)
     select b.attname, t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace as builtin,
            pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname) as outfn,
            case when b.domain then pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(t.typname) end as basetype,
            case when b.domain then pg_catalog.format_type(b.typ, b.typmod) end as "stagedAs"
       from base b
       join pg_catalog.pg_type t on t.oid = b.typ
       join pg_catalog.pg_namespace tn on tn.oid = t.typnamespace
       join pg_catalog.pg_proc p on p.oid = t.typoutput
       join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where b.basetype = 0`,
    [table],
  );
  return new Map(rows.map((r) => [r.attname, r]));
}
