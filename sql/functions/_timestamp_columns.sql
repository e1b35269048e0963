-- A column retyped between timestamp and timestamptz. PostgreSQL reads the
-- timestamp as of the session's TimeZone: a rewrite for any other zone, none for
-- one of offset 0 (PostgreSQL 12 on), where only the catalog changes. Outside
-- execute_ddl no table_rewrite event fires then, while a target that runs the
-- same ALTER under its own TimeZone shifts every value (through execute_ddl the
-- targets run it under the source's TimeZone, dbsync._ddl_settings: the same
-- values). Once the ALTER has run, the catalog no longer says what the column was:
-- dbsync.tables.timestamp_columns keeps it from the table's last DDL (or
-- add_table), by name.

-- dbsync._timestamp_columns(p_rel oid) returns jsonb
--   The columns of p_rel whose type is timestamp or timestamptz, or a domain over
--   one: {column name: 'timestamp without time zone' | 'timestamp with time zone'}.
--   Parameters: p_rel.
--   Returns: jsonb ({} for none).
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._timestamp_columns(p_rel oid) returns jsonb
language sql stable set search_path = pg_catalog, pg_temp as $$
    with recursive base(attname, typ) as (
        select a.attname, a.atttypid from pg_attribute a
        where a.attrelid = p_rel and a.attnum > 0 and not a.attisdropped
        union all
        select b.attname, ty.typbasetype from base b join pg_type ty on ty.oid = b.typ and ty.typtype = 'd'
    )
    select coalesce(jsonb_object_agg(b.attname, b.typ::regtype::text), '{}')
    from base b where b.typ in ('timestamp'::regtype, 'timestamptz'::regtype)
$$;

-- dbsync._timestamps_retyped(p_table_id int) returns boolean
--   Whether a column of replicated table p_table_id went from timestamp to
--   timestamptz or back (through domains) since its last DDL: its values changed
--   without a rewrite, or with one (then dbsync._on_rewrite saw it too). Records
--   the columns as they are now, for the next DDL. Called by the DDL event trigger
--   for each replicated table a command altered, through execute_ddl too (its
--   targets run it alike, but the record must follow).
--   Parameters: p_table_id.
--   Returns: boolean.
--   Calls: dbsync._columns_recorded, dbsync._timestamp_columns. Tables touched: dbsync.tables (read, written).
create or replace function dbsync._timestamps_retyped(p_table_id int) returns boolean
language sql set search_path = pg_catalog, pg_temp as $$
    select dbsync._columns_recorded(t.table_id, 'timestamp_columns', dbsync._timestamp_columns(t.relid))
    from dbsync.tables t where t.table_id = p_table_id
$$;
