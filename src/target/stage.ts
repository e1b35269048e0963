// Stage tables on a target connection: temp tables with the target table's column
// types (text from the source parses into them) and an op column. A stage lives as
// long as its connection, so it is created once, not per batch; one created in a
// transaction that rolled back is gone, so a stage only counts as there once its
// transaction committed. Tables whose columns are alike (names, types, typmods,
// collations, identity) share one: a pooled connection serves the tables of many
// subscriptions (src/apply/links.ts), and a stage per table (about 2 ms of the
// target's CPU to create) was made again and again, a thousand tables of one shape
// spread over the pool's connections. The tables of a batch's stream come one after
// another (stream.ts; a big batch's several streams, readers.ts, keep tables of the
// same columns in one), and a table's rows go into a shared stage only once the
// table before it is done and its rows are gone (take). A table whose keys several
// streams share out (readers.ts) comes in pieces between the other tables' of every
// stream: it has a temp table of its own (ensure's `own`). A stage keeps its rows after a commit
// (not ON COMMIT DELETE ROWS: that empties every such table of the session at every
// commit of a transaction that touched any, so a connection that had applied 200
// tables paid about 90 ms at each commit, whatever its batch held): a batch empties
// the stages it uses before it copies into them (emptyReused), so the cost follows
// the batch's tables only. The target table's columns are read at each batch (one
// query for all its tables): a type or typmod changed by DDL, in the batch or by
// hand, makes a new stage, so that no value is parsed into an old type
// (numeric(10,2) would round a numeric(12,4) value). A column of a domain type is
// staged as the domain's base type: the stage holds keys with NULLs beside them,
// which a NOT NULL or CHECK domain would refuse; the target table checks its
// domains when the rows reach it.
import { Client, escapeLiteral, escapeIdentifier as ident } from "pg";
import { forServer } from "../compat";

/** What a batch needs to know of a target table (TargetTables.describe). */
export interface TargetTable {
  /** Partitioned on the target: DELETE/UPDATE ONLY would touch no row of its partitions. */
  partitioned: boolean;
  /** Its columns' names, types, typmods, collations and identity: a stage is made for one signature. */
  signature: string;
  /**
   * The key columns of its unique indexes that refuse a duplicate at once (not
   * deferrable, not partial, no expressions): rows may be copied straight into the
   * table when one of them is within the rows' key (see merge.ts).
   */
  uniqueKeys: string[][];
  /** Its columns that are neither generated nor dropped. */
  plainColumns: string[];
}

export interface Stage {
  /** The temp table, qualified and quoted (shared by the tables of its signature). */
  readonly name: string;
  /** Its op column ('U': a row to write, 'D' or 'K<shape>': a key to delete), quoted. */
  readonly op: string;
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
  /** The target refused such an UPDATE of this table for a reason that data will not change. */
  updateRefused: boolean;
  /**
   * Lines copied into the temp table since its last TRUNCATE, at most (committed
   * or not): beyond TRUNCATE_AFTER_ROWS it is emptied by TRUNCATE, else by DELETE
   * (see emptyReused).
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

/** A stage that StageTables.trim empties before the commit. */
function trimmed(t: Temp): boolean {
  return t.written > TRUNCATE_AFTER_ROWS;
}

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

/** A temp table, and what its signature says of its columns. */
interface Temp {
  name: string;
  op: string;
  columns: string[];
  types: Map<string, ColumnType>;
  /** Identity columns GENERATED ALWAYS of the tables of its signature: an UPDATE may not set them. */
  always: Set<string>;
  written: number;
  /** The table whose rows it holds in this transaction, if any (take). */
  holder?: string;
}

/** One target table's stage: its temp table, and what the target refused of this table. */
class TableStage implements Stage {
  updateRefused = false;

  constructor(
    readonly temp: Temp,
    readonly table: string,
  ) {}

  get name() {
    return this.temp.name;
  }
  get op() {
    return this.temp.op;
  }
  get written() {
    return this.temp.written;
  }
  set written(n: number) {
    this.temp.written = n;
  }
  keyMatch(keys: string[]) {
    return keys.map((k) => match(this.temp.types.get(k)!, k)).join(" and ");
  }
  mayUpdate(keys: string[]) {
    return !this.updateRefused && this.temp.columns.every((c) => !this.temp.always.has(c) || keys.includes(c));
  }
  updateSet(keys: string[]) {
    return this.temp.columns.filter((c) => !(this.temp.always.has(c) && keys.includes(c)));
  }
}

export class StageTables {
  /** Temp tables by column list and signature: committed, and created in this transaction. */
  private ready = new Map<string, Temp>();
  private pending = new Map<string, Temp>();
  /** Each table's stage, by table, column list and signature. */
  private stages = new Map<string, TableStage>();
  /**
   * Temp tables of earlier transactions handed out in this one, which may hold their
   * rows: emptied by the statement that first takes them (taking), in its round trip.
   */
  private reused = new Set<Temp>();
  /** Temp tables emptied in this transaction, with `written` before: a rollback brings their rows back. */
  private emptied = new Map<Temp, number>();
  /** Temp tables handed out in this transaction: trim. */
  private used = new Set<Temp>();
  private next = 0;

  /** The target tables as they are now, in one query; a table missing there is not in the map. */
  async describe(target: Client, tables: string[]): Promise<Map<string, TargetTable>> {
    return this.described((await target.query(await this.describing(target, tables))).rows);
  }

  /**
   * describe's statement (literals only: it may share a round trip with others), whose
   * rows `described` reads.
   */
  async describing(target: Client, tables: string[]): Promise<string> {
    // forServer: pg_index.indnkeyatts is indnatts before PostgreSQL 11.
    return forServer(target, `select x.name, c.relkind = 'p' as partitioned,
              (select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(a.attname, a.atttypid, a.atttypmod, a.attcollation, a.attidentity)
                                           order by a.attnum)::pg_catalog.text
                 from pg_catalog.pg_attribute a
                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as signature,
              (select coalesce(pg_catalog.jsonb_agg(k.cols), '[]')
                 from (select pg_catalog.array_agg(a.attname::pg_catalog.text) as cols
                         from pg_catalog.pg_index i
                         cross join pg_catalog.unnest((i.indkey::pg_catalog.int2[])[0:i.indnkeyatts - 1]) u(attnum)
                         join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = u.attnum
                        where i.indrelid = c.oid and i.indisunique and i.indimmediate and i.indisvalid
                          and i.indpred is null and i.indexprs is null
                        group by i.indexrelid) k) as unique_keys,
              array(select a.attname::pg_catalog.text from pg_catalog.pg_attribute a
                                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                                  and a.attgenerated = '') as plain_columns
         from pg_catalog.jsonb_array_elements_text(${escapeLiteral(JSON.stringify(tables))}::pg_catalog.jsonb) x(name)
         join pg_catalog.pg_class c on c.oid = pg_catalog.to_regclass(x.name)`);
  }

  described(rows: { name: string; partitioned: boolean; signature: string; unique_keys: string[][]; plain_columns: string[] }[]): Map<string, TargetTable> {
    return new Map(rows.map((r) => [r.name, { partitioned: r.partitioned, signature: r.signature, uniqueKeys: r.unique_keys, plainColumns: r.plain_columns }]));
  }

  /**
   * The stage of `table` with these columns, created if need be (`own`: a temp
   * table that no other table shares, see the header). A stage of an
   * earlier transaction may still hold that batch's rows: emptyReused must run
   * before anything is copied into this transaction's stages, and take before
   * each piece of a table.
   */
  async ensure(target: Client, table: string, columns: string[], now: TargetTable | undefined, own = false): Promise<Stage> {
    // (A table missing on the target shares nothing: creating its stage fails.)
    const shape = JSON.stringify([columns, now?.signature ?? `missing ${table}`, ...(own ? [table] : [])]);
    const key = JSON.stringify([table, shape]);
    let temp = this.pending.get(shape);
    if (!temp) {
      temp = this.ready.get(shape);
      if (temp) {
        if (!this.emptied.has(temp)) this.reused.add(temp);
      } else {
        temp = await this.create(target, table, columns);
        this.pending.set(shape, temp);
      }
    }
    this.used.add(temp);
    let stage = this.stages.get(key);
    if (!stage || stage.temp !== temp) {
      stage = new TableStage(temp, table);
      this.stages.set(key, stage);
    }
    return stage;
  }

  private async create(target: Client, table: string, columns: string[]): Promise<Temp> {
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
    return { name, op: ident(op), columns, types, always: await identityAlways(target, table), written: 0 };
  }

  /**
   * Before a piece of `stage`'s table goes into it: a temp table that holds the
   * rows of another table of the batch (whose turn is over: tables come one after
   * another), or that an earlier transaction used (its rows may still be there), is
   * emptied first, so that no statement of this table reads them.
   */
  async take(target: Client, stage: Stage) {
    const emptying = this.taking(stage);
    if (emptying) await target.query(emptying);
  }

  /**
   * take's bookkeeping, with the statement that empties the temp table returned
   * rather than run (undefined when there is nothing to empty): the caller sends it
   * ahead of its next statement, in that statement's round trip, before anything
   * else reads or writes the stage.
   */
  taking(stage: Stage): string | undefined {
    const { temp, table } = stage as TableStage;
    const reused = this.reused.delete(temp);
    const emptying = reused || (temp.holder !== undefined && temp.holder !== table) ? this.emptying(temp) : undefined;
    temp.holder = table;
    return emptying;
  }

  /** Whether `stage`'s temp table holds its table's rows (take), and no other table's. */
  holds(stage: Stage): boolean {
    const { temp, table } = stage as TableStage;
    return temp.holder === table;
  }

  /**
   * Before the commit: the stages of this transaction that were written more than
   * TRUNCATE_AFTER_ROWS lines are emptied (a big batch's rows would otherwise stay
   * on disk until the stage's next batch); none in a small batch.
   */
  async trim(target: Client) {
    const big = [...this.used].filter(trimmed);
    if (big.length) await target.query(big.map((t) => this.emptying(t)).join(";\n"));
  }

  /** Whether trim has a stage to empty. */
  trims(): boolean {
    return [...this.used].some(trimmed);
  }

  /**
   * The statement that empties `t`: TRUNCATE past TRUNCATE_AFTER_ROWS lines, else
   * DELETE; its count as of this transaction's start is kept for a rollback.
   */
  private emptying(t: Temp): string {
    if (!this.emptied.has(t)) this.emptied.set(t, t.written);
    t.holder = undefined;
    if (t.written <= TRUNCATE_AFTER_ROWS) return `delete from ${t.name}`;
    t.written = 0;
    return `truncate ${t.name}`;
  }

  committed() {
    for (const [k, t] of this.pending) this.ready.set(k, t);
    this.endTransaction();
  }

  rolledBack() {
    // Temp tables created in the transaction are gone, and so are their stages.
    const gone = new Set(this.pending.values());
    for (const [k, s] of this.stages) if (gone.has(s.temp)) this.stages.delete(k);
    // A TRUNCATE rolled back with the rest: the rows before it are back.
    for (const [t, written] of this.emptied) t.written = Math.max(t.written, written);
    this.endTransaction();
  }

  private endTransaction() {
    for (const t of this.used) t.holder = undefined;
    this.pending.clear();
    this.reused.clear();
    this.emptied.clear();
    this.used.clear();
  }

  /**
   * Drops every stage of the session, before the batch's rows (a stage is made again
   * when a table needs it): DDL that drops what a stage's column uses (a type, a
   * collation) fails on them. Found in the catalog, not in this object: a
   * transaction rolled back after an earlier drop brought back tables it no longer knows.
   */
  async dropAll(target: Client) {
    await target.query(`do $$
      declare r record;
      begin
        for r in select c.oid::pg_catalog.regclass as t from pg_catalog.pg_class c
                  where c.relnamespace = pg_catalog.pg_my_temp_schema() and c.relkind = 'r' and c.relname like 'dbsync\\_stage\\_%'
        loop
          execute pg_catalog.format('drop table %s', r.t);
        end loop;
      end $$`);
    this.ready.clear();
    this.stages.clear();
    this.reused.clear();
  }

  /**
   * After DDL: what the target refused of a table (updateRefused) may have changed.
   * The temp tables stay: a stage is found by the signature its tables have after
   * the DDL (describe), so a table whose columns changed gets a new one, and the
   * others keep theirs (forgetting them all made every table of the next batches
   * create a stage again, about 2 ms each, and left the old ones in the session).
   */
  forget() {
    this.stages.clear();
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
