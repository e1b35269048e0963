-- dbsync._publish_group_state(p_group_id int) returns void
--   Copies the group's cur_slot and sleeping into its state sequence
--   dbsync.group_state_<id> (cur_slot + 4 when sleeping), which capture triggers read.
--   A sequence's value is not MVCC: a writer whose snapshot predates a slot switch
--   (REPEATABLE READ, SERIALIZABLE) still reads the new slot, so no write can land in
--   a slot that maintain judged free. setval is not transactional either: callers
--   hold the group's row lock (FOR NO KEY UPDATE) and call this as their last step, and
--   every maintain call publishes again, so a rolled-back change is undone there.
--   (PL/pgSQL: before PostgreSQL 11 a SQL function returning void may not end in a
--   SELECT of values.)
--   Parameters: p_group_id.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.groups (read).
create or replace function dbsync._publish_group_state(p_group_id int) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform pg_catalog.setval(format('dbsync.%I', 'group_state_' || g.group_id)::regclass,
                              g.cur_slot + case when g.sleeping then 4 else 0 end, true)
    from dbsync.groups g
    where g.group_id = p_group_id;
end
$$;
