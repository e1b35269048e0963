-- dbsync._install_capture(p_table_id int) returns int
--   (Re)generates the capture trigger function dbsync.capture_<table_id>() for the
--   table's current key and (re)creates its triggers. Records a new shape when the
--   key (its columns or their types) changed. Returns the shape id in use.
--
--   Capture records which rows changed, not their values: one 'K' event per key a
--   statement touched (for an UPDATE the old and the new keys, once each), a 'T'
--   event per TRUNCATE. The sidecar reads the rows themselves from the table at the
--   batch's snapshot, so the order in which triggers fire does not matter.
--
--   Plain tables get statement-level triggers with transition tables: one INSERT
--   into the queue per statement, whatever its row count. Partitioned tables get
--   row-level triggers on the parent, which PostgreSQL clones to every present and
--   future partition (statement triggers on the parent would miss statements aimed
--   at a partition), plus a BEFORE TRUNCATE trigger on each partition that queues
--   its keys. PostgreSQL 10 has no row triggers on a partitioned table: there
--   _sync_partitions puts the row trigger on each leaf partition itself.
--
--   Key values are written as text by their types' output functions (dbsync._text_of:
--   never a cast, which a table owner could define); the output settings are pinned
--   only for key types whose text depends on them.
--   The queue slot and the NOTIFY flag are read from the group's state sequence,
--   which is not MVCC: a REPEATABLE READ writer's snapshot may predate a slot switch.
--   A session that sets dbsync.notify = off never notifies: a transaction that
--   notified cannot PREPARE TRANSACTION, so applications using two-phase commit set
--   it (ALTER ROLE app SET dbsync.notify = off); the sidecar then finds their
--   changes by its poll.
create or replace function dbsync._install_capture(p_table_id int) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    v_keys text[];
    v_attnums int2[];
    v_types oid[];
    v_shape int;
    v_fn text := format('dbsync.%I', 'capture_' || p_table_id);
    v_seq text;
    v_state text;
    v_new text;
    v_old text;
    v_pin text;
    v_body text;
begin
    -- The table may have been renamed, or its key changed, since the last call.
    update dbsync.tables tb
    set schema_name = n.nspname, table_name = c.relname
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where tb.table_id = p_table_id and c.oid = tb.relid
      and (tb.schema_name, tb.table_name) is distinct from (n.nspname::text, c.relname::text);
    update dbsync.tables tb
    set key_columns = dbsync._key_columns(tb.relid::regclass, null)
    where tb.table_id = p_table_id
      and exists (select from pg_index i where i.indrelid = tb.relid and i.indisprimary)
      and (tb.key_is_pk
           or exists (select from unnest(tb.key_columns) k
                      where not exists (select from pg_attribute a where a.attrelid = tb.relid
                                        and a.attname = k and not a.attisdropped)));
    select * into t from dbsync.tables where table_id = p_table_id;
    v_seq := format('dbsync.%I', 'events_seq_' || t.group_id);
    v_state := format('dbsync.%I', 'group_state_' || t.group_id);

    select array_agg(a.attname::text order by u.o), array_agg(a.attnum order by u.o),
           array_agg(a.atttypid order by u.o)
      into v_keys, v_attnums, v_types
    from unnest(t.key_columns) with ordinality as u(k, o)
    join pg_attribute a on a.attrelid = t.relid and a.attname = u.k and not a.attisdropped;
    if cardinality(v_keys) is distinct from cardinality(t.key_columns) then
        raise exception 'dbsync: key column(s) % of % no longer exist', t.key_columns, t.relid::regclass
            using errcode = 'invalid_table_definition',
                  hint = 'Give the table a primary key (or remove it from dbsync with dbsync.remove_table).';
    end if;

    select s.shape_id into v_shape from dbsync.shapes s
    where s.table_id = p_table_id and s.key_attnums = v_attnums and s.key_types = v_types
      and s.columns = v_keys
      and s.shape_id = (select max(shape_id) from dbsync.shapes where table_id = p_table_id);
    if v_shape is null then
        insert into dbsync.shapes (table_id, columns, types, key_positions, key_attnums, key_types)
        values (p_table_id, v_keys, (select array_agg(format_type(x, null) order by o)
                                     from unnest(v_types) with ordinality u(x, o)),
                (select array_agg(o::int order by o) from generate_series(1, cardinality(v_keys)) o),
                v_attnums, v_types)
        returning shape_id into v_shape;
    end if;

    select 'array[' || string_agg(dbsync._text_of(u.ty, format('n.%I', u.k)), ', ' order by u.o) || ']',
           'array[' || string_agg(dbsync._text_of(u.ty, format('o.%I', u.k)), ', ' order by u.o) || ']'
      into v_new, v_old
    from unnest(v_keys, v_types) with ordinality as u(k, ty, o);

    -- The settings check, inlined: well under a microsecond, and only for key types
    -- whose text depends on settings.
    v_pin := case when dbsync._needs_pinned_output(v_types) then
                 'pg_catalog.current_setting(''datestyle'') not like ''ISO%'' '
                 'or pg_catalog.current_setting(''intervalstyle'') <> ''postgres'' '
                 'or pg_catalog.current_setting(''extra_float_digits'')::pg_catalog.int4 < 1 '
                 'or pg_catalog.current_setting(''lc_monetary'') <> ''C'''
                 || case when dbsync._compared_as_text(v_types) then
                        ' or pg_catalog.current_setting(''timezone'') <> ''UTC'' '
                        'or pg_catalog.current_setting(''bytea_output'') <> ''hex''' else '' end
             else 'false' end;

    if not t.partitioned then
        v_body := format($f$
declare
    v_state int8 := pg_catalog.pg_sequence_last_value(%2$L::pg_catalog.regclass);
    v_slot int2 := (v_state %% 4)::int2;
    saved text[];
begin
    if %7$s then
        saved := dbsync._pin_output();
    end if;
    if TG_OP = 'INSERT' then
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, v_slot, pg_catalog.nextval(%3$L::pg_catalog.regclass), %4$s, 'K', %5$s from dbsync_new n;
    elsif TG_OP = 'UPDATE' then
        -- Old and new keys, each once: a changed key leaves the old one to delete.
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, v_slot, pg_catalog.nextval(%3$L::pg_catalog.regclass), %4$s, 'K', x.k
        from (select %5$s as k from dbsync_new n union select %6$s from dbsync_old o) x;
    elsif TG_OP = 'DELETE' then
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, v_slot, pg_catalog.nextval(%3$L::pg_catalog.regclass), %4$s, 'K', %6$s from dbsync_old o;
    else
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        values (%1$s, v_slot, pg_catalog.nextval(%3$L::pg_catalog.regclass), %4$s, 'T', null);
    end if;
    if saved is not null then
        perform dbsync._restore_output(saved);
    end if;
    if v_state >= 4 and pg_catalog.current_setting('dbsync.notify', true) is distinct from 'off' then
        perform pg_catalog.pg_notify('dbsync', '%1$s');
    end if;
    return null;
end
$f$, t.group_id, v_state, v_seq, v_shape, v_new, v_old, v_pin);
    else
        v_body := format($f$
declare
    v_state int8 := pg_catalog.pg_sequence_last_value(%2$L::pg_catalog.regclass);
    v_slot int2 := (v_state %% 4)::int2;
    saved text[];
    v_new text[];
    v_old text[];
begin
    if %8$s then
        saved := dbsync._pin_output();
    end if;
    if TG_OP = 'TRUNCATE' then
        -- A partition is being truncated: its rows leave the table.
        perform dbsync._queue_rows(%7$s, %4$s, TG_RELID::pg_catalog.regclass);
    else
        if TG_OP in ('INSERT', 'UPDATE') then
            select %5$s into v_new from (select NEW.*) n;
        end if;
        if TG_OP in ('UPDATE', 'DELETE') then
            select %6$s into v_old from (select OLD.*) o;
        end if;
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, v_slot, pg_catalog.nextval(%3$L::pg_catalog.regclass), %4$s, 'K', k
        from (values (v_new), (case when v_old is distinct from v_new then v_old end)) x(k)
        where k is not null;
    end if;
    if saved is not null then
        perform dbsync._restore_output(saved);
    end if;
    if v_state >= 4 and pg_catalog.current_setting('dbsync.notify', true) is distinct from 'off' then
        perform pg_catalog.pg_notify('dbsync', '%1$s');
    end if;
    return null;
end
$f$, t.group_id, v_state, v_seq, v_shape, v_new, v_old, p_table_id, v_pin);
    end if;

    execute format($f$create or replace function %s() returns trigger
        language plpgsql security definer
        set search_path = pg_catalog, pg_temp
        as %L$f$, v_fn, v_body);
    execute format('revoke all on function %s() from public', v_fn);
    if t.partitioned then
        -- Creating or attaching a partition clones the row trigger, and PostgreSQL
        -- checks EXECUTE on its function for the role doing it: the table's owner.
        execute format('grant execute on function %s() to %I', v_fn,
                       (select pg_get_userbyid(c.relowner) from pg_class c where c.oid = t.relid));
    end if;

    perform dbsync._drop_capture_triggers(t.relid);
    if not t.partitioned then
        execute format('create trigger dbsync_capture_ins after insert on %s referencing new table as dbsync_new for each statement execute function %s()', t.relid::regclass, v_fn);
        execute format('create trigger dbsync_capture_upd after update on %s referencing old table as dbsync_old new table as dbsync_new for each statement execute function %s()', t.relid::regclass, v_fn);
        execute format('create trigger dbsync_capture_del after delete on %s referencing old table as dbsync_old for each statement execute function %s()', t.relid::regclass, v_fn);
        execute format('create trigger dbsync_capture_trunc after truncate on %s for each statement execute function %s()', t.relid::regclass, v_fn);
    else
        if dbsync._server_has('partitioned_row_trigger') then
            execute format('create trigger dbsync_capture_row after insert or update or delete on %s for each row execute function %s()', t.relid::regclass, v_fn);
        end if;
        -- TRUNCATE of the whole table is one event; of a single partition, its keys.
        -- The function first: the trigger below names it.
        execute format($f$create or replace function dbsync.%I() returns trigger
            language plpgsql security definer set search_path = pg_catalog, pg_temp as $b$
            declare
                v_state int8 := pg_catalog.pg_sequence_last_value(%L::pg_catalog.regclass);
            begin
                insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
                values (%s, (v_state %% 4)::int2, pg_catalog.nextval(%L::pg_catalog.regclass), %s, 'T', null);
                if v_state >= 4 and pg_catalog.current_setting('dbsync.notify', true) is distinct from 'off' then
                    perform pg_catalog.pg_notify('dbsync', '%s');
                end if;
                return null;
            end $b$ $f$, 'capture_trunc_' || p_table_id, v_state, t.group_id, v_seq, v_shape, t.group_id);
        execute format('revoke all on function dbsync.%I() from public', 'capture_trunc_' || p_table_id);
        execute format('create trigger dbsync_capture_trunc after truncate on %s for each statement execute function dbsync.%I()', t.relid::regclass, 'capture_trunc_' || p_table_id);
        perform dbsync._sync_partitions(p_table_id, false);
    end if;
    return v_shape;
end
$$;
