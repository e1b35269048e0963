-- dbsync._export_tick(p_group_id int) returns table (tick_id bigint, snapshot_name text)
--   Takes a tick of the group whose snapshot is exported, for a batch (begin_batch)
--   or a verification to read the source exactly as of that tick. The steps mirror
--   dbsync.tick: the group's tick lock in one statement, then one statement that
--   takes the snapshot, exports it and reads the event sequence (one statement, so
--   the exported snapshot is the tick's). The caller must run in READ COMMITTED and
--   keep its transaction open until the reader has run SET TRANSACTION SNAPSHOT.
--   Parameters: p_group_id.
--   Returns: rows of (tick_id, snapshot_name).
--   Calls: nothing. Tables touched: dbsync.groups, dbsync.ticks (written).
create or replace function dbsync._export_tick(p_group_id int)
returns table (tick_id bigint, snapshot_name text)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_last bigint;
    v_seq regclass := format('dbsync.%I', 'events_seq_' || p_group_id)::regclass;
    v_snap pg_snapshot;
    v_name text;
    v_hi bigint;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception '_export_tick: must run in a READ COMMITTED transaction' using errcode = 'active_sql_transaction';
    end if;
    select g.last_tick_id into v_last from dbsync.groups g where g.group_id = p_group_id for no key update;
    select pg_current_snapshot(), pg_export_snapshot(), coalesce(pg_sequence_last_value(v_seq), 0)
      into v_snap, v_name, v_hi;
    insert into dbsync.ticks (group_id, tick_id, snap, max_ev_id) values (p_group_id, v_last + 1, v_snap, v_hi);
    update dbsync.groups set last_tick_id = v_last + 1 where group_id = p_group_id;
    return query select v_last + 1, v_name;
end
$$;
