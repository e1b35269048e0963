-- dbsync._pair_group(p_group int, p_caller text) returns void
--   Called by add_table and add_subscription before each pairs its new row (a table,
--   a subscription) with the other's rows of the group it sees. The advisory lock
--   waits for the other's call not yet committed, and a READ COMMITTED statement
--   after it sees that call's row. A REPEATABLE READ or SERIALIZABLE transaction
--   keeps its older snapshot and would pair without the row committed meanwhile
--   (a subscription without the table, for good): both calls write the group's row
--   of dbsync.group_pairings, so the later one fails with a serialization failure,
--   which says what to do.
--   Parameters: p_group, p_caller (the calling function's name, for the message).
--   Returns: nothing.
--   Calls: dbsync._lock_class. Tables touched: dbsync.group_pairings (written).
create or replace function dbsync._pair_group(p_group int, p_caller text) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    perform pg_advisory_xact_lock(dbsync._lock_class('group_pairs'), p_group);
    insert into dbsync.group_pairings (group_id) values (p_group)
    on conflict (group_id) do update set group_id = excluded.group_id;
exception when serialization_failure then
    raise exception '%: an add_table or add_subscription of the same group committed after this transaction''s snapshot was taken', p_caller
        using errcode = 'serialization_failure',
              hint = 'Run add_table and add_subscription in READ COMMITTED, or retry the whole transaction.';
end
$$;
