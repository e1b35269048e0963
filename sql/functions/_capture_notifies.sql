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
--   Parameters: none.
--   Returns: true when this session's capture notifies.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._capture_notifies() returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select case when current_setting('dbsync.notify', true) = 'on' then true
                when current_setting('dbsync.notify', true) = 'off' then false
                else current_setting('max_prepared_transactions') = '0' end
$$;
