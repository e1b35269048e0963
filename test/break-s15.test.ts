// Attacks on the s15 changes (round trips cut on the target, the early batch's
// begin_batch beside the reader's commit, sequences carried backwards too): the
// guards that held, and each test that failed before its fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Pool } from "pg";
import { Env, freshEnv, rows, sleep, startSidecar, value } from "./helpers";
import { assertTablesEqual, setup, status, synced } from "./kit/convergence";

// Held, kept as a guard. Tables alike (a, b, c) share one stage on the target
// connection; new rows of a primary-keyed table go straight in (an INSERT of
// literals whose rows are counted in the same statement, 3f5e0bb), the others merge
// through the shared stage, emptied in the merge's round trip (8ff4ff9). ENABLE
// ALWAYS triggers on b skip rows and insert more rows into b itself; one on c
// raises until it is dropped, failing batches that took the shared stage half-way.
test("target triggers ENABLE ALWAYS on tables that share a stage: skipped rows, extra rows into the same table, a batch failing in a later table", async () => {
  const env = await freshEnv("brk15_stage_triggers");
  const alike = (t: string) => `create table ${t} (id int primary key, v text)`;
  await setup(env, `${alike("a")}; ${alike("b")}; ${alike("c")}`, ["a", "b", "c"]);
  await env.target.query(`
    create function b_trig() returns trigger language plpgsql as $$
    begin
      if new.v like 'skip%' then return null; end if;
      if new.v like 'dup%' then insert into b values (new.id + 1000000, 'extra ' || new.id); end if;
      return new;
    end $$;
    create trigger b_trig before insert on b for each row execute procedure b_trig();
    alter table b enable always trigger b_trig;
    create function c_trig() returns trigger language plpgsql as $$
    begin
      if new.v = 'bad' then raise exception 'c refuses bad'; end if;
      return new;
    end $$;
    create trigger c_trig before insert or update on c for each row execute procedure c_trig();
    alter table c enable always trigger c_trig`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query(`insert into a select g, 'a' || g from generate_series(1, 30) g;
      insert into b select g, case g % 3 when 0 then 'skip' when 1 then 'dup' else 'ok' end || g from generate_series(1, 30) g;
      insert into c select g, 'c' || g from generate_series(1, 30) g`);
    await synced(env);
    // Updates of all three (merged in place through the shared stage), then new rows.
    await env.source.query(`update a set v = v || '+'; update b set v = v || '+' where id % 3 <> 0; update c set v = v || '+'`);
    await env.source.query(`begin; update a set v = 'x' || v where id <= 10; insert into b values (101, 'dup101'), (102, 'skip102');
      update c set v = 'bad' where id = 5; commit`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '3 s')"), false);
    assert.match((await status(env))?.last_error ?? "", /c refuses bad/);
    // While it fails, more batches wait behind it on the same tables.
    await env.source.query(`update a set v = v || '!' where id > 20; update b set v = 'ok' || id where id in (1, 2)`);
    await env.target.query("drop trigger c_trig on c");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["a", "c"]);
    // b: the source's rows but those the trigger skipped, and one more for each 'dup' row inserted.
    const expected = await rows<{ id: number; v: string }>(env.source, `select id, v from b where v not like 'skip%'
      union all select id + 1000000, 'extra ' || id from b where id in (select g from generate_series(1, 30) g where g % 3 = 1) or id = 101
      order by id`);
    assert.deepEqual(await rows(env.target, "select id, v from b order by id"), expected);
  } finally {
    await sidecar.stop();
  }
});

// A carried sequence dropped on the source was forgotten without a word: the
// sidecar stopped setting it (sidecar_sequences joins pg_class), wait_for_sync said
// in sync, and dbsync.sequences kept a row naming an oid that no longer was one.
test("a carried sequence dropped on the source: a WARNING says it is no longer carried, and dbsync forgets it", async () => {
  const env = await freshEnv("brk15_seq_dropped");
  await setup(env, "create sequence sq; create table t (id serial primary key, v int)", ["t"]);
  await env.source.query("select dbsync.add_sequence('sq', 'g')");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const c = await env.source.connect();
  const warnings: string[] = [];
  c.on("notice", (n) => warnings.push(`${n.severity}: ${n.message}`));
  try {
    await env.source.query("select nextval('sq') from generate_series(1, 5); insert into t (v) values (1)");
    await synced(env);
    await c.query("drop sequence sq");
    assert.ok(warnings.some((w) => /^WARNING: .*sequence public\.sq .*dropped/.test(w)), warnings.join("\n"));
    warnings.length = 0;
    // A table's own sequence goes with the table.
    await c.query("drop table t");
    assert.ok(warnings.some((w) => /^WARNING: .*sequence public\.t_id_seq .*dropped/.test(w)), warnings.join("\n"));
    assert.equal(await value(env.source, "select count(*)::int from dbsync.sequences"), 0);
    await synced(env);
  } finally {
    c.release();
    await sidecar.stop();
  }
});

/**
 * Terminates, on `server`, the sessions of `appLike` (application_name LIKE) at the
 * moment the source's control connection runs an early batch's begin_batch (one
 * given p_from: the batch before it is being committed on the target); tries for up
 * to `tries` looks. Returns how many sessions it ended.
 */
async function killBesideEarlyBatch(env: Env, server: Pool, appLike: string, tries = 400): Promise<number> {
  const early = `select exists (select from pg_stat_activity where application_name = 'dbsync control' and state = 'active'
                   and query ~ 'begin_batch\\(''s'', [0-9]')`;
  const kill = `select count(pg_terminate_backend(pid))::int from pg_stat_activity where application_name like '${appLike}'`;
  for (let i = 0; i < tries; i++) {
    if (server === env.source) {
      const n = await value<number>(env.source, `${kill} and (${early})`);
      if (n) return n;
    } else if (await value<boolean>(env.source, early)) {
      return value<number>(server, kill);
    }
    await sleep(2);
  }
  return 0;
}

// Held, kept as a guard. The early batch's begin_batch (carrying the report of the
// batch before the one being committed) runs on the control connection while the
// reader commits and the target commits (6e2fdd5): the reader's, the control
// connection's or the target's session is ended at that moment, again and again
// under writes. The source's recorded position never passes the target's, neither
// goes back, and the tables end equal.
test("sessions ended while an early batch's begin_batch runs beside the reader's and the target's commits: positions stay ordered, nothing lost", async () => {
  const env = await freshEnv("brk15_early_faults");
  await setup(env, "create table a (id int primary key, n int not null)", ["a"]);
  await env.source.query("insert into a select g, 0 from generate_series(1, 200) g");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "50"]);
  let stopping = false;
  const writer = (async () => {
    const c = await env.source.connect();
    try {
      for (let i = 1; !stopping; i++) {
        await c.query(`update a set n = n + 1 where id = ${(i % 200) + 1}; insert into a values (${1000 + i}, ${i})`);
        if (i % 5 === 0) await sleep(1);
      }
    } finally {
      c.release();
    }
  })();
  const positions = async () => ({
    // The source first: the target's can only have moved on since.
    source: Number(await value(env.source, "select position_tick from dbsync.subscriptions where name = 's'")),
    target: Number((await value(env.target, "select max(tick_id) from dbsync.applied")) ?? 0),
  });
  try {
    await synced(env);
    const sides: [Pool, string][] = [[env.source, "dbsync control"], [env.source, "dbsync read%"], [env.target, "dbsync apply%"]];
    let before = await positions();
    let kills = 0;
    for (let round = 0; round < 9; round++) {
      const [server, app] = sides[round % sides.length];
      kills += (await killBesideEarlyBatch(env, server, app)) > 0 ? 1 : 0;
      await sleep(150);
      const now = await positions();
      assert.ok(now.source <= now.target, `the source's position ${now.source} passed the target's ${now.target} (round ${round}, ${app})`);
      assert.ok(now.source >= before.source && now.target >= before.target, `a position went back: ${JSON.stringify([before, now])}`);
      before = now;
    }
    assert.ok(kills >= 3, `only ${kills} sessions ended beside an early batch`);
    stopping = true;
    await writer;
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["a"]);
    const after = await positions();
    assert.equal(after.source, after.target);
  } finally {
    stopping = true;
    await writer.catch(() => undefined);
    await sidecar.stop();
  }
});
