-- dbsync.drop_subscription(name text) returns void
--   Stops delivering to the target and frees the queue backlog held for it (the
--   next queue rotation truncates what no other subscription needs). The target's
--   data stays; a NOTICE gives the statement that removes dbsync's bookkeeping row
--   there (dbsync.applied, dbsync.copied), which the source cannot reach. A WARNING
--   says when the group is left without any subscription: its tables are still
--   captured (writers pay for it) until they are removed or the group is dropped.
--   Errors: unknown subscription.
--   Parameters: name.
--   Returns: nothing.
--   Calls: dbsync._sub. Tables touched: dbsync.subscriptions (written); dbsync.groups,
--     dbsync.tables (read).
create or replace function dbsync.drop_subscription(name text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions;
    v_group text;
    v_tables int;
begin
    -- Set here: PostgreSQL 10 takes no default for a row variable.
    v_sub := dbsync._sub(drop_subscription.name);
    v_group := (select g.name from dbsync.groups g where g.group_id = v_sub.group_id);
    delete from dbsync.subscriptions s where s.sub_id = v_sub.sub_id;
    raise notice 'drop_subscription: "%" dropped; its target keeps its data and dbsync''s bookkeeping row', v_sub.name
        using hint = format('On the target, if nothing else applies to it: delete from dbsync.applied where sub_uuid = %L; '
                            'delete from dbsync.copied where sub_uuid = %L; (or drop schema dbsync cascade once no subscription uses it)',
                            v_sub.sub_uuid, v_sub.sub_uuid);
    select count(*) into v_tables from dbsync.tables t where t.group_id = v_sub.group_id and t.removed_at is null;
    if v_tables > 0 and not exists (select from dbsync.subscriptions s where s.group_id = v_sub.group_id) then
        raise warning 'dbsync: group "%" has no subscription left; its % table(s) are still captured', v_group, v_tables
            using hint = format('Writers keep paying for capture. Add a subscription (dbsync.add_subscription(name, %L, conninfo)), '
                                'or stop capturing: dbsync.remove_table for each table, then dbsync.drop_group(%L).', v_group, v_group);
    end if;
end
$$;
