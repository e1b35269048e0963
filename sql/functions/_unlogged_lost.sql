-- dbsync._unlogged_tables() returns table (table_id int)
--   The replicated tables that are unlogged, or have an unlogged partition: what
--   crash recovery empties on the source.
--   Parameters: none.
--   Returns: table_id of each.
--   Calls: pg_partition_tree. Tables touched: dbsync.tables (read).
create or replace function dbsync._unlogged_tables() returns table (table_id int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select t.table_id from dbsync.tables t
    where t.removed_at is null
      and exists (select from pg_class c
                  where (c.oid = t.relid or c.oid in (select p.relid from pg_partition_tree(t.relid) p))
                    and c.relpersistence = 'u')
$$;

-- dbsync._unlogged_lost() returns boolean
--   Whether the source's unlogged tables were emptied since the last call: the row
--   of dbsync.unlogged_intact (an unlogged table) is gone after crash recovery, on a
--   promoted standby, or in a copy made from a base backup. Then every subscription
--   copies its unlogged tables again (no trigger saw their rows go), and the row is
--   put back, in this transaction. Called by dbsync.maintain (the sidecar's upkeep).
--   Parameters: none.
--   Returns: true when it requested the copies.
--   Calls: dbsync._request_copy, dbsync._unlogged_tables. Tables touched:
--     dbsync.unlogged_intact, dbsync.subscription_tables (written).
create or replace function dbsync._unlogged_lost() returns boolean
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_tables int[];
begin
    if exists (select from dbsync.unlogged_intact) then
        return false;
    end if;
    -- Two upkeeps at once: the one whose row went in requests the copies.
    insert into dbsync.unlogged_intact default values on conflict do nothing;
    if not found then
        return false;
    end if;
    v_tables := array(select u.table_id from dbsync._unlogged_tables() u);
    if cardinality(v_tables) > 0 then
        perform dbsync._request_copy(null, v_tables);
        raise warning 'dbsync: the source''s unlogged tables were emptied (crash recovery, or a promoted standby): copying % again',
            (select string_agg(t.relid::regclass::text, ', ' order by t.table_id) from dbsync.tables t where t.table_id = any (v_tables));
    end if;
    return true;
end
$$;
