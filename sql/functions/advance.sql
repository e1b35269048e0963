-- dbsync.advance(p_subscription text, p_done_tick bigint, p_events bigint, p_seconds double precision,
--                p_max_events bigint)
--   returns table (sub_id int, group_id int, tick_from bigint, tick_to bigint, table_ids int[],
--                  has_sequences boolean, shapes jsonb)
--   The sidecar's apply loop in one round trip per batch: record_progress of the
--   batch just committed on the target (p_done_tick null: none), a tick of the
--   group, then next_batch, with what applying it needs: shapes has one element
--   per shape among the batch's events ({shape_id, events, last_truncate, table_id,
--   schema_name, table_name, columns, types, key_positions}; shape_id null stands
--   for the DDL events that execute_ddl queued), has_sequences whether the group
--   has sequences to push. No row when there is nothing to apply or the
--   subscription is paused. The table's name is read here, not cached by the
--   sidecar: execute_ddl may rename it.
--   Each statement takes its own snapshot (READ COMMITTED, as tick requires), so
--   next_batch sees the tick taken just before it. Called by the sidecar.
create or replace function dbsync.advance(p_subscription text, p_done_tick bigint, p_events bigint,
                                          p_seconds double precision, p_max_events bigint)
returns table (sub_id int, group_id int, tick_from bigint, tick_to bigint, table_ids int[],
               has_sequences boolean, shapes jsonb)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions;
    b record;
begin
    select * into v_sub from dbsync.subscriptions s where s.name = p_subscription;
    if not found then
        return;
    end if;
    if p_done_tick is not null then
        perform dbsync.record_progress(v_sub.sub_id, p_done_tick, p_events, p_seconds);
    end if;
    if v_sub.paused then
        return;
    end if;
    perform dbsync.tick(v_sub.group_id);
    select * into b from dbsync.next_batch(p_subscription, p_max_events);
    if not found then
        return;
    end if;
    return query
    select b.sub_id, b.group_id, b.tick_from, b.tick_to, b.table_ids,
           exists (select from dbsync.sequences q where q.group_id = b.group_id),
           coalesce(jsonb_agg(jsonb_build_object(
                        'shape_id', x.shape_id, 'events', x.events, 'last_truncate', x.last_truncate,
                        'table_id', s.table_id, 'schema_name', t.schema_name, 'table_name', t.table_name,
                        'columns', s.columns,
                        'types', s.types, 'key_positions', s.key_positions)
                    order by x.shape_id), '[]')
    from dbsync._batch_summary(b.group_id, b.tick_from, b.tick_to) x
    left join dbsync.shapes s on s.shape_id = x.shape_id
    left join dbsync.tables t on t.table_id = s.table_id;
end
$$;
