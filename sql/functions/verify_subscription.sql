-- dbsync.verify_subscription(subscription text, repair boolean default false) returns table (table_name text, verification_id bigint, not_verified text)
--   Asks the sidecar to verify every table of the subscription, as verify_table
--   does one (each compared at its own tick; with repair, fixed on the target): one
--   row per table, with the id of its verification in dbsync.verifications, or,
--   for a table that cannot be verified yet (still copying, or its copy failing), no
--   id and the reason in not_verified. All or nothing: an error queues none.
--   `dbsync verify <subscription>` is its face.
--   Errors: unknown subscription; the subscription is paused (as verify_table).
--   Parameters: subscription, repair.
--   Returns: rows of (table_name, verification_id, not_verified).
--   Calls: dbsync._sub, dbsync.verify_table. Tables touched: dbsync.subscription_tables,
--     dbsync.subscriptions, dbsync.tables (read).
create or replace function dbsync.verify_subscription(subscription text, repair boolean default false)
returns table (table_name text, verification_id bigint, not_verified text)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions; -- set first thing: no row variable defaults before PostgreSQL 11
    t record;
begin
    v_sub := dbsync._sub(subscription);
    for t in
        select format('%I.%I', tb.schema_name, tb.table_name) as name, tb.relid, st.state
        from dbsync.subscription_tables st join dbsync.tables tb using (table_id)
        where st.sub_id = v_sub.sub_id and tb.removed_at is null
        order by tb.schema_name, tb.table_name
    loop
        table_name := t.name;
        -- The states verify_table accepts; it raises for the others.
        if t.state in ('catching_up', 'streaming') then
            verification_id := dbsync.verify_table(v_sub.name, t.relid, repair);
            not_verified := null;
        else
            verification_id := null;
            not_verified := format('not copied yet (state %s): see dbsync.table_status', t.state);
        end if;
        return next;
    end loop;
end
$$;
