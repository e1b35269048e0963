-- dbsync.pause(subscription text) returns void
--   Stops applying to that target after the batch in flight (which holds nothing
--   committed after this call returns: begin_batch reads paused again after its
--   tick). Capture goes on and the backlog waits in the queue. Errors: unknown
--   subscription.
--   Parameters: subscription.
--   Returns: nothing.
--   Calls: dbsync._sub. Tables touched: dbsync.subscriptions (written).
create or replace function dbsync.pause(subscription text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    update dbsync.subscriptions set paused = true where sub_id = (dbsync._sub(subscription)).sub_id;
end
$$;
