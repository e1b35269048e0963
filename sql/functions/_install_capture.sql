-- dbsync._install_capture(p_table_id int) returns int
--   (Re)generates the capture trigger function dbsync.capture_<table_id>() for the
--   table's current columns and (re)creates its triggers. Records a new shape when
--   the captured columns changed. Returns the shape id in use.
--
--   Plain tables get statement-level triggers with transition tables: one INSERT
--   into the queue per statement, whatever its row count. For an UPDATE, the old
--   rows whose key no longer exists are queued as deletes and every new row as its
--   new state; that handles key changes without pairing old and new rows.
--   Partitioned tables get row-level triggers on the parent, which PostgreSQL clones
--   to every present and future partition (statement triggers on the parent would
--   miss statements aimed at a partition), plus a BEFORE TRUNCATE trigger on each
--   partition that queues its rows as deletes.
--
--   Values are the columns' output text under pinned settings (DateStyle, TimeZone,
--   extra_float_digits ...), so text round-trips exactly: SQL NULL is an array NULL,
--   JSON null is 'null', json keeps its text, arrays keep their bounds, -0/NaN/Infinity
--   survive. Generated columns are not captured: targets compute their own.
create or replace function dbsync._install_capture(p_table_id int) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    v_cols text[];
    v_types text[];
    v_keypos int[];
    v_shape int;
    v_fn text := format('dbsync.%I', 'capture_' || p_table_id);
    v_seq text := format('dbsync.%I', 'events_seq_' || (select group_id from dbsync.tables where table_id = p_table_id));
    v_new text;
    v_old text;
    v_keymatch text;
    v_body text;
    v_pin_check text;
begin
    -- The table may have been renamed, or its key columns renamed, since the last call.
    update dbsync.tables tb
    set schema_name = n.nspname, table_name = c.relname
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where tb.table_id = p_table_id and c.oid = tb.relid
      and (tb.schema_name, tb.table_name) is distinct from (n.nspname::text, c.relname::text);
    update dbsync.tables tb
    set key_columns = dbsync._key_columns(tb.relid::regclass, null)
    where tb.table_id = p_table_id
      and exists (select from unnest(tb.key_columns) k
                  where not exists (select from pg_attribute a where a.attrelid = tb.relid
                                    and a.attname = k and not a.attisdropped))
      and exists (select from pg_index i where i.indrelid = tb.relid and i.indisprimary);
    select * into t from dbsync.tables where table_id = p_table_id;

    select array_agg(a.attname::text order by a.attnum),
           array_agg(format_type(a.atttypid, a.atttypmod) order by a.attnum)
      into v_cols, v_types
    from pg_attribute a
    where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped and a.attgenerated = '';

    select array_agg(array_position(v_cols, k) order by o) into v_keypos
    from unnest(t.key_columns) with ordinality as u(k, o);

    select s.shape_id into v_shape from dbsync.shapes s
    where s.table_id = p_table_id and s.columns = v_cols and s.types = v_types
      and s.shape_id = (select max(shape_id) from dbsync.shapes where table_id = p_table_id);
    if v_shape is null then
        insert into dbsync.shapes (table_id, columns, types, key_positions)
        values (p_table_id, v_cols, v_types, v_keypos) returning shape_id into v_shape;
    end if;

    select 'array[' || string_agg(format('n.%I::text', c), ', ' order by o) || ']',
           'array[' || string_agg(format('o.%I::text', c), ', ' order by o) || ']'
      into v_new, v_old
    from unnest(v_cols) with ordinality as u(c, o);
    select string_agg(format('n.%1$I = o.%1$I', k), ' and ') into v_keymatch
    from unnest(t.key_columns) as k;

    -- The settings check, inlined in the trigger: it costs well under a microsecond.
    v_pin_check := 'current_setting(''datestyle'') not like ''ISO%%'' '
                   'or current_setting(''intervalstyle'') <> ''postgres'' '
                   'or current_setting(''extra_float_digits'')::int < 1';
    if dbsync._uses_money((select array_agg(a.atttypid) from pg_attribute a
                           where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped)) then
        v_pin_check := v_pin_check || ' or current_setting(''lc_monetary'') <> ''C''';
    end if;

    if not t.partitioned then
        v_body := format($f$
declare
    g record;
    saved text[];
begin
    if %7$s then
        saved := dbsync._pin_output();
    end if;
    select cur_slot, sleeping into g from dbsync.groups where group_id = %1$s;
    if TG_OP = 'INSERT' then
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, g.cur_slot, nextval('%2$s'), %3$s, 'U', %4$s from dbsync_new n;
    elsif TG_OP = 'UPDATE' then
        -- One INSERT: no key is both gone and new within one statement.
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, g.cur_slot, nextval('%2$s'), %3$s, x.op, x.row
        from (select 'D'::"char" as op, %5$s as row from dbsync_old o
              where not exists (select from dbsync_new n where %6$s)
              union all
              select 'U', %4$s from dbsync_new n) x;
    elsif TG_OP = 'DELETE' then
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, g.cur_slot, nextval('%2$s'), %3$s, 'D', %5$s from dbsync_old o;
    else
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        values (%1$s, g.cur_slot, nextval('%2$s'), %3$s, 'T', null);
    end if;
    if saved is not null then
        perform dbsync._restore_output(saved);
    end if;
    if g.sleeping then
        perform pg_notify('dbsync', '%1$s');
    end if;
    return null;
end
$f$, t.group_id, v_seq, v_shape, v_new, v_old, v_keymatch, v_pin_check);
    else
        v_body := format($f$
declare
    g record;
    saved text[];
begin
    if %8$s then
        saved := dbsync._pin_output();
    end if;
    select cur_slot, sleeping into g from dbsync.groups where group_id = %1$s;
    if TG_OP = 'TRUNCATE' then
        -- A partition is being truncated: its rows leave the table one by one.
        perform dbsync._queue_rows(%7$s, %3$s, TG_RELID::regclass, 'D');
    else
        if TG_OP in ('UPDATE', 'DELETE') then
            insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
            select %1$s, g.cur_slot, nextval('%2$s'), %3$s, 'D', %5$s from (select OLD.*) o;
        end if;
        if TG_OP in ('INSERT', 'UPDATE') then
            insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
            select %1$s, g.cur_slot, nextval('%2$s'), %3$s, 'U', %4$s from (select NEW.*) n;
        end if;
    end if;
    if saved is not null then
        perform dbsync._restore_output(saved);
    end if;
    if g.sleeping then
        perform pg_notify('dbsync', '%1$s');
    end if;
    return null;
end
$f$, t.group_id, v_seq, v_shape, v_new, v_old, null, p_table_id, v_pin_check);
    end if;

    -- Output settings are pinned inside the body when needed (see _pin_output).
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
        execute format('create trigger dbsync_capture_row after insert or update or delete on %s for each row execute function %s()', t.relid::regclass, v_fn);
        -- TRUNCATE of the whole table is one event; of a single partition, its rows.
        -- The function first: the trigger below names it.
        execute format($f$create or replace function dbsync.%I() returns trigger
            language plpgsql security definer set search_path = pg_catalog, pg_temp as $b$
            declare
                g record;
            begin
                select cur_slot, sleeping into g from dbsync.groups where group_id = %s;
                insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
                values (%s, g.cur_slot, nextval('%s'), %s, 'T', null);
                if g.sleeping then
                    perform pg_notify('dbsync', '%s');
                end if;
                return null;
            end $b$ $f$, 'capture_trunc_' || p_table_id, t.group_id, t.group_id, v_seq, v_shape, t.group_id);
        execute format('revoke all on function dbsync.%I() from public', 'capture_trunc_' || p_table_id);
        execute format('create trigger dbsync_capture_trunc after truncate on %s for each statement execute function dbsync.%I()', t.relid::regclass, 'capture_trunc_' || p_table_id);
        perform dbsync._sync_partitions(p_table_id, false);
    end if;
    return v_shape;
end
$$;
