-- dbsync.has_work(p_subscription text) returns boolean
--   Whether begin_batch would find something to apply now (see dbsync._with_work).
--   False for a paused or unknown subscription. Called by the sidecar before it
--   sleeps.
--   Parameters: p_subscription.
--   Returns: true when there is work.
--   Calls: dbsync._with_work. Tables touched: dbsync.subscriptions (read).
create or replace function dbsync.has_work(p_subscription text) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return coalesce((select exists (select from dbsync._with_work(s.sub_id))
                     from dbsync.subscriptions s
                     where s.name = p_subscription), false);
end
$$;
