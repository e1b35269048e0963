-- dbsync.copy_lost_unlogged(p_sub_id int, p_schemas text[], p_names text[]) returns bigint
--   The sidecar found that the subscription's target went through crash recovery
--   (or a failover) since it last looked: the target's unlogged tables are empty,
--   while its position (dbsync.applied, logged) says they hold every batch. The
--   subscription's tables named by (p_schemas[i], p_names[i]), those unlogged on
--   the target, are copied again from its next batch on. Called by the sidecar.
--   Parameters: p_sub_id, p_schemas, p_names (the tables, as named on the source).
--   Returns: how many tables are to be copied.
--   Calls: dbsync._request_copy. Tables touched: dbsync.subscription_tables (written);
--     dbsync.subscriptions, dbsync.tables (read).
create or replace function dbsync.copy_lost_unlogged(p_sub_id int, p_schemas text[], p_names text[]) returns bigint
language sql security definer set search_path = pg_catalog, pg_temp as $$
    select dbsync._request_copy(p_sub_id, array(
        select t.table_id
        from dbsync.subscriptions s
        join dbsync.tables t on t.group_id = s.group_id
        where s.sub_id = p_sub_id and t.removed_at is null
          and (t.schema_name, t.table_name) in (select u.s, u.n from unnest(p_schemas, p_names) u(s, n))))
$$;
