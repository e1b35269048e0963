-- dbsync._verify_hold(subscription text) returns bigint
--   The tick a running verification holds the subscription at, or NULL:
--   dbsync.begin_batch never builds a batch that ends past it, so the target stops
--   exactly there while the verify job opens its snapshot of the target (and, with
--   repair, until the repair is committed). A hold counts only while the job that
--   set it holds its session advisory lock (0x64627376, verification_id): a crashed
--   job's hold is ignored at once. A hold behind the subscription's position (which
--   the verify job reports as an error) is ignored too, so a hold can never freeze
--   the stream.
--   A hold and its tick are committed together, but the caller takes its own tick
--   after this returns: without more, a verification could take and commit its tick
--   in between, and the caller's batch would end past it. So this first takes the
--   group's verify lock in shared mode (advisory, class 0x64627668 "dbvh", key
--   group_id; held until the caller's transaction ends), which dbsync._verify_begin
--   takes exclusively before its tick: a verification's tick then either comes after
--   every batch tick taken under a hold check that missed it, or its hold is seen
--   (the read below takes a new snapshot after the lock: VOLATILE, in the caller's
--   READ COMMITTED transaction).
--   The file name sorts before begin_batch.sql.
--   Parameters: subscription.
--   Returns: bigint.
--   Calls: dbsync._lock_class. Tables touched: dbsync.subscriptions, dbsync.verifications
--     (read).
create or replace function dbsync._verify_hold(subscription text) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int;
begin
    select s.group_id into v_group from dbsync.subscriptions s where s.name = _verify_hold.subscription;
    if not found then
        return null;
    end if;
    perform pg_advisory_xact_lock_shared(dbsync._lock_class('verify_group'), v_group);
    return (
        select min(v.hold_tick)
        from dbsync.verifications v
        join dbsync.subscriptions s on s.sub_id = v.sub_id
        where s.name = _verify_hold.subscription
          and v.hold_tick is not null
          and v.hold_tick >= s.position_tick
          and exists (select from pg_locks l
                      where l.locktype = 'advisory'
                        and l.database = (select d.oid from pg_database d where d.datname = current_database())
                        and l.classid = (select dbsync._lock_class('verify'))::oid
                        and l.objid::text::bigint = v.verification_id
                        and l.objsubid = 2
                        and l.granted));
end
$$;
