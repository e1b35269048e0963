-- dbsync._snapshot_excluding_self() returns pg_snapshot
--   The current snapshot, with the calling transaction counted as still running.
--   pg_current_snapshot() leaves a transaction's own xid out of its xip list, so
--   when that xid is below xmax the snapshot calls the transaction "visible": a
--   tick taken that way would treat the caller's own later writes as already
--   delivered. Used where a snapshot is taken inside a user's transaction
--   (create_group's first tick, wait_for_sync's goal).
--   Parameters: none.
--   Returns: pg_snapshot.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._snapshot_excluding_self() returns pg_snapshot
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    v_snap pg_snapshot := pg_current_snapshot();
    v_self xid8 := pg_current_xact_id_if_assigned();
begin
    if v_self is null or v_self >= pg_snapshot_xmax(v_snap) then
        return v_snap;
    end if;
    return format('%s:%s:%s', least(pg_snapshot_xmin(v_snap), v_self), pg_snapshot_xmax(v_snap),
                  (select string_agg(x::text, ',' order by x)
                   from (select pg_snapshot_xip(v_snap) as x union select v_self) xs))::pg_snapshot;
end
$$;
