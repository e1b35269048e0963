-- dbsync._server_has(p_feature text) returns boolean
--   Whether this server has a feature that dbsync uses in another way on older
--   majors. The version switches that are only other names for the same thing are
--   rewrites applied by migrate (src/compat.ts); this is for the ones that change
--   what the code does:
--     partitioned_index: an index on a partitioned table, made on each partition
--       by PostgreSQL (11+; before, dbsync indexes each queue slot itself)
--     partitioned_row_trigger: a row trigger on a partitioned table, cloned by
--       PostgreSQL to every partition (11+; before, dbsync puts one on each leaf)
--     partitioned_unique: a primary key or unique index on a partitioned table
--       (11+; before, a key is unique when every leaf has a unique index on it
--       and it includes the partition keys)
--     trigger_keeps_class_row: CREATE TRIGGER leaves its table's pg_class row
--       alone when relhastriggers is already set (11+; before, dbsync._ddl_effects
--       tells that write from a change of the table by the lock taken)
--     missing_values: a column added with a default that is not volatile keeps it
--       as a missing value, and rewrites nothing (11+; before, any default
--       rewrites the table)
--     enum_add_in_transaction: ALTER TYPE ... ADD VALUE in a transaction block or
--       a function (12+; before, execute_ddl cannot run it: it says so, with a hint)
--   Errors: an unknown feature.
--   Parameters: p_feature.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._server_has(p_feature text) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_since int := case p_feature
                       when 'partitioned_index' then 110000
                       when 'partitioned_row_trigger' then 110000
                       when 'partitioned_unique' then 110000
                       when 'trigger_keeps_class_row' then 110000
                       when 'missing_values' then 110000
                       when 'enum_add_in_transaction' then 120000
                   end;
begin
    if v_since is null then
        raise exception 'dbsync._server_has: unknown feature "%"', p_feature using errcode = 'invalid_parameter_value';
    end if;
    return current_setting('server_version_num')::int >= v_since;
end
$$;
