-- dbsync.resume(subscription text) returns void
--   Applies again from where the subscription stopped. Errors: unknown subscription.
--   Parameters: subscription.
--   Returns: nothing.
--   Calls: dbsync._sub. Tables touched: dbsync.subscriptions (written).
create or replace function dbsync.resume(subscription text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v dbsync.subscriptions; -- set first thing: no row variable defaults before PostgreSQL 11
begin
    v := dbsync._sub(subscription);
    update dbsync.subscriptions set paused = false where sub_id = v.sub_id;
    perform pg_notify('dbsync', v.group_id::text);
end
$$;
