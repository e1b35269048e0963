-- dbsync.begin_copy(p_sub_id int, p_table_id int) returns table (tick_id bigint, snapshot_name text)
--   Starts a consistent copy of one table for one subscription: takes a tick of the
--   group whose snapshot is exported for the copy transaction to import, and marks
--   the table 'copying' at that tick, in the same transaction, so the stream sees
--   the copy tick and the tick itself together and never passes it before the copy
--   is committed. The caller must run it in READ COMMITTED and keep the transaction
--   open until the copy transaction has run SET TRANSACTION SNAPSHOT, then commit
--   (see dbsync._export_tick).
create or replace function dbsync.begin_copy(p_sub_id int, p_table_id int)
returns table (tick_id bigint, snapshot_name text)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_tick bigint;
    v_name text;
    v_relid oid;
begin
    select x.tick_id, x.snapshot_name into v_tick, v_name
    from dbsync.subscriptions s, dbsync._export_tick(s.group_id) x
    where s.sub_id = p_sub_id;
    select t.relid into v_relid from dbsync.tables t where t.table_id = p_table_id;
    update dbsync.subscription_tables st
    set state = 'copying', copy_tick = v_tick, rows_copied = 0,
        -- pg_partition_tree lists nothing for a table that is not partitioned.
        rows_estimated = (select nullif(sum(greatest(c.reltuples, 0)), 0)::bigint
                          from pg_class c
                          where c.relkind = 'r'
                            and c.oid in (select p.relid from pg_partition_tree(v_relid) p union select v_relid)),
        copy_started_at = now(), copy_ended_at = null, last_error = null, last_error_at = null
    where st.sub_id = p_sub_id and st.table_id = p_table_id;
    return query select v_tick, v_name;
end
$$;
