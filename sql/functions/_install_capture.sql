-- dbsync._install_capture(p_table_id int) returns int
--   (Re)generates the capture trigger functions of the table for its current key,
--   dbsync.capture_<table_id>() and its siblings capture_old_, capture_key_ and
--   capture_trunc_<table_id>(), and (re)creates its triggers. Records a new shape
--   when the key (its columns or their types) changed, and the capture version in
--   dbsync.tables (see _capture_version). Returns the shape id in use.
--
--   Capture records which rows changed, not their values: one 'K' event per key a
--   statement touched (for an UPDATE the old and the new keys; statement triggers
--   queue them a thousand to an 'M' event, see _capture_insert), a 'T' event per
--   TRUNCATE. The sidecar reads the rows themselves from the table at the batch's
--   snapshot, so the order in which triggers fire does not matter, nor a key queued
--   twice.
--
--   Plain tables get statement-level triggers with transition tables: one INSERT
--   into the queue per statement, of one queue row per 1,000 keys. INSERT and UPDATE queue
--   the keys of the new rows (capture_), DELETE those of the old rows (capture_old_);
--   a row trigger WHEN the row's key changed (its text differs, decided in C before
--   any function is called) queues that row's old key (capture_key_). So an UPDATE
--   keeps one transition table instead of two, and a bulk UPDATE needs no union of
--   old and new keys (bench/capture-profile.ts measures both). One function per
--   trigger: a test of TG_OP would cost every call an expression.
--   Row-level triggers instead for partitioned tables, on the parent, which
--   PostgreSQL clones to every present and future partition (statement triggers on
--   the parent would miss statements aimed at a partition), plus a BEFORE TRUNCATE
--   trigger on each partition that queues its keys; PostgreSQL 10 has no row
--   triggers on a partitioned table: there _sync_partitions puts the row trigger on
--   each leaf partition itself. Row-level too for inheritance children: a statement
--   on the parent changes their rows without firing their statement triggers.
--
--   Capture triggers fire ALWAYS, also in sessions with session_replication_role =
--   replica (a bulk load that skips foreign keys, a native logical replication or
--   another replicator applying into this database): their changes would otherwise
--   never reach the targets. PostgreSQL's logical replication apply worker (and
--   pglogical's) fires row triggers only, never statement triggers: a plain table
--   also gets the row trigger of partitions and children (capture_row_<table_id>),
--   firing in replica mode only (dbsync_capture_replica; with its BEFORE STATEMENT
--   mark and unmark, the capture triggers that are not ALWAYS: _capture_triggers), and only
--   WHEN the row's statement fired no statement trigger: other replica sessions'
--   statements mark themselves first (dbsync_capture_replica_mark), and their rows
--   are left to the statement triggers (_statement_mark).
--
--   The trigger function runs SECURITY DEFINER without SET search_path (a SET
--   clause costs every captured statement a GUC save and restore): it names
--   nothing through the search_path. Every function, table, sequence and type is
--   schema-qualified, every operator is OPERATOR(pg_catalog.x), no IS DISTINCT FROM,
--   LIKE or CASE (which look up = or ~~ by name), no cast but between pg_catalog
--   types (whose casts only a superuser can create) and no name of a type a table
--   owner could rename (_text_of); the transition tables are named by the trigger,
--   and the parser looks such names up before any table or type of the search_path
--   (pg_temp included). test/capture-search-path.test.ts runs capture under a
--   hostile search_path and temporary objects. Keys whose text names objects by
--   the search_path (reg* types: _prints_by_search_path) keep SET search_path, so
--   that the recorded text does not depend on the writer's.
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
--   Parameters: p_table_id.
--   Returns: int.
--   Calls: dbsync._capture_function, dbsync._capture_insert, dbsync._capture_version,
--     dbsync._compared_as_text, dbsync._drop_capture_functions,
--     dbsync._drop_capture_triggers, dbsync._enable_always, dbsync._follow_name, dbsync._key_columns,
--     dbsync._key_text, dbsync._needs_pinned_output, dbsync._one_text_per_value,
--     dbsync._prints_by_search_path, dbsync._server_has, dbsync._statement_mark,
--     dbsync._sync_partitions, dbsync._text_of; its triggers call
--     dbsync._mark_replica_statement. Tables touched: dbsync.shapes, dbsync.tables (written); triggers
--     on the replicated table (dynamic).
create or replace function dbsync._install_capture(p_table_id int) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    v_keys text[];
    v_attnums int2[];
    v_types oid[];
    v_colls oid[];
    v_shape int;
    v_fn text := format('dbsync.%I', 'capture_' || p_table_id);
    v_pin text;
    v_rows boolean;
    v_changed text;
    v_new text;
    v_old text;
    v_fn_each text;
    v_row_fn text := format('dbsync.%I', 'capture_row_' || p_table_id);
    v_row_body text;
begin
    -- The table may have been renamed, or its key changed, since the last call.
    perform dbsync._follow_name(p_table_id);
    update dbsync.tables tb
    set key_columns = dbsync._key_columns(tb.relid::regclass, null)
    where tb.table_id = p_table_id
      and exists (select from pg_index i where i.indrelid = tb.relid and i.indisprimary)
      and (tb.key_is_pk
           or exists (select from unnest(tb.key_columns) k
                      where not exists (select from pg_attribute a where a.attrelid = tb.relid
                                        and a.attname = k and not a.attisdropped)));
    select * into t from dbsync.tables where table_id = p_table_id;
    v_rows := t.partitioned or exists (select from pg_inherits i where i.inhrelid = t.relid);

    select array_agg(a.attname::text order by u.o), array_agg(a.attnum order by u.o),
           array_agg(a.atttypid order by u.o), array_agg(a.attcollation order by u.o)
      into v_keys, v_attnums, v_types, v_colls
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

    -- The settings check, inlined: well under a microsecond, and only for key types
    -- whose text depends on settings.
    if dbsync._needs_pinned_output(v_types) then
        v_pin := 'pg_catalog.current_setting(''datestyle'') operator(pg_catalog.!~~) ''ISO%'' '
                 'or pg_catalog.current_setting(''intervalstyle'') operator(pg_catalog.<>) ''postgres'' '
                 'or pg_catalog.current_setting(''extra_float_digits'')::pg_catalog.int4 operator(pg_catalog.<) 1 '
                 'or pg_catalog.current_setting(''lc_monetary'') operator(pg_catalog.<>) ''C'''
                 || case when dbsync._compared_as_text(v_types) then
                        ' or pg_catalog.current_setting(''timezone'') operator(pg_catalog.<>) ''UTC'' '
                        'or pg_catalog.current_setting(''bytea_output'') operator(pg_catalog.<>) ''hex''' else '' end;
    end if;

    -- Triggers first: the functions of another kind of capture go (a plain table
    -- that became an inheritance child).
    perform dbsync._drop_capture_triggers(t.relid);
    perform dbsync._drop_capture_functions(p_table_id);
    v_new := dbsync._key_text(v_keys, v_types, 'NEW');
    v_old := dbsync._key_text(v_keys, v_types, 'OLD');
    -- Every row change of a partition or an inheritance child, or of a plain table
    -- in replica mode; the BEFORE TRUNCATE trigger of a partition (_sync_partitions)
    -- queues its rows' keys.
    v_row_body := format($r$if TG_OP operator(pg_catalog.=) 'INSERT' then
        %s
    elsif TG_OP operator(pg_catalog.=) 'UPDATE' then
        %s
        if %s operator(pg_catalog.<>) %s then
            %s
        end if;
    elsif TG_OP operator(pg_catalog.=) 'DELETE' then
        %s
    else
        perform dbsync._queue_rows(%s, %s, TG_RELID::pg_catalog.regclass);
    end if;$r$,
        dbsync._capture_insert(t.group_id, v_shape, 'K', v_new, ''),
        dbsync._capture_insert(t.group_id, v_shape, 'K', v_new, ''),
        v_old, v_new,
        dbsync._capture_insert(t.group_id, v_shape, 'K', v_old, ''),
        dbsync._capture_insert(t.group_id, v_shape, 'K', v_old, ''),
        p_table_id, v_shape);
    if not v_rows then
        execute dbsync._capture_function(v_fn, t.group_id, v_pin,
            dbsync._capture_insert(t.group_id, v_shape, 'K', dbsync._key_text(v_keys, v_types, 'n'), 'from dbsync_new n'));
        execute dbsync._capture_function(format('dbsync.%I', 'capture_old_' || p_table_id), t.group_id, v_pin,
            dbsync._capture_insert(t.group_id, v_shape, 'K', dbsync._key_text(v_keys, v_types, 'o'), 'from dbsync_old o'));
        -- Fired per row only by an UPDATE that changed the row's key.
        execute dbsync._capture_function(format('dbsync.%I', 'capture_key_' || p_table_id), t.group_id, v_pin,
            dbsync._capture_insert(t.group_id, v_shape, 'K', v_old, ''));
        execute dbsync._capture_function(v_row_fn, t.group_id, v_pin, v_row_body);
    else
        execute dbsync._capture_function(v_fn, t.group_id, v_pin, v_row_body);
    end if;
    execute dbsync._capture_function(format('dbsync.%I', 'capture_trunc_' || p_table_id), t.group_id, null,
                                     dbsync._capture_insert(t.group_id, v_shape, 'T', null, ''));
    for v_fn_each in select unnest(array[v_fn, format('dbsync.%I', 'capture_trunc_' || p_table_id)]
                                   || case when v_rows then '{}'::text[]
                                      else array[format('dbsync.%I', 'capture_old_' || p_table_id),
                                                 format('dbsync.%I', 'capture_key_' || p_table_id), v_row_fn] end) loop
        execute format('revoke all on function %s() from public', v_fn_each);
        if dbsync._prints_by_search_path(v_types) then
            execute format('alter function %s() set search_path = pg_catalog, pg_temp', v_fn_each);
        end if;
    end loop;
    if t.partitioned then
        -- Creating or attaching a partition clones the row trigger, and PostgreSQL
        -- checks EXECUTE on its function for the role doing it: the table's owner.
        execute format('grant execute on function %s() to %I', v_fn,
                       (select pg_get_userbyid(c.relowner) from pg_class c where c.oid = t.relid));
    end if;

    if not v_rows then
        execute format('create trigger dbsync_capture_ins after insert on %s referencing new table as dbsync_new for each statement execute function %s()', t.relid::regclass, v_fn);
        execute format('create trigger dbsync_capture_upd after update on %s referencing new table as dbsync_new for each statement execute function %s()', t.relid::regclass, v_fn);
        -- Compared as the reader matches keys: by value where equal values print
        -- alike, else by text (1.0 and 1.00 are two keys to read). The text by
        -- pg_catalog.format, which calls the type's output function by its oid, not
        -- by _text_of's name of it: the body of key_changed_ is parsed as the writer,
        -- who may lack USAGE on the schema of that function (an extension's type,
        -- citext in its own schema: every UPDATE of the table was refused).
        select string_agg(case when dbsync._one_text_per_value(u.ty, u.coll)
                               then format('o.%1$I operator(pg_catalog.<>) n.%1$I', u.k)
                               else format('pg_catalog.format(''%%s'', o.%1$I) operator(pg_catalog.<>) (pg_catalog.format(''%%s'', n.%1$I) collate pg_catalog."C")',
                                           u.k) end, ' or ' order by u.o)
          into v_changed
        from unnest(v_keys, v_types, v_colls) with ordinality as u(k, ty, coll, o);
        -- The comparison in a function of the rows, not in the WHEN clause: a column
        -- that a trigger's WHEN names cannot change type (ALTER COLUMN ... TYPE fails,
        -- "used in a trigger definition"; int to bigint of a key is a common migration)
        -- nor be dropped. Polymorphic, so that it does not depend on the table's row
        -- type either (DROP TABLE), and a plain SQL function, which the planner
        -- inlines into the WHEN clause: no call per row. STABLE, not IMMUTABLE: the
        -- planner does not inline a function labelled IMMUTABLE whose body is not
        -- (timestamptz_out, enum_out, format), and every row then paid a call of
        -- the SQL function. Run as the writer: EXECUTE
        -- granted to PUBLIC, whatever the dbsync owner's default privileges say.
        execute format('create function dbsync.%I(o anyelement, n anyelement) returns boolean language sql stable as %L',
                       'key_changed_' || p_table_id, 'select ' || v_changed);
        execute format('grant execute on function dbsync.%I(anyelement, anyelement) to public', 'key_changed_' || p_table_id);
        execute format('create trigger dbsync_capture_key after update on %s for each row when (dbsync.%I(OLD, NEW)) execute function dbsync.%I()',
                       t.relid::regclass, 'key_changed_' || p_table_id, 'capture_key_' || p_table_id);
        execute format('create trigger dbsync_capture_del after delete on %s referencing old table as dbsync_old for each statement execute function dbsync.%I()',
                       t.relid::regclass, 'capture_old_' || p_table_id);
        -- Fires only for rows whose statement fired no statement trigger (the apply
        -- worker's): a replica session's statement marks itself first, and clears
        -- the mark when it ends.
        execute format('create trigger dbsync_capture_replica_mark before insert or update or delete on %s for each statement execute function dbsync._mark_replica_statement()',
                       t.relid::regclass);
        execute format('create trigger dbsync_capture_replica_unmark after insert or update or delete on %s for each statement execute function dbsync._mark_replica_statement()',
                       t.relid::regclass);
        execute format($w$create trigger dbsync_capture_replica after insert or update or delete on %s for each row
                          when (pg_catalog.current_setting('dbsync.statement', true) is distinct from dbsync._statement_mark(0))
                          execute function %s()$w$,
                       t.relid::regclass, v_row_fn);
    elsif not t.partitioned or dbsync._server_has('partitioned_row_trigger') then
        execute format('create trigger dbsync_capture_row after insert or update or delete on %s for each row execute function %s()', t.relid::regclass, v_fn);
    end if;
    -- TRUNCATE of the whole table is one event; of a single partition, its keys (_sync_partitions).
    execute format('create trigger dbsync_capture_trunc after truncate on %s for each statement execute function dbsync.%I()',
                   t.relid::regclass, 'capture_trunc_' || p_table_id);
    perform dbsync._enable_always(t.relid);
    if t.partitioned then
        perform dbsync._sync_partitions(p_table_id, false);
    end if;
    update dbsync.tables set capture_version = dbsync._capture_version() where table_id = p_table_id;
    return v_shape;
end
$$;

