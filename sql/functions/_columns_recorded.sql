-- dbsync._columns_recorded(p_table_id int, p_record text, p_now jsonb) returns boolean
--   Records p_now, what replicated table p_table_id's columns are now in one respect,
--   in its column p_record of dbsync.tables (timestamp_columns, column_names), and
--   says whether an entry it had already (a column's name, an attnum) has another
--   value now. Once DDL has run, the catalog no longer says what a column was: the
--   record keeps it from the table's last DDL (or add_table) for the next.
--   Parameters: p_table_id, p_record (a jsonb column of dbsync.tables), p_now.
--   Returns: boolean (false for a table not recorded before).
--   Calls: nothing. Tables touched: dbsync.tables (read, written).
create or replace function dbsync._columns_recorded(p_table_id int, p_record text, p_now jsonb) returns boolean
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_was jsonb;
begin
    execute format('select %I from dbsync.tables where table_id = $1', p_record) into v_was using p_table_id;
    if p_now is not distinct from v_was then
        return false;
    end if;
    execute format('update dbsync.tables set %I = $1 where table_id = $2', p_record) using p_now, p_table_id;
    return exists (select from jsonb_each_text(v_was) w join jsonb_each_text(p_now) n using (key)
                   where w.value <> n.value);
end
$$;
