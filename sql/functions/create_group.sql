-- dbsync.create_group(name text) returns int
--   Creates a group: one queue replayed in commit order. Its events go to
--   dbsync.events_<id> (partition of dbsync.events), split into three slots that
--   rotate (see maintain), numbered by its own sequence dbsync.events_seq_<id>;
--   dbsync.group_state_<id> tells capture triggers the slot and whether to NOTIFY.
--   Writes: groups, queue_slots, ticks (tick 0). Returns the group id.
--   Errors: empty name; a group of that name exists.
--   Parameters: name.
--   Returns: the group's id (dbsync.groups.group_id).
--   Calls: dbsync._check_name, dbsync._publish_group_state, dbsync._server_has,
--     dbsync._snapshot_excluding_self. Tables touched: dbsync.groups, dbsync.queue_slots,
--     dbsync.ticks (written); creates the group's queue tables dbsync.events_<id> and
--     its slots (partitions of dbsync.events) and sequences dbsync.events_seq_<id>,
--     dbsync.group_state_<id>.
create or replace function dbsync.create_group(name text) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_id int;
begin
    perform dbsync._check_name('group', create_group.name);
    if exists (select from dbsync.groups g where g.name = create_group.name) then
        raise exception 'create_group: group "%" already exists', create_group.name
            using errcode = 'duplicate_object',
                  hint = 'Pick another name, or add tables to the existing group.';
    end if;
    insert into dbsync.groups (name) values (create_group.name) returning group_id into v_id;
    -- No CACHE: a tick's max_ev_id bound is only sound if ids are handed out in order.
    execute format('create sequence dbsync.%I', 'events_seq_' || v_id);
    -- Slot and NOTIFY flag for the capture triggers, read without a snapshot (see
    -- _publish_group_state).
    execute format('create sequence dbsync.%I minvalue 0 maxvalue 7', 'group_state_' || v_id);
    perform dbsync._publish_group_state(v_id);
    execute format('create table dbsync.%I partition of dbsync.events for values in (%s) partition by list (slot)',
                   'events_' || v_id, v_id);
    for s in 0..2 loop
        execute format('create table dbsync.%I partition of dbsync.%I for values in (%s)',
                       'events_' || v_id || '_' || s, 'events_' || v_id, s);
        -- The index on dbsync.events (txid) is each slot's from PostgreSQL 11 on.
        if not dbsync._server_has('partitioned_index') then
            execute format('create index on dbsync.%I (txid)', 'events_' || v_id || '_' || s);
        end if;
        insert into dbsync.queue_slots (group_id, slot) values (v_id, s);
    end loop;
    -- The creating transaction may go on to write to the group's tables: its own
    -- writes must come after tick 0, not in it.
    perform pg_current_xact_id();
    insert into dbsync.ticks (group_id, tick_id, snap, max_ev_id)
    values (v_id, 0, dbsync._snapshot_excluding_self(), 0);
    return v_id;
end
$$;
