-- dbsync.batch_plan(p_sub_id int, p_from bigint, p_to bigint, p_copy_rows bigint default 1000000,
--                   p_chunk_rows bigint default null, p_readers int default 1,
--                   p_split_events bigint default null, p_split_tables boolean default false,
--                   p_kept jsonb default null) returns jsonb
--   What applying batch (p_from, p_to] to the subscription's target takes, read in
--   the sidecar's reader transaction: REPEATABLE READ with the snapshot of tick
--   p_to imported, so this sees dbsync's tables and the catalog as of the batch's end.
--   Returns {"ddl": [{ev_id, ddl, search_path, settings}], "tables": [...], "stream": sql},
--   one element of tables per table to apply:
--     table_id, target (the table's name as of p_to, quoted, for the target),
--     partitioned (else the target writes it with ONLY: inheritance children are
--       tables of their own),
--     columns (its stored columns as of p_to), generated (its generated columns,
--       which every server computes: a target column of that name that is not
--       generated there would never get a value), events (count in the batch),
--     action: 'copy' (every row: the table waits for its first copy, a resync, or a
--       key change that its events cannot be mapped through, or DDL in the batch
--       while its key is matched by text) or 'refresh' (the rows of the keys that
--       changed),
--     forced (a copy the stream needs: a streaming table whose key changed, or a
--       chunked copy that this batch's changes make start again),
--     truncate (refresh after a TRUNCATE: empty the target table first),
--     copy_request, rows_estimated (copies),
--     sql (copies): the COPY ... TO STDOUT that reads every row of the table,
--     shapes: [{op, key_columns}]: the target deletes its rows that match a stream
--       row of that op on those key columns,
--     upsert_key: for a table whose changed keys are all of one shape, that
--       shape's key columns: the target deletes the keys gone ('D' rows), and
--       writes the 'U' rows over its rows of the same key (an UPDATE in place
--       where it can). Else null: the target deletes every row matching a
--       'K<shape>' row and inserts the 'U' rows.
--   stream: one COPY ... TO STDOUT for every refreshed table (one scan of the
--   batch's events serves them all), or null. stream_hash_joins: the reader should
--   read it with nested loops off: every table in it has at least a tenth as many
--   events as rows (a backlog), so reading each table once to hash join it with its
--   keys costs less than probing its key index once per key (a tpcb-like backlog's
--   163,000 keys: the reader's CPU for the whole stream 25% less). The planner
--   cannot tell, not knowing how many keys a batch has; and one table with few keys
--   against many rows keeps the probes for all (a hash join would read all its rows). Each line is the table_id, an op,
--   then the table's columns as text (a table alone in its COPY: their own values,
--   which COPY prints by the same output functions; its keys, of one text per value
--   and the default collation, as typed values), padded with NULLs to the widest table's;
--   tables come one after another in table_id order. 'U' lines are the table's
--   rows of the changed keys; 'D' lines carry a key that no longer has a row,
--   'K<shape>' lines any changed key of that shape (in the key columns, the others
--   NULL). Whatever order the changes happened in, each key ends as the source's
--   row at p_to, and a key that is gone is deleted.
--   streams (a big batch): with p_readers > 1 and at least p_split_events events
--   in the stream per reader, the same lines cut into that many COPYs (at most
--   p_readers, each of at least p_split_events events), for readers that imported
--   this snapshot to read at once: [{sql, tables: [table_id]}], each table in one
--   of them only, tables of the same columns together (the target may stage them
--   in one temp table, one after the other), balanced by events and rows; each hashes only
--   its own tables' keys (batch_keys' p_shapes). Else null.
--   shared: with p_split_tables, one table whose keys some of the streams share
--   out (each the keys of its share, batch_keys' p_split: a backlog of one big
--   table, whose one reader was the bound of its apply), in each of their
--   `tables`; only when that makes the heaviest reader lighter than the best cut
--   without it, and only a table whose pieces the target merges in any order: one
--   key shape, each key a lookup of its own, equal keys identical (its U and D
--   lines one per key, each key in one share); the target gives it a stage of its
--   own and ends it once every stream has ended (src/target/readers.ts).
--   [table_id] or null.
--   Copies are limited to about p_copy_rows estimated rows per batch (at least one
--   table), so the stream of the other tables goes on between copies. With
--   p_chunk_rows (a sidecar that knows chunks), a table estimated above it whose
--   key allows it is copied in key-range chunks of p_chunk_rows rows, one per
--   batch (see sql/functions/_copy_chunks.sql): its entry has chunk
--   {first, last, key, order, rows_before, chunks_before}, and the chunk after the
--   first comes with a 'refresh' entry of the same table for its changed keys at
--   or below the boundary reached so far (the others are skipped: a later chunk
--   reads them); the target writes that refresh before the chunk's rows.
--   Every table listed is locked (ACCESS SHARE) and checked: a TRUNCATE or a
--   rewriting ALTER TABLE that committed after the snapshot would make the table
--   look empty to it (they are not MVCC-safe), so then this raises
--   serialization_failure and the sidecar starts the batch again.
--   kept: each streaming table's SQL built by this call (its part of the stream,
--   shapes and upsert key), {"<table_id>": {"key", "entry"}}, for the caller to
--   give back with a later batch as p_kept: a table whose key there is the one this
--   call computes (an md5 of the installed code's sha and of what the SQL is built
--   from as of the snapshot: every column's number, name, type, collation and
--   generated flag, its type's output function and name, the table's name, the
--   batch's key shapes of it) takes its entry as it is. Neither used nor built
--   with DDL in the batch, for a table with a domain column or a collation other
--   than the default (named in the SQL), nor for copies. Kept by the sidecar's
--   process, not by the reader's session: a process's pooled readers each serve
--   any of its subscriptions, so a session saw a group's batch again seldom
--   (bench/HISTORY.md, Scale). p_kept is only text built into the SQL returned,
--   which the caller runs as itself; nothing of it is run here.
--   Reads only; values and names are never evaluated as code, so it runs no code
--   a table owner wrote. Called by
--   the sidecar, which reads the stream with parallel query off (the tables' lines
--   must not interleave).
--   Parameters: p_sub_id, p_from, p_to, p_copy_rows, p_chunk_rows, p_readers, p_split_events,
--     p_split_tables, p_kept.
--   Returns: jsonb.
--   Calls: dbsync._base_type, dbsync._batch_events, dbsync._chunk_entry, dbsync._chunk_order,
--     dbsync._chunk_state, dbsync._key_match, dbsync._one_text_per_value,
--     dbsync._text_of. Tables touched: dbsync.installed_code, dbsync.shapes,
--     dbsync.subscription_tables, dbsync.subscriptions, dbsync.tables, dbsync.ticks
--     (read).
create or replace function dbsync.batch_plan(p_sub_id int, p_from bigint, p_to bigint,
                                             p_copy_rows bigint default 1000000,
                                             p_chunk_rows bigint default null, p_readers int default 1,
                                             p_split_events bigint default null,
                                             p_split_tables boolean default false,
                                             p_kept jsonb default null) returns jsonb
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int := (select s.group_id from dbsync.subscriptions s where s.sub_id = p_sub_id);
    -- This transaction imported tick p_to's snapshot; that tick's row is not visible
    -- in it (its transaction was running), so the snapshots are passed directly.
    v_from_snap pg_snapshot := (select t.snap from dbsync.ticks t where t.group_id = v_group and t.tick_id = p_from);
    v_to_snap pg_snapshot := pg_current_snapshot();
    v_tables jsonb := '[]';
    v_ddl jsonb;
    v_copy_budget bigint := p_copy_rows;
    r record;
    sh record;
    v_cols text[];
    v_types oid[];
    -- "type name": the SQL for the text of column name (of that type) of table t
    -- (dbsync._text_of), once per batch: tables alike share them.
    v_texts jsonb := '{}';
    v_action text;
    v_shapes jsonb;
    -- The batch stream: each table's part and width, and its shapes, their key
    -- sets, its events and columns (for a split among readers).
    v_parts text[] := '{}';
    -- A part with the columns' own values, for a stream of that table alone (or null).
    v_own text[] := '{}';
    v_widths int[] := '{}';
    v_infos jsonb := '[]';
    v_tshapes jsonb;
    v_tctes jsonb;
    -- The keys' CTEs of the table's part with its columns' own values.
    v_own_ctes jsonb;
    -- A one-text key of the default collation: its typed values' CTE and match.
    v_typed boolean;
    v_typed_cte text;
    v_typed_cond text;
    -- A stream's keys' CTEs: 'own_ctes' for a table alone in it with its own values, else 'ctes'.
    v_which text;
    v_readers int := 1;
    v_stream_events bigint := 0;
    v_loads bigint[];
    v_counts bigint[];
    v_least int;
    v_reader jsonb := '{}';
    v_streams jsonb := '[]';
    v_mine int[];
    -- A split: the table (its index in v_infos) whose keys the readers share out;
    -- each try's readers, assignment and loads, and the best so far's heaviest load.
    v_split int;
    v_shares int;
    v_big int;
    v_cut record;
    v_assign jsonb;
    v_best bigint;
    -- Per table: its shapes' semi-join conditions, and their K and D lines.
    v_match text[];
    v_krows text[];
    v_drows text[];
    v_cond text;
    v_keyrow text;
    v_part text;
    v_lookup text;
    v_lookup_own text;
    -- The lookup's columns: their texts, and their own values.
    v_lists text[];
    v_upsert jsonb;
    v_width int;
    v_stream text;
    -- Every table of the stream has many keys against its rows (at least a tenth).
    v_many boolean := true;
    v_keycols text[];
    v_from text;
    v_sql text;
    v_est bigint;
    v_stale regclass;
    v_rels oid[];
    -- Every table listed, and with their partitions, locked and checked at once
    -- (a statement each cost as much as the rest of a table's plan).
    v_locks text[] := '{}';
    v_all_rels oid[] := '{}';
    v_parents text[];
    v_col_checks jsonb[] := '{}';
    v_kshapes int[];
    v_shape_events jsonb;
    -- A chunked copy: the state earlier batches got to, and this batch's chunk.
    v_chunk jsonb;
    v_chunks jsonb := '[]';
    v_entry jsonb;
    v_restart boolean;
    -- A streaming table's SQL as an earlier batch built it (p_kept): the installed
    -- code's sha, a table's key and its entry found; and those built here.
    v_code text;
    v_key text;
    v_hit jsonb;
    v_kept jsonb := '{}';
    -- A table's part with its columns' own values (a lookup per key), or null; and
    -- whether its rows may be updated in place.
    v_own_part text;
    v_in_place boolean;
begin
    if current_setting('transaction_isolation') <> 'repeatable read' then
        raise exception 'batch_plan: must run in the REPEATABLE READ transaction that imported the batch''s snapshot'
            using errcode = 'active_sql_transaction';
    end if;
    -- One scan of the batch's events for all that the plan needs of them: the DDL,
    -- and per shape its count, whether it has keys and a TRUNCATE. An 'M' event as
    -- stored (_batch_events): its keys counted, not made rows one by one as
    -- _events_between does (a third of this scan's CPU in a backlog of single-row
    -- statements, one key an 'M' event). Capture writes no 'M' event without a key.
    select coalesce((select jsonb_agg(x order by (x ->> 'ev_id')::bigint)
                     from jsonb_array_elements(max(g.ddl::text) filter (where g.shape_id is null)::jsonb) x), '[]'),
           coalesce(jsonb_object_agg(g.shape_id, jsonb_build_object('events', g.events, 'truncated', g.truncated))
                    filter (where g.shape_id is not null), '{}'),
           coalesce(array_agg(g.shape_id) filter (where g.keys), '{}')
      into v_ddl, v_shape_events, v_kshapes
    from (
        -- (DDL events have no shape.)
        select e.shape_id, sum(case when e.op = 'M' then cardinality(e.row) else 1 end) as events,
               bool_or(e.op = 'T') as truncated, bool_or(e.op in ('K', 'M')) as keys,
               -- (Sorted afterwards: an ORDER BY here could sort every event.)
               jsonb_agg(jsonb_build_object('ev_id', e.ev_id, 'ddl', e.row[1], 'search_path', e.row[2],
                                            -- (null for DDL queued before settings were recorded)
                                            'settings', e.row[3]::jsonb))
                   filter (where e.op = 'X') as ddl
        from dbsync._batch_events(v_group, v_from_snap, v_to_snap) e
        group by e.shape_id
    ) g;

    -- DDL in the batch can change what a key's text means (below): no table's SQL
    -- is taken from earlier batches then, nor kept. (The code's sha in every key:
    -- an entry built by other code is never taken.)
    if jsonb_array_length(v_ddl) = 0 then
        v_code := (select i.sha from dbsync.installed_code i);
    end if;

    -- The batch's partitioned tables are locked before the loop opens their
    -- partitions (pg_partition_tree and pg_relation_size take ACCESS SHARE on each):
    -- a partition locked before its parent deadlocks with DETACH PARTITION, DROP of
    -- a partition and the like, which lock the parent first (seen: 40P01 in an
    -- application's DETACH PARTITION).
    select array_agg(t.relid::regclass::text order by t.table_id) into v_parents
    from dbsync.subscription_tables st
    join dbsync.tables t using (table_id)
    where st.sub_id = p_sub_id and t.removed_at is null and t.partitioned
      and has_table_privilege(t.relid, 'select') is not null
      and (st.state <> 'streaming'
           or exists (select from jsonb_each(v_shape_events) e join dbsync.shapes s on s.shape_id = e.key::int
                      where s.table_id = t.table_id));
    if v_parents is not null then
        execute format('lock table %s in access share mode', array_to_string(v_parents, ', '));
    end if;

    for r in
        -- The batch's events by table, in one pass (a subquery per table read every
        -- shape of the group).
        with ev as (
            select s.table_id, sum((e.value ->> 'events')::bigint) as events, bool_or((e.value ->> 'truncated')::boolean) as truncated,
                   -- The shapes whose keys the batch has.
                   array_agg(s.shape_id order by s.shape_id) filter (where s.shape_id = any (v_kshapes)) as kshapes
            from jsonb_each(v_shape_events) e
            join dbsync.shapes s on s.shape_id = e.key::int
            group by s.table_id
        )
        select t.table_id, t.relid, t.partitioned, st.state, st.copy_request,
               -- Always quoted, as the sidecar names tables (table_status matches on it).
               '"' || replace(n.nspname, '"', '""') || '"."' || replace(c.relname, '"', '""') || '"' as target,
               coalesce(ev.events, 0) as events, ev.truncated, coalesce(ev.kshapes, '{}') as kshapes,
               a.cols, a.types, a.nums, a.generated, a.inputs, a.keepable, p.rels,
               -- The rows counted by the last VACUUM or ANALYZE, unless none has run
               -- since the table was created or truncated, or it ran on an empty table:
               -- then guess from its size (about 100 bytes a row). PostgreSQL 14+ says
               -- "never counted" with reltuples = -1; before, a created or truncated
               -- table has reltuples = 0, as an empty one does, so relpages = 0 decides
               -- (a table still empty has size 0). Reading 0 as 0 copied a big table
               -- truncated and refilled, or loaded and not yet analyzed, in one batch.
               (select nullif(sum(case when x.reltuples >= 0 and x.relpages > 0 then x.reltuples
                                       else pg_relation_size(x.oid) / 100 end), 0)::bigint
                from pg_class x
                where x.relkind = 'r' and x.oid = any (p.rels)) as est
        from dbsync.subscription_tables st
        join dbsync.tables t using (table_id)
        join pg_class c on c.oid = t.relid
        join pg_namespace n on n.oid = c.relnamespace
        left join ev on ev.table_id = t.table_id
        -- Its stored columns (the columns of the batch's tables read in one query,
        -- with their texts below once per batch: 1 ms a table was spent reading and
        -- writing them table by table, half of batch_plan), and its generated ones.
        -- With what the table's SQL is built from (see v_key): every column's name,
        -- type and collation, its type's output function and name, and whether a
        -- table's SQL may be kept at all: no domain (its base type is looked up
        -- through it) and no collation but the default (named in the SQL).
        cross join lateral (
            select array_agg(a.attname::text order by a.attnum) filter (where a.attgenerated = '') as cols,
                   array_agg(a.atttypid order by a.attnum) filter (where a.attgenerated = '') as types,
                   array_agg(a.attnum order by a.attnum) filter (where a.attgenerated = '') as nums,
                   coalesce(array_agg(a.attname::text order by a.attnum) filter (where a.attgenerated <> ''), '{}') as generated,
                   string_agg(format('%s %I %s %s %s %s %I', a.attnum, a.attname, a.atttypid, a.attcollation, a.attgenerated,
                                     y.typoutput::regproc, y.typname), ', ' order by a.attnum) as inputs,
                   bool_and(y.typtype <> 'd' and a.attcollation in (0, 100)) as keepable
            from pg_attribute a
            join pg_type y on y.oid = a.atttypid
            where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped
        ) a
        -- The table, or its partitions: looked up by OID (an IN over
        -- pg_partition_tree() read the whole of pg_class, about 4 ms a table with
        -- 1,000 replicated tables).
        cross join lateral (
            select case when t.partitioned then array(select p.relid::oid from pg_partition_tree(t.relid) p)
                        else array[t.relid] end as rels
        ) p
        where st.sub_id = p_sub_id and t.removed_at is null and (st.state <> 'streaming' or ev.table_id is not null)
        order by t.table_id
    loop
        v_cols := r.cols;
        v_types := r.types;
        v_rels := r.rels;
        v_from := case when r.partitioned then '' else 'only ' end || r.relid::regclass::text;
        v_action := case when r.state <> 'streaming' then 'copy' else 'refresh' end;
        -- A chunked copy under way: refresh the keys at or below its boundary; or
        -- start it again now, when this batch's changes cannot be placed against it
        -- (or the caller knows no chunks: then copy the whole table now).
        v_chunk := case when r.state <> 'streaming'
                        then dbsync._chunk_state(p_sub_id, r.table_id, coalesce(r.truncated, false), v_kshapes) end;
        v_restart := coalesce((v_chunk ->> 'restart')::boolean, false) or (v_chunk is not null and p_chunk_rows is null);
        if v_restart then
            v_chunk := null;
        elsif v_chunk is not null then
            v_action := 'refresh';
        end if;

        -- A streaming table's SQL is a function of its inputs as of this snapshot
        -- (its columns, name, and the batch's key shapes of it), built again only
        -- when they differ from those an earlier batch built it from (p_kept).
        v_key := case when r.state = 'streaming' and r.keepable and v_code is not null
                      then md5(concat_ws(' ', v_code, r.inputs, v_from, r.kshapes::text)) end;
        v_hit := case when p_kept -> r.table_id::text ->> 'key' = v_key then p_kept -> r.table_id::text -> 'entry' end;
        v_sql := null;
        if v_hit is not null then
            v_shapes := v_hit -> 'shapes';
            v_tshapes := v_hit -> 'tshapes';
            v_tctes := v_hit -> 'ctes';
            v_own_ctes := v_hit -> 'own_ctes';
            v_part := v_hit ->> 'part';
            v_own_part := v_hit ->> 'own';
            v_upsert := v_hit -> 'upsert';
            v_in_place := (v_hit ->> 'in_place')::boolean;
        else
            -- The texts of its columns not met yet in this batch.
            v_texts := v_texts || coalesce((
                select jsonb_object_agg(u.ty::text || ' ' || u.c, dbsync._text_of(u.ty, format('t.%I', u.c)))
                from unnest(v_cols, v_types) u(c, ty)
                where not v_texts ? (u.ty::text || ' ' || u.c)), '{}');
            v_shapes := '[]';
            v_tshapes := '[]';
            v_tctes := '[]';
            v_own_ctes := '[]';
            v_match := '{}';
            v_krows := '{}';
            v_drows := '{}';
            v_part := null;
            v_upsert := null;
            v_lookup := null;
            v_lookup_own := null;
            if v_action = 'refresh' then
                for sh in
                    select s.shape_id, s.key_attnums, s.key_types,
                           array(select a.attname::text from unnest(s.key_attnums) with ordinality u(n, o)
                                 join pg_attribute a on a.attrelid = r.relid and a.attnum = u.n and not a.attisdropped
                                 order by u.o) as names,
                           array(select a.atttypid from unnest(s.key_attnums) with ordinality u(n, o)
                                 join pg_attribute a on a.attrelid = r.relid and a.attnum = u.n and not a.attisdropped
                                 order by u.o) as types,
                           (select bool_and(dbsync._one_text_per_value(a.atttypid, a.attcollation))
                            from unnest(s.key_attnums) u(n)
                            join pg_attribute a on a.attrelid = r.relid and a.attnum = u.n and not a.attisdropped) as one_text,
                           -- A key's text compared under its column's collation, named on the
                           -- key's side too: the planner may turn the EXISTS below into a join
                           -- with the batch's keys made distinct first, by the collation of
                           -- their own expression (the default), and two keys equal under a
                           -- nondeterministic one ('b' changed to 'B') then read the row twice.
                           array(select case when a.attcollation in (0, 100) then ''
                                             else format(' collate %I.%I', cn.nspname, co.collname) end
                                 from unnest(s.key_attnums) with ordinality u(n, o)
                                 join pg_attribute a on a.attrelid = r.relid and a.attnum = u.n and not a.attisdropped
                                 left join pg_collation co on co.oid = a.attcollation
                                 left join pg_namespace cn on cn.oid = co.collnamespace
                                 order by u.o) as collates
                    from dbsync.shapes s
                    where s.table_id = r.table_id
                      and s.shape_id = any (v_kshapes)
                    order by s.shape_id
                loop
                    -- A key whose columns are gone or retyped cannot find its rows: copy.
                    if sh.names is null or cardinality(sh.names) <> cardinality(sh.key_attnums)
                       or sh.types <> sh.key_types or not sh.names <@ v_cols then
                        v_action := 'copy';
                        exit;
                    end if;
                    -- Keys of types outside pg_catalog are matched by their text, and DDL
                    -- can change what a text means (ALTER TYPE ... RENAME VALUE of an enum
                    -- label): with DDL in the batch, such a table is copied instead.
                    if jsonb_array_length(v_ddl) > 0
                       and exists (select from unnest(sh.types) u(ty) join pg_type b on b.oid = dbsync._base_type(u.ty)
                                   where b.typnamespace <> 'pg_catalog'::regnamespace) then
                        v_action := 'copy';
                        exit;
                    end if;
                    v_tshapes := v_tshapes || to_jsonb(sh.shape_id);
                    v_tctes := v_tctes || to_jsonb(format('k%s as materialized (select ks.k from ks where ks.shape_id = %s%s)',
                                                          sh.shape_id, sh.shape_id, ' and ' || (v_chunk ->> 'filter')));
                    v_cond := (select string_agg(dbsync._key_match(u.ty, format('t.%I', u.nm), format('k%s.k[%s]%s', sh.shape_id, u.o, u.cl)),
                                                 ' and ' order by u.o)
                               from unnest(sh.names, sh.types, sh.collates) with ordinality u(nm, ty, cl, o));
                    -- The key in its columns' places, the other columns NULL.
                    v_keyrow := (select string_agg(case when array_position(sh.names, c) is null then 'null'
                                                        else format('k%s.k[%s]', sh.shape_id, array_position(sh.names, c)) end,
                                                   ', ' order by o)
                                 from unnest(v_cols) with ordinality u(c, o));
                    v_match := v_match || format('exists (select from k%s where %s)', sh.shape_id, v_cond);
                    v_krows := v_krows || format('select %L, %s from k%s', 'K' || sh.shape_id, v_keyrow, sh.shape_id);
                    v_drows := v_drows || format('select %L, %s from k%s where not exists (select from %s t where %s)',
                                                 'D', v_keyrow, sh.shape_id, v_from, v_cond);
                    -- Keys that find at most one row each: U and D lines in one lookup per key.
                    -- Twice: with the columns' texts, and with their own values (a key's
                    -- from its text when the row is gone: a pg_catalog type, as one_text
                    -- keys are), which COPY prints by the same output functions, in the
                    -- same session, without a text copy of every value in between (about
                    -- a tenth of a reader's CPU in a backlog of one table). The own
                    -- values only where the table's part is alone in its COPY: parts of
                    -- several tables are joined by UNION ALL, whose columns need one type.
                    v_lookup := null;
                    v_lookup_own := null;
                    if sh.one_text then
                        -- The own values' keys of the default collation as their columns'
                        -- values (v1, v2 ...), cast once each in the keys' CTE: not once to
                        -- hash the key and once more to compare it with the row's, and the
                        -- hash of the keys holds the values, not the key's text[] (a share
                        -- of the insert-only backlog, 200,000 keys: about a tenth of its CPU).
                        v_typed := '' = all (sh.collates);
                        v_typed_cte := format('k%s as materialized (select %s from ks where ks.shape_id = %s%s)', sh.shape_id,
                                              (select string_agg(format('(ks.k[%s])::pg_catalog.%I as v%s', u.o, b.typname, u.o), ', ' order by u.o)
                                               from unnest(sh.types) with ordinality u(ty, o)
                                               join pg_type b on b.oid = dbsync._base_type(u.ty)),
                                              sh.shape_id, ' and ' || (v_chunk ->> 'filter'));
                        v_typed_cond := (select string_agg(format('t.%I OPERATOR(pg_catalog.=) k%s.v%s', u.nm, sh.shape_id, u.o), ' and ' order by u.o)
                                         from unnest(sh.names) with ordinality u(nm, o));
                        select array[string_agg(case when u.kp is null then v_texts ->> (u.ty::text || ' ' || u.c)
                                                     else format('coalesce(%s, k%s.k[%s])', v_texts ->> (u.ty::text || ' ' || u.c),
                                                                 sh.shape_id, u.kp) end, ', ' order by u.o),
                                     string_agg(case when u.kp is null then format('t.%I', u.c)
                                                     when v_typed then format('coalesce(t.%I, k%s.v%s)', u.c, sh.shape_id, u.kp)
                                                     else format('coalesce(t.%I, (k%s.k[%s])::pg_catalog.%I)', u.c, sh.shape_id, u.kp, u.base) end,
                                                ', ' order by u.o)]
                          into v_lists
                        from (select x.c, x.ty, x.o, array_position(sh.names, x.c) as kp,
                                     (select b.typname from pg_type b where b.oid = dbsync._base_type(x.ty)) as base
                              from unnest(v_cols, v_types) with ordinality x(c, ty, o)) u;
                        select q.a[1], q.a[2] into v_lookup, v_lookup_own
                        from (select array_agg(format('select case when t.ctid is null then %L else %L end, %s from k%s left join %s t on %s',
                                                      'D', 'U', l.cols, sh.shape_id, v_from, l.cond) order by l.n) as a
                              from unnest(v_lists, array[v_cond, case when v_typed then v_typed_cond else v_cond end])
                                   with ordinality l(cols, cond, n)) q;
                        v_own_ctes := v_own_ctes || to_jsonb(case when v_typed then v_typed_cte else v_tctes ->> -1 end);
                    end if;
                    v_shapes := v_shapes || jsonb_build_object('op', 'K' || sh.shape_id, 'key_columns', to_jsonb(sh.names));
                end loop;
            end if;
            if v_action = 'copy' and v_chunk is not null then
                -- Keys the batch cannot map: the chunked copy starts again now.
                v_restart := true;
                v_chunk := null;
            end if;
        end if;

        v_est := r.est;
        if v_action = 'copy' then
            -- A table waiting for its copy can wait for the next batch; one whose
            -- events need the copy cannot.
            if v_copy_budget <= 0 and r.state <> 'streaming' and not v_restart then
                continue;
            end if;
            -- Too big for one batch: chunks, when the key allows them (from the start:
            -- a copy whose chunks cannot go on starts again).
            if r.state <> 'streaming' and v_est > p_chunk_rows then
                v_chunk := jsonb_build_object('order', dbsync._chunk_order(r.relid, (select t.key_columns from dbsync.tables t where t.table_id = r.table_id)),
                                              'rows_before', 0, 'chunks_before', 0);
                if v_chunk -> 'order' = 'null' then
                    v_chunk := null;
                end if;
            end if;
            -- A copy that could not start ('error': the sidecar leaves it out until
            -- the target is fixed) takes no budget: a big one would otherwise hold
            -- up the first copies of every table after it, batch after batch.
            v_copy_budget := v_copy_budget - case when r.state = 'error' then 0
                                                  else coalesce(least(v_est, case when v_chunk is not null then p_chunk_rows end), 0) end;
            v_sql := format('copy (select %s from %s) to stdout',
                            (select string_agg(quote_ident(c), ', ' order by o) from unnest(v_cols) with ordinality u(c, o)),
                            v_from);
        elsif v_hit is null and cardinality(v_match) > 0 then
            -- (No shapes: only a TRUNCATE, and emptying the target table is all.)
            -- The rows of the changed keys, unless one lookup per key gives them.
            if cardinality(v_match) > 1 or v_lookup is null then
                v_part := format('select %L, %s from %s t where %s',
                                 'U', (select string_agg(v_texts ->> (ty::text || ' ' || c), ', ' order by o)
                                       from unnest(v_cols, v_types) with ordinality u(c, ty, o)),
                                 v_from, array_to_string(v_match, ' or '));
            end if;
            if cardinality(v_match) = 1 then
                -- One key: the keys that are gone, and the target writes the rows
                -- over its rows of the same key.
                v_part := coalesce(v_lookup, v_part || ' union all ' || v_drows[1]);
                v_upsert := v_shapes -> 0 -> 'key_columns';
                v_shapes := jsonb_build_array(jsonb_build_object('op', 'D', 'key_columns', v_upsert));
            else
                -- Keys of several shapes (a key change in the batch) may name one row
                -- twice: every key is deleted, then every row inserted.
                v_part := v_part || ' union all ' || array_to_string(v_krows, ' union all ');
            end if;
        end if;
        if v_hit is null then
            v_own_part := case when v_part = v_lookup then v_lookup_own end;
            v_in_place := v_upsert is not null and v_lookup is not null;
            if v_key is not null and v_action = 'refresh' then
                v_kept := v_kept || jsonb_build_object(r.table_id::text, jsonb_build_object('key', v_key, 'entry', jsonb_build_object(
                    'shapes', v_shapes, 'tshapes', v_tshapes, 'ctes', v_tctes, 'own_ctes', v_own_ctes, 'part', v_part,
                    'own', v_own_part, 'upsert', v_upsert, 'in_place', v_in_place)));
            end if;
        end if;

        -- Dropped since the snapshot: nothing left to apply. (has_table_privilege
        -- reads the catalog as it is now, and is NULL for an OID that is gone.)
        if has_table_privilege(r.relid, 'select') is null then
            continue;
        end if;
        v_locks := v_locks || r.relid::regclass::text;
        v_all_rels := v_all_rels || v_rels;
        v_col_checks := v_col_checks || jsonb_build_object('relid', r.relid, 'cols', to_jsonb(v_cols), 'nums', to_jsonb(r.nums));

        if v_part is not null then
            v_parts := v_parts || format('select %s, p.*/*pad*/ from (%s) p', r.table_id, v_part);
            v_own := v_own || case when v_own_part is not null then format('select %s, p.*/*pad*/ from (%s) p', r.table_id, v_own_part) end;
            v_widths := v_widths || cardinality(v_cols);
            -- Its weight for a reader: each event hashed, each row read (at most one a
            -- key, at most the table's rows) about as much as four events (a tpcb-like
            -- backlog's 400,000 events hashed took 40% of its stream, its 163,000 rows the rest).
            v_infos := v_infos || jsonb_build_object('id', r.table_id, 'shapes', v_tshapes, 'ctes', v_tctes, 'own_ctes', v_own_ctes,
                                                     'events', r.events, 'cols', to_jsonb(v_cols)::text,
                                                     'split', v_own_part is not null,
                                                     'weight', r.events + 4 * least(r.events, coalesce(v_est, r.events)));
            v_many := v_many and r.events * 10 >= coalesce(v_est, 0);
            v_stream_events := v_stream_events + r.events;
        end if;
        v_entry := jsonb_build_object(
            'table_id', r.table_id, 'target', r.target, 'partitioned', r.partitioned,
            'columns', to_jsonb(v_cols), 'generated', to_jsonb(r.generated), 'events', r.events,
            'action', v_action, 'forced', v_action = 'copy' and (r.state = 'streaming' or v_restart), 'truncate', coalesce(r.truncated, false) and v_action = 'refresh',
            'copy_request', r.copy_request, 'rows_estimated', case when v_action = 'copy' then v_est end, 'sql', v_sql, 'shapes', v_shapes,
            'upsert_key', v_upsert, 'chunk', null,
            -- Rows may be updated in place only where equal keys are identical
            -- (_one_text_per_value): else one target row could match two rows of the
            -- stage (a key under a nondeterministic collation, unique by another).
            'in_place', v_in_place);
        if v_chunk is null then
            v_tables := v_tables || v_entry;
        elsif v_action = 'copy' then
            -- The first chunk, instead of the whole table.
            v_tables := v_tables || dbsync._chunk_entry(v_entry, r.relid, v_from, v_chunk, p_chunk_rows);
        else
            -- A chunked copy under way: this batch's changed keys at or below its
            -- boundary now; its next chunk after the loop, if the copies of the
            -- tables waiting for one leave room for it.
            if cardinality(v_match) > 0 then
                v_tables := v_tables || v_entry;
            end if;
            v_chunks := v_chunks || jsonb_build_object(
                'entry', v_entry || jsonb_build_object('action', 'copy', 'events', 0, 'truncate', false, 'shapes', '[]'::jsonb,
                                                       'upsert_key', null, 'rows_estimated', v_chunk -> 'rows_estimated'),
                'relid', r.relid, 'from', v_from, 'state', v_chunk);
        end if;
    end loop;
    if cardinality(v_locks) > 0 then
        execute format('lock table %s in access share mode', array_to_string(v_locks, ', '));
        select c.oid::regclass into v_stale
        from pg_class c
        where c.oid = any (v_all_rels) and c.relkind = 'r' and c.relfilenode <> pg_relation_filenode(c.oid)
        limit 1;
        if v_stale is not null then
            raise exception 'batch_plan: % was truncated or rewritten after the batch''s snapshot', v_stale
                using errcode = 'serialization_failure', hint = 'The sidecar starts the batch again.';
        end if;
        -- The columns as of the snapshot, which the statements above name, are read
        -- by those statements with the catalog as it is now: each name must still be
        -- its column's (pg_identify_object looks the attnum up there). A column
        -- dropped or renamed since fails them; columns of one type whose names were
        -- swapped would read each other's values.
        select (x ->> 'relid')::oid::regclass into v_stale
        from unnest(v_col_checks) x
        cross join lateral jsonb_array_elements_text(x -> 'cols') with ordinality c(name, o)
        where (pg_identify_object('pg_class'::regclass, (x ->> 'relid')::oid, (x -> 'nums' ->> (c.o::int - 1))::int)).identity
              is distinct from (pg_identify_object('pg_class'::regclass, (x ->> 'relid')::oid, 0)).identity || '.' || quote_ident(c.name)
        limit 1;
        if v_stale is not null then
            raise exception 'batch_plan: a column of % was dropped or renamed after the batch''s snapshot', v_stale
                using errcode = 'serialization_failure', hint = 'The sidecar starts the batch again.';
        end if;
    end if;
    for r in select c.value as c from jsonb_array_elements(v_chunks) c loop
        exit when v_copy_budget <= 0;
        v_copy_budget := v_copy_budget - p_chunk_rows;
        v_tables := v_tables || dbsync._chunk_entry(r.c -> 'entry', (r.c ->> 'relid')::oid, r.c ->> 'from', r.c -> 'state', p_chunk_rows);
    end loop;
    if cardinality(v_parts) > 0 then
        -- Narrower tables' lines padded with NULLs, so that every part has the widest's columns.
        v_width := (select max(w) from unnest(v_widths) w);
        -- Readers for a big batch: tables of the same columns stay together, each
        -- group goes to the reader of the least weight so far, heaviest first; the
        -- most readers that each get at least p_split_events (a backlog of one big
        -- table and a few changes to another: one reader). Then, with
        -- p_split_tables, cuts with the heaviest table that may be split in k shares
        -- (on readers 1 .. k, its weight and events shared equally: the keys' hashes
        -- spread them), the others as before; the one of the lightest heaviest
        -- reader is kept if that is lighter than without a split (fewer readers and
        -- shares first among equals).
        v_best := (select sum((x ->> 'weight')::bigint) from jsonb_array_elements(v_infos) x);
        if p_readers > 1 and v_stream_events >= 2 * p_split_events then
            if p_split_tables then
                v_big := (select o from jsonb_array_elements(v_infos) with ordinality x(x, o)
                          where (x ->> 'split')::boolean order by (x ->> 'weight')::bigint desc, o limit 1);
            end if;
            for v_cut in select n, k
                     from generate_series(2, least(p_readers, v_stream_events / p_split_events)::int) n,
                          generate_series(0, n) k
                     where (k = 0 and n <= (select count(distinct x ->> 'cols') from jsonb_array_elements(v_infos) x))
                        or (k > 1 and v_big is not null)
                     order by k > 0, case when k = 0 then -n else n end, k loop
                continue when v_cut.k = 0 and v_readers > 1;
                v_loads := array_fill(0::bigint, array[v_cut.n]);
                v_counts := v_loads;
                for j in 1 .. v_cut.k loop
                    v_loads[j] := (v_infos -> (v_big - 1) ->> 'weight')::bigint / v_cut.k;
                    v_counts[j] := (v_infos -> (v_big - 1) ->> 'events')::bigint / v_cut.k;
                end loop;
                v_assign := '{}';
                for r in select x ->> 'cols' as cols, sum((x ->> 'weight')::bigint) as weight, sum((x ->> 'events')::bigint) as events
                         from jsonb_array_elements(v_infos) with ordinality x(x, o)
                         where v_cut.k = 0 or o <> v_big
                         group by 1 order by 2 desc, 1 loop
                    v_least := (select o from unnest(v_loads) with ordinality u(l, o) order by l, o limit 1);
                    v_loads[v_least] := v_loads[v_least] + r.weight;
                    v_counts[v_least] := v_counts[v_least] + r.events;
                    v_assign := v_assign || jsonb_build_object(r.cols, v_least);
                end loop;
                if (select min(n) from unnest(v_counts) n) >= p_split_events and (select max(l) from unnest(v_loads) l) < v_best then
                    v_best := (select max(l) from unnest(v_loads) l);
                    v_readers := v_cut.n;
                    v_reader := v_assign;
                    v_split := case when v_cut.k > 0 then v_big end;
                    v_shares := v_cut.k;
                end if;
            end loop;
        end if;
        -- 0: the whole stream, for one reader; then each reader's part, if any.
        for i in 0 .. case when v_readers > 1 then v_readers else 0 end loop
            -- (The split table in every reader's part, read with its share of the keys.)
            v_mine := array(select o from jsonb_array_elements(v_infos) with ordinality x(x, o)
                            where i = 0 or (o = v_split and i <= v_shares) or (v_reader ->> (x ->> 'cols'))::int = i);
            v_which := case when cardinality(v_mine) = 1 and v_own[v_mine[1]] is not null then 'own_ctes' else 'ctes' end;
            -- The batch's keys are read once for the keys' CTEs of all tables
            -- (materialized), or, with one such CTE (a stream of one table: each share of
            -- a shared table), inlined into it: one tuplestore of every key less (a
            -- share of the insert-only backlog, 200,000 keys: about a tenth of its CPU).
            v_sql := format('copy (with %sselect b.shape_id, b.k from dbsync.batch_keys(%s, %s%s%s) b), %s %s) to stdout',
                            case when (select count(*) from unnest(v_mine) m, jsonb_array_elements(v_infos -> (m - 1) -> v_which)) > 1
                                 then 'ks as materialized (' else 'ks as (' end,
                            v_group, p_from,
                            case when i > 0 then format(', %L', (select array_agg(sid order by sid)
                                                                  from unnest(v_mine) m,
                                                                       jsonb_array_elements_text(v_infos -> (m - 1) -> 'shapes') sid)::int[]) end,
                            case when i > 0 and i <= v_shares
                                 then format(', %L, %s, %s', (select array_agg(sid::int order by sid::int)
                                                              from jsonb_array_elements_text(v_infos -> (v_split - 1) -> 'shapes') sid),
                                             i - 1, v_shares) end,
                            (select string_agg(c, ', ' order by m, o) from unnest(v_mine) m,
                                    jsonb_array_elements_text(v_infos -> (m - 1) -> v_which) with ordinality c(c, o)),
                            (select string_agg(replace(coalesce(case when cardinality(v_mine) = 1 then v_own[m] end, v_parts[m]),
                                                       '/*pad*/', repeat(', null', v_width - v_widths[m])), ' union all ' order by m)
                             from unnest(v_mine) m));
            if i = 0 then
                v_stream := v_sql;
            else
                v_streams := v_streams || jsonb_build_object('sql', v_sql,
                    'tables', (select jsonb_agg((v_infos -> (m - 1) ->> 'id')::int order by m) from unnest(v_mine) m));
            end if;
        end loop;
    end if;
    return jsonb_build_object('ddl', v_ddl, 'tables', v_tables, 'stream', v_stream, 'stream_width', v_width,
                              'streams', case when jsonb_array_length(v_streams) > 0 then v_streams end,
                              'shared', case when v_split is not null and jsonb_array_length(v_streams) > 0
                                             then jsonb_build_array(v_infos -> (v_split - 1) -> 'id') end,
                              'stream_hash_joins', v_many and v_stream is not null, 'kept', v_kept);
end
$$;
