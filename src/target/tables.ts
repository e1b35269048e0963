// Whether the target has the tables the source sends rows for: each one there, with
// every column the source sends. The copy looks before it starts (a table waiting
// for its first copy is left out while its target table is not ready:
// src/apply/applier.ts), a verification before it compares (src/verify/layout.ts);
// a batch meets the same cases as PostgreSQL's errors (withTable). All three say it
// with the same errors (src/errors.ts: targetTableMissing, targetColumnsMissing).
import type { ClientBase } from "pg";
import { forServer } from "../compat";
import { DbsyncError, messageOf, sqlstateOf, targetColumnsMissing, targetColumnsNotGenerated, targetTableMissing } from "../errors";

export interface TargetTableWanted {
  /** The table's quoted name on the target. */
  target: string;
  /** The columns the source sends. */
  columns: string[];
  /** The columns the source generates (and does not send). */
  generated?: string[];
}

/**
 * The tables of `tables` that the target lacks, that lack columns the source
 * sends, or that hold a column the source generates as a plain one, each with the
 * error that says so; one query for all of them.
 */
export async function unreadyTargetTables(target: ClientBase, tables: TargetTableWanted[]): Promise<Map<string, DbsyncError>> {
  const unready = new Map<string, DbsyncError>();
  if (!tables.length) return unready;
  const { rows } = await target.query<{ target: string; missing: string[] | null; plain: string[] | null; exists: boolean }>(
    // Every name and operator qualified: a search_path the conninfo gives applies
    // (src/db/settings.ts CATALOG_FIRST_OPTIONS; as src/verify/layout.ts columnsOf).
    // forServer: before PostgreSQL 12 there is no attgenerated (every column is plain).
    await forServer(target, `select x.target, pg_catalog.to_regclass(x.target) is not null as exists,
            (select pg_catalog.array_agg(c) from pg_catalog.unnest(x.columns) c
              where not exists (select from pg_catalog.pg_attribute a
                                 where a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(x.target)
                                   and a.attname OPERATOR(pg_catalog.=) c
                                   and a.attnum OPERATOR(pg_catalog.>) 0 and not a.attisdropped)) as missing,
            (select pg_catalog.array_agg(a.attname::pg_catalog.text) from pg_catalog.pg_attribute a
              where a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(x.target)
                and a.attname OPERATOR(pg_catalog.=) any (x.generated)
                and a.attnum OPERATOR(pg_catalog.>) 0 and not a.attisdropped
                and a.attgenerated OPERATOR(pg_catalog.=) ''::pg_catalog."char") as plain
       from pg_catalog.jsonb_to_recordset($1::pg_catalog.jsonb) as x(target pg_catalog.text, columns pg_catalog.text[], generated pg_catalog.text[])`),
    [JSON.stringify(tables.map((t) => ({ target: t.target, columns: t.columns, generated: t.generated ?? [] })))],
  );
  for (const r of rows) {
    if (!r.exists) unready.set(r.target, targetTableMissing(r.target));
    else if (r.missing?.length) unready.set(r.target, targetColumnsMissing(r.target, r.missing));
    else if (r.plain?.length) unready.set(r.target, targetColumnsNotGenerated(r.target, r.plain));
  }
  return unready;
}

/** Re-raise with the table named, and a hint for the errors a DBA fixes on the target. */
export async function withTable<T>(table: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DbsyncError) throw err;
    const sqlstate = sqlstateOf(err);
    if (sqlstate === "42P01") throw targetTableMissing(table, err);
    if (sqlstate === "42703") throw targetColumnsMissing(table, undefined, err);
    throw new DbsyncError(messageOf(err), { table, sqlstate, cause: err });
  }
}
