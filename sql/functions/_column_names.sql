-- dbsync._column_names(p_rel oid) returns jsonb
--   The names of p_rel's columns by attnum: {"2": "name", ...}. Recorded in
--   dbsync.tables.column_names by add_table and at each DDL of a replicated table
--   (dbsync._columns_recorded, called by the DDL event trigger for each replicated
--   table a command altered, through execute_ddl too: the record must follow): a
--   column whose name changed outside execute_ddl makes the targets write its values
--   under the new name, into another column where two names swapped (the stream's
--   rows; the others keep theirs), and once the targets' DBA makes the same change
--   the rows written meanwhile are swapped a second time; held as a table's RENAME
--   is. PostgreSQL renames a table's column by ALTER TABLE, and by ALTER VIEW, ALTER
--   MATERIALIZED VIEW and ALTER FOREIGN TABLE as well; an inheritance child's with
--   its parent's, a typed table's by ALTER TYPE ... RENAME ATTRIBUTE ... CASCADE,
--   naming neither.
--   Parameters: p_rel.
--   Returns: jsonb ({} for none).
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._column_names(p_rel oid) returns jsonb
language sql stable set search_path = pg_catalog, pg_temp as $$
    select coalesce(jsonb_object_agg(a.attnum::text, a.attname::text), '{}')
    from pg_attribute a
    where a.attrelid = p_rel and a.attnum > 0 and not a.attisdropped
$$;
