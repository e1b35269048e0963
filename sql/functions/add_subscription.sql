-- dbsync.add_subscription(name text, group_name text, target_conninfo text, copy_data boolean default true) returns int
--   Delivers a group to a target database. With copy_data, each table is first
--   copied consistently (the sidecar does it), then streamed; without it the target
--   is assumed to hold the data as of the group's latest tick and changes after it
--   are streamed. target_conninfo may leave the password out (PGPASSFILE on the
--   sidecar's host) when the dbsync owner (or a member of it) gives it; one given by
--   another role (an admin role) must carry its own password and name none of the
--   sidecar's files (dbsync._conninfo_own_password), and is recorded as such
--   (conninfo_by_owner) for the sidecar. The conninfo is checked as libpq reads it (dbsync._conninfo_check):
--   a malformed string, a keyword libpq does not know, a wrong sslmode ... are
--   refused here, not found later by the sidecar. Returns the subscription id.
--   Errors: empty name or conninfo, invalid conninfo, a conninfo of another role than the
--     owner without a password of its own, unknown group, duplicate name.
--   Parameters: name, group_name, target_conninfo, copy_data.
--   Returns: the subscription's id (dbsync.subscriptions.sub_id).
--   Calls: dbsync._check_name, dbsync._conninfo_check, dbsync._conninfo_own_password, dbsync._group_id,
--     dbsync._pair_group, dbsync._session_is_owner. Tables touched:
--     dbsync.group_pairings, dbsync.subscription_tables, dbsync.subscriptions (written); dbsync.groups,
--     dbsync.tables (read).
create or replace function dbsync.add_subscription(name text, group_name text, target_conninfo text,
                                                   copy_data boolean default true) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int;
    v_id int;
    v_tick bigint;
    v_by_owner boolean := dbsync._session_is_owner();
begin
    perform dbsync._check_name('subscription', add_subscription.name);
    if target_conninfo is null or btrim(target_conninfo) = '' then
        raise exception 'add_subscription: target_conninfo must not be empty'
            using errcode = 'invalid_parameter_value',
                  hint = 'Pass a libpq connection string or URL, e.g. ''host=replica dbname=app''.';
    end if;
    perform dbsync._conninfo_check(target_conninfo, 'add_subscription: invalid target_conninfo');
    if not v_by_owner then
        perform dbsync._conninfo_own_password(target_conninfo, 'add_subscription');
    end if;
    if copy_data is null then
        raise exception 'add_subscription: copy_data must be true or false'
            using errcode = 'invalid_parameter_value',
                  hint = 'true copies every table first; false assumes the target already holds the data.';
    end if;
    v_group := dbsync._group_id(group_name, false);
    if exists (select from dbsync.subscriptions s where s.name = add_subscription.name) then
        raise exception 'add_subscription: subscription "%" already exists', add_subscription.name
            using errcode = 'duplicate_object',
                  hint = 'Pick another name, or drop the old one with dbsync.drop_subscription(name).';
    end if;
    select last_tick_id into v_tick from dbsync.groups where group_id = v_group;
    insert into dbsync.subscriptions (name, group_id, target_conninfo, conninfo_by_owner, copy_data, position_tick)
    values (add_subscription.name, v_group, target_conninfo, v_by_owner, copy_data, v_tick)
    returning sub_id into v_id;
    -- Against an add_table of the group not yet committed, as add_table's own.
    perform dbsync._pair_group(v_group, 'add_subscription');
    insert into dbsync.subscription_tables (sub_id, table_id, state, copy_tick)
    select v_id, t.table_id,
           case when copy_data then 'pending' else 'streaming' end,
           case when copy_data then null else v_tick end
    from dbsync.tables t where t.group_id = v_group and t.removed_at is null;
    perform pg_notify('dbsync', v_group::text);
    return v_id;
end
$$;
