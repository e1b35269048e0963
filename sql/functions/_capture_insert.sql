-- dbsync._capture_insert(p_group_id int, p_shape_id int, p_op "char", p_key text, p_from text) returns text
--   The INSERT of a capture function (see _capture_function): p_key (SQL for one
--   key as text[], or NULL for a TRUNCATE marker) as events of op p_op and shape
--   p_shape_id, into the group's current slot. Through dbsync.events: routing costs
--   about what naming the slot's table does (its partition constraint is checked
--   then), without a branch per slot (bench/capture-profile.ts).
--   p_from '' queues the one row in scope (NEW or OLD). Otherwise p_from is a FROM
--   clause over a transition table, and its keys go as 'M' events of up to 1,000
--   keys each, row holding each key as the text of its text[] (array_out, read
--   back by array_in; a two-dimensional array would need the key's width to be
--   taken apart again): a bulk statement then writes a thousandth of the heap
--   tuples, index entries and event ids, and a single-row statement one row as
--   before. Chunks rather than one array per statement: an array is limited to
--   1 GB, and a statement of tens of millions of rows must not fail because it is
--   captured. dbsync._events_between reads an 'M' event as the 'K' events of its
--   keys.
--   A statement of at most 1,000 rows (nearly every one) is queued by the first
--   INSERT: the ARRAY of at most 1,001 of its keys, kept when it holds 1 to 1,000.
--   Only when it kept nothing (no row, or more than 1,000) does the chunking
--   INSERT run: its window and aggregate cost a single-row statement 2 to 5 µs
--   more, of 31 to 51 µs of capture on a loaded machine (README, Benchmarks:
--   capture version 4). OFFSET 0 keeps the ARRAY a subquery's output,
--   computed once: pulled up, each of its three mentions would scan the
--   transition table.
--   Parameters: p_group_id, p_shape_id, p_op, p_key, p_from.
--   Returns: text.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._capture_insert(p_group_id int, p_shape_id int, p_op "char", p_key text, p_from text)
returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select case when p_from = '' then
        format('insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
    select %s, (v_state operator(pg_catalog.%%) 4)::pg_catalog.int2, pg_catalog.nextval(%L::pg_catalog.regclass), %s, %L, %s;',
               p_group_id, format('dbsync.%I', 'events_seq_' || p_group_id), p_shape_id, p_op,
               coalesce(p_key, 'null::pg_catalog.text[]'))
    else
        -- (row_number() / 1000: a thousand keys per event; the first has 999.)
        format('insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
    select %1$s, (v_state operator(pg_catalog.%%) 4)::pg_catalog.int2, pg_catalog.nextval(%2$L::pg_catalog.regclass), %3$s, ''M'', x.k
    from (select array(select (%4$s)::pg_catalog.text %5$s limit 1001) as k offset 0) x
    where pg_catalog.cardinality(x.k) operator(pg_catalog.<=) 1000 and pg_catalog.cardinality(x.k) operator(pg_catalog.>) 0;
    if not found then
        insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
        select %1$s, (v_state operator(pg_catalog.%%) 4)::pg_catalog.int2, pg_catalog.nextval(%2$L::pg_catalog.regclass), %3$s, ''M'', pg_catalog.array_agg(x.k)
        from (select (%4$s)::pg_catalog.text as k, pg_catalog.row_number() over () operator(pg_catalog./) 1000 as c %5$s) x
        group by x.c;
    end if;',
               p_group_id, format('dbsync.%I', 'events_seq_' || p_group_id), p_shape_id, p_key, p_from)
    end
$$;
