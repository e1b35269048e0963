-- dbsync.sidecar_sequences(p_group_id int) returns table(seq_id int, name text, value text)
--   The sequences a group carries, with their current value on the source (NULL
--   for one never used), for the sidecar to set on the target.
--   Parameters: p_group_id, the group.
--   Returns: seq_id, name (schema-qualified, quoted), value (text: int8 does not
--     fit a JavaScript number).
--   Calls: pg_sequence_last_value. Tables touched: dbsync.sequences (read), and
--   each carried sequence (read: the sidecar role has SELECT on them).
--   SECURITY INVOKER, as dbsync.sidecar_subscription.
create or replace function dbsync.sidecar_sequences(p_group_id int)
returns table (seq_id int, name text, value text)
language sql stable set search_path = pg_catalog, pg_temp as $$
    select q.seq_id, format('%I.%I', q.schema_name, q.seq_name), pg_sequence_last_value(q.relid)::text
    from dbsync.sequences q
    where q.group_id = p_group_id
    order by q.seq_id;
$$;
