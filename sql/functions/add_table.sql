-- dbsync.add_table(tbl regclass, group_name text default 'default', key_columns text[] default null) returns int
--   Starts capturing tbl into the group (created if missing). The key is the primary
--   key unless key_columns names a unique NOT NULL set; a key taken from the primary
--   key follows it when DDL replaces the primary key. A partitioned table is added
--   as one table: all its partitions, present and future, are captured.
--   Every subscription of the group gets the table: copied first when the
--   subscription copies data, else streamed from now on.
--   Writes: tables, shapes, subscription_tables, sequences; creates dbsync.capture_<id>() and
--   the table's triggers; grants SELECT on the table and those sequences to every
--   sidecar role (dbsync.grant_sidecar). Returns the table id.
--   Adding a table again to the same group with the same key does nothing (a NOTICE)
--   and returns its id, so that setup scripts can run twice.
--   Errors: not a table (view, foreign table, ...), a partition, a table of dbsync
--   itself, already in another group or with another key, no usable key (the hint
--   names the ways out: a primary key, key_columns, or leaving the table out), a
--   table the dbsync owner may not create triggers on (the hint says how to allow it).
--   Parameters: tbl, group_name, key_columns.
--   Returns: the table's id (dbsync.tables.table_id; the existing one when the table is
--     already in the group with this key).
--   Calls: dbsync._add_owned_sequences, dbsync._group_id, dbsync._install_capture,
--     dbsync._key_columns, dbsync._pair_group, dbsync._server_has, dbsync._timestamp_columns, dbsync._column_names. Tables touched: dbsync.sequences,
--     dbsync.group_pairings, dbsync.subscription_tables, dbsync.tables (written); dbsync.groups,
--     dbsync.subscriptions (read); triggers on the replicated table (dynamic).
create or replace function dbsync.add_table(tbl regclass, group_name text default 'default',
                                            key_columns text[] default null) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_rel record;
    v_keys text[];
    v_group int;
    v_id int;
    v_existing record;
begin
    if tbl is null then
        raise exception 'add_table: table must not be NULL'
            using errcode = 'invalid_parameter_value',
                  hint = 'Pass the table to replicate, e.g. dbsync.add_table(''app.orders'').';
    end if;
    select c.relkind, c.relispartition, c.relpersistence, n.nspname, c.relname, c.relowner
      into v_rel
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.oid = tbl;
    if v_rel.relkind not in ('r', 'p') then
        raise exception 'add_table: % is not a table (it is a %)', tbl,
            case v_rel.relkind when 'v' then 'view' when 'm' then 'materialized view'
                 when 'f' then 'foreign table' when 'S' then 'sequence' else 'relation of kind ' || v_rel.relkind::text end
            using errcode = 'wrong_object_type',
                  hint = 'Only ordinary and partitioned tables can be replicated; add the table(s) behind it.';
    end if;
    if v_rel.relispartition then
        raise exception 'add_table: % is a partition of %', tbl,
            (select i.inhparent::regclass from pg_inherits i where i.inhrelid = tbl)
            using errcode = 'wrong_object_type',
                  hint = 'Add the partitioned table instead: all its partitions are captured with it.';
    end if;
    if v_rel.relpersistence = 't' then
        raise exception 'add_table: % is a temporary table', tbl
            using errcode = 'wrong_object_type',
                  hint = 'Temporary tables live in one session only and cannot be replicated; use a regular (or unlogged) table.';
    end if;
    if v_rel.nspname in ('dbsync', 'dbsync_worker') then
        raise exception 'add_table: % belongs to dbsync itself', tbl
            using errcode = 'wrong_object_type',
                  hint = 'dbsync''s own tables are not replicated; add your application''s tables.';
    end if;
    select t.table_id, g.name as group_name, t.key_columns, t.key_is_pk into v_existing
    from dbsync.tables t join dbsync.groups g using (group_id)
    where t.relid = tbl and t.removed_at is null;
    if found then
        if v_existing.group_name is distinct from add_table.group_name then
            raise exception 'add_table: % is already in group "%"', tbl, v_existing.group_name
                using errcode = 'duplicate_object',
                      hint = 'A table belongs to one group; call dbsync.remove_table first to move it.';
        end if;
        if (key_columns is null and not v_existing.key_is_pk)
           or (key_columns is not null and key_columns is distinct from v_existing.key_columns) then
            raise exception 'add_table: % is already replicated in group "%" with key (%)', tbl, v_existing.group_name,
                            array_to_string(v_existing.key_columns, ', ')
                using errcode = 'duplicate_object',
                      hint = 'To give it another key: dbsync.remove_table, then dbsync.add_table with the new key_columns (its subscriptions copy it again).';
        end if;
        -- The same call again (a script run twice): nothing to do.
        raise notice 'add_table: % is already replicated in group "%"; nothing changed', tbl, v_existing.group_name;
        return v_existing.table_id;
    end if;

    -- Capture is triggers, which only the table's owner may create and drop (this
    -- runs as the dbsync owner): refused here with the ways out, rather than by
    -- CREATE TRIGGER with a bare "must be owner".
    if not pg_has_role(current_user, v_rel.relowner, 'USAGE') then
        raise exception 'add_table: the dbsync owner % cannot create triggers on % (owned by %)',
                        current_user, tbl, v_rel.relowner::regrole
            using errcode = 'insufficient_privilege',
                  hint = format('Give the table to the dbsync owner (alter table %s owner to %I), or make the dbsync owner a member of its owner (grant %s to %I), or run dbsync migrate as a superuser.',
                                tbl, current_user, v_rel.relowner::regrole, current_user);
    end if;
    v_keys := dbsync._key_columns(tbl, key_columns);
    v_group := dbsync._group_id(group_name, true);

    insert into dbsync.tables (relid, group_id, schema_name, table_name, key_columns, key_is_pk, partitioned, timestamp_columns,
                               column_names)
    values (tbl, v_group, v_rel.nspname, v_rel.relname, v_keys, key_columns is null, v_rel.relkind = 'p',
            dbsync._timestamp_columns(tbl), dbsync._column_names(tbl))
    returning table_id into v_id;
    perform dbsync._install_capture(v_id);
    -- PostgreSQL 10 clones no trigger onto a new partition: the DDL event trigger
    -- gives it capture (_sync_partitions). Without it, say so now.
    if v_rel.relkind = 'p' and not dbsync._server_has('partitioned_row_trigger')
       and not exists (select from pg_event_trigger e where e.evtname = 'dbsync_ddl_watch' and e.evtenabled <> 'D') then
        raise warning 'add_table: partitions of % created from now on are not captured: PostgreSQL 10 without dbsync''s DDL event trigger', tbl
            using hint = format('Run dbsync migrate as a superuser (it installs the event trigger), or call select dbsync._install_capture(%s) after creating a partition.', v_id);
    end if;
    -- An add_subscription of the group in a transaction not yet committed would pair
    -- its subscription with the tables it sees, not this one, and this statement
    -- would not see it: wait for it, and see it (READ COMMITTED takes a new snapshot
    -- per statement; an older snapshot fails, _pair_group).
    perform dbsync._pair_group(v_group, 'add_table');
    insert into dbsync.subscription_tables (sub_id, table_id, state, copy_tick)
    select s.sub_id, v_id,
           case when s.copy_data then 'pending' else 'streaming' end,
           case when s.copy_data then null else 0 end
    from dbsync.subscriptions s where s.group_id = v_group;
    -- The sequences the table owns (serial, identity) travel with it, and the
    -- sidecar's reader reads the table (and them) as its own role.
    perform dbsync._add_owned_sequences(tbl, v_group);
    return v_id;
end
$$;
