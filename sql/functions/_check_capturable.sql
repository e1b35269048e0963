-- dbsync._check_capturable(p_table_id int) returns void
--   Raises when the table, as it is now, would let changes escape capture or its
--   key: a key column that is nullable (a NULL key matches no row, so the row would
--   never be read nor deleted), a key no unique index covers any more, or a capture
--   trigger that is disabled (ALTER TABLE ... DISABLE TRIGGER) or set to fire only
--   in replica mode (but the one meant so, see _capture_triggers). Called by the DDL event trigger, so such DDL is refused; the
--   hint says how to do it instead.
--   Parameters: p_table_id.
--   Returns: nothing.
--   Calls: dbsync._capture_triggers, dbsync._key_is_unique. Tables touched: dbsync.tables
--     (read).
create or replace function dbsync._check_capturable(p_table_id int) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    t dbsync.tables;
    v_col text;
begin
    select * into t from dbsync.tables where table_id = p_table_id;
    select k into v_col from unnest(t.key_columns) k
    where not exists (select from pg_attribute a where a.attrelid = t.relid and a.attname = k
                        and not a.attisdropped and a.attnotnull)
    limit 1;
    if v_col is not null then
        raise exception 'dbsync: key column "%" of %.% must stay NOT NULL', v_col, t.schema_name, t.table_name
            using errcode = 'invalid_table_definition',
                  hint = 'A row whose key is NULL cannot be replicated. Keep the column NOT NULL, or first make another key (add a primary key in the same ALTER TABLE), or remove the table with dbsync.remove_table.';
    end if;
    if not dbsync._key_is_unique(t.relid::regclass, t.key_columns) then
        raise exception 'dbsync: the key (%) of %.% is no longer unique', array_to_string(t.key_columns, ', '),
                        t.schema_name, t.table_name
            using errcode = 'invalid_table_definition',
                  hint = case when t.partitioned and not dbsync._server_has('partitioned_unique')
                              then 'On PostgreSQL 10 every partition of a replicated partitioned table needs a unique index '
                                   'on its key: create partitions with it, e.g. create table p1 partition of p '
                                   '(primary key (' || array_to_string(t.key_columns, ', ') || ')) for values ...'
                              else 'Drop and add the primary key in one ALTER TABLE statement, or keep a unique index on the key columns.' end;
    end if;
    if exists (select from dbsync._capture_triggers(t.relid, true) tg
               where tg.enabled = 'D' or tg.enabled = 'R' and tg.meant <> 'R') then
        raise exception 'dbsync: the capture triggers of %.% cannot be disabled', t.schema_name, t.table_name
            using errcode = 'object_in_use',
                  hint = 'Writes made while they are off would never reach the targets. Disable only your own triggers, by name (DISABLE TRIGGER USER and ALL include dbsync''s), or remove the table with dbsync.remove_table.';
    end if;
end
$$;
