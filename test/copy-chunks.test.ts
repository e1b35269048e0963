// Copies of big tables in key-range chunks, one chunk per batch at that batch's
// snapshot (sql/functions/_copy_chunks.sql): under writes that change keys across
// the boundaries, with another table streaming meanwhile, a sidecar killed between
// chunks and after a chunk's commit on the target before its report, TRUNCATE,
// resync_table, execute_ddl and remove_table in the middle, two subscriptions at
// different points, composite keys with a collation. Every test ends with the
// tables equal row by row.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { compat, createDatabase, Env, freshEnv, pool, seeded, sleep, SOURCE_MAJOR, startSidecar, TARGET_MAJOR, until, value } from "./helpers";
import { assertTablesEqual } from "./kit/convergence";

// Ten chunks a table: what the tests need is the number of chunks, not their size.
const CHUNK = 2000;
const ARGS = ["--copy-chunk-rows", String(CHUNK)];
const ROWS = 20_000;
/**
 * The kill test's table: its chunks must outlast a sidecar's start and a random
 * wait, or four lives would copy it all before the last kill. A loaded machine
 * polls slowly while the sidecar goes on, so the kills also stop while
 * KILL_CHUNKS_KEPT chunks are left for the lost report's part.
 */
const KILL_CHUNK = 5000;
const KILL_ROWS = 80_000;
const KILL_CHUNKS_KEPT = 6;

function bigDdl(t: string) {
  return `create table ${t} (id bigint primary key, grp int not null, u text not null unique, payload text, amount numeric);`;
}

/**
 * Writes until stopped, all over the key range [1, 2 * rows] so that changes fall
 * below, inside and above the chunk being copied: updates (single and ranges),
 * deletes, inserts, key changes (the unique column u travels with the row), and
 * transactions that move a key above and back, or swap rows across the range.
 */
let writersStarted = 0;
function writer(
  source: Pool, table: string, rows: number, stop: { done: boolean }, counts?: { n: number }, alsoExpected: string[] = [],
) {
  const rng = seeded(`copy-chunks/writer${++writersStarted}`);
  const rnd = () => rng.int(1, rows * 2);
  return (async () => {
    while (!stop.done) {
      const r = rng.next();
      const id = rnd();
      try {
        if (r < 0.2) await source.query(`update ${table} set amount = amount + 1, payload = 'upd' where id = $1`, [id]);
        else if (r < 0.3) await source.query(`update ${table} set grp = grp + 1 where id between $1 and $1 + 40`, [id]);
        else if (r < 0.45) await source.query(`delete from ${table} where id = $1`, [id]);
        // (No ON CONFLICT: PostgreSQL 10 has none on a partitioned table; a taken key is a 23505 below.)
        else if (r < 0.6) await source.query(`insert into ${table} values ($1, 1, md5(random()::text), 'new', 1)`, [id]);
        else if (r < 0.85) await source.query(`update ${table} set id = $2 where id = $1`, [id, rnd()]);
        else {
          const c = await source.connect();
          try {
            await c.query("begin");
            const other = rnd();
            // Up and back again, and a row moved onto a key freed in the same transaction.
            await c.query(`update ${table} set id = -id where id = $1`, [id]);
            await c.query(`update ${table} set id = -id, payload = 'back' where id = -$1::bigint`, [id]);
            await c.query(`delete from ${table} where id = $1`, [other]);
            await c.query(`update ${table} set id = $1 where id = $2`, [other, rnd()]);
            await c.query("commit");
          } catch (err) {
            await c.query("rollback").catch(() => undefined);
            throw err;
          } finally {
            c.release();
          }
        }
        if (counts) counts.n++;
      } catch (err) {
        // Key collisions are expected, and deadlocks with execute_ddl's UPDATE;
        // anything else is a test failure.
        if (!["23505", "40P01", ...alsoExpected].includes((err as { code?: string }).code ?? "")) throw err;
      }
      // Paced: flat-out writers took the CPUs from the test files running alongside,
      // and grew the backlog each killed copy has to read again.
      await sleep(rng.int(1, 10));
    }
  })();
}

/**
 * `sql` on the source, run again when PostgreSQL cancelled it as a deadlock's victim
 * (40P01: its transaction rolled back whole, as a DBA would then run it again).
 * execute_ddl's UPDATE of every seventh row locks them in the table's order; a
 * writer's transaction holding one row waits for a row the UPDATE holds, and the
 * UPDATE then reaches the writer's: whichever waited first runs the deadlock check
 * first and is cancelled. PostgreSQL 13's acceptance run failed so now and then;
 * reproduced there with the UPDATE waiting first (a writer's transaction holding row
 * 7000, then deleting row 14): execute_ddl got the 40P01. The writers take the same
 * error as expected.
 */
async function deadlockRetried(source: Pool, sql: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await source.query(sql);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== "40P01" || attempt === 5) throw err;
    }
  }
}

async function fill(env: Env, table: string, rows: number, analyze = true) {
  await env.source.query(
    `insert into ${table} select g, g % 10, md5(g::text), repeat('x', 40) || g, g * 1.5 from generate_series(1, ${rows}) g`,
  );
  if (analyze) await env.source.query(`analyze ${table}`);
}

interface ChunkRow {
  state: string;
  rows_copied: string;
  rows_estimated: string | null;
  chunks_copied: number;
  copied_up_to: string | null;
  copy_started_at: Date | null;
}

async function chunkRow(env: Env, table: string, sub = "s"): Promise<ChunkRow> {
  return (
    await env.source.query<ChunkRow>(
      `select state, rows_copied, rows_estimated, chunks_copied, copied_up_to, copy_started_at
         from dbsync.table_status where subscription = $1 and table_name = $2`,
      [sub, `public.${table}`],
    )
  ).rows[0];
}

async function assertSame(env: Env, tables: string[], sub = "s", target: Pool = env.target) {
  assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '120 s')", [sub]), true,
    `wait_for_sync: ${JSON.stringify((await env.source.query("select * from dbsync.status")).rows)}`);
  await assertTablesEqual(env.source, target, tables, sub);
}

/** Big table `big` of `rows` rows and a small `other`, both in group g, subscription s (copying). */
async function setupBig(env: Env, rows = ROWS) {
  await env.source.query(bigDdl("big") + "create table other (id int primary key, v text)");
  await env.target.query(bigDdl("big") + "create table other (id int primary key, v text)");
  await fill(env, "big", rows);
  await env.source.query("insert into other select g, 'v' from generate_series(1, 100) g");
  await env.source.query("select dbsync.add_table('big', 'g'), dbsync.add_table('other', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
}

/**
 * Logs every value chunks_copied takes, on the source: a restarted copy shows as
 * a fall back to 1, which polling table_status missed when its first chunks went
 * by between two looks (10 ms batches on an idle machine, seconds on a busy one).
 */
async function logChunkCounts(env: Env) {
  await env.source.query(`
    create table chunk_log (seq serial primary key, table_id int, chunks_copied int);
    create function log_chunk_count() returns trigger language plpgsql security definer set search_path = public, pg_catalog as $$
    begin
      insert into chunk_log (table_id, chunks_copied) values (new.table_id, new.chunks_copied);
      return null;
    end $$;
    ${compat(`create trigger log_chunk_count after update on dbsync.subscription_tables for each row
                when (new.chunks_copied is distinct from old.chunks_copied) execute function log_chunk_count()`)}`);
}

/** The values chunks_copied of `table` took, in order (logChunkCounts). */
async function chunkCounts(env: Env, table: string): Promise<number[]> {
  const { rows } = await env.source.query<{ n: number }>(
    `select l.chunks_copied as n from chunk_log l join dbsync.tables t using (table_id)
      where t.relid = $1::regclass order by l.seq`, [table]);
  return rows.map((r) => r.n);
}

/** A failed wait rethrown with what dbsync.status shows. */
function withStatus(env: Env) {
  return async (err: unknown) => {
    const st = (await env.source.query("select name, state, last_error from dbsync.status")).rows;
    throw new Error(`${(err as Error).message}; status: ${JSON.stringify(st)}`);
  };
}

/** Until `table` streams. */
async function copied(env: Env, table: string, sub = "s", timeoutMs = 240_000) {
  await until(`${sub}: ${table} copied`, async () => (await chunkRow(env, table, sub))?.state === "streaming", timeoutMs)
    .catch(withStatus(env));
}

/** Until `atLeast` chunks of `table` are copied and its copy goes on; a copy that ended first fails at once. */
async function waitChunks(env: Env, table: string, atLeast: number, sub = "s", timeoutMs = 120_000) {
  await until(`${sub}: ${atLeast} chunks of ${table} copied`, async () => {
    const r = await chunkRow(env, table, sub);
    if (r.state === "streaming") throw new Error(`${table} was copied whole before ${atLeast} chunks were seen while copying`);
    return r.state === "copying" && r.chunks_copied >= atLeast;
  }, timeoutMs).catch(withStatus(env));
}

test("a big table is copied in key-range chunks under writes across the boundaries, while another table streams", async () => {
  const env = await freshEnv("chunks_writes");
  await setupBig(env);
  const stop = { done: false };
  const writes = { n: 0 };
  const writers = [writer(env.source, "big", ROWS, stop, writes), writer(env.source, "big", ROWS, stop, writes)];
  let nextOther = 1000;
  const otherWriter = (async () => {
    while (!stop.done) {
      await env.source.query("insert into other values ($1, 'during')", [nextOther++]);
      await sleep(20);
    }
  })();
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    const progress = new Set<string>();
    const boundaries = new Set<string>();
    let marker: number | undefined;
    let markerArrivedWhileCopying = false;
    let chunksWhenMarkerArrived = 0;
    await until("big copied", async () => {
      const r = await chunkRow(env, "big");
      if (r.state === "copying" && r.chunks_copied >= 1) {
        progress.add(r.rows_copied);
        if (r.copied_up_to) boundaries.add(r.copied_up_to);
        if (marker === undefined) {
          marker = -1;
          await env.source.query("insert into other values (-1, 'marker')");
        } else if (!markerArrivedWhileCopying && (await value(env.target, "select count(*)::int from other where id = -1")) === 1) {
          // Seen on the target, and the copy is still going on.
          const now = await chunkRow(env, "big");
          markerArrivedWhileCopying = now.state === "copying";
          chunksWhenMarkerArrived = now.chunks_copied;
        }
      }
      return r.state === "streaming";
    }, 240_000).catch(withStatus(env));
    assert.ok(markerArrivedWhileCopying, "a change to another table reached the target while the big table was being copied");
    const end = await chunkRow(env, "big");
    assert.ok(end.chunks_copied >= ROWS / CHUNK - 1, `copied in chunks: ${end.chunks_copied}`);
    assert.ok(chunksWhenMarkerArrived < end.chunks_copied, `marker arrived after chunk ${chunksWhenMarkerArrived} of ${end.chunks_copied}`);
    assert.ok(progress.size >= 3, `progress across chunks in table_status: ${[...progress].join(", ")}`);
    assert.ok(boundaries.size >= 3, `boundaries in table_status: ${[...boundaries].join(", ")}`);
    assert.ok(Number(end.rows_estimated) >= ROWS * 0.9, `rows_estimated ${end.rows_estimated}`);
    assert.ok(writes.n > 100, `writes during the copy: ${writes.n}`);
    await sleep(300);
    stop.done = true;
    await Promise.all([...writers, otherWriter]);
    await assertSame(env, ["big", "other"]);
    assert.equal(await value(env.target, "select count(*)::int from other where v = 'during'"), nextOther - 1000);
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("a sidecar SIGKILLed between and inside chunks, and after a chunk's commit whose report was lost, goes on from its boundary", async () => {
  const env = await freshEnv("chunks_kill");
  await setupBig(env, KILL_ROWS);
  const args = ["--copy-chunk-rows", String(KILL_CHUNK)];
  const stop = { done: false };
  const writers = [writer(env.source, "big", KILL_ROWS, stop), writer(env.source, "big", KILL_ROWS, stop)];
  const rng = seeded("copy-chunks/kills");
  try {
    let seen = 0;
    let started: number | undefined;
    let kills = 0;
    for (let i = 0; i < 4 && seen < KILL_ROWS / KILL_CHUNK - KILL_CHUNKS_KEPT; i++, kills++) {
      const s = startSidecar(env.sourceUrl, args);
      await waitChunks(env, "big", seen + 1);
      await sleep(rng.below(300));
      await s.stop("SIGKILL");
      const r = await chunkRow(env, "big");
      assert.equal(r.state, "copying", "still copying after kill " + i);
      assert.ok(r.chunks_copied >= seen + 1, `chunks never go back: ${r.chunks_copied} after ${seen}`);
      started ??= r.copy_started_at!.getTime();
      assert.equal(r.copy_started_at!.getTime(), started, "the copy did not start again");
      seen = r.chunks_copied;
    }
    assert.ok(kills >= 2, `only ${kills} kill(s) before ${seen} chunks were copied`);

    // The report of a committed chunk lost: once the sidecar runs batches, the
    // source's record of the position is held (a row lock on the subscription), so
    // the sidecar commits a chunk on the target and then waits in record_progress;
    // it is killed there.
    const lock = await env.source.connect();
    try {
      const s = startSidecar(env.sourceUrl, args);
      await waitChunks(env, "big", seen + 1);
      await lock.query("begin");
      await lock.query("select 1 from dbsync.subscriptions where name = 's' for update");
      seen = (await chunkRow(env, "big")).chunks_copied;
      await until("the sidecar waits to report a batch", async () =>
        (await value<number>(env.source,
          `select count(*)::int from pg_stat_activity
            where datname = current_database() and application_name like 'dbsync%' and wait_event_type = 'Lock'`)) > 0, 60_000);
      await s.stop("SIGKILL");
      await env.source.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and application_name like 'dbsync%' and pid <> pg_backend_pid()`);
    } finally {
      await lock.query("rollback");
      lock.release();
    }
    const targetTick = Number(await value(env.target, "select tick_id from dbsync.applied"));
    const sourceTick = Number(await value(env.source, "select position_tick from dbsync.subscriptions where name = 's'"));
    assert.ok(targetTick > sourceTick, `the target committed a batch the source does not know: ${targetTick} > ${sourceTick}`);
    const before = await chunkRow(env, "big");
    assert.equal(before.chunks_copied, seen, "the lost batch's chunk is not on the source's record yet");

    const s = startSidecar(env.sourceUrl, args);
    try {
      await until("the chunk after the lost report", async () => {
        const r = await chunkRow(env, "big");
        return r.state === "streaming" || r.chunks_copied > seen + 1;
      }, 120_000);
      const r = await chunkRow(env, "big");
      if (r.state === "copying") assert.equal(r.copy_started_at!.getTime(), started, "the copy did not start again");
      await copied(env, "big");
      assert.equal(await value(env.source, "select last_error from dbsync.status"), null);
      stop.done = true;
      await Promise.all(writers);
      await assertSame(env, ["big", "other"]);
    } finally {
      await s.stop();
    }
  } finally {
    stop.done = true;
  }
});

test("TRUNCATE of the table in the middle of its chunked copy starts it again", async () => {
  const env = await freshEnv("chunks_truncate");
  await setupBig(env);
  await logChunkCounts(env);
  const stop = { done: false };
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    await waitChunks(env, "big", 3);
    // Rows the copy had placed on the target must go; keys after the TRUNCATE come back.
    await env.source.query(
      `begin; truncate big;
       insert into big select g, 0, md5('t' || g), 'after truncate', 0 from generate_series(1, ${ROWS * 0.6}) g; commit`);
    const writers = [writer(env.source, "big", ROWS * 0.6, stop)];
    await copied(env, "big");
    const counts = await chunkCounts(env, "big");
    const before = counts.findIndex((n) => n >= 3);
    assert.ok(before >= 0 && counts.slice(before).includes(1), `copied again from its first chunk: chunks_copied went ${counts.join(", ")}`);
    stop.done = true;
    await Promise.all(writers);
    await assertSame(env, ["big", "other"]);
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("a big table whose statistics say it is empty (analyzed empty, or truncated on PostgreSQL 10 to 13) is copied in chunks", async () => {
  const env = await freshEnv("chunks_uncounted");
  // Counted empty, then filled without a count since: reltuples = 0 and relpages = 0,
  // what PostgreSQL 10 to 13 also show for a table truncated (or created) and filled.
  await env.source.query(bigDdl("big") + "alter table big set (autovacuum_enabled = false); analyze big");
  await env.target.query(bigDdl("big"));
  await fill(env, "big", ROWS, false);
  assert.deepEqual((await env.source.query("select reltuples::int, relpages from pg_class where oid = 'big'::regclass")).rows,
    [{ reltuples: 0, relpages: 0 }]);
  await env.source.query("select dbsync.add_table('big', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    await copied(env, "big");
    const r = await chunkRow(env, "big");
    assert.ok(r.chunks_copied >= ROWS / CHUNK, `copied in chunks: ${JSON.stringify(r)}`);
    await assertSame(env, ["big"]);
  } finally {
    await sidecar.stop();
  }
});

test("a big table whose copy cannot start (missing on the target) holds up no other table's copy", async () => {
  const env = await freshEnv("chunks_blocked");
  // Added first: planned first, and big enough to take a whole batch's copy budget.
  await env.source.query(bigDdl("big") + "create table later (id int primary key, v text)");
  await env.target.query("create table later (id int primary key, v text)");
  await fill(env, "big", ROWS * 0.4);
  await env.source.query("insert into later select g, 'v' from generate_series(1, 100) g");
  await env.source.query("select dbsync.add_table('big', 'g'), dbsync.add_table('later', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    await copied(env, "later", "s", 30_000);
    assert.equal((await chunkRow(env, "big")).state, "error");
    await env.target.query(bigDdl("big"));
    await copied(env, "big", "s", 90_000);
    await assertSame(env, ["big", "later"]);
  } finally {
    await sidecar.stop();
  }
});

test("resync_table in the middle of a chunked copy starts it again (rows damaged below the boundary are repaired)", async () => {
  const env = await freshEnv("chunks_resync");
  await setupBig(env);
  const stop = { done: false };
  const writers = [writer(env.source, "big", ROWS, stop)];
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    await waitChunks(env, "big", 3);
    // Below the boundary (3 chunks): a copy that went on would never look at these rows again.
    await env.target.query(`delete from big where id <= ${CHUNK}; update big set payload = 'damaged' where id between ${CHUNK + 1} and ${2 * CHUNK}`);
    await env.source.query("select dbsync.resync_table('s', 'big')");
    await copied(env, "big");
    stop.done = true;
    await Promise.all(writers);
    await assertSame(env, ["big", "other"]);
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("execute_ddl in the middle of a chunked copy: a new column and an UPDATE go on with it, a key change starts it again", async () => {
  const env = await freshEnv("chunks_ddl");
  await setupBig(env);
  const stop = { done: false };
  let writers = [writer(env.source, "big", ROWS, stop)];
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    await waitChunks(env, "big", 2);
    // Paused around each DDL, so that the copy is still under way after it (a fast
    // machine could finish it first, and the test would prove nothing).
    await env.source.query("select dbsync.pause('s')");
    const started = (await chunkRow(env, "big")).copy_started_at!.getTime();
    await env.source.query("select dbsync.execute_ddl('g', 'alter table big add column extra int default 7')");
    // (Not run on the target: its rows arrive as rows, see test/ddl-rows.)
    await deadlockRetried(env.source, "select dbsync.execute_ddl('g', 'update big set payload = ''ddl'' where id % 7 = 0')");
    const at = (await chunkRow(env, "big")).chunks_copied;
    await env.source.query("select dbsync.resume('s')");
    await waitChunks(env, "big", at + 1);
    assert.equal((await chunkRow(env, "big")).copy_started_at!.getTime(), started, "the copy went on");
    // A new key: the boundary's order is not the key's any more.
    await env.source.query("select dbsync.pause('s')");
    stop.done = true;
    await Promise.all(writers);
    stop.done = false;
    assert.equal((await chunkRow(env, "big")).state, "copying");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table big drop constraint big_pkey, add primary key (grp, id)')");
    writers = [writer(env.source, "big", ROWS, stop)];
    await env.source.query("select dbsync.resume('s')");
    await until("copied again from its first chunk", async () => {
      const r = await chunkRow(env, "big");
      return r.state === "streaming" || (r.state === "copying" && r.chunks_copied <= 2);
    }, 60_000);
    await copied(env, "big");
    stop.done = true;
    await Promise.all(writers);
    await assertSame(env, ["big", "other"]);
    assert.equal(await value(env.target, "select count(*)::int from big where extra = 7"), await value(env.source, "select count(*)::int from big where extra = 7"));
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("remove_table and add_table in the middle of a chunked copy copy the table afresh", async () => {
  const env = await freshEnv("chunks_readd");
  await setupBig(env);
  const stop = { done: false };
  const writers = [writer(env.source, "big", ROWS, stop)];
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    await waitChunks(env, "big", 3);
    await env.source.query("select dbsync.remove_table('big')");
    await sleep(500);
    await env.source.query("select dbsync.add_table('big', 'g')");
    await copied(env, "big");
    stop.done = true;
    await Promise.all(writers);
    await assertSame(env, ["big", "other"]);
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("two subscriptions of one group copy the big table in chunks at different points", async () => {
  const env = await freshEnv("chunks_two_subs");
  await setupBig(env);
  const target2Url = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "chunks_two_subs_t2");
  const target2 = pool(target2Url);
  await target2.query(bigDdl("big") + "create table other (id int primary key, v text)");
  const stop = { done: false };
  const writers = [writer(env.source, "big", ROWS, stop), writer(env.source, "big", ROWS, stop)];
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    // s is paused in the middle of its copy while s2 starts its own: the two are then
    // at different boundaries whatever the machine's speed (a race seen by polling
    // missed it under load, s having finished before s2's first chunk).
    await waitChunks(env, "big", 3, "s");
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("select dbsync.add_subscription('s2', 'g', $1)", [target2Url]);
    await waitChunks(env, "big", 1, "s2");
    const [a, b] = [await chunkRow(env, "big", "s"), await chunkRow(env, "big", "s2")];
    assert.equal(a.state, "copying", "s, paused, is still in the middle of its copy");
    assert.ok(a.copied_up_to && b.copied_up_to && a.copied_up_to !== b.copied_up_to,
      `both subscriptions copying at different boundaries: ${a.copied_up_to} and ${b.copied_up_to}`);
    await env.source.query("select dbsync.resume('s')");
    await until("both copied", async () => {
      const [a, b] = [await chunkRow(env, "big", "s"), await chunkRow(env, "big", "s2")];
      return a.state === "streaming" && b.state === "streaming";
    }, 240_000);
    stop.done = true;
    await Promise.all(writers);
    await assertSame(env, ["big", "other"], "s");
    await assertSame(env, ["big", "other"], "s2", target2);
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("a composite key with a collation is chunked in the collation's order, a partitioned table too; a key of an enum is copied whole", async (t) => {
  const env = await freshEnv("chunks_composite");
  const icu = (await value<number>(env.source, "select count(*)::int from pg_collation where collname = 'en-x-icu'")) > 0;
  if (!icu) {
    t.skip("this PostgreSQL build has no ICU collations");
    return;
  }
  // PostgreSQL 10: no key on a partitioned table, one on each partition (the
  // partition key is the key, so it is unique across them), named to add_table.
  // Each side as its major declares it (a source on 11+ keys the table itself).
  // 'en-x-icu' orders 'a' < 'B' < 'b', where the database's "C" orders 'B' < 'a' < 'b'.
  const ddl = (pk10: boolean) => {
    const partKey = pk10 ? "(primary key (id))" : "";
    return `create table names (tenant int, name text collate "en-x-icu", v int, primary key (tenant, name));
               create type color as enum ('red', 'green', 'blue', 'cyan', 'magenta', 'yellow', 'black', 'white');
               create table colors (c color, n int, v text, primary key (c, n));
               create table parts (id bigint ${pk10 ? "not null" : "primary key"}, grp int not null, u text not null, payload text, amount numeric)
                 partition by range (id);
               create table parts_1 partition of parts ${partKey} for values from (minvalue) to (10000);
               create table parts_2 partition of parts ${partKey} for values from (10000) to (20000);
               create table parts_3 partition of parts ${partKey} for values from (20000) to (maxvalue);`;
  };
  await env.source.query(ddl(SOURCE_MAJOR < 11));
  await env.target.query(ddl(TARGET_MAJOR < 11));
  await env.source.query(`insert into names select g % 3, (array['a','B','b','A','c','C'])[1 + g % 6] || md5(g::text), g
                            from generate_series(1, 20000) g`);
  await env.source.query(`insert into colors select (enum_range(null::color))[1 + g % 8], g, 'x' from generate_series(1, 12000) g`);
  await env.source.query(
    "insert into parts select g, g % 10, md5(g::text), 'p', g from generate_series(1, 15000) g");
  await env.source.query("analyze names; analyze colors; analyze parts");
  await env.source.query("select dbsync.add_table('names', 'g'), dbsync.add_table('colors', 'g'), dbsync.add_table('parts', 'g', $1)",
    [SOURCE_MAJOR < 11 ? ["id"] : null]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const stop = { done: false };
  const rng = seeded("copy-chunks/names");
  const nameWriter = (async () => {
    while (!stop.done) {
      const g = rng.int(1, 20000);
      const flip = (array: string) => `(array[${array}])[1 + (random() * 5)::int]`;
      await env.source
        .query(`update names set name = ${flip("'a','B','b','A','c','C'")} || substr(name, 2), v = v + 1
                 where tenant = $1 % 3 and name = (select name from names where tenant = $1 % 3 offset $2 % 1000 limit 1)`, [g, g])
        .catch((err) => { if (err.code !== "23505") throw err; });
      await env.source.query("delete from names where tenant = $1 % 3 and v = $1", [g]);
      await env.source.query(`insert into names values ($1 % 3, ${flip("'a','B','b','A','c','C'")} || md5(random()::text), $1)`, [g]);
    }
  })();
  // Rows move between partitions when their key changes; PostgreSQL 10 refuses
  // such an UPDATE instead (23514: row movement comes with 11).
  const partsWriter = writer(env.source, "parts", 15_000, stop, undefined, SOURCE_MAJOR < 11 ? ["23514"] : []);
  const sidecar = startSidecar(env.sourceUrl, ["--copy-chunk-rows", "2000"]);
  try {
    await waitChunks(env, "names", 3);
    await copied(env, "names");
    await copied(env, "colors");
    await copied(env, "parts");
    assert.ok((await chunkRow(env, "names")).chunks_copied >= 9, "names was copied in chunks");
    assert.ok((await chunkRow(env, "parts")).chunks_copied >= 6, "parts was copied in chunks");
    assert.equal((await chunkRow(env, "colors")).chunks_copied, 0, "colors was copied whole");
    stop.done = true;
    await Promise.all([nameWriter, partsWriter]);
    await assertSame(env, ["names", "colors", "parts"]);
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("the plan of a batch in the middle of a chunked copy; a sidecar that knows no chunks copies the table whole", async () => {
  const env = await freshEnv("chunks_plan");
  await setupBig(env);
  const sidecar = startSidecar(env.sourceUrl, ARGS);
  try {
    await waitChunks(env, "big", 2);
  } finally {
    assert.equal(await sidecar.stop(), 0);
  }
  await env.source.query(`update big set payload = 'changed' where id in (1, 2, ${ROWS * 0.8})`);
  const c = await env.source.connect();
  try {
    const plan = async (args: string) => {
      await c.query("begin isolation level repeatable read");
      try {
        return (await c.query(`select dbsync.batch_plan(s.sub_id, s.position_tick, s.position_tick, ${args}) as p
                                 from dbsync.subscriptions s where s.name = 's'`)).rows[0].p;
      } finally {
        await c.query("rollback");
      }
    };
    type Entry = { table_id: number; action: string; forced: boolean; chunk: { first: boolean; last: boolean; key: string[] } | null; sql: string };
    const upto = (await chunkRow(env, "big")).copied_up_to!;
    // With a chunk size: the changed keys at or below the boundary, then the next chunk.
    const chunked = (await plan(`${CHUNK}, ${CHUNK}`)) as { tables: Entry[]; stream: string };
    const big = chunked.tables.filter((t) => t.sql?.includes("big") || t.action === "refresh");
    assert.deepEqual(big.map((t) => t.action), ["refresh", "copy"], JSON.stringify(chunked.tables));
    assert.equal(big[1].chunk?.first, false);
    assert.equal(big[1].chunk?.last, false);
    assert.ok(Number(big[1].chunk!.key[0]) > Number(upto), `next boundary ${big[1].chunk!.key} after ${upto}`);
    assert.match(big[1].sql, new RegExp(`t\\.id OPERATOR\\(pg_catalog\\.>\\) '${upto}'::pg_catalog\\.int8 and t\\.id OPERATOR\\(pg_catalog\\.<=\\)`));
    assert.match(chunked.stream, new RegExp(`ks\\.k\\[1\\]\\)::pg_catalog\\.int8 OPERATOR\\(pg_catalog\\.<=\\) '${upto}'::pg_catalog\\.int8`));
    // Without (an older sidecar): the whole table, now.
    const whole = (await plan(`${CHUNK}`)) as { tables: Entry[] };
    const w = whole.tables.filter((t) => t.action === "copy" && t.sql.includes("big"));
    assert.equal(w.length, 1, JSON.stringify(whole.tables));
    assert.equal(w[0].chunk, null);
    assert.equal(w[0].forced, true);
    assert.doesNotMatch(w[0].sql, /where/);
  } finally {
    c.release();
  }
});
