// Batches whose tables come in several pieces of the stream (src/target/stream.ts
// cuts a table's part every 20,000 lines, every PIECE_LINES lines here; src/target/merge.ts
// merges each piece while the reader reads the next): rows updated in place piece by piece; a unique
// value that moves to a row of an earlier piece from a row of a later one (the
// earlier piece's update fails, and the table is deleted and inserted from there
// on); a target error in a late piece (nothing of the batch stays); the sidecar
// killed while pieces are being merged (nothing of the batch stays, and it is
// applied once after the restart).
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar as startAnySidecar, tableText, until, value } from "./helpers";
import { phasesOf } from "./kit/apply-log";
import { setup, status, strictlyConverged, synced, targetCounts } from "./kit/convergence";

/**
 * Pieces of 2,000 lines (DBSYNC_STREAM_PIECE_LINES) and tables of 5,000 rows: a table
 * in three pieces, as 50,000 rows are at the default 20,000 lines a piece, for a
 * tenth of the rows to write, capture, stream and compare.
 */
const PIECE_LINES = 2_000;
const ROWS = 5_000;
/** New rows in a batch: two pieces' worth (more than one COPY buffer, see below). */
const NEW_ROWS = 3_000;

/**
 * The killed batch's rows: 15 pieces, whose merging (from the first piece's merge to
 * the batch's commit, the window the test looks for every 20 ms) lasts long enough to
 * be seen and killed however fast the machine.
 */
const KILL_ROWS = 30_000;

function startSidecar(sourceUrl: string, args: string[] = [], env: NodeJS.ProcessEnv = {}) {
  return startAnySidecar(sourceUrl, args, { DBSYNC_STREAM_PIECE_LINES: String(PIECE_LINES), ...env });
}

test("a table in several pieces: updated in place piece by piece, new keys inserted, gone keys deleted", async () => {
  const env = await freshEnv("pieces_in_place");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into t select g, 'v' || g from generate_series(1, ${ROWS}) g`);
    await synced(env);
    await env.source.query(`
      begin;
      update t set v = 'changed ' || id where id % 5 <> 0;
      delete from t where id % 5 = 0;
      insert into t select g, 'new' || g from generate_series(${ROWS + 1}, ${ROWS + NEW_ROWS}) g;
      commit`);
    await strictlyConverged(env, ["t"]);
    // Stopped: its sessions' statistics reach pg_stat_user_tables as they end (an
    // idle session's only after 10 s, since PostgreSQL 15).
    await sidecar.stop();
    // Every row of a key the target had was updated, none deleted to be inserted
    // again. A piece of rows only is first tried straight into the table (merge.ts):
    // the rows that COPY wrote before the first key the table has count as inserted
    // though rolled back, at most one COPY buffer (1,000 rows) per table and batch.
    await until("the target's statistics show the batch", async () => {
      const c = await targetCounts(env, "t");
      return c.ins >= ROWS + NEW_ROWS && c.ins <= ROWS + NEW_ROWS + 1_000 && c.upd === ROWS * 0.8 && c.del === ROWS * 0.2;
    }, 20_000).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await targetCounts(env, "t"))}`);
    });
  } finally {
    await sidecar.stop();
  }
});

test("unique values moving between rows of different pieces: the same rows as the source, no error", async () => {
  const env = await freshEnv("pieces_unique");
  await setup(
    env,
    `create table t (id int primary key, u int not null unique, v text);
     create table x (id int primary key, code text not null, constraint x_code unique (code))`,
    ["t", "x"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into t select g, g, 'v' from generate_series(1, ${ROWS}) g`);
    await env.source.query(`insert into x select g, 'c' || g from generate_series(1, ${ROWS}) g`);
    await synced(env);
    // t: every row takes the next row's value, in whichever piece that row is.
    // x: two values swapped between the first and the last key, everything else
    // updated in place (the failing piece may be any one of them).
    await env.source.query(`
      begin;
      update t set u = -u;
      update t set u = -u % ${ROWS} + 1, v = 'rotated';
      update x set code = 'tmp' where id = 1;
      update x set code = 'c1' where id = ${ROWS};
      update x set code = 'c${ROWS}' where id = 1;
      update x set code = code || '+' where id between 2 and ${ROWS - 1};
      delete from t where id % 1000 = 0;
      commit`);
    await strictlyConverged(env, ["t", "x"]);
  } finally {
    await sidecar.stop();
  }
});

test("a value the target rejects in a late piece: nothing of the batch is applied, then all of it once fixed", async () => {
  const env = await freshEnv("pieces_reject");
  await setup(env, "create table t (id int primary key, v text); create table w (id int primary key, v text)", ["t", "w"]);
  await env.target.query("alter table t add constraint no_bad check (v <> 'bad')");
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into t select g, 'v' from generate_series(1, ${ROWS}) g`);
    await synced(env);
    const before = await tableText(env.target, "t");
    // w comes first in the stream and is merged before t's pieces arrive.
    await env.source.query(`
      begin;
      insert into w select g, 'w' from generate_series(1, ${NEW_ROWS}) g;
      update t set v = 'changed';
      update t set v = 'bad' where id = ${ROWS - 7};
      commit`);
    await until("the error shows in dbsync.status", async () => !!(await status(env))?.last_error, 120_000);
    const st = (await status(env))!;
    assert.match(st.last_error!, /no_bad/);
    assert.equal(st.last_error_sqlstate, "23514", "the error keeps its SQLSTATE");
    assert.match(st.last_error_table ?? "", /\bt\b/, "the error names its table");
    assert.deepEqual(await tableText(env.target, "t"), before, "t keeps its rows from before the batch");
    assert.equal(await value(env.target, "select count(*)::int from w"), 0, "w's rows were rolled back with the batch");
    await env.target.query("alter table t drop constraint no_bad");
    await strictlyConverged(env, ["t", "w"]);
  } finally {
    await sidecar.stop();
  }
});

test("the sidecar killed while a batch's pieces are merged: nothing of it stays, and after a restart it is applied once", async () => {
  const env = await freshEnv("pieces_kill");
  await setup(env, "create table t (id int primary key, n int not null, v text)", ["t"]);
  let sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into t select g, 0, repeat('x', 100) from generate_series(1, ${KILL_ROWS}) g`);
    await synced(env);
    await sidecar.stop();
    const before = await tableText(env.target, "t");
    const applied = await value<string>(env.target, "select tick_id::text from dbsync.applied");
    // Two batches' worth of changes, applied as one batch by the restarted sidecar.
    await env.source.query(`update t set n = n + 1, v = repeat('y', 100)`);
    await env.source.query(`update t set n = n + 1 where id % 2 = 0`);
    sidecar = startSidecar(env.sourceUrl);
    // Killed once the target is writing the batch's rows.
    await until("the target merges a piece", async () =>
      Number(await value(env.target, `select count(*) from pg_stat_activity
                                       where datname = current_database() and application_name like 'dbsync apply%' and query ~* '^(with updated|copy pg_temp)'`)) > 0,
    60_000, 20);
    await sidecar.stop("SIGKILL");
    await until("the killed applier's transaction is gone", async () =>
      Number(await value(env.target, "select count(*) from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%'")) === 0);
    assert.deepEqual(await tableText(env.target, "t"), before, "no piece of the killed batch stayed");
    assert.equal(await value<string>(env.target, "select tick_id::text from dbsync.applied"), applied);
    sidecar = startSidecar(env.sourceUrl);
    await strictlyConverged(env, ["t"]);
    assert.equal(await value(env.target, "select count(*)::int from t where n = 2"), KILL_ROWS / 2);
  } finally {
    await sidecar.stop();
  }
});

test("a backlog of several pieces per table with every key shifted by one, execute_ddl and resync_table in the middle", async () => {
  const env = await freshEnv("pieces_backlog");
  await setup(
    env,
    `create table t (id int primary key, u int not null unique, v text);
     create table c (id int primary key, v text)`,
    ["t", "c"],
  );
  let sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into t select g, g, 'v' from generate_series(1, ${ROWS}) g`);
    await env.source.query(`insert into c select g, 'c' from generate_series(1, ${ROWS}) g`);
    await synced(env);
    await sidecar.stop();
    // One backlog, one batch: keys and unique values move to other rows (of other
    // pieces), a column comes and is filled, c is copied again while it changes.
    await env.source.query(`update t set id = -id`);
    await env.source.query(`update t set id = -id + 1, v = 'shifted'`);
    await env.source.query(`select dbsync.execute_ddl('g', 'alter table t add column w text')`);
    await env.source.query(`update t set w = 'w' || id where id % 3 = 0`);
    await env.source.query(`update c set v = 'before resync' where id % 2 = 0`);
    await env.source.query(`select dbsync.resync_table('s', 'c')`);
    await env.source.query(`update c set v = 'after resync' where id % 5 = 0`);
    await env.source.query(`insert into t select g, -g, 'new' from generate_series(${ROWS + 2}, ${ROWS + NEW_ROWS}) g`);
    sidecar = startSidecar(env.sourceUrl);
    await strictlyConverged(env, ["t", "c"]);
  } finally {
    await sidecar.stop();
  }
});

test("the stream is read with hash joins when every table has many keys against its rows, with index probes otherwise", async () => {
  const env = await freshEnv("pieces_hash");
  await setup(env, "create table big (id int primary key, v text); create table small (id int primary key, v text)", ["big", "small"]);
  let sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into big select g, 'v' from generate_series(1, ${ROWS}) g`);
    await env.source.query("insert into small select g, 'v' from generate_series(1, 10) g");
    await synced(env);
  } finally {
    await sidecar.stop();
  }
  await env.source.query("analyze big; analyze small");
  const c = await env.source.connect();
  const plan = async () => {
    await c.query("begin isolation level repeatable read");
    try {
      return (await c.query(`select dbsync.batch_plan(s.sub_id, s.position_tick, s.position_tick, 1000000, 1000000) as p
                               from dbsync.subscriptions s where s.name = 's'`)).rows[0].p as { stream: string | null; stream_hash_joins: boolean };
    } finally {
      await c.query("rollback");
    }
  };
  try {
    await env.source.query(`update big set v = 'few' where id <= ${ROWS / 20 - 1}; update small set v = 'few'`);
    assert.equal((await plan()).stream_hash_joins, false, "a few keys of a big table: index probes");
    await env.source.query(`update big set v = 'many' where id <= ${ROWS / 5}`);
    const many = await plan();
    assert.ok(many.stream);
    assert.equal(many.stream_hash_joins, true, "a backlog: hash joins");
  } finally {
    c.release();
  }
  // Both kinds of reads give the source's rows (gone keys included).
  await env.source.query(`delete from big where id % 7 = 0; insert into big values (${ROWS + 1}, 'new')`);
  sidecar = startSidecar(env.sourceUrl);
  try {
    await strictlyConverged(env, ["big", "small"]);
    await env.source.query("update big set v = 'one more' where id = 3; delete from big where id = 5");
    await strictlyConverged(env, ["big", "small"]);
  } finally {
    await sidecar.stop();
  }
});

test("new rows are copied straight into a table whose unique key refuses duplicates; a key it has, or a unique value it holds, sends the piece through the stage", async () => {
  const env = await freshEnv("pieces_copy");
  await setup(
    env,
    `create table t (id int primary key, u int unique, v text);
     create table nokey (id int not null, v text);
     create table deferred (id int primary key deferrable initially deferred, v text)`,
    ["t", "deferred"],
  );
  // nokey: the source's key, but the target has no unique index on it.
  await env.source.query("alter table nokey add primary key (id)");
  await env.source.query("select dbsync.add_table('nokey', 'g')");
  const sidecar = startSidecar(env.sourceUrl, [], { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" });
  try {
    for (const tb of ["t", "nokey", "deferred"]) await env.source.query(`insert into ${tb} (id, v) select g, 'v' from generate_series(1, 100) g`);
    await synced(env);
    // Only new rows: copied straight in.
    for (const tb of ["t", "nokey", "deferred"]) {
      await env.source.query(`insert into ${tb} (id, v) select g, 'new' from generate_series(101, ${100 + NEW_ROWS}) g`);
    }
    await strictlyConverged(env, ["t", "nokey", "deferred"]);
    const copied = phasesOf(sidecar.output());
    assert.ok(copied['COPY into "public"."t"'] !== undefined, `t's new rows went by COPY: ${JSON.stringify(copied)}`);
    assert.equal(copied['COPY into "public"."nokey"'], undefined, "no COPY without a unique index on the key");
    assert.equal(copied['COPY into "public"."deferred"'], undefined, "no COPY where duplicates are refused only at commit");
    assert.equal(copied['merge "public"."t"'], undefined, `t's rows were all new: ${JSON.stringify(copied)}`);
    // New rows among which one has a key the target has (deleted and inserted again
    // on the source): that piece goes through the stage, and is updated in place.
    await env.source.query(`
      begin;
      insert into t (id, v) select g, 'newer' from generate_series(${101 + NEW_ROWS}, ${100 + 2 * NEW_ROWS}) g;
      delete from t where id = 50;
      insert into t (id, v) values (50, 'again');
      update t set u = 777777 where id = 31;
      delete from deferred where id = 3;
      insert into deferred values (3, 'again');
      delete from nokey where id = 4;
      insert into nokey values (4, 'again');
      commit`);
    await strictlyConverged(env, ["t", "nokey", "deferred"]);
    assert.ok(phasesOf(sidecar.output())['merge "public"."t"'] !== undefined, "the piece with key 50 went through the stage");
    // A new row takes a unique value from a row the target has, in whichever piece.
    await env.source.query(`
      begin;
      insert into t (id, u, v) select g, g, 'newest' from generate_series(${101 + 2 * NEW_ROWS}, ${100 + 3 * NEW_ROWS}) g;
      update t set u = null where id = 31;
      insert into t (id, u, v) values (${101 + 3 * NEW_ROWS}, 777777, 'took it');
      commit`);
    await strictlyConverged(env, ["t", "nokey", "deferred"]);
  } finally {
    await sidecar.stop();
  }
});

test("an application trigger on the target table sees each row once: a piece tried straight into the table and rolled back leaves nothing", async () => {
  const env = await freshEnv("pieces_trigger");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  // An audit trigger that fires on the target (ENABLE ALWAYS: dbsync applies in
  // session_replication_role replica), and the table it writes.
  await env.target.query(`
    create table audit (op text, id int);
    create function audit_t() returns trigger language plpgsql as $$
    begin
      -- A case: PostgreSQL 10 leaves NEW unassigned in a DELETE, where 11+ makes it NULL.
      insert into audit values (tg_op, case tg_op when 'DELETE' then old.id else new.id end);
      return null;
    end $$;
    create trigger t_audit after insert or update or delete on t for each row execute procedure audit_t();
    alter table t enable always trigger t_audit`);
  const audited = async () =>
    (await env.target.query<{ op: string; n: number; twice: number }>(
      `select op, count(*)::int as n, (count(*) - count(distinct id))::int as twice from audit group by op order by op`,
    )).rows.map((r) => `${r.op} ${r.n} ${r.twice}`);
  let sidecar = startSidecar(env.sourceUrl);
  try {
    // New rows only: pieces copied straight into t, the trigger firing for each.
    await env.source.query(`insert into t select g, 'v' from generate_series(1, ${ROWS}) g`);
    await strictlyConverged(env, ["t"]);
    assert.deepEqual(await audited(), [`INSERT ${ROWS} 0`]);
    await env.target.query("truncate audit");
    await sidecar.stop();
    // A backlog of updates, deletes and new rows: pieces of rows whose keys the
    // target has are first tried straight into t, fail, and go through the stage.
    await env.source.query(`
      begin;
      update t set v = 'changed' where id % 5 = 1;
      delete from t where id % 10 = 2;
      insert into t select g, 'new' from generate_series(${ROWS + 1}, ${ROWS + NEW_ROWS}) g;
      commit`);
    sidecar = startSidecar(env.sourceUrl);
    await strictlyConverged(env, ["t"]);
    assert.deepEqual(await audited(), [`DELETE ${ROWS / 10} 0`, `INSERT ${NEW_ROWS} 0`, `UPDATE ${ROWS / 5} 0`]);
  } finally {
    await sidecar.stop();
  }
});

test("a unique index dropped on the target while a batch streams an earlier table: no row of a key the target has is copied in beside it", async () => {
  const env = await freshEnv("pieces_dropped_index");
  // a comes first in the stream; its statement trigger holds the batch there.
  await setup(env, "create table a (id int primary key, v text); create table t (id int primary key, v text)", ["a", "t"]);
  await env.target.query(`
    create function slow() returns trigger language plpgsql as $$ begin perform pg_sleep(3); return null; end $$;
    create trigger a_slow after insert or update on a for each statement execute procedure slow();
    alter table a enable always trigger a_slow`);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into t select g, 'v' from generate_series(1, ${ROWS}) g`);
    await strictlyConverged(env, ["a", "t"]);
    // Rows of t only (existing keys among them), after a row of a; the same
    // sidecar, whose stage of t was made by the batch before (making it locks t).
    await env.source.query(`begin; insert into a values (1, 'x'); update t set v = 'changed' where id % 3 = 0; commit`);
    await until("the batch waits in a's trigger", async () =>
      Number(await value(env.target, "select count(*) from pg_stat_activity where datname = current_database() and wait_event = 'PgSleep'")) > 0, 60_000);
    // A DBA rebuilding t's key: the old index dropped before the new one is made.
    // Once the batch has t in hand this waits for it; a lock timeout is fine too.
    await env.target.query("set lock_timeout = '10 s'");
    await env.target.query("alter table t drop constraint t_pkey").catch((err: { code?: string }) => assert.equal(err.code, "55P03"));
    await env.target.query("reset lock_timeout");
    await strictlyConverged(env, ["a", "t"]);
    assert.equal(await value(env.target, "select count(*) - count(distinct id) from t"), "0", "no key twice on the target");
  } finally {
    await sidecar.stop();
  }
});

test("a target trigger that skips rows of keys the table has: the rows are updated all the same, not left as they were", async () => {
  const env = await freshEnv("pieces_skip_trigger");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  // An application's "ignore duplicates" trigger: an insert of a key the table
  // has does nothing, without an error.
  await env.target.query(`
    create function skip_known() returns trigger language plpgsql as $$
    begin
      if exists (select from t where id = new.id) then return null; end if;
      return new;
    end $$;
    create trigger t_skip before insert on t for each row execute procedure skip_known();
    alter table t enable always trigger t_skip`);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query(`insert into t select g, 'v' from generate_series(1, ${ROWS}) g`);
    await strictlyConverged(env, ["t"]);
    // Pieces of rows only, every key one the target has.
    await env.source.query(`update t set v = 'changed' where id % 2 = 0`);
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});
