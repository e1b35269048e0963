-- dbsync._verify_record(p_verification_id bigint) returns void
--   Books a finished background verification (dbsync._verify_schedule queued it) into
--   dbsync.verify_progress: the table's walk moves on to the key the range reached
--   (or starts a new pass when it reached the end of the table), and the rows found
--   differing are added to the pass. What dbsync.status shows (differences) only
--   grows during a pass; a complete pass replaces it with what that pass found, so
--   a difference fixed by hand or by `dbsync verify --repair` disappears after the
--   next complete pass, and one still there never disappears.
--   A failed verification leaves the walk where it was (the same range is tried
--   again) and records the error; a third failure in a row that came while comparing
--   starts the pass over (a start key that no longer fits the table's key, after a
--   key change, fails every time; a stream too busy to reach the tick does not).
--   Ignored: a verification that is not background or not finished, one already
--   booked (or older than one booked), one of a range the walk no longer stands at,
--   and one whose tick is older than the table's last copy (the copy replaced what
--   it compared).
--   Called by the verify job when it ends, and by _verify_schedule for jobs that
--   ended without booking.
--   Parameters: p_verification_id.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.verify_progress (written);
--     dbsync.subscription_tables, dbsync.verifications (read).
create or replace function dbsync._verify_record(p_verification_id bigint) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v dbsync.verifications;
    p dbsync.verify_progress;
    v_copy_tick bigint;
    v_pass_diff bigint;
    v_pass_keys text[];
    v_shown bigint;
begin
    select * into v from dbsync.verifications x
    where x.verification_id = p_verification_id and x.background and x.state in ('done', 'error');
    if not found then
        return;
    end if;
    select * into p from dbsync.verify_progress x
    where x.sub_id = v.sub_id and x.table_id = v.table_id
    for update;
    if not found or p.last_id >= v.verification_id then
        return;
    end if;
    select st.copy_tick into v_copy_tick from dbsync.subscription_tables st
    where st.sub_id = v.sub_id and st.table_id = v.table_id;
    if v.key_after is distinct from p.next_key or v_copy_tick > v.tick_id then
        update dbsync.verify_progress x set last_id = v.verification_id
        where x.sub_id = v.sub_id and x.table_id = v.table_id;
        return;
    end if;

    if v.state = 'error' then
        update dbsync.verify_progress x
        set last_id = v.verification_id, errors = x.errors + 1,
            last_error = v.error, last_error_at = coalesce(v.finished_at, now())
        where x.sub_id = v.sub_id and x.table_id = v.table_id;
        if p.errors + 1 >= 3 and v.compare_started_at is not null then
            update dbsync.verify_progress x
            set errors = 0, next_key = null, pass_started_at = null, pass_rows = 0, pass_differences = 0, pass_keys = '{}'
            where x.sub_id = v.sub_id and x.table_id = v.table_id;
        end if;
        return;
    end if;

    v_pass_diff := p.pass_differences + v.differing_count;
    v_pass_keys := (p.pass_keys || v.differing_keys)[1:100];
    if v.reached_end then
        -- A complete pass: what it found is what differs now.
        update dbsync.verify_progress x
        set last_id = v.verification_id, verified_at = coalesce(v.finished_at, now()),
            errors = 0, last_error = null, last_error_at = null,
            differences = v_pass_diff,
            differing_keys = v_pass_keys,
            found_id = case when v.differing_count > 0 then v.verification_id
                            when v_pass_diff > 0 then x.found_id end,
            found_at = case when v_pass_diff > 0 then coalesce(x.found_at, now()) end,
            passes = x.passes + 1, pass_ended_at = now(),
            next_key = null, pass_started_at = null, pass_rows = 0, pass_differences = 0, pass_keys = '{}'
        where x.sub_id = v.sub_id and x.table_id = v.table_id;
        return;
    end if;
    v_shown := greatest(p.differences, v_pass_diff);
    update dbsync.verify_progress x
    set last_id = v.verification_id, verified_at = coalesce(v.finished_at, now()),
        errors = 0, last_error = null, last_error_at = null,
        next_key = v.key_reached,
        pass_started_at = coalesce(x.pass_started_at, v.started_at, now()),
        pass_rows = x.pass_rows + v.rows_compared,
        pass_differences = v_pass_diff,
        pass_keys = v_pass_keys,
        differences = v_shown,
        -- The keys shown go with the count shown.
        differing_keys = case when v_pass_diff > 0 and v_pass_diff >= p.differences then v_pass_keys else x.differing_keys end,
        found_id = case when v.differing_count > 0 then v.verification_id else x.found_id end,
        found_at = case when v_shown > 0 then coalesce(x.found_at, now()) end
    where x.sub_id = v.sub_id and x.table_id = v.table_id;
end
$$;
