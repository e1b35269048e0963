-- dbsync._has_new_writers(p_group_id int, p_since pg_snapshot) returns boolean
--   Whether a transaction that wrote events of the group is visible in the current
--   snapshot and was not in p_since (not the caller's own uncommitted rows): the
--   look of dbsync._writers_since, for one group (tick, begin_batch; the sidecar's
--   poll asks for every group at once in dbsync._with_work).
--   Planned at every call with the group's value (EXECUTE), which prunes the queue
--   to the group's own partitions. A plan for any group spans every group's
--   partitions and locks them all: a SQL function's statements are planned so at
--   every call (400 locks and 140 ms a call with 50 groups), and PL/pgSQL's cached
--   plans turn into such a generic plan after five calls (1 ms a call with 50
--   groups), dearer than planning for one group. Its planning is most of its cost,
--   so the look names the queue as few times as it can (a loose index scan over the
--   writers and a look for p_since's running transactions, three mentions of the
--   queue, cost 0.5 ms a call, this 0.2 ms), and the second look is left out when
--   none of them has committed since.
--   Parameters: p_group_id, p_since.
--   Returns: boolean.
--   Calls: dbsync._writers_since. Tables touched: dbsync.events (read).
create or replace function dbsync._has_new_writers(p_group_id int, p_since pg_snapshot) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    -- Running when p_since was taken, committed since (no table read: computed here).
    v_ended xid8[] := array(select x from pg_snapshot_xip(p_since) x where pg_visible_in_snapshot(x, pg_current_snapshot()));
    -- The caller's own transaction, which a snapshot leaves out of its xip: once a
    -- later transaction (of any database) has ended, its xmax is past the caller's
    -- xid, and the caller's uncommitted events read as visible to it.
    v_self xid8 := pg_current_xact_id_if_assigned();
    v_found boolean;
begin
    -- (%s: the group id, an int; $1: p_since, $2: v_ended, $3: v_self. Parameters of
    -- EXECUTE are constants to its plan: an empty v_ended leaves the second look out.)
    execute format('select exists (select from dbsync._writers_since(%s, $1, $2, $3))', p_group_id)
    into v_found using p_since, v_ended, v_self;
    return v_found;
end
$$;
