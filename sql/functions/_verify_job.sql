-- dbsync._verify_job(p_verification_id bigint) returns table(...)
--   What a sidecar needs to run one verification: its state and options, its
--   subscription's target, the table. No row for an unknown verification (its
--   subscription was dropped).
--   Parameters: p_verification_id.
--   Returns: verification_id (float8), state, repair, sub_id, table_id,
--     subscription, sub_uuid, target_conninfo, conninfo_by_owner, copy_data, schema_name, table_name,
--     relid (float8), partitioned, background, key_after, row_limit (float8),
--     verified_name (the table's name as dbsync.table_status shows it).
--   Calls: nothing. Tables touched: dbsync.verifications, dbsync.subscriptions,
--   dbsync.tables (read).
--   SECURITY INVOKER: the sidecar role reads these tables itself
--   (dbsync.grant_sidecar).
create or replace function dbsync._verify_job(p_verification_id bigint)
returns table (verification_id float8, state text, repair boolean, sub_id int, table_id int, subscription text,
               sub_uuid uuid, target_conninfo text, conninfo_by_owner boolean, copy_data boolean, schema_name text, table_name text,
               relid float8, partitioned boolean, background boolean, key_after text[], row_limit float8,
               verified_name text)
language sql stable set search_path = pg_catalog, pg_temp as $$
    select v.verification_id::float8, v.state, v.repair, v.sub_id, v.table_id,
           s.name, s.sub_uuid, s.target_conninfo, s.conninfo_by_owner, s.copy_data,
           t.schema_name, t.table_name, t.relid::int8::float8, t.partitioned,
           v.background, v.key_after, v.row_limit::float8, v.table_name
    from dbsync.verifications v
    join dbsync.subscriptions s on s.sub_id = v.sub_id
    join dbsync.tables t on t.table_id = v.table_id
    where v.verification_id = p_verification_id;
$$;
