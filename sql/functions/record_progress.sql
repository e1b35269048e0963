-- dbsync.record_progress(p_sub_id int, p_tick bigint, p_events bigint, p_seconds double precision,
--                        p_copied jsonb default null, p_sequences jsonb default null) returns void
--   The sidecar reports that the target now stands at tick p_tick (read from, or
--   just committed to, the target's dbsync.applied). Moves the position, adds the
--   stats, clears the last error. p_copied lists [table_id, copy_request] pairs the
--   batch copied: those tables stream from now on, unless a newer copy was requested
--   meanwhile (resync_table after the batch's snapshot), and what background
--   verification found about them is cleared. Without p_copied (the report of the
--   batch was lost: target_position), the whole copies copy_chunks recorded for the
--   batch that ends at p_tick are the ones it made. A chunk of a chunked copy moves the
--   table's boundary instead (the last one ends the copy; see
--   sql/functions/_copy_chunks.sql), by what copy_chunks recorded for the batch that
--   ends at p_tick. p_sequences lists
--   [seq_id, value] pairs: the next value each of the target's sequences gives,
--   as set with the batch (dbsync.sidecar_sequences). A report of a tick before the
--   position changes nothing: it is late (a process that stalled after its batch
--   committed on the target, while another took the subscription over and moved it
--   on); moving back would point the position at a tick upkeep may have deleted, and
--   maintain would then truncate queue slots the subscription still needs.
--   Called by the sidecar.
--   Parameters: p_sub_id, p_tick, p_events, p_seconds, p_copied, p_sequences.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.subscription_sequences,
--     dbsync.subscription_tables, dbsync.subscriptions, dbsync.verify_progress (written);
--     dbsync.sequences (read).
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
    -- (In READ COMMITTED an UPDATE that waited for another report's row lock checks
    -- this again on the row that report left.)
    where sub_id = p_sub_id and position_tick <= p_tick;
    if not found then
        return;
    end if;
    -- Chunks of copies (recorded by copy_chunks before the batch committed on the
    -- target): the boundary moves with the position, also when the batch's report
    -- was lost and the position comes from the target (target_position: no
    -- p_copied then, and the rows copied are those copy_progress last showed).
    -- The last chunk ends the copy.
    update dbsync.subscription_tables st
    set chunk_request = st.copy_request,
        chunk_order = st.chunk_next -> 'order',
        chunk_key = case when n.last then null
                         else array(select jsonb_array_elements_text(st.chunk_next -> 'key')) end,
        chunk_tick = p_tick,
        chunk_rows = n.rows,
        chunks_copied = (st.chunk_next ->> 'chunks_before')::int + 1,
        rows_copied = n.rows,
        chunk_next = null,
        state = case when n.last then 'streaming' else 'copying' end,
        copy_tick = case when n.last then p_tick end,
        copy_ended_at = case when n.last then now() end,
        last_error = null, last_error_at = null
    from dbsync.subscription_tables s2
    cross join lateral (
        select (s2.chunk_next ->> 'last')::boolean as last,
               coalesce((select sum((c.value->>2)::bigint) from jsonb_array_elements(coalesce(p_copied, '[]')) c
                          where (c.value->>0)::int = s2.table_id) + (s2.chunk_next ->> 'rows_before')::bigint,
                        s2.rows_copied) as rows
    ) n
    where st.sub_id = p_sub_id and s2.sub_id = st.sub_id and s2.table_id = st.table_id
      and (st.chunk_next ->> 'tick')::bigint = p_tick and not (st.chunk_next ? 'whole')
      and (st.chunk_next ->> 'copy_request')::bigint = st.copy_request and st.state <> 'streaming';
    -- Whole copies: the report's, or those recorded for this tick when the report
    -- was lost (a copy the target committed must not be made again).
    update dbsync.subscription_tables st
    set state = 'streaming', copy_tick = p_tick, copy_ended_at = now(), last_error = null, last_error_at = null,
        rows_copied = coalesce(c.rows, st.rows_copied)
    from (select (c.value->>0)::int as table_id, (c.value->>1)::bigint as copy_request, (c.value->>2)::bigint as rows
          from jsonb_array_elements(coalesce(p_copied, '[]')) c
          union all
          select s.table_id, (s.chunk_next ->> 'copy_request')::bigint, null
          from dbsync.subscription_tables s
          where p_copied is null and s.sub_id = p_sub_id and s.chunk_next ? 'whole'
            and (s.chunk_next ->> 'tick')::bigint = p_tick) c
    where st.sub_id = p_sub_id and st.table_id = c.table_id
      and st.copy_request = c.copy_request and st.state <> 'streaming'
      and st.chunk_tick is distinct from p_tick;
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
    -- What the batch set, backwards too: reports come in the order of the batches.
    on conflict (sub_id, seq_id) do update set pushed = excluded.pushed;
end
$$;
