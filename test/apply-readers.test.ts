// A big batch read by several readers at its snapshot (src/target/readers.ts,
// batch_plan's "streams"): the plan's streams (each table in one, tables of the
// same columns together, the same lines as the one stream); a backlog applied with
// two readers; both at exactly the batch's snapshot while a writer commits; either
// reader failing in the middle (the batch rolled back, its error in dbsync.status,
// then applied once); the readers in use (--concurrency 1: one reader); a helper
// whose lock is queued behind an ALTER's request (its stream left to the reader,
// no wait for ever). DBSYNC_SPLIT_EVENTS makes batches of a few hundred events big.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PoolClient } from "pg";
import { Phases } from "../src/target/phases";
import { readStreams } from "../src/target/readers";
import { Piece } from "../src/target/stream";
import { Env, compat, freshEnv, startSidecar, until, value } from "./helpers";
import { phasesOf } from "./kit/apply-log";
import { setup, status, strictlyConverged, synced } from "./kit/convergence";
import { SPLIT_ENV, TWO_STREAMS_DDL, TWO_STREAMS_TABLES, appliedByTwoReaders, atBatchEnd, copyOut, planNow } from "./kit/two-streams";

const DDL = TWO_STREAMS_DDL;
const TABLES = TWO_STREAMS_TABLES;

async function backlog(env: Env, rows: number) {
  await env.source.query(`insert into a select g, 'a' || g from generate_series(1, ${rows}) g;
    insert into b select g, 'b' || g from generate_series(1, ${rows / 2}) g;
    insert into c select g, g, 'c' from generate_series(1, ${rows}) g;
    insert into d select 'k' || g, g, -g, 'd' from generate_series(1, ${rows}) g`);
}

/** `writes`, then `check` at the end of the batch they make (atBatchEnd on this file's tables). */
const atEnd = (name: string, writes: (env: Env) => Promise<unknown>, check: (c: PoolClient) => Promise<void>) =>
  atBatchEnd(name, DDL, TABLES, writes, check);

test("batch_plan cuts a big batch's stream for its readers: each table in one stream, tables alike together, the same lines", async () => {
  const writes = async (env: Env) => {
    await backlog(env, 300);
    await env.source.query("update a set v = 'u' where id % 3 = 0; delete from c where id % 4 = 0; delete from d where x % 5 = 0");
  };
  await atEnd("readers_plan", writes, async (c) => {
    const one = await planNow(c, 1, 100);
    assert.equal(one.streams, null, "one reader: one stream");
    assert.equal((await planNow(c, 2, 1_000_000)).streams, null, "a small batch: one stream");
    // 1,285 events: a and b 550, c 375, d 360. Every reader gets at least p_split_events.
    assert.equal((await planNow(c, 2, 600)).streams, null, "two readers would get 550 and 735: one reader");
    assert.equal((await planNow(c, 3, 400)).streams?.length, 2, "three would get 550, 375 and 360: two readers");
    const ids = new Map(one.tables.map((t) => [t.target.replace(/^"public"\."|"$/g, ""), t.table_id]));
    const whole = await copyOut(c, one.stream!);
    for (const readers of [2, 3, 4]) {
      const plan = await planNow(c, readers, 100);
      assert.equal(plan.stream, one.stream);
      // Three kinds of columns: at most three streams.
      assert.equal(plan.streams?.length, Math.min(readers, 3), `${readers} readers`);
      const seen = plan.streams!.flatMap((s) => s.tables);
      assert.deepEqual([...seen].sort(), [...ids.values()].sort(), "every table in one stream only");
      assert.ok(plan.streams!.some((s) => s.tables.includes(ids.get("a")!) && s.tables.includes(ids.get("b")!)), "a and b together");
      const lines: string[] = [];
      for (const s of plan.streams!) {
        const mine = await copyOut(c, s.sql);
        assert.ok(mine.length > 0);
        for (const l of mine) assert.ok(s.tables.includes(Number(l.split("\t")[0])), `a line of a table of another stream: ${l}`);
        lines.push(...mine);
      }
      assert.deepEqual(lines.sort(), [...whole].sort(), "the streams' lines are the stream's");
    }
    // Each reader hashes only the keys of its own tables' shapes.
    const shapes = (await c.query<{ shape_id: number }>("select shape_id from dbsync.shapes where table_id = $1", [ids.get("c")])).rows.map((r) => r.shape_id);
    const keyed = await c.query<{ shape_id: number; n: string }>(
      `select b.shape_id, count(*) as n from dbsync.subscriptions s, dbsync.batch_keys(s.group_id, s.position_tick, $1) b
        where s.name = 's' group by 1`,
      [shapes],
    );
    assert.deepEqual(keyed.rows.map((r) => [r.shape_id, Number(r.n)]), [[shapes[0], 300]]);
  });
});

test("batch_plan counts a table's events as the readers see them: a statement's keys one by one, one, a thousand or more, a TRUNCATE", async () => {
  // One key, 1,000 keys (one 'M' event), 2,500 keys (three), keys of several
  // statements, rows gone and a TRUNCATE marker: the plan counts the stored events
  // (_batch_events) where the readers get one event per key (_events_between).
  const writes = (env: Env) => env.source.query(`insert into a values (1, 'a');
    insert into b select g, 'b' from generate_series(1, 1000) g;
    insert into c select g, g, 'c' from generate_series(1, 2500) g;
    insert into d select 'k' || g, g, g, 'd' from generate_series(1, 10) g;
    update d set z = 'z' where x <= 5; delete from d where x = 1;
    truncate a`);
  await atEnd("readers_counts", writes, async (c) => {
    const plan = await planNow(c, 1, 100);
    const read = await c.query<{ target: string; n: number }>(
      compat(`select format('%I.%I', n.nspname, r.relname) as target, count(*)::int as n
         from dbsync.subscriptions s
         join dbsync.ticks k on k.group_id = s.group_id and k.tick_id = s.position_tick
         cross join lateral dbsync._events_between(s.group_id, k.snap, pg_current_snapshot()) e
         join dbsync.shapes h on h.shape_id = e.shape_id
         join dbsync.tables t on t.table_id = h.table_id
         join pg_class r on r.oid = t.relid
         join pg_namespace n on n.oid = r.relnamespace
        where s.name = 's' group by 1 order by 1`),
    );
    const planned = plan.tables.map((t) => ({ target: t.target.replace(/"/g, ""), n: Number(t.events) })).sort((x, y) => x.target.localeCompare(y.target));
    assert.deepEqual(planned, read.rows);
    assert.deepEqual(planned.map((t) => t.n), [2, 1000, 2500, 16]);
    assert.equal(plan.tables.find((t) => t.target.endsWith('"a"'))?.truncate, true);
  });
});

test("batch_keys: a key queued by a statement ('M') and by a key change ('K') in one batch comes out once, as its key", async () => {
  // Keys whose text array_out quotes. A key moved away and back: its old key is
  // queued by the row trigger of key changes ('K'), its new one by the statement ('M').
  const writes = (env: Env) => env.source.query(`insert into d values ('a "b"', 1, 1, 'd'), ('c,d', 2, 2, 'd'), ('e', 3, 3, 'd');
    update d set k = 'moved' where k = 'a "b"';
    update d set k = 'a "b"' where k = 'moved';
    update d set z = 'z' where k in ('c,d', 'e')`);
  await atEnd("readers_keys", writes, async (c) => {
    const [{ group_id: group, position_tick: from }] = (await c.query("select group_id, position_tick from dbsync.subscriptions where name = 's'")).rows;
    const ops = await c.query<{ op: string }>(
      compat(`select distinct e.op from dbsync._batch_events($1, (select snap from dbsync.ticks where group_id = $1 and tick_id = $2), pg_current_snapshot()) e
               where e.shape_id is not null order by 1`),
      [group, from],
    );
    assert.deepEqual(ops.rows.map((r) => r.op), ["K", "M"], "both kinds of events in the batch");
    const keys = await c.query<{ k: string[] }>("select k from dbsync.batch_keys($1, $2) order by k", [group, from]);
    assert.deepEqual(keys.rows.map((r) => r.k), [['a "b"'], ["c,d"], ["e"], ["moved"]]);
  });
});

test("a backlog read by two readers: every table equal, tables alike merged one after the other", async () => {
  const env = await freshEnv("readers_backlog");
  await setup(env, DDL, TABLES);
  await backlog(env, 1_000);
  await env.source.query(`update a set v = 'u' || id where id % 3 = 0; update b set v = 'u' where id % 2 = 0;
    delete from c where id % 4 = 0; update d set z = 'z' where x % 5 = 0; delete from a where id % 7 = 0`);
  await appliedByTwoReaders(env, TABLES, "update a set v = 'again' where id = 1");
});

test("both readers at exactly the batch's snapshot: a writer committing meanwhile shows in neither", async () => {
  const env = await freshEnv("readers_snapshot");
  await setup(env, DDL, TABLES);
  // Each writer transaction inserts one id into a and c, which two readers read:
  // at every commit of the target, a and c hold the same ids.
  await env.target.query(`
    create function same_ids() returns trigger language plpgsql as $$
    begin
      -- Once per transaction, at its commit.
      if current_setting('test.checked', true) = txid_current()::text then return null; end if;
      perform set_config('test.checked', txid_current()::text, true);
      if exists (select id from a except select id from c) or exists (select id from c except select id from a) then
        raise exception 'torn batch: a and c differ';
      end if;
      return null;
    end $$;
    create constraint trigger a_same after insert or update or delete on a deferrable initially deferred for each row execute procedure same_ids();
    create constraint trigger c_same after insert or update or delete on c deferrable initially deferred for each row execute procedure same_ids();
    alter table a enable always trigger a_same;
    alter table c enable always trigger c_same`);
  await env.source.query("insert into a select g, 'a' from generate_series(1, 3000) g; insert into c select g, g, 'c' from generate_series(1, 3000) g");
  let stop = false;
  const writer = (async () => {
    const w = await env.source.connect();
    try {
      for (let id = 1_000_000; !stop; id++) await w.query(`begin; insert into a values (${id}, 'w'); insert into c values (${id}, 0, 'w'); commit`);
    } finally {
      w.release();
    }
  })();
  // The batches after the first come while the writer writes (a few dozen events
  // each on a loaded machine): big at 5 events a reader.
  const sidecar = startSidecar(env.sourceUrl, [], { ...SPLIT_ENV, DBSYNC_SPLIT_EVENTS: "5" });
  try {
    try {
      await until("ten batches read by two readers", async () => splitBatches(sidecar.output()) >= 10, 60_000).catch((err) => {
        const out = sidecar.output().split("\n");
        const batches = out.filter((l) => l.includes('"batch applied"'));
        throw new Error(`${(err as Error).message}: ${batches.length} batches, last ${batches.slice(-3).join("\n")}; errors: ${out.filter((l) => /"level":(40|50)/.test(l)).slice(0, 3).join("\n")}`);
      });
    } finally {
      stop = true;
      await writer;
    }
    await strictlyConverged(env, TABLES);
    assert.doesNotMatch(sidecar.output(), /torn batch/);
  } finally {
    await sidecar.stop();
  }
});

/** The sidecar's batches so far that more than one reader read. */
function splitBatches(output: string): number {
  return output.split("\n").filter((l) => l.includes('"batch applied"') && l.includes('"stream of reader 2"')).length;
}

/**
 * Rows of each table of the killed batch: 100 pieces each (200 lines a piece) of
 * 20 MB in all, more than the 16 MB a reader reads ahead of the target: the readers
 * are still reading while the target merges, the window to kill one in.
 */
const KILL_ROWS = 20_000;

for (const victim of ["a", "c"]) {
  test(`the reader of ${victim} killed in the middle of a two-reader batch: the batch rolled back, its error in dbsync.status, then applied once`, async () => {
    const env = await freshEnv(`readers_kill_${victim}`);
    await setup(env, "create table a (id int primary key, v text); create table c (id int primary key, n int, w text)", ["a", "c"]);
    // A target trigger counts the rows each committed batch wrote: none of the killed one's.
    await env.target.query(`
      create table written (tbl text, n bigint);
      create function count_rows() returns trigger language plpgsql as $$
      begin
        insert into written select tg_table_name, count(*) from new_rows;
        return null;
      end $$;
      create trigger a_rows after insert on a referencing new table as new_rows for each statement execute procedure count_rows();
      create trigger c_rows after insert on c referencing new table as new_rows for each statement execute procedure count_rows();
      alter table a enable always trigger a_rows;
      alter table c enable always trigger c_rows`);
    await env.source.query(`insert into a select g, repeat('a', 1000) from generate_series(1, ${KILL_ROWS}) g;
                            insert into c select g, g, repeat('c', 1000) from generate_series(1, ${KILL_ROWS}) g`);
    const sidecar = startSidecar(env.sourceUrl, [], SPLIT_ENV);
    try {
      // Its reader, once the target has merged a piece of either table.
      await until(`the reader of ${victim} killed while the target merges`, async () => {
        const merging = await value<boolean>(
          env.target,
          `select exists (select from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%'
                            and query ~* '^\\s*(copy|savepoint|insert|with)')`,
        );
        if (!merging) return false;
        return (
          (await value<boolean>(
            env.source,
            `select bool_or(pg_terminate_backend(pid)) from pg_stat_activity
              where datname = current_database() and application_name like 'dbsync read%' and state = 'active' and query like $1`,
            [`%only public.${victim} t%`],
          )) === true
        );
      }, 60_000, 1);
      await until("the error in dbsync.status", async () => (await status(env))?.last_error !== null, 60_000);
      // Then applied (a loaded machine may take more than strictlyConverged's 30 s after an error).
      await synced(env);
      await strictlyConverged(env, ["a", "c"]);
      assert.deepEqual(
        (await env.target.query("select tbl, sum(n)::int as n from written group by 1 order by 1")).rows,
        [{ tbl: "a", n: KILL_ROWS }, { tbl: "c", n: KILL_ROWS }],
        "each row written once, by the batch that committed",
      );
      assert.ok(phasesOf(sidecar.output())["stream of reader 2"] !== undefined, "two readers");
    } finally {
      await sidecar.stop();
    }
  });
}

test("--concurrency 1: no reader to spare, a big batch read by its one reader", async () => {
  const env = await freshEnv("readers_one");
  await setup(env, DDL, TABLES);
  await backlog(env, 1_000);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1"], SPLIT_ENV);
  try {
    await strictlyConverged(env, TABLES);
    const phases = phasesOf(sidecar.output());
    assert.ok(phases.stream !== undefined && phases["stream of reader 2"] === undefined, JSON.stringify(phases));
  } finally {
    await sidecar.stop();
  }
});

test("a helper whose lock waits behind an ALTER's request (which waits for the first reader): its stream left to the first reader, no wait for ever", async () => {
  const env = await freshEnv("readers_lock");
  await setup(env, DDL, TABLES);
  await backlog(env, 500);
  const reader = await env.source.connect();
  const helper = await env.source.connect();
  const alter = await env.source.connect();
  try {
    await reader.query("begin isolation level repeatable read");
    const plan = await planNow(reader, 2, 100);
    const whole = await copyOut(reader, plan.stream!);
    // batch_plan locked the tables (ACCESS SHARE): the ALTER's lock waits for the reader.
    const theirs = plan.tables.find((t) => t.table_id === plan.streams![1].tables[0])!;
    await alter.query("set lock_timeout = '60s'");
    const altered = alter.query(`alter table ${theirs.target} add column extra int`);
    altered.catch(() => undefined);
    await until("the ALTER waits for its lock", async () => value<boolean>(env.source, "select exists (select from pg_locks where not granted and mode = 'AccessExclusiveLock')"));
    const counts = new Map<number, number>();
    const sink = {
      piece: async (p: Piece) => {
        for (const n of p.counts.values()) counts.set(p.id, (counts.get(p.id) ?? 0) + n);
      },
      end: async () => undefined,
    };
    const phases = new Phases();
    const released: PoolClient[] = [];
    const pad = (id: number) => plan.stream_width! - plan.tables.find((t) => t.table_id === id)!.columns.length;
    await readStreams(reader, plan, pad, sink, phases, { take: async () => [helper], release: (c) => released.push(c) });
    const expected = new Map<number, number>();
    for (const l of whole) expected.set(Number(l.split("\t")[0]), (expected.get(Number(l.split("\t")[0])) ?? 0) + 1);
    assert.deepEqual(counts, expected, "every line of the stream, once");
    assert.ok(phases.toJSON()["stream left to reader 1"] !== undefined, JSON.stringify(phases));
    assert.deepEqual(released, [helper]);
    await reader.query("commit");
    await altered;
  } finally {
    reader.release();
    helper.release(true);
    alter.release();
  }
});
