-- Copies of big tables in key-range chunks: the helpers batch_plan calls.
--
-- A table to copy (its first copy, resync_table, resync_subscription...) whose
-- estimated rows exceed N, the chunk size the sidecar passes to batch_plan (its
-- --copy-chunk-rows, which is also its copy budget per batch), and whose key can
-- be ordered safely (dbsync._chunk_order) is copied N rows at a time in key
-- order, one chunk per batch, each chunk read at its own batch's snapshot:
--   batch 1 (tick T1):  empty the target table; copy the rows with key <= B1, where
--                       B1 is the key of the N-th row in key order at T1;
--   batch i (tick Ti):  copy the rows with B(i-1) < key <= Bi, Bi the key of the
--                       N-th row after B(i-1) at Ti; the last chunk has no upper
--                       bound, and then the table is 'streaming'.
-- Meanwhile every batch goes on streaming the subscription's other tables, and for
-- this table applies the changed keys at or below the boundary reached before the
-- batch, B(i-1), and skips the changed keys above it.
--
-- Why the target converges (the watermark argument of DBLog and of Debezium's
-- incremental snapshots, made simpler because here a chunk is read at exactly the
-- batch's snapshot, so no window of the log needs reconciling with it):
--   Invariant, after the batch at tick Ti whose boundary is Bi: for every key
--   k <= Bi the target's row of k is the source's row of k at Ti (or both have
--   none), and the target has no row with a key above Bi.
--   * Batch 1 empties the table and copies exactly the source's rows <= B1 at T1.
--   * Batch i, for a key k <= B(i-1): before it the target held the source's row
--     of k at T(i-1). If k changed in (T(i-1), Ti], it is among the batch's keys
--     and is read again at Ti (a 'U' row, or a 'D' line when it has no row), as any
--     streamed key; if not, its row at Ti is its row at T(i-1).
--   * Keys in (B(i-1), Bi] are copied at Ti, into a range where the target has no
--     row; changed keys above B(i-1) were skipped, so nothing else wrote there.
--   * Keys above Bi: none on the target; their changes were skipped, and the
--     chunk that later covers them reads their rows at a later snapshot, which
--     holds every change made to them up to then. Skipping loses nothing.
--   The last chunk has no upper bound: the whole table then equals the source at
--   that batch's tick, and from there it streams like any other table.
-- Each key is judged by its own value, whatever happened to its row: a row whose
-- key moves from below the boundary to above it is two keys of the batch, the old
-- one (gone at Ti: deleted on the target) and the new one (above: skipped, copied
-- later); moving back, or back and forth inside one batch, is the same two keys
-- judged at Ti. Rows deleted or inserted around the boundary are keys like any
-- other: the boundary is a value, not a row, so a deleted boundary row changes
-- nothing (B stays a valid point of the key order, and the next chunk starts
-- strictly after it), and a row inserted at or below B is a changed key <= B.
--
-- What makes a copy start again from chunk 1 (the target table is emptied again):
-- a new copy request (resync_table, resync_subscription, a dropped partition, a
-- target that lost the batches of the last chunks: target_position), a TRUNCATE of
-- the table in the batch, a key whose columns, types or collations changed (DDL:
-- the boundary's order is not the key's any more), keys of another key shape in
-- the batch. In the last three cases the batch's own changes cannot be applied
-- below the boundary, so the batch that holds them copies the table's first chunk
-- (or the whole table, when its key no longer allows chunks) whatever the copy
-- budget, and it is never left out of its batch: otherwise a later batch would go
-- on from the old boundary without those changes. DDL that keeps the key (add/drop/rename a column)
-- runs on the rows the target has at the batch's start, as on the source, and later
-- chunks are read in the new shape: the copy goes on. (Row changes through
-- execute_ddl are not run on the target: they are captured keys like any others.) A chunk
-- after the first is never left out of its batch (the sidecar leaves out a first
-- copy whose target table is missing or lacks columns, with the error in
-- table_status): the batch fails instead, as for a streaming table. remove_table
-- stops the copy where it is (the rows copied so far stay on the target, as
-- remove_table leaves a table's rows); add_table again copies it afresh.
--
-- Where the boundary lives: on the source, per subscription and table
-- (subscription_tables.chunk_*), moved by record_progress in the transaction that
-- moves the subscription's position, so a sidecar killed between chunks goes on
-- from the boundary its target holds. The sidecar records the chunk of the batch
-- in flight (copy_chunks) before it commits that batch on the target; when the
-- report of a committed batch is lost (a crash between the target's commit and the
-- next begin_batch), the position is taken from the target (target_position), and
-- record_progress makes that recorded chunk the boundary, since the target's tick
-- says the batch committed. Two subscriptions of one group each have their own
-- boundary and copy at their own pace.

-- dbsync._chunk_order(p_relid oid, p_key text[]) returns jsonb
--   The key order chunks of the table are cut in: {"attnums", "types",
--   "collations"} of the key columns p_key, or NULL when the table is not copied
--   in chunks: every key column must be of a base type of pg_catalog (not an
--   array), compared by values with pg_catalog's operators (no code a table owner
--   wrote), and a valid btree index must lead with exactly these columns in this
--   order, each with its type's default operator class, the column's collation,
--   ascending: the boundaries are found by a scan of that index, and the range
--   conditions use it. PostgreSQL 10 has no index on a partitioned table: there
--   each leaf partition must have one (columns matched by name: a partition's
--   attnums may differ), and the scan is a merge of theirs.
--   Parameters: p_relid, p_key.
--   Returns: jsonb.
--   Calls: dbsync._server_has. Tables touched: none.
create or replace function dbsync._chunk_order(p_relid oid, p_key text[]) returns jsonb
language sql stable set search_path = pg_catalog, pg_temp as $$
    with k as (
        select u.o::int as o, a.attname, a.attnum, a.atttypid, a.attcollation
        from unnest(p_key) with ordinality u(c, o)
        join pg_attribute a on a.attrelid = p_relid and a.attname = u.c and a.attnum > 0 and not a.attisdropped
        join pg_type ty on ty.oid = a.atttypid
        where ty.typnamespace = 'pg_catalog'::regnamespace and ty.typtype = 'b' and ty.typcategory <> 'A'
    ),
    -- The relations whose index gives the order: the table, or its leaves.
    indexed as (
        select c.oid as relid
        from pg_class c
        where c.oid = p_relid and (c.relkind <> 'p' or dbsync._server_has('partitioned_index'))
        union all
        select p.relid
        from pg_class c, pg_partition_tree(c.oid) p
        where c.oid = p_relid and c.relkind = 'p' and not dbsync._server_has('partitioned_index') and p.isleaf
    )
    select jsonb_build_object('attnums', jsonb_agg(k.attnum order by k.o),
                              'types', jsonb_agg(k.atttypid order by k.o),
                              'collations', jsonb_agg(k.attcollation order by k.o))
    from k
    having count(*) = cardinality(p_key)
       and exists (select from indexed)
       and not exists (
           select from indexed r
           where not exists (
               select from pg_index i
               join pg_class ic on ic.oid = i.indexrelid
               join pg_am am on am.oid = ic.relam
               where i.indrelid = r.relid and am.amname = 'btree' and i.indisvalid and i.indpred is null
                 and i.indnkeyatts >= cardinality(p_key)
                 and not exists (select from k k2
                                 left join pg_attribute ra on ra.attrelid = r.relid and ra.attname = k2.attname
                                                          and ra.attnum > 0 and not ra.attisdropped
                                 where ra.attnum is distinct from i.indkey[k2.o - 1]
                                    or i.indcollation[k2.o - 1] <> k2.attcollation
                                    or i.indoption[k2.o - 1] <> 0
                                    or not exists (select from pg_opclass oc
                                                   where oc.oid = i.indclass[k2.o - 1] and oc.opcdefault))))
$$;

-- dbsync._chunk_cmp(p_exprs text[], p_order jsonb, p_op text, p_bound text[]) returns text
--   SQL comparing the key p_exprs (one expression per key column, of the key's
--   types) with the boundary p_bound (the key columns' output text) in the key
--   order p_order: (e1, e2...) op (b1, b2...) as a row comparison, which a btree
--   index on the key serves. The boundary is cast by its type's input function and
--   given the column's collation explicitly, so the comparison is the index's
--   order whatever the expressions' own collations are. p_op: '<=' or '>'.
--   Parameters: p_exprs, p_order, p_op, p_bound.
--   Returns: text.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._chunk_cmp(p_exprs text[], p_order jsonb, p_op text, p_bound text[]) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_lits text[];
begin
    if p_op not in ('<=', '>') or cardinality(p_exprs) <> cardinality(p_bound)
       or cardinality(p_exprs) <> jsonb_array_length(p_order -> 'types') then
        raise exception '_chunk_cmp: bad arguments' using errcode = 'invalid_parameter_value';
    end if;
    select array_agg(format('%L::pg_catalog.%I', p_bound[u.o], ty.typname)
                     || coalesce(' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname), '')
                     order by u.o)
      into v_lits
    from jsonb_array_elements_text(p_order -> 'types') with ordinality u(t, o)
    join pg_type ty on ty.oid = u.t::oid
    left join pg_collation co on co.oid = (p_order -> 'collations' ->> (u.o::int - 1))::oid
    left join pg_namespace cn on cn.oid = co.collnamespace;
    if cardinality(p_exprs) = 1 then
        return format('%s OPERATOR(pg_catalog.%s) %s', p_exprs[1], p_op, v_lits[1]);
    end if;
    return format('ROW(%s) OPERATOR(pg_catalog.%s) ROW(%s)', array_to_string(p_exprs, ', '), p_op, array_to_string(v_lits, ', '));
end
$$;

-- dbsync._chunk_state(p_sub_id int, p_table_id int, p_truncated boolean, p_kshapes int[]) returns jsonb
--   For a table waiting for (the rest of) its copy: the chunked copy that the
--   batches before this one got to, if this batch can go on with it. Returns
--   {after (the boundary), order, rows_before, chunks_before, rows_estimated,
--   filter}: filter is SQL on ks.k (a changed key of the table as captured) that
--   keeps the keys at or below the boundary, the only ones the batch applies.
--   Returns NULL when no chunk of the current copy request is done (the copy may
--   wait for a batch with room for it: it reads every row when it starts), and
--   {"restart": true} when this batch's changes cannot be applied against the
--   boundary (p_truncated: the batch truncates the table; p_kshapes, the shapes of
--   its changed keys, or the table's key, not in the boundary's order): the target
--   holds rows below the boundary that only a copy can put right, so the copy must
--   start again in this very batch, which cannot leave the table out. Reads in the
--   batch's snapshot.
--   Parameters: p_sub_id, p_table_id, p_truncated, p_kshapes.
--   Returns: jsonb.
--   Calls: dbsync._chunk_cmp, dbsync._chunk_order. Tables touched: dbsync.shapes,
--     dbsync.subscription_tables, dbsync.tables (read).
create or replace function dbsync._chunk_state(p_sub_id int, p_table_id int, p_truncated boolean, p_kshapes int[])
returns jsonb
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    st record;
    v_order jsonb;
begin
    select s.copy_request, s.chunk_request, s.chunk_order, s.chunk_key, s.chunk_rows, s.chunks_copied,
           s.rows_estimated, t.relid, t.key_columns
      into st
    from dbsync.subscription_tables s
    join dbsync.tables t using (table_id)
    where s.sub_id = p_sub_id and s.table_id = p_table_id;
    if not found or st.chunk_request is distinct from st.copy_request or st.chunk_key is null then
        return null;
    end if;
    v_order := dbsync._chunk_order(st.relid, st.key_columns);
    if p_truncated or v_order is distinct from st.chunk_order then
        return '{"restart": true}';
    end if;
    -- Keys recorded in other columns (before a key change) cannot be placed
    -- against the boundary.
    if exists (select from dbsync.shapes s
               where s.table_id = p_table_id and s.shape_id = any (p_kshapes)
                 and (s.key_attnums::int[] is distinct from array(select x::int from jsonb_array_elements_text(v_order -> 'attnums') x)
                      or s.key_types is distinct from array(select x::oid from jsonb_array_elements_text(v_order -> 'types') x))) then
        return '{"restart": true}';
    end if;
    return jsonb_build_object(
        'after', to_jsonb(st.chunk_key), 'order', v_order, 'rows_before', st.chunk_rows,
        'chunks_before', st.chunks_copied, 'rows_estimated', st.rows_estimated,
        'filter', dbsync._chunk_cmp(array(select format('(ks.k[%s])::pg_catalog.%I', u.o, ty.typname)
                                          from jsonb_array_elements_text(v_order -> 'types') with ordinality u(t, o)
                                          join pg_type ty on ty.oid = u.t::oid
                                          order by u.o),
                                    v_order, '<=', st.chunk_key));
end
$$;

-- dbsync._chunk_next(p_relid oid, p_from text, p_order jsonb, p_after text[], p_rows bigint) returns jsonb
--   The next chunk of a chunked copy, in the batch's snapshot: the rows of p_from
--   (the table as batch_plan reads it, "only t" for a plain table) whose key is
--   above p_after (NULL: from the first row), up to and including the p_rows-th of
--   them in key order (found by a scan of the key's index), or all of them when
--   fewer are left (the last chunk). Returns {first, last, key (the new boundary,
--   NULL for the last chunk), order, where (SQL on alias t selecting the chunk's
--   rows)}. Run by batch_plan after it locked the table.
--   Parameters: p_relid, p_from, p_order, p_after, p_rows.
--   Returns: jsonb.
--   Calls: dbsync._chunk_cmp, dbsync._text_of. Tables touched: none.
create or replace function dbsync._chunk_next(p_relid oid, p_from text, p_order jsonb, p_after text[], p_rows bigint)
returns jsonb
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_cols text[];
    v_types oid[];
    v_where text;
    v_upto text[];
begin
    select array_agg(format('t.%I', a.attname) order by u.o), array_agg(a.atttypid order by u.o)
      into v_cols, v_types
    from jsonb_array_elements_text(p_order -> 'attnums') with ordinality u(n, o)
    join pg_attribute a on a.attrelid = p_relid and a.attnum = u.n::int2 and not a.attisdropped;
    if p_after is not null then
        v_where := dbsync._chunk_cmp(v_cols, p_order, '>', p_after);
    end if;
    execute format('select array[%s] from %s t%s order by %s offset %s limit 1',
                   (select string_agg(dbsync._text_of(u.ty, u.c), ', ' order by u.o)
                    from unnest(v_cols, v_types) with ordinality u(c, ty, o)),
                   p_from, coalesce(' where ' || v_where, ''), array_to_string(v_cols, ', '),
                   greatest(p_rows, 1) - 1)
      into v_upto;
    if v_upto is not null then
        v_where := concat_ws(' and ', v_where, dbsync._chunk_cmp(v_cols, p_order, '<=', v_upto));
    end if;
    return jsonb_build_object('first', p_after is null, 'last', v_upto is null, 'key', to_jsonb(v_upto),
                              'order', p_order, 'where', coalesce(v_where, 'true'));
end
$$;

-- dbsync._chunk_entry(p_entry jsonb, p_relid oid, p_from text, p_state jsonb, p_rows bigint) returns jsonb
--   batch_plan's entry p_entry (a copy of the table p_relid, read as p_from) made
--   into the copy of the next chunk after p_state ({order, after (none for the
--   first chunk), rows_before, chunks_before}): its sql reads only the chunk's
--   rows, and chunk says which chunk it is (see dbsync._chunk_next).
--   Parameters: p_entry, p_relid, p_from, p_state, p_rows.
--   Returns: jsonb.
--   Calls: dbsync._chunk_next. Tables touched: none.
create or replace function dbsync._chunk_entry(p_entry jsonb, p_relid oid, p_from text, p_state jsonb, p_rows bigint)
returns jsonb
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_next jsonb := dbsync._chunk_next(p_relid, p_from, p_state -> 'order',
                                       case when p_state ? 'after'
                                            then array(select jsonb_array_elements_text(p_state -> 'after')) end,
                                       p_rows);
begin
    return p_entry || jsonb_build_object(
        'sql', format('copy (select %s from %s t where %s) to stdout',
                      (select string_agg(quote_ident(c), ', ' order by o)
                       from jsonb_array_elements_text(p_entry -> 'columns') with ordinality u(c, o)),
                      p_from, v_next ->> 'where'),
        'chunk', (v_next - 'where') || jsonb_build_object('rows_before', coalesce(p_state -> 'rows_before', '0'),
                                                           'chunks_before', coalesce(p_state -> 'chunks_before', '0')));
end
$$;
