-- dbsync._verify_todo() returns setof bigint
--   Verifications the sidecar should run now: queued ones, and running ones whose
--   job is gone (its advisory lock 0x64627376/verification_id is not held), which
--   start over. Called by the sidecar's scan.
--   Parameters: none.
--   Returns: a set of bigint.
--   Calls: dbsync._lock_class. Tables touched: dbsync.verifications (read).
create or replace function dbsync._verify_todo() returns setof bigint
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select v.verification_id
    from dbsync.verifications v
    where v.state in ('queued', 'running')
      and not exists (select from pg_locks l
                      where l.locktype = 'advisory'
                        and l.database = (select d.oid from pg_database d where d.datname = current_database())
                        and l.classid = (select dbsync._lock_class('verify'))::oid
                        and l.objid::text::bigint = v.verification_id
                        and l.objsubid = 2)
    order by v.verification_id
$$;
