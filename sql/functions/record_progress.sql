-- dbsync.record_progress(p_sub_id int, p_tick bigint, p_events bigint, p_seconds double precision,
--                        p_copied jsonb default null, p_sequences jsonb default null) returns void
--   The sidecar reports that the target now stands at tick p_tick (read from, or
--   just committed to, the target's dbsync.applied). Moves the position, adds the
--   stats, clears the last error. p_copied lists [table_id, copy_request] pairs the
--   batch copied: those tables stream from now on, unless a newer copy was requested
--   meanwhile (resync_table after the batch's snapshot); what background verification
--   found about them is cleared. p_sequences lists
--   [seq_id, value] pairs: what the target's sequences were set to (or already were
--   at, or above). Called by the sidecar.
create or replace function dbsync.record_progress(p_sub_id int, p_tick bigint, p_events bigint,
                                                  p_seconds double precision, p_copied jsonb default null,
                                                  p_sequences jsonb default null)
returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    update dbsync.subscriptions
    set position_tick = p_tick,
        applied_at = case when p_events > 0 or position_tick <> p_tick then now() else applied_at end,
        batches_applied = batches_applied + case when p_events > 0 then 1 else 0 end,
        events_applied = events_applied + p_events,
        rows_per_second = case when p_events > 0 and p_seconds > 0 then p_events / p_seconds else rows_per_second end,
        last_error = null, last_error_sqlstate = null, last_error_table = null, last_error_tick = null
    where sub_id = p_sub_id;
    update dbsync.subscription_tables st
    set state = 'streaming', copy_tick = p_tick, copy_ended_at = now(), last_error = null, last_error_at = null,
        rows_copied = coalesce((c.value->>2)::bigint, st.rows_copied)
    from jsonb_array_elements(coalesce(p_copied, '[]')) c
    where st.sub_id = p_sub_id and st.table_id = (c.value->>0)::int
      and st.copy_request = (c.value->>1)::bigint and st.state <> 'streaming';
    -- A table copied again is what the source had at p_tick: background verification's
    -- findings about it are gone, and its walk over the keys starts over.
    update dbsync.verify_progress p
    set next_key = null, pass_started_at = null, pass_rows = 0, pass_differences = 0, pass_keys = '{}',
        differences = 0, differing_keys = '{}', found_id = null, found_at = null,
        errors = 0, last_error = null, last_error_at = null
    from jsonb_array_elements(coalesce(p_copied, '[]')) c
    where p.sub_id = p_sub_id and p.table_id = (c.value->>0)::int;
    insert into dbsync.subscription_sequences (sub_id, seq_id, pushed)
    select p_sub_id, (q.value->>0)::int, (q.value->>1)::bigint
    from jsonb_array_elements(coalesce(p_sequences, '[]')) q
    where exists (select from dbsync.sequences x where x.seq_id = (q.value->>0)::int)
    on conflict (sub_id, seq_id) do update set pushed = greatest(subscription_sequences.pushed, excluded.pushed);
end
$$;
