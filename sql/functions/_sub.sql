-- dbsync._sub(name text) returns dbsync.subscriptions
--   The subscription of that name; raises "unknown subscription" with a hint.
--   Parameters: name.
--   Returns: the subscription's row of dbsync.subscriptions.
--   Calls: nothing. Tables touched: dbsync.subscriptions (read).
create or replace function dbsync._sub(name text) returns dbsync.subscriptions
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v dbsync.subscriptions;
begin
    select * into v from dbsync.subscriptions s where s.name = _sub.name;
    if not found then
        raise exception 'dbsync: unknown subscription "%"', _sub.name
            using errcode = 'undefined_object',
                  hint = 'See select name from dbsync.status for the subscriptions there are.';
    end if;
    return v;
end
$$;
