-- dbsync.skip_ddl(subscription text, ev_id bigint) returns void
--   Leaves one execute_ddl statement out of one subscription's stream: for DDL that
--   failed on that target (dbsync.status: "DDL queued by execute_ddl (event N)
--   failed on the target") after the DBA made the change there by hand, or decided
--   that target needs none. The other subscriptions of the group still get it. The
--   choice is kept in dbsync.skipped_ddl (who, when, the statement).
--   Errors: unknown subscription; no such execute_ddl event queued for its group;
--   the event is already applied on that target.
--   Parameters: subscription, ev_id.
--   Returns: nothing.
--   Calls: dbsync._sub. Tables touched: dbsync.skipped_ddl (written); dbsync.events,
--     dbsync.subscriptions, dbsync.ticks (read).
create or replace function dbsync.skip_ddl(subscription text, ev_id bigint) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions;
    v_ev record;
begin
    -- Set here: PostgreSQL 10 takes no default for a row variable.
    v_sub := dbsync._sub(subscription);
    select e.txid, e.row[1] as ddl into v_ev
    from dbsync.events e
    where e.group_id = v_sub.group_id and e.ev_id = skip_ddl.ev_id and e.op = 'X';
    if not found then
        raise exception 'skip_ddl: no execute_ddl event % is queued for group "%"', skip_ddl.ev_id,
                        (select g.name from dbsync.groups g where g.group_id = v_sub.group_id)
            using errcode = 'undefined_object',
                  hint = 'The event number is in the error in dbsync.status: "DDL queued by execute_ddl (event N) failed on the target".';
    end if;
    if exists (select from dbsync.ticks t
               where t.group_id = v_sub.group_id and t.tick_id = v_sub.position_tick
                 and pg_visible_in_snapshot(v_ev.txid, t.snap)) then
        raise exception 'skip_ddl: event % is already applied on the target of "%"', skip_ddl.ev_id, v_sub.name
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Only DDL that the subscription has not applied yet can be skipped.';
    end if;
    insert into dbsync.skipped_ddl (sub_id, ev_id, ddl) values (v_sub.sub_id, skip_ddl.ev_id, v_ev.ddl)
    on conflict do nothing;
    raise notice 'skip_ddl: "%" will not run event % on its target: %', v_sub.name, skip_ddl.ev_id, left(v_ev.ddl, 200);
end
$$;
