-- dbsync._lock_class(p_lock text) returns int
--   The first key of each advisory lock dbsync takes on the source, defined here
--   only (the SQL and, through dbsync.sidecar_try_lock, the sidecar use it); the
--   second key says what is locked:
--     apply            "dbsy", sub_id: a subscription's applier (session lock,
--                      src/sync/session.ts; dbsync._sync_blocker looks for it);
--     verify           "dbsv", verification_id: a running verification (session
--                      lock, src/verify/verify.ts; _verify_todo, _verify_hold);
--     verify_group     "dbvh", group_id: _verify_begin (exclusive) against
--                      _verify_hold (shared);
--     verify_schedule  "dbvs", 0: one _verify_schedule at a time;
--     group_pairs      "dbtp", group_id: add_table against add_subscription of
--                      the group (transaction lock, _pair_group; each pairs its
--                      new row with the other's rows it sees).
--   The locks taken where no dbsync code is installed (migrate, a target's
--   bookkeeping schema) are src/locks.ts's.
--   Parameters: p_lock, one of the names above.
--   Returns: the key (the name's four letters in ASCII). Raises on any other name.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._lock_class(p_lock text) returns int
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    case p_lock
        when 'apply' then return 1684173689;            -- 0x64627379 "dbsy"
        when 'verify' then return 1684173686;           -- 0x64627376 "dbsv"
        when 'verify_group' then return 1684174440;     -- 0x64627668 "dbvh"
        when 'verify_schedule' then return 1684174451;  -- 0x64627673 "dbvs"
        when 'group_pairs' then return 1684173936;      -- 0x64627470 "dbtp"
        else raise exception '_lock_class: no lock class "%"', p_lock using errcode = 'invalid_parameter_value';
    end case;
end
$$;
