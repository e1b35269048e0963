-- dbsync._poll_groups(p_groups int[], p_last bigint[], p_bounds xid8[], p_settled boolean[]) returns table(group_id int, last_ev bigint, bound xid8, settled boolean, sub_ids int[])
--   The sidecar's poll (dbsync.sidecar_poll) with verdicts it keeps between polls,
--   so that an idle group costs no look into its queue: the look for new writers
--   (dbsync._has_new_writers) is planned at every call, and with 50 groups polled
--   every second by two processes it was most of the poll (about 90 ms a call on a
--   loaded source).
--   A group's verdict, given back at the next poll as the four arrays (an element
--   per group; a group not named has none): last_ev, its event sequence when the
--   verdict was made; bound, an xid above every transaction that had numbered one
--   of those events (the sequence is read first, then bound taken as this poll's
--   own xid; a writer has its xid before it numbers an event: capture triggers run
--   AFTER the row's write, _queue_rows and _queue_ddl ask for it first); settled,
--   whether a look into the queue found no new writers since the group's last tick
--   in a snapshot where no transaction below bound was running any more. (Not the
--   snapshot's xmax: a transaction that has its xid but sees none end after it can
--   be at or above it and still running.)
--   Per group: settled, with the sequence unchanged, nothing can have committed an
--   event since the look (the transactions that numbered one had all ended before
--   it, and none has numbered one since), and the queue is not looked into.
--   Otherwise it is, and the verdict (made anew when the sequence moved, or there
--   was none) is settled if the look found no new writers. A prepared (2PC)
--   transaction holds the snapshot's xmin as a running one does; a
--   subtransaction's events carry its top transaction's xid.
--   Only groups with a subscription on their last tick are judged: such a
--   subscription has work only through new writers since that tick, while one
--   behind it has work anyway (with many groups busy, a look into each would cost
--   more than the verdicts save); the verdict of another group is given back as it
--   came. Positions behind the last tick, tables to copy and sequences to carry
--   are found by _with_work for every group as before.
--   The event sequences must have CACHE 1, as create_group makes them: a session's
--   cached values would number events without moving the sequence; a group whose
--   sequence was altered gets no verdict (NULLs) and is looked into at every poll. Must run in READ COMMITTED: each
--   statement here needs a snapshot taken after the one before it.
--   The verdicts are the caller's word: false ones hide work from the caller only.
--   Parameters: p_groups, p_last, p_bounds, p_settled (NULL or empty: no verdicts).
--   Returns: a row per group with a subscription not paused: its verdict, and the
--     sub_id of its subscriptions with work.
--   Calls: dbsync._has_new_writers, dbsync._with_work. Tables touched: dbsync.groups,
--     dbsync.subscriptions, dbsync.ticks (read).
create or replace function dbsync._poll_groups(p_groups int[], p_last bigint[], p_bounds xid8[], p_settled boolean[])
returns table (group_id int, last_ev bigint, bound xid8, settled boolean, sub_ids int[])
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_ids int[];
    -- Each group's event sequence (NULL: not CACHE 1), and the last tick's snapshot.
    v_seq bigint[];
    v_snaps pg_snapshot[];
    v_at int[];
    -- Whether a subscription stands on the last tick: only there is the queue
    -- looked into (one behind it has work anyway).
    v_look boolean[];
    v_xid xid8;
    v_last bigint[] := '{}';
    v_bounds xid8[] := '{}';
    v_settled boolean[] := '{}';
    v_clean int[] := '{}';
    v_dirty int[] := '{}';
    v_found boolean;
    -- Every transaction below the bound had ended.
    v_ended boolean;
    v_work int[];
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'sidecar_poll: must run in a READ COMMITTED transaction'
            using errcode = 'active_sql_transaction';
    end if;
    -- First the sequences (read as they are now, whatever the snapshot).
    select coalesce(array_agg(g.group_id order by g.group_id), '{}'),
           coalesce(array_agg(case when q.seqcache = 1 then coalesce(pg_sequence_last_value(q.seqrelid), 0) end
                              order by g.group_id), '{}'),
           coalesce(array_agg(t.snap order by g.group_id), '{}'),
           coalesce(array_agg(array_position(p_groups, g.group_id) order by g.group_id), '{}'),
           coalesce(array_agg(exists (select from dbsync.subscriptions s
                                      where s.group_id = g.group_id and not s.paused and s.position_tick = g.last_tick_id)
                               order by g.group_id), '{}')
    into v_ids, v_seq, v_snaps, v_at, v_look
    from dbsync.groups g
    join dbsync.ticks t on t.group_id = g.group_id and t.tick_id = g.last_tick_id
    left join pg_sequence q on q.seqrelid = format('dbsync.%I', 'events_seq_' || g.group_id)::regclass
    where exists (select from dbsync.subscriptions s where s.group_id = g.group_id and not s.paused);
    for i in 1 .. cardinality(v_ids) loop
        if v_seq[i] is null then
            continue;
        end if;
        v_last[i] := p_last[v_at[i]];
        v_bounds[i] := p_bounds[v_at[i]];
        v_settled[i] := coalesce(p_settled[v_at[i]], false);
        if not v_look[i] then
            -- Its verdict back as it came (it stays true; judged when looked into).
            continue;
        elsif v_last[i] is distinct from v_seq[i] or v_bounds[i] is null then
            -- No verdict, or events numbered since: a new one. The xid once a
            -- poll, after every sequence was read.
            v_xid := coalesce(v_xid, pg_current_xact_id());
            v_last[i] := v_seq[i];
            v_bounds[i] := v_xid;
            v_settled[i] := false;
        end if;
    end loop;
    -- (A commit record that nothing needs flushed.)
    if v_xid is not null then
        perform set_config('synchronous_commit', 'off', true);
    end if;
    for i in 1 .. cardinality(v_ids) loop
        if not v_look[i] then
            continue;
        elsif v_settled[i] then
            v_clean := v_clean || v_ids[i];
            continue;
        end if;
        -- The look, and the xmin of the same snapshot, taken after the xid.
        select dbsync._has_new_writers(v_ids[i], v_snaps[i]), pg_snapshot_xmin(pg_current_snapshot()) >= v_bounds[i]
        into v_found, v_ended;
        if v_found then
            v_dirty := v_dirty || v_ids[i];
        else
            v_clean := v_clean || v_ids[i];
            v_settled[i] := v_ended;
        end if;
    end loop;
    -- (Once for every group: a call per group would plan its query per group.)
    v_work := array(select w.id from dbsync._with_work(null, v_clean, v_dirty) w(id));
    return query
    select v.gid, v.last_ev, v.bound, v.settled,
           coalesce((select array_agg(s.sub_id order by s.sub_id) from dbsync.subscriptions s
                     where s.group_id = v.gid and s.sub_id = any (v_work)), '{}')
    from unnest(v_ids, v_last, v_bounds, v_settled) v(gid, last_ev, bound, settled);
end
$$;
