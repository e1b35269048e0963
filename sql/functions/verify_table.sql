-- dbsync.verify_table(subscription text, tbl regclass, repair boolean default false) returns bigint
--   Asks the sidecar to compare tbl on the source with its copy on the
--   subscription's target, both as of one tick of the stream, while writes go on:
--   key-range chunks are hashed on both sides and differing chunks are compared row
--   by row. With repair, the rows that differ are fixed on the target at that same
--   tick. The outcome lands in dbsync.verifications (state queued -> running ->
--   done | error, rows_compared, chunks, differing_count, differing_keys,
--   rows_repaired, duration); `dbsync verify` shows it as it goes.
--   While the sidecar opens its view of the target (with repair: until the repair
--   is committed) the subscription is held at the verification's tick; capture goes
--   on and the target catches up afterwards. Returns the verification id.
--   Errors: unknown subscription; the table is not replicated by it or not copied
--   yet; the subscription is paused.
--   Parameters: subscription, tbl, repair.
--   Returns: bigint.
--   Calls: dbsync._sub. Tables touched: dbsync.verifications (written);
--     dbsync.subscription_tables, dbsync.subscriptions, dbsync.tables (read).
create or replace function dbsync.verify_table(subscription text, tbl regclass, repair boolean default false)
returns bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions; -- set first thing: no row variable defaults before PostgreSQL 11
    v_t record;
    v_id bigint;
begin
    v_sub := dbsync._sub(subscription);
    if tbl is null then
        raise exception 'verify_table: table must not be NULL'
            using errcode = 'invalid_parameter_value',
                  hint = 'Pass a replicated table, e.g. dbsync.verify_table(''s1'', ''app.orders'').';
    end if;
    if repair is null then
        raise exception 'verify_table: repair must be true or false'
            using errcode = 'invalid_parameter_value',
                  hint = 'false only reports differences; true also fixes them on the target.';
    end if;
    select t.table_id, format('%I.%I', t.schema_name, t.table_name) as name, t.relid, st.state
      into v_t
    from dbsync.tables t
    join dbsync.subscription_tables st on st.table_id = t.table_id and st.sub_id = v_sub.sub_id
    where t.relid = tbl and t.removed_at is null;
    if not found then
        raise exception 'verify_table: % is not replicated by subscription "%"', tbl, subscription
            using errcode = 'undefined_object',
                  hint = 'See select * from dbsync.table_status for the tables of each subscription.';
    end if;
    if v_t.state not in ('catching_up', 'streaming') then
        raise exception 'verify_table: % is not copied to subscription "%" yet (state %)', tbl, subscription, v_t.state
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Wait until dbsync.table_status shows it streaming (dbsync.wait_for_sync), or fix its copy error, then verify.';
    end if;
    if v_sub.paused then
        raise exception 'verify_table: subscription "%" is paused', subscription
            using errcode = 'object_not_in_prerequisite_state',
                  hint = format('A verification needs the target to reach a new tick: run select dbsync.resume(%L) first.', subscription);
    end if;
    insert into dbsync.verifications (subscription, sub_id, table_id, table_name, repair, rows_estimated)
    values (v_sub.name, v_sub.sub_id, v_t.table_id, v_t.name, repair,
            (select nullif(sum(greatest(c.reltuples, 0)), 0)::bigint
             from pg_partition_tree(v_t.relid) p join pg_class c on c.oid = p.relid
             where p.isleaf))
    returning verification_id into v_id;
    perform pg_notify('dbsync', v_sub.group_id::text);
    return v_id;
end
$$;
