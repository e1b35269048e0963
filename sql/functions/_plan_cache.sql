-- What batch_plan keeps from one batch to the next in the reader's session: each
-- streaming table's SQL (its part of the stream, its shapes and upsert key), built
-- again only when what it is built from changed (batch_plan's v_key: the table's
-- columns, their types and collations, its name, the batch's key shapes of it).
-- Rebuilt at every batch it cost about 0.7 ms of the source's CPU a table, most of
-- batch_plan. Kept in a placeholder setting per table, dbsync.plan_<table_id>, set
-- for the session: the reader's transaction is read only (no table written, no xid
-- taken), a temporary table's rows of an earlier batch may not be visible in an
-- imported snapshot, and a setting costs nothing to keep (placeholders are not in
-- pg_settings, which the pool's session check reads). One setting a table, so that
-- a batch reads only its own tables' (a value for a group of 1,000 tables took
-- about 40 ms to read as jsonb). A setting can also be given to the sidecar's
-- sessions by ALTER ROLE or ALTER DATABASE ... SET, by roles that must not make the
-- sidecar run their SQL: so the value starts with its session's token
-- (_plan_cache_token), which no one can know before the session starts, and a
-- value without this session's is ignored.

-- dbsync._plan_cache_token() returns text
--   This session's token for its kept plans: the backend's pid and start time (to
--   the microsecond). Null when the role running it (batch_plan's owner) may not
--   see the session's start (neither a member of the session's role nor of
--   pg_read_all_stats): then nothing is kept.
--   Parameters: none.
--   Returns: text.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._plan_cache_token() returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select pg_backend_pid() || '.' || extract(epoch from a.backend_start)
    from pg_stat_get_activity(pg_backend_pid()) a
$$;

-- dbsync._plan_cache(p_table_id int, p_token text, p_key text) returns jsonb
--   The SQL of table p_table_id that batch_plan kept in this session (p_token) for
--   the inputs whose key is p_key, or null (none, another key's, or a value this
--   session did not set). Only a value found is read as jsonb.
--   Parameters: p_table_id, p_token, p_key.
--   Returns: jsonb.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._plan_cache(p_table_id int, p_token text, p_key text) returns jsonb
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_kept text := current_setting('dbsync.plan_' || p_table_id, true);
    v_head text := p_token || ' ' || p_key || ' ';
begin
    if left(v_kept, length(v_head)) = v_head then
        return substr(v_kept, length(v_head) + 1)::jsonb;
    end if;
    return null;
end
$$;

-- dbsync._plan_cache_keep(p_table_id int, p_token text, p_key text, p_entry jsonb) returns void
--   Keeps p_entry, table p_table_id's SQL built for the inputs whose key is p_key,
--   for this session's next batches (p_token: its token), in place of any other.
--   Parameters: p_table_id, p_token, p_key, p_entry.
--   Returns: nothing.
--   Calls: nothing. Tables touched: none.
--   PL/pgSQL: before PostgreSQL 11 a SQL function returning void may not end in a SELECT.
create or replace function dbsync._plan_cache_keep(p_table_id int, p_token text, p_key text, p_entry jsonb) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    perform set_config('dbsync.plan_' || p_table_id, p_token || ' ' || p_key || ' ' || p_entry::text, false);
end
$$;
