-- dbsync.sidecar_work() returns table(name text, group_id int)
--   The subscriptions with something to apply now (dbsync._with_work: events,
--   tables to copy, sequences behind): the poll of the previous version's sidecar,
--   kept for those still running during an upgrade (this version's is
--   dbsync.sidecar_poll), which catches what a lost NOTIFY did not wake.
--   Parameters: none.
--   Returns: name, group_id of each such subscription.
--   Calls: dbsync._with_work. Tables touched: dbsync.subscriptions (read).
--   SECURITY INVOKER, as dbsync.sidecar_subscription.
create or replace function dbsync.sidecar_work()
returns table (name text, group_id int)
language sql stable set search_path = pg_catalog, pg_temp as $$
    select s.name, s.group_id
    from dbsync.subscriptions s
    where s.sub_id in (select dbsync._with_work())
    order by s.sub_id;
$$;
