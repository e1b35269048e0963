-- dbsync.table_layout(p_table_id int) returns table (columns text[], types text[], key_positions int[])
--   A replicated table's stored columns (generated ones are left to each side),
--   their types (format_type) and the 1-based positions of its key columns among
--   them, as of the caller's snapshot: verify reads it in the transaction that
--   imported the verification's tick. Called by the sidecar.
--   Parameters: p_table_id.
--   Returns: rows of (columns, types, key_positions).
--   Calls: nothing. Tables touched: dbsync.tables (read).
create or replace function dbsync.table_layout(p_table_id int)
returns table (columns text[], types text[], key_positions int[])
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    with c as (
        select array_agg(a.attname::text order by a.attnum) as columns,
               array_agg(format_type(a.atttypid, a.atttypmod) order by a.attnum) as types
        from dbsync.tables t
        join pg_attribute a on a.attrelid = t.relid
        where t.table_id = p_table_id and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
    )
    select c.columns, c.types,
           array(select array_position(c.columns, k)
                 from dbsync.tables t, unnest(t.key_columns) with ordinality u(k, o)
                 where t.table_id = p_table_id order by u.o)
    from c
$$;
