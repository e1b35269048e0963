-- Its result had no called, next_value, increment before: a new row type needs the old one gone.
do $$
begin
    if exists (select from pg_catalog.pg_proc p
               where p.oid = pg_catalog.to_regprocedure('dbsync.sidecar_sequences(int)')
                 and not 'called' = any (p.proargnames)) then
        drop function dbsync.sidecar_sequences(int);
    end if;
end
$$;

-- dbsync.sidecar_sequences(p_group_id int)
--     returns table(seq_id int, name text, value text, called boolean, next_value text, increment text)
--   The sequences a group carries, with their state on the source, for the sidecar
--   to set on the target: setval(value, called) when the target's increment is the
--   source's, else setval(next_value, false), so that the target's next nextval gives
--   what the source's would. Read from the sequence itself: pg_sequence_last_value()
--   is NULL while is_called is false (setval(s, n, false), ALTER SEQUENCE RESTART,
--   TRUNCATE ... RESTART IDENTITY), which left those states on the source only.
--   Parameters: p_group_id, the group.
--   Returns: seq_id, name (schema-qualified, quoted, as it is named now), value and called (the
--     sequence's last_value and is_called, but a cycling one at its end is at the
--     value it wraps to, not called), next_value (what nextval gives; NULL when it would
--     fail: at the end, without CYCLE), increment. Numbers as text: int8 does not fit
--     a JavaScript number.
--   Calls: pg_sequence_last_value. Tables touched: dbsync.sequences, pg_sequence, pg_class, pg_namespace (read), and each
--   carried sequence (read: the sidecar role has SELECT on them).
--   SECURITY INVOKER, as dbsync.sidecar_subscription; the SECURITY DEFINER
--   dbsync._sequences_behind and dbsync._sequence_goal call it as the owner.
create or replace function dbsync.sidecar_sequences(p_group_id int)
returns table (seq_id int, name text, value text, called boolean, next_value text, increment text)
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    q record;
    v_last bigint;
    v_called boolean;
    v_next numeric;
begin
    for q in
        -- Its name now, as batch_plan names tables, not the one add_sequence kept: a
        -- sequence renamed by execute_ddl is renamed on the target too, and the batch
        -- that carries that DDL set the old name there, failed and was retried forever.
        select x.seq_id, format('%I.%I', n.nspname, c.relname) as name, x.relid::regclass as rel,
               p.seqincrement, p.seqmin, p.seqmax, p.seqcycle
        from dbsync.sequences x
        join pg_sequence p on p.seqrelid = x.relid
        join pg_class c on c.oid = x.relid
        join pg_namespace n on n.oid = c.relnamespace
        where x.group_id = p_group_id
        order by x.seq_id
    loop
        -- NULL only while is_called is false: then the sequence itself says where it
        -- is (a dynamic query costs about 150 us, and the poll calls this).
        v_last := pg_sequence_last_value(q.rel);
        v_called := v_last is not null;
        if not v_called then
            execute format('select last_value, is_called from %s', q.rel) into v_last, v_called;
        end if;
        v_next := case when v_called then v_last::numeric + q.seqincrement else v_last end;
        if v_next > q.seqmax or v_next < q.seqmin then
            if q.seqcycle then
                v_last := case when q.seqincrement > 0 then q.seqmin else q.seqmax end;
                v_called := false;
                v_next := v_last;
            else
                v_next := null;
            end if;
        end if;
        seq_id := q.seq_id;
        name := q.name;
        value := v_last::text;
        called := v_called;
        next_value := v_next::text;
        increment := q.seqincrement::text;
        return next;
    end loop;
end
$$;
