-- dbsync.wait_for_sync(subscription text, timeout interval default '60 s') returns boolean
--   Waits until every change committed before the call is applied on the target,
--   every table of the subscription is copied, and every sequence it carries is on
--   the target as the source had it at the call or since (dbsync._sequences_behind);
--   true then, false at the timeout.
--   Reads only: the sidecar does the work. Must not run inside REPEATABLE READ or
--   SERIALIZABLE, where it could not see the sidecar's progress.
--   Parameters: subscription, timeout.
--   Returns: true once in sync, false at the timeout.
--   Calls: dbsync._sequence_goal, dbsync._sequences_behind,
--     dbsync._snapshot_excluding_self, dbsync._sub, dbsync._synced. Tables touched:
--     dbsync.subscriptions (read).
create or replace function dbsync.wait_for_sync(subscription text, timeout interval default '60 s')
returns boolean
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions; -- set first thing: no row variable defaults before PostgreSQL 11
    v_goal pg_snapshot;
    v_seq_goal jsonb;
    v_deadline timestamptz := clock_timestamp() + coalesce(timeout, '60 s');
begin
    v_sub := dbsync._sub(subscription);
    v_goal := dbsync._snapshot_excluding_self();
    -- Sequences are not transactional: their values now are the goal.
    v_seq_goal := dbsync._sequence_goal(v_sub.sub_id);
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'wait_for_sync: cannot wait inside a % transaction', current_setting('transaction_isolation')
            using errcode = 'active_sql_transaction',
                  hint = 'Call it in a READ COMMITTED transaction (begin isolation level read committed), or in autocommit mode where default_transaction_isolation is read committed.';
    end if;
    loop
        if dbsync._synced(v_sub.sub_id, v_goal) and not dbsync._sequences_behind(v_sub.sub_id, v_seq_goal) then
            return true;
        end if;
        exit when clock_timestamp() >= v_deadline;
        perform pg_sleep(least(0.05, greatest(extract(epoch from v_deadline - clock_timestamp()), 0)));
    end loop;
    -- extract() gives float8 before PostgreSQL 14, and round(float8, int) does not exist.
    raise notice 'wait_for_sync: "%" not in sync after % s: %', v_sub.name,
                 round(extract(epoch from coalesce(timeout, '60 s'))::numeric, 1)::float8, dbsync._sync_blocker(v_sub.sub_id);
    return false;
end
$$;
