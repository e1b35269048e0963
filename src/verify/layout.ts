// The compared table's columns on each side, and how each one's values become text
// there: every stored column of the table as of the verification's tick
// (dbsync.table_layout); each must exist on the target (one that does not, such as
// a column added on the source by a plain ALTER TABLE, fails the verification with
// its name). Columns that only the target has are not replicated and not compared.
import { Client } from "pg";
import { forServer } from "../compat";
import { unreadyTargetTables, withTable } from "../target/tables";

/** A column on one side, and how its values become text there. */
export interface Col {
  name: string;
  /** Its base type (under domains) is one of pg_catalog's. */
  builtin: boolean;
  /** The base type is pg_catalog.text: the value is its text. */
  isText: boolean;
  /** The base type's name (in pg_catalog when builtin). */
  typname: string;
  /** The base type's output function, qualified and quoted. */
  outfn: string;
  /** The base type, qualified and quoted, when the column's type is a domain over it. */
  domainBase: string | null;
  generated: boolean;
}

/** A key column on one side; byValue: compared and ordered as values (both sides' types are pg_catalog's). */
export interface KeyCol {
  col: Col;
  byValue: boolean;
}

export interface SideLayout {
  cols: Col[];
  keys: KeyCol[];
}

export interface Layout {
  source: SideLayout;
  target: SideLayout;
}

export interface SourceTable {
  /** The table's current name on the source (from its oid), for reading it. */
  name: string;
  /** Its name as of T, always quoted (as the applier names it): the name on the target at T. */
  targetName: string;
  relid: number;
  columns: string[];
  keyCols: string[];
  cols: Map<string, Col>;
}

/**
 * Columns of a relation and how to turn each one's values into text: the base type
 * under any domain, its output function, whether it is one of pg_catalog's.
 */
export async function columnsOf(client: Client, relExpr: string, rel: unknown): Promise<Map<string, Col>> {
  // forServer: before PostgreSQL 12 there is no attgenerated (and no generated column).
  const { rows } = await client.query<Col>(
    await forServer(client, `with recursive base(attnum, typ, basetype, domain) as (
         select a.attnum, a.atttypid, ty.typbasetype, false
           from pg_catalog.pg_attribute a join pg_catalog.pg_type ty on ty.oid OPERATOR(pg_catalog.=) a.atttypid
          where a.attrelid OPERATOR(pg_catalog.=) ${relExpr} and a.attnum OPERATOR(pg_catalog.>) 0 and not a.attisdropped
         union all
         select b.attnum, ty.oid, ty.typbasetype, true
           from base b join pg_catalog.pg_type ty on ty.oid OPERATOR(pg_catalog.=) b.basetype
          where b.basetype OPERATOR(pg_catalog.<>) 0::pg_catalog.oid)
     select a.attname::pg_catalog.text as name, a.attgenerated OPERATOR(pg_catalog.<>) ''::pg_catalog."char" as generated,
            ty.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid as builtin,
            ty.oid OPERATOR(pg_catalog.=) 'pg_catalog.text'::pg_catalog.regtype::pg_catalog.oid as "isText",
            ty.typname::pg_catalog.text as typname,
            pg_catalog.format('%I.%I', n.nspname, p.proname) as outfn,
            case when b.domain then pg_catalog.format('%I.%I', tn.nspname, ty.typname) end as "domainBase"
       from base b
       join pg_catalog.pg_attribute a on a.attrelid OPERATOR(pg_catalog.=) ${relExpr} and a.attnum OPERATOR(pg_catalog.=) b.attnum
       join pg_catalog.pg_type ty on ty.oid OPERATOR(pg_catalog.=) b.typ
       join pg_catalog.pg_namespace tn on tn.oid OPERATOR(pg_catalog.=) ty.typnamespace
       join pg_catalog.pg_proc p on p.oid OPERATOR(pg_catalog.=) ty.typoutput
       join pg_catalog.pg_namespace n on n.oid OPERATOR(pg_catalog.=) p.pronamespace
      where b.basetype OPERATOR(pg_catalog.=) 0::pg_catalog.oid
      order by b.attnum`),
    [rel],
  );
  return new Map(rows.map((r) => [r.name, r]));
}

/**
 * Locks `table` in ACCESS SHARE mode until the end of the transaction, as reading it
 * does, with its partitions (and inheritance children). A query rather than LOCK
 * TABLE: before PostgreSQL 13 LOCK TABLE of a parent needs a right on each child,
 * which a role granted SELECT on the parent alone (the sidecar's: grant_sidecar)
 * lacks; a query plans every child, prunes none here, and locks each, checking the
 * parent's rights only.
 */
export async function lockForRead(client: Client, table: string): Promise<void> {
  await client.query(`select from ${table} limit 0`);
}

/**
 * The target table at T (the caller's snapshot): every column the source has must
 * be there. Locks it, as reading it would, until the end of the transaction.
 */
export async function targetLayout(target: Client, src: SourceTable): Promise<Layout> {
  const table = src.targetName;
  await withTable(table, () => lockForRead(target, table));
  // After the lock: no column can go before columnsOf reads them.
  const unready = (await unreadyTargetTables(target, [{ target: table, columns: src.columns }])).get(table);
  if (unready) throw unready;
  const cols = await columnsOf(target, "pg_catalog.to_regclass($1)", table);
  const side = (m: Map<string, Col>): SideLayout => ({ cols: src.columns.map((c) => m.get(c)!), keys: [] });
  const source = side(src.cols);
  const dest = side(cols);
  for (const k of src.keyCols) {
    const s = src.cols.get(k)!;
    const t = cols.get(k)!;
    // Values only when both sides' types are pg_catalog's: else both order and
    // compare by output text, so that the two sides agree on the order.
    const byValue = s.builtin && t.builtin;
    source.keys.push({ col: s, byValue });
    dest.keys.push({ col: t, byValue });
  }
  return { source, target: dest };
}
