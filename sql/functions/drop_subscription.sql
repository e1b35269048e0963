-- dbsync.drop_subscription(name text) returns void
--   Stops delivering to the target and frees the queue backlog held for it (the
--   next queue rotation truncates what no other subscription needs). The target's
--   data stays. Errors: unknown subscription.
create or replace function dbsync.drop_subscription(name text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    delete from dbsync.subscriptions s where s.name = drop_subscription.name;
    if not found then
        perform dbsync._sub(drop_subscription.name);
    end if;
end
$$;
