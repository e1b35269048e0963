-- dbsync._has_new_writers(p_group_id int, p_since pg_snapshot) returns boolean
--   Whether a transaction that wrote events of the group is visible in the current
--   snapshot and was not in p_since. Writers are found by transaction id, each once
--   (a loose index scan), not by each of their events.
--   Planned at every call with the group's value (EXECUTE), which prunes the queue
--   to the group's own partitions. A plan for any group spans every group's
--   partitions and locks them all: a SQL function's statements are planned so at
--   every call (400 locks and 140 ms a call with 50 groups), and PL/pgSQL's cached
--   plans turn into such a generic plan after five calls (1 ms a call with 50
--   groups, against 0.3 ms: the sidecar's poll calls this for every subscription).
--   Parameters: p_group_id, p_since.
--   Returns: boolean.
--   Calls: nothing. Tables touched: dbsync.events (read).
create or replace function dbsync._has_new_writers(p_group_id int, p_since pg_snapshot) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_found boolean;
begin
    -- (%1$s: the group id, an int; $1: p_since.)
    execute format($q$
        select exists (
                   select from unnest(array(select pg_snapshot_xip($1))) x
                   where pg_visible_in_snapshot(x, pg_current_snapshot())
                     and exists (select from dbsync.events e where e.group_id = %1$s and e.txid = x))
            or exists (
                   with recursive w(x) as (
                       (select e.txid from dbsync.events e
                        where e.group_id = %1$s and e.txid >= pg_snapshot_xmax($1)
                        order by e.txid limit 1)
                       union all
                       select (select e.txid from dbsync.events e
                               where e.group_id = %1$s and e.txid > w.x
                               order by e.txid limit 1)
                       from w where w.x is not null
                   )
                   select from w where w.x is not null and pg_visible_in_snapshot(w.x, pg_current_snapshot()))$q$,
        p_group_id)
    into v_found using p_since;
    return v_found;
end
$$;
