-- dbsync.resync_table(subscription text, tbl regclass) returns void
--   Copies the table into that subscription's target again, consistently, while the
--   other tables keep streaming: the subscription's next batch empties the target
--   table and copies every row as of that batch's snapshot, in the batch's target
--   transaction. Being part of the stream, the copy cannot race it: no batch planned
--   before can write older rows over it, and DDL queued before it runs first.
--   Errors: unknown subscription; the table is not in the subscription's group.
--   Parameters: subscription, tbl.
--   Returns: nothing.
--   Calls: dbsync._request_copy, dbsync._sub. Tables touched: dbsync.subscription_tables (written);
--     dbsync.subscriptions, dbsync.tables (read).
create or replace function dbsync.resync_table(subscription text, tbl regclass) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions; -- set first thing: no row variable defaults before PostgreSQL 11
begin
    v_sub := dbsync._sub(subscription);
    if dbsync._request_copy(v_sub.sub_id, array(select t.table_id from dbsync.tables t
                                                where t.relid = tbl and t.removed_at is null)) = 0 then
        raise exception 'resync_table: % is not replicated by subscription "%"', tbl, subscription
            using errcode = 'undefined_object',
                  hint = 'See select * from dbsync.table_status for the tables of each subscription.';
    end if;
    perform pg_notify('dbsync', v_sub.group_id::text);
end
$$;
