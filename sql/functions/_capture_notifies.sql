-- dbsync._capture_notifies() returns boolean
--   Whether a captured write of this session NOTIFYs the sidecar while its group
--   sleeps. A transaction that has executed NOTIFY cannot PREPARE, so by default
--   only where no transaction can be prepared (max_prepared_transactions = 0, a
--   setting that changes at a restart only): replication must never make an
--   application's two-phase commit (XA, JTA) fail. The setting dbsync.notify
--   overrides it for a session, role or database: 'off' never (no commit-time
--   lock), 'on' always (where nothing prepares transactions though the server
--   allows it). Without a NOTIFY, the sidecar finds the work by polling: its
--   lingering appliers every 50 ms (src/sidecar/appliers.ts, which asks this in its
--   own session), then --poll-interval; so is the work of COMMIT PREPARED found,
--   which runs no trigger. Read by capture triggers only while their group sleeps.
--   Inlined into them (a SQL function of one SELECT, with no SET clause: every name
--   qualified instead): called, with SET search_path, it took a captured single-row
--   UPDATE from 62 to 138 µs of backend CPU while the group slept (bench/HISTORY.md).
--   Parameters: none.
--   Returns: true when this session's capture notifies.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._capture_notifies() returns boolean
language sql stable as $$
    select case when pg_catalog.current_setting('dbsync.notify', true) operator(pg_catalog.=) 'on' then true
                when pg_catalog.current_setting('dbsync.notify', true) operator(pg_catalog.=) 'off' then false
                else pg_catalog.current_setting('max_prepared_transactions') operator(pg_catalog.=) '0' end
$$;
