-- dbsync._held_message(p_ddl_id bigint, p_tag text, p_table text) returns text
--   The last_error of a table whose rows (or name) DDL outside execute_ddl changed on the
--   source only (entry p_ddl_id of dbsync.unreplicated_ddl, dbsync._unreplicated_ddl):
--   what happened, and what the DBA does (dbsync.table_status, dbsync.status).
--   Parameters: p_ddl_id, p_tag (the command's tag), p_table (its name as logged).
--   Returns: text (NULL for a NULL argument: no such change).
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._held_message(p_ddl_id bigint, p_tag text, p_table text) returns text
language sql immutable strict set search_path = pg_catalog, pg_temp as $$
    select format('%s of %s outside dbsync.execute_ddl changed its %s on the source only (dbsync.unreplicated_ddl, ddl_id %s): '
                  'make the same change on the target, then select dbsync.acknowledge_ddl(%s), and the table is copied again',
                  p_tag, p_table, case when p_tag like '% RENAME' then 'name' when p_tag like '% RENAME COLUMN' then 'column names' else 'rows' end, p_ddl_id, p_ddl_id)
$$;
