-- dbsync._verify_schedule(p_interval interval, p_rows bigint) returns setof bigint
--   Background verification (`dbsync run --verify-interval`): queues, for the
--   subscription due longest ago, one verification of at most p_rows source rows of
--   one of its tables, starting where that table's walk stands
--   (dbsync.verify_progress), and returns its id for the sidecar to wake (no row:
--   nothing due, or one still queued or running). The table is the one whose range
--   was queued longest ago, so the tables take turns.
--   One background verification at a time on this source, whatever the number of
--   sidecars and subscriptions: its cost stays bounded, and the sidecar asks again
--   as soon as one ends, so subscriptions are served one after another.
--   Due: not paused, not failing, every table copied (a verification waits for the
--   stream to reach its tick: it would only wait on a busy or stuck one), and the
--   last background verification asked for at least p_interval ago (or the
--   subscription created that long ago).
--   Also books finished background verifications whose job ended before it could
--   (dbsync._verify_record), and deletes background verifications finished over 7
--   days ago (but the ones whose differences are shown).
--   Several sidecars may call it at once: one schedules (advisory lock 0x64627673
--   "dbvs", not waited for), the others return nothing. Called by the sidecar.
--   Parameters: p_interval, p_rows.
--   Returns: a set of bigint.
--   Calls: dbsync._lock_class, dbsync._verify_record. Tables touched:
--     dbsync.verifications, dbsync.verify_progress (written); dbsync.subscription_tables,
--     dbsync.subscriptions, dbsync.tables (read).
create or replace function dbsync._verify_schedule(p_interval interval, p_rows bigint) returns setof bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    s record;
    r record;
    v_id bigint;
begin
    if p_interval is null or p_interval <= interval '0' or p_rows is null or p_rows < 1 then
        raise exception '_verify_schedule: the interval must be positive and the rows at least 1 (got %, %)', p_interval, p_rows
            using errcode = 'invalid_parameter_value';
    end if;
    if not pg_try_advisory_xact_lock(dbsync._lock_class('verify_schedule'), 0) then
        return;
    end if;

    for r in
        select v.verification_id
        from dbsync.verifications v
        join dbsync.verify_progress p on p.sub_id = v.sub_id and p.table_id = v.table_id
        where v.background and v.state in ('done', 'error') and v.verification_id > coalesce(p.last_id, 0)
        order by v.verification_id
    loop
        perform dbsync._verify_record(r.verification_id);
    end loop;
    delete from dbsync.verifications v
    where v.background and v.state in ('done', 'error') and v.finished_at < now() - interval '7 days'
      and not exists (select from dbsync.verify_progress p where p.found_id = v.verification_id);

    if exists (select from dbsync.verifications v where v.background and v.state in ('queued', 'running')) then
        return;
    end if;
    for s in
        select sub.sub_id, sub.name
        from dbsync.subscriptions sub
        cross join lateral (
            select coalesce(max(v.requested_at), sub.created_at) as last_asked
            from dbsync.verifications v where v.sub_id = sub.sub_id and v.background
        ) l
        where not sub.paused
          and sub.last_error is null
          and not exists (select from dbsync.subscription_tables st join dbsync.tables t using (table_id)
                          where st.sub_id = sub.sub_id and t.removed_at is null and st.state <> 'streaming')
          and l.last_asked <= now() - p_interval
        order by l.last_asked, sub.sub_id
    loop
        insert into dbsync.verify_progress (sub_id, table_id)
        select s.sub_id, st.table_id
        from dbsync.subscription_tables st join dbsync.tables t using (table_id)
        where st.sub_id = s.sub_id and t.removed_at is null
        on conflict do nothing;
        select p.table_id, p.next_key, format('%I.%I', t.schema_name, t.table_name) as name into r
        from dbsync.verify_progress p join dbsync.tables t using (table_id)
        where p.sub_id = s.sub_id and t.removed_at is null
        order by p.scheduled_at nulls first, p.table_id
        limit 1;
        continue when not found;
        update dbsync.verify_progress p set scheduled_at = now()
        where p.sub_id = s.sub_id and p.table_id = r.table_id;
        insert into dbsync.verifications (subscription, sub_id, table_id, table_name, repair, background, key_after, row_limit, rows_estimated)
        values (s.name, s.sub_id, r.table_id, r.name, false, true, r.next_key, p_rows, p_rows)
        returning verification_id into v_id;
        return next v_id;
        return;
    end loop;
end
$$;
