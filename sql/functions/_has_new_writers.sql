-- dbsync._has_new_writers(p_group_id int, p_since pg_snapshot) returns boolean
--   Whether a transaction that wrote events of the group is visible in the current
--   snapshot and was not in p_since: an event row of the group whose txid is
--   p_since's xmax or later, or one of p_since's running transactions that has
--   committed since, and is visible in the current snapshot (not the caller's own
--   uncommitted rows). A probe of the queue's txid index from p_since's xmax, which
--   stops at the first such row (the rows of writers still running are not visible
--   to it), and one for the transactions that ended since, if any.
--   Planned at every call with the group's value (EXECUTE), which prunes the queue
--   to the group's own partitions. A plan for any group spans every group's
--   partitions and locks them all: a SQL function's statements are planned so at
--   every call (400 locks and 140 ms a call with 50 groups), and PL/pgSQL's cached
--   plans turn into such a generic plan after five calls (1 ms a call with 50
--   groups). Its planning is most of its cost, so it names the queue as few times
--   as it can: a loose index scan over the writers and a look for p_since's running
--   transactions (three mentions of the queue) cost 0.5 ms a call, this 0.2 ms, and
--   the second look is left out when none of them has committed since (the
--   sidecar's poll calls this for every group, twice a second with two processes).
--   Parameters: p_group_id, p_since.
--   Returns: boolean.
--   Calls: nothing. Tables touched: dbsync.events (read).
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
    -- (%1$s: the group id, an int; $1: p_since, $2: v_ended, $3: v_self.) The later writers in
    -- txid order, as an index gives them: without the ORDER BY, a queue slot most of
    -- whose rows are later than p_since is read as a table from its start, the
    -- older rows first (the planner expects the later ones spread out).
    execute format($q$
        select exists (select from (select from dbsync.events e
                                    where e.group_id = %1$s and e.txid >= pg_snapshot_xmax($1)
                                      and pg_visible_in_snapshot(e.txid, pg_current_snapshot())
                                      and e.txid is distinct from $3
                                    order by e.txid limit 1) x)$q$, p_group_id)
        || case when cardinality(v_ended) > 0 then format($q$
            or exists (select from dbsync.events e
                       where e.group_id = %1$s and e.txid = any ($2) and e.txid is distinct from $3
                         and pg_visible_in_snapshot(e.txid, pg_current_snapshot()))$q$, p_group_id) else '' end
    into v_found using p_since, v_ended, v_self;
    return v_found;
end
$$;
