// app.measures, the partitioned table of the privilege tests: key (id, k), list
// partitions 1 and 2. PostgreSQL 10 has no primary key on a partitioned table: there
// each partition has its own, and add_table takes the key as key_columns (README,
// PostgreSQL versions).

/** A partition's key clause on a server of `major` (none from 11: the parent's). */
export const partitionKey = (major: number): string => (major < 11 ? " (primary key (id, k))" : "");

/** The table and its partitions 1 and 2, on a server of `major`. */
export function measuresDdl(major: number): string {
  return `
  create table app.measures (id int not null, k int not null, v text${major < 11 ? "" : ", primary key (id, k)"}) partition by list (k);
  create table app.measures_1 partition of app.measures${partitionKey(major)} for values in (1);
  create table app.measures_2 partition of app.measures${partitionKey(major)} for values in (2);`;
}

/** add_table's key_columns for it on a source of `major` (null: its primary key). */
export const measuresKeyColumns = (major: number): string[] | null => (major < 11 ? ["id", "k"] : null);

/**
 * Moves row `id` to partition 2: an UPDATE of k, which PostgreSQL 10 refuses (it
 * moves no row between partitions), so there a delete and an insert of it.
 */
export function moveToPartition2(major: number, id: number): string {
  return major < 11
    ? `with d as (delete from app.measures where id = ${id} returning id, v) insert into app.measures select id, 2, v from d`
    : `update app.measures set k = 2 where id = ${id}`;
}
