-- dbsync.table_status: one row per subscription and replicated table.
--   state: copying (pending or in progress) | catching_up (copied, the stream has
--   not reached the copy's tick yet) | streaming | error (the copy failed, the
--   subscription's last failed batch failed on this table (the sidecar names tables
--   with both parts always quoted), DDL outside execute_ddl changed its rows on
--   the source only and is not acknowledged yet (dbsync._unreplicated_ddl: last_error
--   says what to do; acknowledged, the table is copied again), or background
--   verification found rows of it that differ on the target: last_error says which
--   and how to copy it again).
--   rows_copied / rows_estimated: the copy's progress, across the batches of a copy
--   in key-range chunks (chunks_copied; copied_up_to: the key up to which the target
--   holds the table, while copying).
--   verify_differences / verify_differing_keys: what background verification found
--   (the last complete pass over the table, or the pass under way when it found
--   more; 0 again after a clean complete pass or a new copy); last_verified_at: when
--   it last compared a range; verify_passes: complete passes over the table;
--   last_verify_error: why its last attempt failed, if it did.
--   A reader that may not read dbsync.verifications (a monitoring role,
--   dbsync.grant_monitor) gets verify_differing_keys and copied_up_to NULL, and the
--   error texts without what may quote row values (dbsync._shows_values).
create or replace view dbsync.table_status as
select s.name as subscription,
       g.name as group_name,
       format('%I.%I', t.schema_name, t.table_name) as table_name,
       case when st.state = 'error' or e.failed or h.ddl_id is not null then 'error'
            when st.state = 'pending' then 'copying'
            when v.differences > 0 then 'error'
            else st.state end as state,
       st.rows_copied,
       st.rows_estimated,
       st.copy_tick,
       st.copy_started_at,
       st.copy_ended_at,
       dbsync._without_values(coalesce(st.last_error, case when e.failed then s.last_error end,
                                       dbsync._held_message(h.ddl_id, h.command_tag, format('%I.%I', t.schema_name, t.table_name)),
                                       case when v.differences > 0 and st.state <> 'pending'
                                            then dbsync._differences_message(s.name, t.schema_name, t.table_name, v.differences,
                                                                             null, v.differing_keys, r.shows) end),
                              r.shows) as last_error,
       coalesce(st.last_error_at, case when e.failed then s.last_error_at end, h.logged_at,
                case when v.differences > 0 and st.state <> 'pending' then v.found_at end) as last_error_at,
       coalesce(v.differences, 0) as verify_differences,
       case when r.shows then coalesce(v.differing_keys, '{}') end as verify_differing_keys,
       v.verified_at as last_verified_at,
       coalesce(v.passes, 0) as verify_passes,
       dbsync._without_values(v.last_error, r.shows) as last_verify_error,
       -- A copy in key-range chunks (sql/functions/_copy_chunks.sql): the chunks
       -- copied so far, and the key up to which the target holds the table.
       case when st.chunk_request = st.copy_request then st.chunks_copied else 0 end as chunks_copied,
       case when st.chunk_request = st.copy_request and st.state <> 'streaming' and r.shows
            then array_to_string(st.chunk_key, ', ') end as copied_up_to
from dbsync.subscription_tables st
join dbsync.subscriptions s using (sub_id)
join dbsync.tables t using (table_id)
join dbsync.groups g on g.group_id = s.group_id
left join dbsync.verify_progress v on v.sub_id = st.sub_id and v.table_id = st.table_id
cross join lateral (
    select s.last_error_table is not null
           and s.last_error_table = '"' || replace(t.schema_name, '"', '""') || '"."'
                                    || replace(t.table_name, '"', '""') || '"' as failed
) e
-- What the reader may see of row values (dbsync._shows_values).
cross join (select dbsync._shows_values() as shows) r
-- The first change outside execute_ddl that the table waits on (dbsync._unreplicated_ddl).
left join dbsync._held_tables() h on h.table_id = t.table_id
where t.removed_at is null;
