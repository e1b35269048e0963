-- dbsync.resync_subscription(subscription text) returns void
--   Copies every table of the subscription again, and accepts whatever position its
--   target holds: the way back for a target restored from a backup or failed over
--   to a lagging standby (dbsync.status says so). The next batches empty and fill
--   each target table, as resync_table does.
--   Errors: unknown subscription.
--   Parameters: subscription.
--   Returns: nothing.
--   Calls: dbsync._request_copy, dbsync._sub. Tables touched: dbsync.subscription_tables, dbsync.subscriptions
--     (written).
create or replace function dbsync.resync_subscription(subscription text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions; -- set first thing: no row variable defaults before PostgreSQL 11
begin
    v_sub := dbsync._sub(subscription);
    perform dbsync._request_copy(v_sub.sub_id, null);
    update dbsync.subscriptions set reset_target = true, last_error = null where sub_id = v_sub.sub_id;
    perform pg_notify('dbsync', v_sub.group_id::text);
end
$$;
