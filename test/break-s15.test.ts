// Attacks on the s15 changes (round trips cut on the target, the early batch's
// begin_batch beside the reader's commit, sequences carried backwards too): the
// guards that held, and each test that failed before its fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Pool } from "pg";
import { Env, freshEnv, rows, sleep, startSidecar, value } from "./helpers";
import { assertTablesEqual, failsWith, setup, strictlyConverged, synced } from "./kit/convergence";

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
    await failsWith(env, /c refuses bad/);
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
  // This test's databases only: the clusters are shared by the files running beside it.
  const early = `select exists (select from pg_stat_activity where application_name = 'dbsync control' and state = 'active'
                   and datname = current_database() and query ~ 'begin_batch\\(''s'', [0-9]')`;
  const kill = `select count(pg_terminate_backend(pid))::int from pg_stat_activity
                 where application_name like '${appLike}' and datname = current_database()`;
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

// batch_keys makes a batch's keys distinct by their text (981b646), as before it. In
// one batch (the subscription paused meanwhile): keys changed to another value and
// back to an equal value printed otherwise (numeric scale, float -0, a timestamptz
// under two writers' TimeZones), a key changed away and back, and many events on one
// key in subtransactions, some rolled back: these held. What broke, before 981b646
// too, was a text key under a nondeterministic collation changed by case ('b' ->
// 'B'): the reader read the row once for each of the two keys (batch_plan's EXISTS
// planned as a join with the keys made distinct under the default collation), the
// target inserted it twice, and the batch failed at every retry (23505 on s_pkey).
test("one batch of keys changed away and back to equal values with other texts (a nondeterministic collation's change of case too), and of subtransactions on one key", async () => {
  const env = await freshEnv("brk15_batch_keys");
  const icu = Number(await value(env.source, "select count(*) from pg_collation where collprovider = 'i'")) > 0 &&
    Number(await value(env.source, "select current_setting('server_version_num')::int")) >= 120000;
  const tables = ["n", "f", "z", "m", ...(icu ? ["s"] : [])];
  await setup(env, `create table n (k numeric primary key, v int); create table f (k float8 primary key, v int);
    create table z (k timestamptz primary key, v int); create table m (k int primary key, v int);
    ${icu ? "create collation ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false); create table s (k text collate ci primary key, v int);" : ""}`, tables);
  await env.source.query(`insert into n values (1.0, 1), (2, 2); insert into f values (0, 1), (2, 2);
    insert into z values ('2026-01-01 00:00+00', 1), ('2026-06-01 00:00+00', 2); insert into m values (1, 1), (2, 2), (3, 3);
    ${icu ? "insert into s values ('a', 1), ('b', 2);" : ""}`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const c = await env.source.connect();
  try {
    await strictlyConverged(env, tables);
    await env.source.query("select dbsync.pause('s')");
    await c.query(`update n set k = 7 where v = 1; update n set k = 1.00, v = 10 where v = 1; update n set k = 2.000 where v = 2;
      update f set k = 5 where v = 1; update f set k = '-0', v = 10 where v = 1;
      update m set k = 9 where k = 1; update m set k = 1, v = 10 where k = 9; update m set k = 4 where k = 3`);
    await c.query(`set timezone = 'Asia/Kolkata'; update z set k = k + interval '1 hour' where v = 1;
      update z set k = k - interval '1 hour', v = 10 where v = 1; reset timezone; update z set v = 11 where v = 10`);
    if (icu) await c.query("update s set k = 'x' where k = 'a'; update s set k = 'A', v = 10 where k = 'x'; update s set k = 'B' where k = 'b'");
    await c.query("begin");
    for (let i = 0; i < 60; i++) {
      await c.query(`savepoint p; update m set k = k + 100, v = ${i} where v = 2 or k = 2; ${i % 3 === 0 ? "rollback to savepoint p" : "release savepoint p"}`);
    }
    await c.query("commit");
    await env.source.query("select dbsync.resume('s')");
    await strictlyConverged(env, tables);
  } finally {
    c.release();
    await sidecar.stop();
  }
});

// Held, kept as a guard. Target sessions start with search_path = pg_catalog, "$user",
// public (f7f2f20), not the database's: a target trigger whose function names a table
// of the database's search_path unqualified fails loudly, naming it, and works once
// the subscription's conninfo gives that search_path (options), which wins.
test("a target trigger that needs the target database's search_path: a loud error, then the conninfo's options followed", async () => {
  const env = await freshEnv("brk15_target_path");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const db = new URL(env.targetUrl).pathname.slice(1);
  await env.target.query(`create schema app; create table app.audit (id int, v text);
    alter database "${db}" set search_path = app, public;
    create function public.t_audit() returns trigger language plpgsql as $$
    begin insert into audit values (new.id, new.v); return new; end $$;
    create trigger t_audit after insert or update on public.t for each row execute procedure public.t_audit();
    alter table public.t enable always trigger t_audit`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t values (1, 'a'), (2, 'b')");
    await failsWith(env, /relation "audit" does not exist/);
    // (libpq reads a URI's %20 as a space, and a + as itself.)
    const url = `${env.targetUrl}${env.targetUrl.includes("?") ? "&" : "?"}options=${encodeURIComponent("-c search_path=app,public")}`;
    await env.source.query("update dbsync.subscriptions set target_conninfo = $1 where name = 's'", [url]);
    await strictlyConverged(env, ["t"]);
    assert.equal(await value(env.target, "select count(*)::int from app.audit"), 2);
  } finally {
    await sidecar.stop();
  }
});
