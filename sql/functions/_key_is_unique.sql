-- dbsync._key_is_unique(tbl regclass, key_columns text[]) returns boolean
--   Whether no two rows of tbl can hold the same values in key_columns: a valid
--   unique index without predicate or expressions covers a subset of them. A
--   partitioned table has no index of its own on PostgreSQL 10
--   (dbsync._server_has('partitioned_unique')): there the key is unique when it
--   includes the partition key columns of every partitioned level (as PostgreSQL 11
--   requires of a unique index on a partitioned table) and every leaf partition has
--   such an index.
--   Parameters: tbl, key_columns.
--   Returns: boolean.
--   Calls: dbsync._server_has. Tables touched: none.
create or replace function dbsync._key_is_unique(tbl regclass, key_columns text[]) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    if (select c.relkind from pg_class c where c.oid = tbl) = 'p' and not dbsync._server_has('partitioned_unique') then
        return not exists (select from pg_partition_tree(tbl) p
                           join pg_partitioned_table pt on pt.partrelid = p.relid
                           cross join lateral unnest(pt.partattrs::int2[]) k(attnum)
                           where not exists (select from pg_attribute a
                                             where a.attrelid = p.relid and a.attnum = k.attnum
                                               and a.attname = any (key_columns)))
           and not exists (select from pg_partition_tree(tbl) p
                           where p.isleaf and not dbsync._key_is_unique(p.relid, key_columns));
    end if;
    return exists (
        select from pg_index i
        where i.indrelid = tbl and i.indisunique and i.indisvalid
          and i.indpred is null and i.indexprs is null
          and (select bool_and(a.attname = any (key_columns))
               from pg_attribute a
               where a.attrelid = tbl and a.attnum = any (i.indkey::int2[])));
end
$$;
