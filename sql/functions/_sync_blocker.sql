-- dbsync._sync_blocker(p_sub_id int) returns text
--   Why the subscription is not in sync, in a sentence with what to do: paused; a
--   table waiting for a change made outside execute_ddl to be acknowledged
--   (dbsync._unreplicated_ddl: nothing failed); its last batch failed (with the
--   error); a table that cannot be copied; tables still
--   being copied (with their progress); no sidecar applying it (nobody holds its
--   apply lock: dbsync run is not running, or cannot reach the target); else how far
--   behind it is. wait_for_sync says it when it times out; `dbsync wait` prints it.
--   Parameters: p_sub_id.
--   Returns: text.
--   Calls: dbsync._held_tables, dbsync._lock_class. Tables touched: dbsync.status, dbsync.subscriptions,
--     dbsync.table_status, dbsync.tables (read).
create or replace function dbsync._sync_blocker(p_sub_id int) returns text
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    s record;
    v_copying text;
    v_n int;
begin
    select st.* into s
    from dbsync.status st join dbsync.subscriptions sub on sub.name = st.name
    where sub.sub_id = p_sub_id;
    if s.paused then
        return format('subscription "%s" is paused (select dbsync.resume(%L) to go on)', s.name, s.name);
    end if;
    -- (dbsync.status names it when no batch failed.)
    if s.last_error is not null
       and exists (select from dbsync.subscriptions sub where sub.sub_id = p_sub_id and sub.last_error is null)
       and exists (select from dbsync._held_tables() h join dbsync.subscriptions sub on sub.group_id = h.group_id
                   where sub.sub_id = p_sub_id and h.table_name = s.last_error_table) then
        return s.last_error || ' (rows stream on meanwhile)';
    end if;
    if s.last_error is not null then
        return format('applying failed%s%s: %s (the sidecar retries by itself once the cause is fixed; see dbsync.status)',
                      case when s.last_error_table is not null then ' on ' || s.last_error_table else '' end,
                      case when s.last_error_at is not null
                           then format(' %s s ago', round(extract(epoch from clock_timestamp() - s.last_error_at))) else '' end,
                      s.last_error);
    end if;
    select count(*), string_agg(format('%s (%s rows copied%s)', ts.table_name, ts.rows_copied,
                                       coalesce(', of about ' || ts.rows_estimated, '')),
                                ', ' order by ts.table_name)
      into v_n, v_copying
    from dbsync.table_status ts where ts.subscription = s.name and ts.state = 'copying';
    -- The session advisory lock every applier holds (dbsync._lock_class).
    if not exists (select from pg_locks l
                   where l.locktype = 'advisory' and l.classid = dbsync._lock_class('apply')::oid and l.objid = p_sub_id
                     and l.objsubid = 2 and l.granted
                     -- Advisory locks are per cluster: another database's subscription
                     -- of the same id is not this one's applier.
                     and l.database = (select d.oid from pg_database d where d.datname = current_database())) then
        return format('no sidecar is applying it (none holds its apply lock): start `dbsync run` against this source, or see its log%s',
                      case when v_n > 0 then format('; %s table(s) wait for their copy', v_n) else '' end);
    end if;
    if v_n > 0 then
        return format('still copying %s table(s): %s', v_n, v_copying);
    end if;
    return format('%s event(s) behind, %s s of lag: the sidecar is applying; wait longer',
                  s.backlog_events, round(s.lag_seconds::numeric, 1));
end
$$;
