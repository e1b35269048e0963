// Is the target's copy of a table the source's? The independent check of the tests,
// the torture run, the soak, the benchmark and the demo: it reads both sides itself
// and uses nothing of dbsync (dbsync.verify_table is what it checks, not a judge).
import type { ClientBase, Pool } from "pg";

export type Queryable = Pool | ClientBase;

export interface TableComparison {
  table: string;
  sourceRows: number;
  targetRows: number;
  equal: boolean;
  /** Rows (as text) the target lacks, and rows only the target has; empty by checksum. */
  onlySource: string[];
  onlyTarget: string[];
  /** A side that could not be read (a table missing on the target...). */
  error?: string;
}

/**
 * Every row of a table as its text (`select t::text`), sorted. Two tables hold the
 * same rows when their lists are equal; timestamptz text follows the session's
 * TimeZone, so compare sessions with the same one.
 */
export async function tableRows(c: Queryable, table: string): Promise<string[]> {
  const { rows } = await c.query(`select t::text as r from ${table} t order by 1`);
  return rows.map((r) => r.r as string);
}

/** Rows of `a` not in `b` and of `b` not in `a`, as multisets: a row twice on one side counts twice. */
export function rowDiff(a: string[], b: string[]): { onlyA: string[]; onlyB: string[] } {
  const counts = new Map<string, number>();
  for (const r of a) counts.set(r, (counts.get(r) ?? 0) + 1);
  for (const r of b) counts.set(r, (counts.get(r) ?? 0) - 1);
  const onlyA: string[] = [];
  const onlyB: string[] = [];
  for (const [r, n] of counts) for (let i = 0; i < Math.abs(n); i++) (n > 0 ? onlyA : onlyB).push(r);
  return { onlyA: onlyA.sort(), onlyB: onlyB.sort() };
}

/**
 * Row count and an order-independent checksum of the rows' text, computed by the
 * server: for tables too big to bring over (the benchmark's), at the price of naming
 * no row that differs.
 */
async function checksum(c: Queryable, table: string): Promise<{ rows: number; sum: string }> {
  const { rows } = await c.query(
    `select count(*)::int8 as n, coalesce(sum(hashtext(t::text)::int8), 0)::text as s from ${table} t`,
  );
  return { rows: Number(rows[0].n), sum: rows[0].s as string };
}

/**
 * `read` on both sides. A table gone from both (dropped through execute_ddl) is the
 * same on both: equal, with nothing to compare; a side that cannot be read otherwise
 * makes the table differ.
 */
async function readBoth<T>(table: string, read: (side: "source" | "target") => Promise<T>): Promise<[T, T] | TableComparison> {
  const errors: Partial<Record<"source" | "target", string>> = {};
  const attempt = (side: "source" | "target") =>
    read(side).catch((err: Error) => {
      errors[side] = err.message;
      return undefined;
    });
  const [a, b] = await Promise.all([attempt("source"), attempt("target")]);
  if (a !== undefined && b !== undefined) return [a, b];
  const none = { table, sourceRows: 0, targetRows: 0, onlySource: [], onlyTarget: [] };
  if (errors.source !== undefined && errors.source === errors.target) return { ...none, equal: true };
  const error = Object.entries(errors).map(([side, m]) => `cannot read ${table} on the ${side}: ${m}`).join("; ");
  return { ...none, equal: false, error };
}

async function compareOne(source: Queryable, target: Queryable, table: string, by: "rows" | "checksum"): Promise<TableComparison> {
  const side = (s: "source" | "target") => (s === "source" ? source : target);
  if (by === "checksum") {
    const r = await readBoth(table, (s) => checksum(side(s), table));
    if (!Array.isArray(r)) return r;
    const [a, b] = r;
    const equal = a.rows === b.rows && a.sum === b.sum;
    const error = equal ? undefined : `checksums differ: source ${a.rows} rows ${a.sum}, target ${b.rows} rows ${b.sum}`;
    return { table, sourceRows: a.rows, targetRows: b.rows, equal, onlySource: [], onlyTarget: [], error };
  }
  const r = await readBoth(table, (s) => tableRows(side(s), table));
  if (!Array.isArray(r)) return r;
  const [a, b] = r;
  const d = rowDiff(a, b);
  const equal = d.onlyA.length === 0 && d.onlyB.length === 0;
  return { table, sourceRows: a.length, targetRows: b.length, equal, onlySource: d.onlyA, onlyTarget: d.onlyB };
}

/** Each table on both sides, row by row (default) or by checksum. */
export async function compareTables(
  source: Queryable,
  target: Queryable,
  tables: string[],
  opts: { by?: "rows" | "checksum" } = {},
): Promise<TableComparison[]> {
  const out: TableComparison[] = [];
  for (const t of tables) out.push(await compareOne(source, target, t, opts.by ?? "rows"));
  return out;
}

/** One line per table that differs, with up to `show` rows of each side; empty when all are equal. */
export function differences(cs: TableComparison[], show = 3): string[] {
  return cs
    .filter((c) => !c.equal)
    .map((c) => {
      if (c.error) return `${c.table}: ${c.error}`;
      const rows = (xs: string[]) => (xs.length ? ` (${xs.slice(0, show).join(" ")}${xs.length > show ? " ..." : ""})` : "");
      return `${c.table}: ${c.onlySource.length} rows only on the source${rows(c.onlySource)}, ` +
        `${c.onlyTarget.length} only on the target${rows(c.onlyTarget)}`;
    });
}
