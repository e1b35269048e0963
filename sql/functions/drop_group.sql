-- dbsync.drop_group(name text) returns void
--   Removes a group that nothing uses any more: its queue (dbsync.events_<id> and
--   its slots), ticks, sequences and the history of tables removed from it. The
--   sequences it carried are no longer carried.
--   Errors: unknown group; subscriptions still deliver it (drop them first); tables
--   are still captured in it (the hint gives the remove_table calls).
--   Parameters: name.
--   Returns: nothing.
--   Calls: dbsync._group_id. Tables touched: dbsync.groups, dbsync.partitions,
--     dbsync.sequences, dbsync.shapes, dbsync.tables (written); dbsync.subscriptions
--     (read); drops the group's queue tables dbsync.events_<id> (with their slots) and
--     sequences dbsync.events_seq_<id>, dbsync.group_state_<id>.
create or replace function dbsync.drop_group(name text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_id int := dbsync._group_id(drop_group.name, false);
    v_list text;
begin
    -- The group's row first, as tick and maintain take it.
    perform from dbsync.groups g where g.group_id = v_id for update;
    select string_agg(format('%L', s.name), ', ' order by s.name) into v_list
    from dbsync.subscriptions s where s.group_id = v_id;
    if v_list is not null then
        raise exception 'drop_group: group "%" is still delivered by subscription(s) %', drop_group.name, v_list
            using errcode = 'object_in_use',
                  hint = 'Drop them first: select dbsync.drop_subscription(name) for each.';
    end if;
    select string_agg(format('select dbsync.remove_table(%L);', format('%I.%I', t.schema_name, t.table_name)), ' '
                      order by t.table_id) into v_list
    from dbsync.tables t where t.group_id = v_id and t.removed_at is null;
    if v_list is not null then
        raise exception 'drop_group: group "%" still captures tables', drop_group.name
            using errcode = 'object_in_use',
                  hint = 'Stop capturing them first: ' || v_list;
    end if;
    delete from dbsync.sequences where group_id = v_id;
    delete from dbsync.partitions p using dbsync.tables t where t.table_id = p.table_id and t.group_id = v_id;
    delete from dbsync.shapes s using dbsync.tables t where t.table_id = s.table_id and t.group_id = v_id;
    delete from dbsync.tables where group_id = v_id;
    execute format('drop table if exists dbsync.%I', 'events_' || v_id);
    execute format('drop sequence if exists dbsync.%I', 'events_seq_' || v_id);
    execute format('drop sequence if exists dbsync.%I', 'group_state_' || v_id);
    -- queue_slots, ticks and ddl_log go with the row (on delete cascade).
    delete from dbsync.groups where group_id = v_id;
end
$$;
