-- What batch_plan keeps from one batch to the next in the reader's session: each
-- streaming table's SQL (its part of the stream, its shapes and upsert key), built
-- again only when what it is built from changed (batch_plan's v_key: the table's
-- columns, their types and collations, its name, the batch's key shapes of it).
-- Rebuilt at every batch it cost about 0.7 ms of the source's CPU a table, most of
-- batch_plan. Kept in a placeholder setting per group, dbsync.plan_<group_id>, set
-- for the session: the reader's transaction is read only (no table written, no xid
-- taken), a temporary table's rows of an earlier batch may not be visible in an
-- imported snapshot, and a setting costs nothing to keep (placeholders are not in
-- pg_settings, which the pool's session check reads). A setting can also be given
-- to the sidecar's sessions by ALTER ROLE or ALTER DATABASE ... SET, by roles that
-- must not make the sidecar run their SQL: so the value carries its session's token
-- (_plan_cache_token), which no one can know before the session starts, and a value
-- without this session's is ignored.

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

-- dbsync._plan_cache(p_group_id int) returns jsonb
--   The tables' SQL that batch_plan kept in this session for group p_group_id:
--   {table_id: entry}, '{}' if none (or a value this session did not set).
--   Parameters: p_group_id.
--   Returns: jsonb.
--   Calls: dbsync._plan_cache_token. Tables touched: none.
create or replace function dbsync._plan_cache(p_group_id int) returns jsonb
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_token text := dbsync._plan_cache_token();
    v_kept text := current_setting('dbsync.plan_' || p_group_id, true);
begin
    if v_token is not null and split_part(v_kept, ' ', 1) = v_token then
        return substr(v_kept, length(v_token) + 2)::jsonb;
    end if;
    return '{}';
end
$$;

-- dbsync._plan_cache_keep(p_group_id int, p_kept jsonb, p_used jsonb, p_built jsonb) returns void
--   Keeps for this session's next batches of group p_group_id the entries p_kept
--   (what _plan_cache gave) with those the batch built (p_built) over them; past
--   1,000 tables, only the batch's own (p_used, found in p_kept, and p_built), so
--   that a group of many tables each seldom written does not make every batch read
--   a big value.
--   Parameters: p_group_id, p_kept, p_used, p_built.
--   Returns: nothing.
--   Calls: dbsync._plan_cache_token. Tables touched: none.
create or replace function dbsync._plan_cache_keep(p_group_id int, p_kept jsonb, p_used jsonb, p_built jsonb) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    v_token text := dbsync._plan_cache_token();
    v_keep jsonb := p_kept || p_built;
begin
    if v_token is null then
        return;
    end if;
    if (select count(*) from jsonb_object_keys(v_keep)) > 1000 then
        v_keep := p_used || p_built;
    end if;
    perform set_config('dbsync.plan_' || p_group_id, v_token || ' ' || v_keep::text, false);
end
$$;
