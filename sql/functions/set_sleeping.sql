-- dbsync.set_sleeping(p_group_id int, p_sleeping boolean) returns void
--   The sidecar says whether it sleeps for this group: while it does, capture
--   triggers NOTIFY (a notifying transaction takes a cluster-wide lock at commit, so
--   writers notify only then). Called by the sidecar.
--   Parameters: p_group_id, p_sleeping.
--   Returns: nothing.
--   Calls: dbsync._publish_group_state. Tables touched: dbsync.groups (written).
create or replace function dbsync.set_sleeping(p_group_id int, p_sleeping boolean) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform from dbsync.groups g where g.group_id = p_group_id and g.sleeping is distinct from p_sleeping;
    if not found then
        return;
    end if;
    perform from dbsync.groups g where g.group_id = p_group_id for no key update;
    update dbsync.groups set sleeping = p_sleeping where group_id = p_group_id;
    perform dbsync._publish_group_state(p_group_id);
end
$$;
