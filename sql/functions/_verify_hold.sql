-- dbsync._verify_hold(subscription text) returns bigint
--   The tick a running verification holds the subscription at, or NULL: next_batch
--   never builds a batch that ends past it, so the target stops exactly there while
--   the verify job opens its snapshot of the target (and, with repair, until the
--   repair is committed). A hold counts only while the job that set it holds its
--   session advisory lock (0x64627376, verification_id): a crashed job's hold is
--   ignored at once. A hold behind the subscription's position (which the verify
--   job reports as an error) is ignored too, so a hold can never freeze the stream.
--   STABLE, so it reads with next_batch's snapshot: a verification's tick and its
--   hold are committed together and seen together.
--   The file name sorts before next_batch.sql: SQL function bodies are checked at
--   creation, so this must exist first.
create or replace function dbsync._verify_hold(subscription text) returns bigint
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select min(v.hold_tick)
    from dbsync.verifications v
    join dbsync.subscriptions s on s.sub_id = v.sub_id
    where s.name = _verify_hold.subscription
      and v.hold_tick is not null
      and v.hold_tick >= s.position_tick
      and exists (select from pg_locks l
                  where l.locktype = 'advisory'
                    and l.database = (select d.oid from pg_database d where d.datname = current_database())
                    and l.classid = 1684173686 -- 0x64627376
                    and l.objid::text::bigint = v.verification_id
                    and l.objsubid = 2
                    and l.granted)
$$;
