-- dbsync._drop_capture_functions(p_table_id int) returns void
--   Drops the capture trigger functions _install_capture generates for the table
--   (capture_, capture_old_, capture_key_, capture_row_, capture_trunc_<table_id>, and the
--   key_changed_<table_id> of capture_key_'s trigger), those that
--   exist (no NOTICE about the others). Their triggers must be gone first
--   (_drop_capture_triggers).
--   Parameters: p_table_id.
--   Returns: nothing.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._drop_capture_functions(p_table_id int) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_fn regprocedure;
begin
    for v_fn in select f from unnest(array['capture_', 'capture_old_', 'capture_key_', 'capture_row_', 'capture_trunc_']) p,
                     to_regprocedure(format('dbsync.%I()', p || p_table_id)) f
                where f is not null
                union all
                select f from to_regprocedure(format('dbsync.%I(anyelement, anyelement)', 'key_changed_' || p_table_id)) f
                where f is not null loop
        execute format('drop function %s', v_fn);
    end loop;
end
$$;
