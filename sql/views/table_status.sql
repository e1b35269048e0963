-- dbsync.table_status: one row per subscription and replicated table.
--   state: copying (pending or in progress) | catching_up (copied, the stream has
--   not reached the copy's tick yet) | streaming | error (the copy failed, or the
--   subscription's last failed batch failed on this table; the sidecar names tables
--   with both parts always quoted). rows_copied / rows_estimated: the copy's
--   progress, across the batches of a copy in key-range chunks (chunks_copied;
--   copied_up_to: the key up to which the target holds the table, while copying).
create or replace view dbsync.table_status as
select s.name as subscription,
       g.name as group_name,
       format('%I.%I', t.schema_name, t.table_name) as table_name,
       case when st.state = 'error' or e.failed then 'error'
            when st.state = 'pending' then 'copying'
            else st.state end as state,
       st.rows_copied,
       st.rows_estimated,
       st.copy_tick,
       st.copy_started_at,
       st.copy_ended_at,
       coalesce(st.last_error, case when e.failed then s.last_error end) as last_error,
       coalesce(st.last_error_at, case when e.failed then s.last_error_at end) as last_error_at,
       -- A copy in key-range chunks (sql/functions/_copy_chunks.sql): the chunks
       -- copied so far, and the key up to which the target holds the table.
       case when st.chunk_request = st.copy_request then st.chunks_copied else 0 end as chunks_copied,
       case when st.chunk_request = st.copy_request and st.state <> 'streaming'
            then array_to_string(st.chunk_key, ', ') end as copied_up_to
from dbsync.subscription_tables st
join dbsync.subscriptions s using (sub_id)
join dbsync.tables t using (table_id)
join dbsync.groups g on g.group_id = s.group_id
cross join lateral (
    select s.last_error_table is not null
           and s.last_error_table = '"' || replace(t.schema_name, '"', '""') || '"."'
                                    || replace(t.table_name, '"', '""') || '"' as failed
) e
where t.removed_at is null;
