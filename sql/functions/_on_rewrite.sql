-- dbsync._on_rewrite() returns event_trigger
--   The rewrite event trigger (table_rewrite; installed by migrate with the DDL
--   event triggers). ALTER TABLE (or ALTER TYPE ... CASCADE of a typed table)
--   about to write every row of a replicated table or of a partition of one again,
--   outside dbsync.execute_ddl: ALTER COLUMN ... TYPE, whose USING each server
--   computes for itself (v * 2 keeps the type, so the target never fails on it;
--   reason 4), a column added whose values each server computes for itself (reason
--   2: a volatile default, identity, serial; dbsync._own_values_added; or one whose
--   default the same statement replaced, which no column explains), or a stored
--   generated column computed again (reason 2: SET EXPRESSION of PostgreSQL 17, or
--   one added; the target computes it with the expression it has). No row trigger fires for it, so the targets
--   would keep their rows as they were: the change is listed with the table to be
--   copied again once acknowledged (dbsync._unreplicated_ddl). Not for a change of
--   persistence (SET LOGGED/UNLOGGED, reason 1) or of access method (reason 8 from
--   PostgreSQL 15; SET WITHOUT OIDS before 12), which keep every value, nor for a
--   constant default added (a rewrite before PostgreSQL 11). Inside execute_ddl the
--   targets run the same DDL and dbsync._ddl_recopy copies what it rewrote. An
--   inheritance child that is replicated itself is rewritten with its parent: its
--   rewrite is seen here (the DDL event trigger sees only the parent). Reads only
--   catalogs: runs no code of the table's owner with dbsync's rights. Works in
--   replica mode as it is (ENABLE ALWAYS): it writes only dbsync.ddl_log, whose
--   foreign key, unchecked there, points at the group it read.
--   Parameters: none.
--   Returns: nothing (an event trigger).
--   Calls: dbsync._ddl_group, dbsync._domain_checked, dbsync._own_values_added, dbsync._server_has,
--     dbsync._unreplicated_ddl.
--     Tables touched: dbsync.tables (read).
create or replace function dbsync._on_rewrite() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_rel oid := pg_event_trigger_table_rewrite_oid();
    v_reason int := pg_event_trigger_table_rewrite_reason();
    r record;
begin
    if dbsync._ddl_group() is not null or (v_reason & 4 = 0 and v_reason & 2 = 0) then
        return;
    end if;
    for r in select t.table_id from dbsync.tables t
             where t.removed_at is null
               and (t.relid = v_rel or t.relid in (select a.relid from pg_partition_ancestors(v_rel) a))
             order by t.table_id loop
        -- (A generated column's expression written by this transaction: age()
        -- counts from its xid.)
        if v_reason & 4 <> 0 or dbsync._own_values_added(v_rel, true)
           or exists (select from pg_attribute a join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                      where a.attrelid = v_rel and a.attgenerated = 's' and age(d.xmin) <= 0)
           -- A column's values computed row by row (from PostgreSQL 11 only for a
           -- volatile default, an identity, a generated column, or a domain's CHECK),
           -- and no column of this transaction says why: its default was replaced
           -- in the same statement (add column c int default random(), alter column
           -- c set default 5), and the rows hold what the first one gave.
           or (v_reason & 2 <> 0 and dbsync._server_has('missing_values')
               and not exists (select from pg_attribute a
                               where a.attrelid = v_rel and a.attnum > 0 and not a.attisdropped and age(a.xmin) <= 0
                                 and dbsync._domain_checked(a.atttypid))) then
            perform dbsync._unreplicated_ddl(r.table_id, tg_tag, true);
        end if;
    end loop;
end
$$;
