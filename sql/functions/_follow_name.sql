-- dbsync._follow_name(p_table_id int) returns boolean
--   Records in dbsync.tables the table's current schema and name, the names its
--   targets know it by once they have run the DDL that gave them (execute_ddl runs
--   it there at its point in the stream); true when they changed. The DDL event
--   trigger calls it for every table a command altered: a RENAME or SET SCHEMA
--   outside execute_ddl is then seen (dbsync._on_ddl).
--   Parameters: p_table_id.
--   Returns: boolean.
--   Calls: nothing. Tables touched: dbsync.tables (written).
create or replace function dbsync._follow_name(p_table_id int) returns boolean
language sql set search_path = pg_catalog, pg_temp as $$
    with renamed as (
        update dbsync.tables tb
        set schema_name = n.nspname, table_name = c.relname
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where tb.table_id = p_table_id and c.oid = tb.relid
          and (tb.schema_name, tb.table_name) is distinct from (n.nspname::text, c.relname::text)
        returning 1)
    select exists (select from renamed)
$$;
