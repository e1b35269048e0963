-- dbsync.set_sleeping(p_group_id int, p_sleeping boolean) returns boolean
--   The sidecar says whether it sleeps for this group: while it does, capture
--   triggers NOTIFY (a notifying transaction takes a cluster-wide lock at commit, so
--   writers notify only then). Called by the sidecar.
--   Every process LISTENs, so each gets every NOTIFY: the one whose call wakes the
--   group (true returned) queues the wake-ups of its subscriptions, the others only
--   nudge their own appliers. With the flag read again under the group's row lock,
--   one call among processes racing gets true.
--   Parameters: p_group_id, p_sleeping.
--   Returns: true when this call changed the flag.
--   Calls: dbsync._publish_group_state. Tables touched: dbsync.groups (written).
drop function if exists dbsync.set_sleeping(int, boolean);
create function dbsync.set_sleeping(p_group_id int, p_sleeping boolean) returns boolean
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    -- Unchanged (the common case): no row lock, so no transaction id and no commit to flush.
    perform from dbsync.groups g where g.group_id = p_group_id and g.sleeping is distinct from p_sleeping;
    if not found then
        return false;
    end if;
    perform from dbsync.groups g where g.group_id = p_group_id and g.sleeping is distinct from p_sleeping for no key update;
    if not found then
        return false;
    end if;
    update dbsync.groups set sleeping = p_sleeping where group_id = p_group_id;
    perform dbsync._publish_group_state(p_group_id);
    return true;
end
$$;
