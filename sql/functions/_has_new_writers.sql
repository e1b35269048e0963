-- dbsync._has_new_writers(p_group_id int, p_since pg_snapshot) returns boolean
--   Whether a transaction that wrote events of the group is visible in the current
--   snapshot and was not in p_since. Writers are found by transaction id, each once
--   (a loose index scan), not by each of their events.
--   PL/pgSQL, not SQL: a SQL function's statements are planned at every call with
--   the group as an unknown parameter, so over every group's queue partitions (and
--   locking them all: 400 locks and 140 ms a call with 50 groups); PL/pgSQL plans
--   with the group's value, which prunes the queue to the group's own partitions.
--   Parameters: p_group_id, p_since.
--   Returns: boolean.
--   Calls: nothing. Tables touched: dbsync.events (read).
create or replace function dbsync._has_new_writers(p_group_id int, p_since pg_snapshot) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return exists (
               select from unnest(array(select pg_snapshot_xip(p_since))) x
               where pg_visible_in_snapshot(x, pg_current_snapshot())
                 and exists (select from dbsync.events e where e.group_id = p_group_id and e.txid = x))
        or exists (
               with recursive w(x) as (
                   (select e.txid from dbsync.events e
                    where e.group_id = p_group_id and e.txid >= pg_snapshot_xmax(p_since)
                    order by e.txid limit 1)
                   union all
                   select (select e.txid from dbsync.events e
                           where e.group_id = p_group_id and e.txid > w.x
                           order by e.txid limit 1)
                   from w where w.x is not null
               )
               select from w where w.x is not null and pg_visible_in_snapshot(w.x, pg_current_snapshot()));
end
$$;
