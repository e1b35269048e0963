// One side of a comparison: the SQL that hashes, lists, looks up, deletes and
// copies rows of the table on one connection, with that side's column types.
// No code a table owner wrote runs here (the sidecar's role may be privileged): a
// value becomes text only through its (base) type's output function, called by its
// qualified name (as dbsync._text_of does), never through a cast; keys compare with
// OPERATOR(pg_catalog.=) / ordering only when both sides' types are pg_catalog's,
// else as output text (ordered in the "C" collation); text becomes a value only by
// a cast to a pg_catalog type, or by COPY into the target table (input functions
// run as the target role, as the applier's do); every function and operator is
// qualified.
import { Client, escapeIdentifier as ident } from "pg";
import { copyLines } from "../db/copy-from";
import { Col, KeyCol, SideLayout } from "./layout";

export type Key = string[];
export interface RowSig {
  k: Key;
  d: string;
  h: string;
}

/**
 * A column's value, as a value of its base type: a domain's is cast to it first
 * (casts from a domain are built in: PostgreSQL ignores CREATE CAST for domains),
 * since polymorphic output functions and operators (enum_out, array_out, array
 * comparison...) do not take domains.
 */
function baseValue(c: Col): string {
  const v = `t.${ident(c.name)}`;
  return c.domainBase ? `(${v})::${c.domainBase}` : v;
}

/** The text of a column's value by its base type's output function (dbsync._text_of's rule). */
function textOf(c: Col): string {
  const v = baseValue(c);
  return c.isText ? `(${v})::pg_catalog.text` : `pg_catalog.textin(${c.outfn}(${v}))`;
}

/** A COPY text-format field. */
function copyField(v: string | null): string {
  if (v === null) return "\\N";
  return v.replace(/[\\\n\r\t]/g, (ch) => (ch === "\\" ? "\\\\" : ch === "\n" ? "\\n" : ch === "\r" ? "\\r" : "\\t"));
}

/** One side of the comparison: SQL text for one connection, with that side's column types. */
export class Side {
  private readonly cols: Col[];
  private readonly keys: KeyCol[];

  constructor(
    readonly client: Client,
    private readonly rel: string,
    layout: SideLayout,
  ) {
    this.cols = layout.cols;
    this.keys = layout.keys;
  }

  /** The key column as it is ordered and compared. */
  private ord(k: KeyCol) {
    return k.byValue ? baseValue(k.col) : `${textOf(k.col)} COLLATE pg_catalog."C"`;
  }
  private get order() {
    return this.keys.map((k) => this.ord(k)).join(", ");
  }
  /** Key value i of bound parameter $n (a text[] of key texts), typed as the key column is compared. */
  private boundValue(n: number, i: number, k: KeyCol) {
    const v = `($${n}::pg_catalog.text[])[${i + 1}]`;
    return k.byValue ? `(${v})::pg_catalog.${ident(k.col.typname)}` : v;
  }
  /** The row's key compared with `op` to the key in parameter $n. */
  private cmp(op: ">" | "<=", n: number) {
    const bounds = this.keys.map((k, i) => this.boundValue(n, i, k));
    return this.keys.length === 1
      ? `${this.ord(this.keys[0])} OPERATOR(pg_catalog.${op}) ${bounds[0]}`
      : `ROW(${this.order}) OPERATOR(pg_catalog.${op}) ROW(${bounds.join(", ")})`;
  }
  private get keyText() {
    return `ARRAY[${this.keys.map((k) => textOf(k.col)).join(", ")}]::pg_catalog.text[]`;
  }
  /** The key as it is shown in differing_keys: the text of a one-column key, else a record's. */
  private get display() {
    return this.keys.length === 1
      ? textOf(this.keys[0].col)
      : `pg_catalog.textin(pg_catalog.record_out(ROW(${this.keys.map((k) => textOf(k.col)).join(", ")})))`;
  }
  private get rowText() {
    return `pg_catalog.textin(pg_catalog.array_out(ARRAY[${this.cols.map(textOf).join(", ")}]::pg_catalog.text[]))`;
  }
  private get rowMd5() {
    return `pg_catalog.md5(${this.rowText})`;
  }
  private get rowHash() {
    return `(pg_catalog.concat('x', pg_catalog."left"(${this.rowMd5}, 16))::pg_catalog."bit"(64))::pg_catalog.int8::pg_catalog.numeric`;
  }
  /** Key range (lo, hi]: $1 = lo or null, $2 = hi or null. */
  private get range() {
    return `($1::pg_catalog.text[] is null or ${this.cmp(">", 1)})
        and ($2::pg_catalog.text[] is null or ${this.cmp("<=", 2)})`;
  }
  /** The row's key is one of the keys in parameters $first.. (one text[] per key column). */
  private byKeys(first: number) {
    const match = this.keys.map((k, i) => {
      const x = `dbsync_x.k${i}`;
      return k.byValue
        ? `${baseValue(k.col)} OPERATOR(pg_catalog.=) (${x})::pg_catalog.${ident(k.col.typname)}`
        : `${textOf(k.col)} COLLATE pg_catalog."C" OPERATOR(pg_catalog.=) ${x}`;
    });
    // ROWS FROM: a qualified unnest takes one array only.
    return `exists (select from rows from (${this.keys.map((_, i) => `pg_catalog.unnest($${first + i}::pg_catalog.text[])`).join(", ")})
                           as dbsync_x(${this.keys.map((_, i) => `k${i}`).join(", ")})
                     where ${match.join(" and ")})`;
  }
  /** Keys as parameters for byKeys: one array per key column. */
  private keyParams(keys: Key[]): string[][] {
    return this.keys.map((_, i) => keys.map((k) => k[i]));
  }

  /** The next `limit` rows after `lo` in key order: count, hash sum, last key. */
  async nextChunk(lo: Key | null, limit: number): Promise<{ n: number; sum: string; last: Key | null }> {
    const { rows } = await this.client.query(
      // The CTE's columns are expressions with their own names, never the table's
      // columns, so no column name of the table can clash with them.
      `with c as (
         select ${this.keyText} as k, ${this.rowHash} as h, pg_catalog.row_number() over (order by ${this.order}) as i
           from ${this.rel} t
          where $1::pg_catalog.text[] is null or ${this.cmp(">", 1)}
          order by ${this.order}
          limit ${Number(limit)})
       select pg_catalog.count(*)::pg_catalog.int4 as n, coalesce(pg_catalog.sum(c.h), 0) as sum,
              (select l.k from c l order by l.i desc limit 1) as last
         from c`,
      [lo],
    );
    return rows[0];
  }

  /** Count and hash sum of the rows in (lo, hi]. */
  async rangeSum(lo: Key | null, hi: Key | null): Promise<{ n: number; sum: string }> {
    const { rows } = await this.client.query(
      `select pg_catalog.count(*)::pg_catalog.int4 as n, coalesce(pg_catalog.sum(${this.rowHash}), 0) as sum
         from ${this.rel} t where ${this.range}`,
      [lo, hi],
    );
    return rows[0];
  }

  /** Rows of (lo, hi] after `after` in key order, `limit` at most: key, display key, md5. */
  async rangeRows(lo: Key | null, hi: Key | null, after: Key | null, limit: number): Promise<RowSig[]> {
    const { rows } = await this.client.query<RowSig>(
      `select ${this.keyText} as k, ${this.display} as d, ${this.rowMd5} as h
         from ${this.rel} t
        where ${this.range} and ($3::pg_catalog.text[] is null or ${this.cmp(">", 3)})
        order by ${this.order}
        limit ${Number(limit)}`,
      [lo, hi, after],
    );
    return rows;
  }

  /** The rows with these keys (by key equality: collation-independent). */
  async byKey(keys: Key[]): Promise<RowSig[]> {
    if (!keys.length) return [];
    const { rows } = await this.client.query<RowSig>(
      `select ${this.keyText} as k, ${this.display} as d, ${this.rowMd5} as h from ${this.rel} t where ${this.byKeys(1)}`,
      this.keyParams(keys),
    );
    return rows;
  }

  /** Every compared column as text, for the rows with these keys. */
  async fullRows(keys: Key[]): Promise<(string | null)[][]> {
    if (!keys.length) return [];
    const { rows } = await this.client.query(
      `select ARRAY[${this.cols.map(textOf).join(", ")}]::pg_catalog.text[] as r from ${this.rel} t where ${this.byKeys(1)}`,
      this.keyParams(keys),
    );
    return rows.map((r) => r.r);
  }

  async deleteKeys(keys: Key[]): Promise<number> {
    if (!keys.length) return 0;
    const r = await this.client.query(`delete from ${this.rel} t where ${this.byKeys(1)}`, this.keyParams(keys));
    return r.rowCount ?? 0;
  }

  /**
   * Inserts rows given as column texts by COPY: the target's input functions parse
   * them (as the applier's COPY does), never a cast to a type a table owner made.
   * `rel` must be the table's plain name (COPY has no ONLY; a partitioned table routes the rows).
   */
  async copyRows(rows: (string | null)[][]): Promise<void> {
    if (!rows.length) return;
    const cols = this.cols.map((c) => ident(c.name)).join(", ");
    const data = rows.map((r) => r.map(copyField).join("\t") + "\n").join("");
    await copyLines(this.client, `copy ${this.rel} (${cols}) from stdin`, [Buffer.from(data, "utf8")]);
  }
}
