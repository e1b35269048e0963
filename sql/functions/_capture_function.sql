-- dbsync._capture_function(p_fn text, p_group_id int, p_pin text, p_body text) returns text
--   The CREATE FUNCTION of one capture trigger function p_fn (see _install_capture):
--   SECURITY DEFINER, without SET search_path, so every name in p_body and here is
--   qualified. Reads the group's state (slot and NOTIFY flag) into v_state, pins the
--   output settings when p_pin (an expression) says so, runs p_body, and notifies a
--   sleeping sidecar where that cannot make a PREPARE TRANSACTION fail
--   (dbsync._capture_notifies). Each test is a PL/pgSQL expression set up once per
--   function and transaction, so the common path has as few as can be (whether to
--   notify is asked only while the sidecar sleeps). The table's columns are in scope in
--   p_body's statements (transition tables): a column named as a variable here
--   (v_state) must not make them ambiguous, hence use_variable.
--   Parameters: p_fn, p_group_id, p_pin, p_body.
--   Returns: text.
--   Calls: nothing (the generated function calls dbsync._capture_notifies). Tables
--   touched: none.
create or replace function dbsync._capture_function(p_fn text, p_group_id int, p_pin text, p_body text)
returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select format('create or replace function %s() returns trigger language plpgsql security definer as %L', p_fn, format($f$
#variable_conflict use_variable
declare
    v_state pg_catalog.int8 := pg_catalog.pg_sequence_last_value(%L::pg_catalog.regclass);%s
begin%s
    %s%s
    if v_state operator(pg_catalog.>=) 4 then
        if dbsync._capture_notifies() then
            perform pg_catalog.pg_notify('dbsync', %L);
        end if;
    end if;
    return null;
end
$f$,
        format('dbsync.%I', 'group_state_' || p_group_id),
        case when p_pin is not null then E'\n    v_saved pg_catalog.text[];' else '' end,
        case when p_pin is not null then format(E'\n    if %s then\n        v_saved := dbsync._pin_output();\n    end if;', p_pin) else '' end,
        p_body,
        case when p_pin is not null then E'\n    if v_saved is not null then\n        perform dbsync._restore_output(v_saved);\n    end if;' else '' end,
        p_group_id::text))
$$;
