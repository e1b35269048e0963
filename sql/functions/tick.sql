-- dbsync.tick(p_group_id int, p_force boolean default false) returns bigint
--   Takes a tick of the group: a snapshot that closes one batch. Ticks of a group
--   are serialized by a lock on its row, and each snapshot is taken after that lock,
--   so tick order is snapshot order. Without p_force no tick is made when no
--   transaction that wrote events committed since the last tick; then the latest
--   tick id is returned.
--   Must run in READ COMMITTED: each statement below needs its own snapshot.
--   Called by the sidecar. Writes: groups.last_tick_id, ticks.
--   Parameters: p_group_id, p_force.
--   Returns: the group's last tick id: the new tick's, or the previous one when none was
--     needed.
--   Calls: dbsync._has_new_writers. Tables touched: dbsync.groups, dbsync.ticks
--     (written).
create or replace function dbsync.tick(p_group_id int, p_force boolean default false) returns bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_id bigint;
    v_last dbsync.ticks;
    v_seq regclass;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'tick: must run in a READ COMMITTED transaction'
            using errcode = 'active_sql_transaction';
    end if;
    -- Statement 1: the group's tick lock. NO KEY: the rows that reference the group
    -- (dbsync.ddl_log, written by execute_ddl; dbsync.tables, by add_table) hold FOR
    -- KEY SHARE on it until their transaction ends, and replication of the whole
    -- group must not wait for a DBA's open transaction. (maintain, set_sleeping and
    -- _export_tick take the same lock for the same reason.)
    select last_tick_id into v_id from dbsync.groups where group_id = p_group_id for no key update;
    if not found then
        raise exception 'tick: group % not found', p_group_id using errcode = 'undefined_object';
    end if;
    v_seq := format('dbsync.%I', 'events_seq_' || p_group_id)::regclass;
    select * into v_last from dbsync.ticks where group_id = p_group_id and tick_id = v_id;
    -- No tick unless a transaction that wrote events committed since the last one:
    -- events numbered by a transaction still running (a long bulk load) would make
    -- only empty batches, one target transaction each.
    if not p_force and not dbsync._has_new_writers(p_group_id, v_last.snap) then
        return v_id;
    end if;
    -- A statement after the lock: a fresh snapshot, then the sequence read after it.
    insert into dbsync.ticks (group_id, tick_id, snap, max_ev_id)
    values (p_group_id, v_id + 1, pg_current_snapshot(), coalesce(pg_sequence_last_value(v_seq), 0));
    update dbsync.groups set last_tick_id = v_id + 1 where group_id = p_group_id;
    return v_id + 1;
end
$$;
