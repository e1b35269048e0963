-- dbsync._export_tick(p_group_id int, p_after bigint default null) returns table (tick_id bigint, snapshot_name text)
--   Takes a tick of the group whose snapshot is exported, for a batch (begin_batch)
--   or a verification to read the source exactly as of that tick. The steps mirror
--   dbsync.tick: the group's tick lock in one statement, then one statement that
--   takes the snapshot, exports it and reads the event sequence (one statement, so
--   the exported snapshot is the tick's). The caller must run in READ COMMITTED and
--   keep its transaction open until the reader has run SET TRANSACTION SNAPSHOT.
--   With p_after (begin_batch, for a subscription standing there): when the group's
--   last tick is after p_after and no transaction that wrote events of the group
--   committed since that tick, that tick is returned instead of a new one, with the
--   snapshot exported here. A group's subscriptions (its targets) then end their
--   batches at the same tick: a tick for each would leave the others behind the
--   last one, and each would then be woken to apply a batch that only moves its
--   target's position (a lease, a target commit, a job and a report, for each
--   subscription at every change of the group). Reading the batch at the later
--   snapshot gives what the tick's would: the group's tables change only with
--   events, and no transaction that wrote some is visible in the one and not in
--   the other (the look runs after the export, so in a snapshot at least as late:
--   what it does not see, the export does not either; a writer it sees that the
--   export does not only makes a new tick, as without p_after).
--   Parameters: p_group_id, p_after (null: always a new tick).
--   Returns: rows of (tick_id, snapshot_name).
--   Calls: dbsync._has_new_writers. Tables touched: dbsync.groups, dbsync.ticks (written).
-- (The version before took only the group.)
drop function if exists dbsync._export_tick(int);
create or replace function dbsync._export_tick(p_group_id int, p_after bigint default null)
returns table (tick_id bigint, snapshot_name text)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_last bigint;
    v_seq regclass := format('dbsync.%I', 'events_seq_' || p_group_id)::regclass;
    v_snap pg_snapshot;
    v_name text;
    v_hi bigint;
    v_last_snap pg_snapshot;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception '_export_tick: must run in a READ COMMITTED transaction' using errcode = 'active_sql_transaction';
    end if;
    select g.last_tick_id into v_last from dbsync.groups g where g.group_id = p_group_id for no key update;
    select pg_current_snapshot(), pg_export_snapshot(), coalesce(pg_sequence_last_value(v_seq), 0)
      into v_snap, v_name, v_hi;
    if v_last > p_after then
        select t.snap into v_last_snap from dbsync.ticks t where t.group_id = p_group_id and t.tick_id = v_last;
        if not dbsync._has_new_writers(p_group_id, v_last_snap) then
            return query select v_last, v_name;
            return;
        end if;
    end if;
    insert into dbsync.ticks (group_id, tick_id, snap, max_ev_id) values (p_group_id, v_last + 1, v_snap, v_hi);
    update dbsync.groups set last_tick_id = v_last + 1 where group_id = p_group_id;
    return query select v_last + 1, v_name;
end
$$;
