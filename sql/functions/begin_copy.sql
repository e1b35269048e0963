-- dbsync.begin_copy(p_sub_id int, p_table_id int) returns table (tick_id bigint, snapshot_name text)
--   Starts a consistent copy of one table for one subscription: takes a tick of the
--   group whose snapshot is exported for the copy transaction to import, and marks
--   the table 'copying' at that tick, in the same transaction, so the stream sees
--   the copy tick and the tick itself together and never passes it before the copy
--   is committed. The caller must run it in READ COMMITTED and keep the transaction
--   open until the copy transaction has run SET TRANSACTION SNAPSHOT, then commit.
--   The steps mirror dbsync.tick: the lock, then one statement that takes the
--   snapshot, exports it and reads the event sequence.
create or replace function dbsync.begin_copy(p_sub_id int, p_table_id int)
returns table (tick_id bigint, snapshot_name text)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int;
    v_last bigint;
    v_seq regclass;
    v_snap pg_snapshot;
    v_name text;
    v_hi bigint;
    v_relid oid;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'begin_copy: must run in a READ COMMITTED transaction' using errcode = 'active_sql_transaction';
    end if;
    select s.group_id into v_group from dbsync.subscriptions s where s.sub_id = p_sub_id;
    select g.last_tick_id into v_last from dbsync.groups g where g.group_id = v_group for update;
    v_seq := format('dbsync.%I', 'events_seq_' || v_group)::regclass;
    select pg_current_snapshot(), pg_export_snapshot(), coalesce(pg_sequence_last_value(v_seq), 0)
      into v_snap, v_name, v_hi;
    insert into dbsync.ticks (group_id, tick_id, snap, max_ev_id)
    values (v_group, v_last + 1, v_snap, v_hi);
    update dbsync.groups set last_tick_id = v_last + 1 where group_id = v_group;
    select t.relid into v_relid from dbsync.tables t where t.table_id = p_table_id;
    update dbsync.subscription_tables st
    set state = 'copying', copy_tick = v_last + 1, rows_copied = 0,
        rows_estimated = (select nullif(sum(greatest(c.reltuples, 0)), 0)::bigint
                          from pg_partition_tree(v_relid) p join pg_class c on c.oid = p.relid
                          where p.isleaf),
        copy_started_at = now(), copy_ended_at = null, last_error = null, last_error_at = null
    where st.sub_id = p_sub_id and st.table_id = p_table_id;
    return query select v_last + 1, v_name;
end
$$;
