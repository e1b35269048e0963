// Attacks on capture version 4 (sql/functions/_capture_insert.sql): a statement of
// at most 1,000 rows queues its keys by one INSERT of an ARRAY of at most 1,001,
// a statement of no row or of more than 1,000 by the chunking INSERT. Each test
// drives statements across that boundary by every path a change takes into a
// replicated table, checks where it can that each changed key is queued exactly
// once (old and new keys of a key change), and ends with the target equal to the
// source, row for row, and no error on the subscription.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { PoolClient } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { Queryable } from "../src/embedded/compare";
import { Env, freshEnv, queueOf, SOURCE_MAJOR, startSidecar, subscribeTables, until, value } from "./helpers";
import { assertTablesEqual, status } from "./kit/convergence";
import { freshEnvAs, migrateUnderWriter } from "./kit/migrate-as";
import { ranAs, scene } from "./security-escalation-helpers";

const SIZES = [0, 1, 999, 1000, 1001, 2000, 2001];

/** The sidecar runs until the subscription is in sync; then every table equals the source's and no error is recorded. */
async function converged(env: Env, tables: string[]): Promise<void> {
  const sc = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true, sc.output());
  } finally {
    await sc.stop();
  }
  await assertTablesEqual(env.source, env.target, tables);
  const st = await status(env);
  assert.equal(st?.last_error ?? null, null, `no error expected: ${JSON.stringify(st)}`);
}

async function groupId(env: Env): Promise<number> {
  return Number(await value(env.source, "select group_id from dbsync.groups where name = 'g'"));
}

const sorted = (xs: string[]) => [...xs].sort();

/** The values of the first column of `sql`, as text, sorted. */
async function column(c: Queryable, sql: string): Promise<string[]> {
  return sorted((await c.query(sql)).rows.map((r) => String(Object.values(r)[0])));
}

async function lastEvent(c: Queryable, g: number): Promise<string> {
  return (await c.query("select coalesce(max(ev_id), 0) as ev from dbsync.events where group_id = $1", [g])).rows[0].ev;
}

/**
 * Runs `sql` (committed on its own, on `writer`) and returns the keys it queued in group `g`, as
 * the readers see them (one per key, as text), sorted, and its events: per 'M'
 * event its number of keys, and the count of 'K' events.
 */
async function queuedBy(c: Queryable, g: number, sql: string, writer = c): Promise<{ keys: string[]; m: number[]; k: number }> {
  const before = await lastEvent(c, g);
  await writer.query(sql);
  const keys = await column(c, `select e.row::text from ${queueOf(String(g))} e where e.ev_id > ${before} and e.op = 'K'`);
  const { rows } = await c.query(
    "select op, pg_catalog.cardinality(row) as n from dbsync.events where group_id = $1 and ev_id > $2 order by n",
    [g, before],
  );
  return {
    keys,
    m: rows.filter((r) => r.op === "M").map((r) => Number(r.n)),
    k: rows.filter((r) => r.op === "K").length,
  };
}

/** The 'M' events' sizes of a statement of n rows, smallest first: one event up to 1,000, else 999 then 1,000 each then the rest. */
function chunks(n: number): number[] {
  if (n === 0) return [];
  if (n <= 1000) return [n];
  const out = [999];
  for (let left = n - 999; left > 0; left -= 1000) out.push(Math.min(1000, left));
  return out.sort((a, b) => a - b);
}

/**
 * Runs `sql` on `writer` and checks (on `c`) it queued exactly the keys `before` selects before it
 * plus those `after` selects after it (each once), in 'M' events of sizes `m` (by
 * default those of one statement of all the keys but the `k` of 'K' events: old
 * keys of key changes).
 */
async function expectQueued(
  c: Queryable,
  g: number,
  sql: string,
  keys: { before?: string; after?: string },
  events: { m?: number[]; k?: number } = {},
  writer = c,
): Promise<void> {
  const old = keys.before ? await column(c, keys.before) : [];
  const got = await queuedBy(c, g, sql, writer);
  const now = keys.after ? await column(c, keys.after) : [];
  const want = sorted([...old, ...now]);
  assert.equal(got.keys.length, want.length, `${sql}: ${got.keys.length} keys queued, ${want.length} expected`);
  assert.deepEqual(got.keys, want, sql);
  const k = events.k ?? 0;
  assert.deepEqual({ m: got.m, k: got.k }, { m: events.m ?? chunks(want.length - k), k }, sql);
}

test("INSERT, UPDATE, a key-changing UPDATE and DELETE of 0, 1, 999, 1,000, 1,001, 2,000 and 2,001 rows: each changed key queued once (old and new), in the events each size should give", async () => {
  const env = await freshEnv("capv4_sizes");
  await subscribeTables(env, `create table b (id int primary key, v int);
                              create table c (a text, n int, v int, primary key (a, n))`, ["b", "c"]);
  const g = await groupId(env);
  // Texts array_out must quote, one that reads as a NULL element, COPY's NULL, and a long one.
  const odd = `(array['NULL', 'null', '\\N', '', ' x', 'a,b', '{y}', '"', 'q''q', 'b\\\\s', repeat('L', 3000)])[1 + g % 11]`;
  for (const [i, n] of SIZES.entries()) {
    const lo = 1_000_000 * (i + 1);
    const hi = lo + n - 1;
    const inRange = (col: string) => `${col} between ${lo} and ${hi}`;
    const bKey = (where: string) => `select array[id::text]::text from b where ${where}`;
    await expectQueued(env.source, g, `insert into b select g, 0 from generate_series(${lo}, ${hi}) g`, { after: bKey(inRange("id")) }, { m: chunks(n) });
    await expectQueued(env.source, g, `update b set v = v + 1 where ${inRange("id")}`, { after: bKey(inRange("id")) }, { m: chunks(n) });
    await expectQueued(env.source, g, `update b set id = id + 500000 where ${inRange("id")}`,
      { before: bKey(inRange("id")), after: bKey(inRange("id - 500000")) }, { m: chunks(n), k: n });
    await expectQueued(env.source, g, `delete from b where ${inRange("id - 500000")} and id % 2 = 0`,
      { before: bKey(`${inRange("id - 500000")} and id % 2 = 0`) });

    const cKey = (where: string) => `select array[a, n::text]::text from c where ${where}`;
    await expectQueued(env.source, g, `insert into c select ${odd}, g, 0 from generate_series(${lo}, ${hi}) g`, { after: cKey(inRange("n")) }, { m: chunks(n) });
    await expectQueued(env.source, g, `update c set a = a || '}', v = 1 where ${inRange("n")}`,
      { before: cKey(inRange("n")), after: cKey(inRange("n")) }, { m: chunks(n), k: n });
    await expectQueued(env.source, g, `delete from c where ${inRange("n")}`, { before: cKey(inRange("n")) }, { m: chunks(n) });
  }
  await converged(env, ["b", "c"]);
});

test("INSERT ... ON CONFLICT DO UPDATE and DO NOTHING across the boundary (inserted and updated rows in one statement, key changes by DO UPDATE), COPY FROM of 1,000 and 1,001 rows", async () => {
  const env = await freshEnv("capv4_upsert_copy");
  await subscribeTables(env, "create table b (id int primary key, v int)", ["b"]);
  const g = await groupId(env);
  const key = (where: string) => `select array[id::text]::text from b where ${where}`;
  await env.source.query("insert into b select g, 0 from generate_series(1, 500) g");
  // 501 inserted (one event), 500 updated (another): 1,001 rows, no event over 1,000.
  await expectQueued(env.source, g, "insert into b select g, 1 from generate_series(1, 1001) g on conflict (id) do update set v = excluded.v",
    { after: key("id <= 1001") }, { m: [500, 501] });
  await expectQueued(env.source, g, "insert into b select g, 2 from generate_series(1, 1001) g on conflict do nothing", {}, { m: [] });
  await expectQueued(env.source, g, "insert into b select g, 2 from generate_series(1, 1002) g on conflict do nothing",
    { after: key("id = 1002") }, { m: [1] });
  // DO UPDATE that moves the key: 1,000 old keys by the row trigger, 1,000 new.
  await expectQueued(env.source, g, "insert into b select g, 3 from generate_series(1, 1000) g on conflict (id) do update set id = b.id + 10000",
    { before: key("id <= 1000"), after: key("id between 10001 and 11000") }, { m: [1000], k: 1000 });
  await expectQueued(env.source, g, "insert into b select g, 3 from generate_series(10001, 11001) g on conflict (id) do update set id = b.id + 10000",
    { before: key("id between 10001 and 11000"), after: key("id between 11001 and 21000") }, { m: [1, 1000], k: 1000 });

  for (const [n, lo] of [[1000, 30000], [1001, 40000], [2001, 50000]]) {
    const c = await env.source.connect();
    try {
      const lines = Array.from({ length: n }, (_, i) => `${lo + i}\t${i}\n`);
      const before = await lastEvent(c, g);
      await pipeline(Readable.from(lines), c.query(copyFrom("copy b from stdin")));
      assert.deepEqual(
        (await c.query("select pg_catalog.cardinality(row) as n from dbsync.events where group_id = $1 and ev_id > $2 order by 1", [g, before])).rows.map((r) => r.n),
        chunks(n),
        `COPY of ${n} rows`,
      );
    } finally {
      c.release();
    }
  }
  await converged(env, ["b"]);
});

test("MERGE (PostgreSQL 15+) inserting, updating, moving keys and deleting across the boundary in one statement", async (t) => {
  if (SOURCE_MAJOR < 15) {
    t.skip("MERGE is PostgreSQL 15+");
    return;
  }
  const env = await freshEnv("capv4_merge");
  await subscribeTables(env, "create table b (id int primary key, v int)", ["b"]);
  const g = await groupId(env);
  await env.source.query("insert into b select g, 0 from generate_series(1, 3000) g");
  const key = (where: string) => `select array[id::text]::text from b where ${where}`;
  // 1..1000 updated and 1001..1500 moved (+100000): 1,500 rows of one UPDATE
  // transition table, 500 old keys by the row trigger; 1501..2001 deleted (501);
  // 3001..4001 inserted (1,001).
  await expectQueued(env.source, g, `merge into b using generate_series(1, 4001) s(id) on b.id = s.id
      when matched and s.id <= 1000 then update set v = 1
      when matched and s.id <= 1500 then update set id = b.id + 100000
      when matched and s.id <= 2001 then delete
      when not matched then insert values (s.id, 2)`,
    { before: key("id between 1001 and 2001"), after: key("id <= 1000 or id between 101001 and 101500 or id between 3001 and 4001") },
    { m: [2, 501, 501, 999, 999], k: 500 });
  await converged(env, ["b"]);
});

test("writable CTEs touching one table several times, TRUNCATE followed by inserts in one transaction, a TRUNCATE rolled back to a savepoint", async () => {
  const env = await freshEnv("capv4_cte_truncate");
  await subscribeTables(env, `create table b (id int primary key, v int);
                              create table o (id int primary key, v int)`, ["b", "o"]);
  const g = await groupId(env);
  const key = (where: string, t = "b") => `select array[id::text]::text from ${t} where ${where}`;
  await env.source.query("insert into b select g, 0 from generate_series(1, 3000) g");
  // Two UPDATEs of b in one statement: 600 + 400 rows, one transition table of 1,000.
  await expectQueued(env.source, g, `with u1 as (update b set v = 1 where id <= 600 returning 1),
                                          u2 as (update b set v = 2 where id between 601 and 1000 returning 1)
                                     select (select count(*) from u1) + (select count(*) from u2)`,
    { after: key("id <= 1000") }, { m: [1000] });
  // ... and 600 + 401: 1,001.
  await expectQueued(env.source, g, `with u1 as (update b set v = 3 where id <= 600 returning 1),
                                          u2 as (update b set v = 4 where id between 601 and 1001 returning 1)
                                     select (select count(*) from u1) + (select count(*) from u2)`,
    { after: key("id <= 1001") }, { m: [2, 999] });
  // DELETE, UPDATE and INSERT of b in one statement, the deleted rows inserted again
  // under new keys and into another table.
  await expectQueued(env.source, g, `with d as (delete from b where id between 1001 and 1700 returning id, v),
                                          u as (update b set v = 5 where id between 1701 and 2701 returning id),
                                          i as (insert into o select id, v from d returning 1)
                                     insert into b select id + 10000, (select count(*) from u) from d`,
    { before: key("id between 1001 and 1700"),
      after: `${key("id between 1701 and 2701 or id between 11001 and 11700")} union all ${key("true", "o")}` },
    { m: [2, 700, 700, 700, 999] });
  await env.source.query(`begin;
                          truncate b;
                          insert into b select g, 6 from generate_series(1, 1001) g;
                          savepoint s;
                          truncate o;
                          insert into o select g, 0 from generate_series(1, 1000) g;
                          rollback to savepoint s;
                          update o set v = -v;
                          commit`);
  await converged(env, ["b", "o"]);
});

test("partitioned tables (rows moving between partitions, statements aimed at a partition, TRUNCATE of one) and inheritance (statements through the parent, a parent and a child with the same keys)", async () => {
  const env = await freshEnv("capv4_partitions");
  const pg10 = SOURCE_MAJOR < 11;
  await env.source.query(`create table p (id int not null, r int not null, v int${pg10 ? "" : ", primary key (id, r)"}) partition by list (r);
                          create table p1 partition of p ${pg10 ? "(primary key (id, r))" : ""} for values in (1);
                          create table p2 partition of p ${pg10 ? "(primary key (id, r))" : ""} for values in (2);
                          create table parent (id int primary key, v int);
                          create table child (primary key (id)) inherits (parent)`);
  await env.target.query(`create table p (id int not null, r int not null, v int${pg10 ? "" : ", primary key (id, r)"}) partition by list (r);
                          create table p1 partition of p ${pg10 ? "(primary key (id, r))" : ""} for values in (1);
                          create table p2 partition of p ${pg10 ? "(primary key (id, r))" : ""} for values in (2);
                          create table parent (id int primary key, v int);
                          create table child (primary key (id)) inherits (parent)`);
  await env.source.query("select dbsync.add_table('p', 'g', $1), dbsync.add_table('parent', 'g'), dbsync.add_table('child', 'g')", [pg10 ? ["id", "r"] : null]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query(`insert into p select g, 1 + g % 2, 0 from generate_series(1, 2001) g;
                          insert into p1 select g, 1, 0 from generate_series(3000, 4000) g;
                          update p set v = 1 where id <= 1001;
                          update p1 set id = id + 10000 where id between 3000 and 3999;
                          delete from p2 where id <= 1000`);
  if (!pg10) await env.source.query("update p set r = 2 where r = 1 and id <= 2001"); // 1,001 rows move
  await env.source.query(`truncate p2;
                          insert into p select g, 2, 7 from generate_series(1, 1000) g;
                          insert into parent select g, 0 from generate_series(1, 1001) g;
                          insert into child select g, 0 from generate_series(1, 1001) g;
                          update parent set v = v + 1 where id <= 1000;
                          update parent set id = id + 5000 where id between 500 and 1001;
                          delete from parent where id between 5500 and 5600;
                          delete from only parent where id < 20`);
  await converged(env, ["p", "only parent", "child"]);
});

test("an application's triggers: BEFORE ROW changing the key, AFTER ROW writing another replicated table and its own, AFTER STATEMENT with a transition table inserting into the same table (recursion), a deferred constraint trigger", async () => {
  const env = await freshEnv("capv4_app_triggers");
  await subscribeTables(env, `
    create table a (id int primary key, v int);
    create table log (id bigint primary key, a_id int, v int);
    create sequence log_seq;
    create function a_before() returns trigger language plpgsql as $f$
    begin
        if NEW.v = -1 then NEW.id := NEW.id + 100000; end if;
        return NEW;
    end $f$;
    create trigger a_before before insert or update on a for each row execute function a_before();
    create function a_row() returns trigger language plpgsql as $f$
    begin
        insert into log values (nextval('log_seq'), NEW.id, NEW.v);
        if NEW.v = 42 then update a set v = 43 where id = NEW.id; end if;
        return null;
    end $f$;
    create trigger z_row after insert or update on a for each row when (NEW.v <> 0) execute function a_row();
    create function a_stmt() returns trigger language plpgsql as $f$
    begin
        if pg_trigger_depth() = 1 then
            insert into a select n.id + 1000000, 0 from new_rows n;
        end if;
        return null;
    end $f$;
    create trigger a_stmt after insert on a referencing new table as new_rows for each statement execute function a_stmt();
    create function log_deferred() returns trigger language plpgsql as $f$
    begin
        update log set v = v + 1000 where id = NEW.id;
        return null;
    end $f$;
    create constraint trigger log_deferred after insert on log deferrable initially deferred for each row execute function log_deferred()`,
  ["a", "log"]);
  // The target's copies must not fire: the target gets the rows themselves.
  await env.target.query("alter table a disable trigger user; alter table log disable trigger user");
  for (const n of [1000, 1001]) {
    const lo = n === 1000 ? 10000 : 20000;
    await env.source.query(`insert into a select g, 0 from generate_series(${lo}, ${lo + n - 1}) g`);
    await env.source.query(`begin; update a set v = -1 where id between ${lo} and ${lo + n - 1}; commit`);
    await env.source.query(`begin; update a set v = 42 where id between ${lo + 100000} and ${lo + 100000 + n - 1}; commit`);
  }
  assert.ok(Number(await value(env.source, "select count(*) from a where id > 1000000")) >= 2001);
  await converged(env, ["a", "log"]);
});

test("subtransactions: functions with exception blocks whose writes roll back inside the statement, savepoints around statements of 1,000 and 1,001 rows", async () => {
  const env = await freshEnv("capv4_subxacts");
  await subscribeTables(env, `
    create table b (id int primary key, v int);
    create table side (id int primary key, v int);
    create function try_side(p int) returns int language plpgsql as $f$
    begin
        insert into side values (p, p);
        if p % 3 = 0 then raise exception 'no %', p; end if;
        return p;
    exception when others then
        return -p;
    end $f$;
    create function bulk_then_fail(p_lo int, p_n int) returns int language plpgsql as $f$
    begin
        insert into side select g, 0 from generate_series(p_lo, p_lo + p_n - 1) g;
        update b set v = v + 1 where id < p_n;
        raise exception 'undo';
    exception when others then
        insert into side values (-p_lo, p_n);
        return 0;
    end $f$`, ["b", "side"]);
  const g = await groupId(env);
  const key = (t: string, where: string) => `select array[id::text]::text from ${t} where ${where}`;
  // One INSERT of 1,001 rows into b, each row's value from a function that writes
  // side in a subtransaction, a third of which roll back.
  await env.source.query("insert into b select g, try_side(g) from generate_series(1, 1001) g");
  await expectQueued(env.source, g, "select bulk_then_fail(50000, 1001)", { after: key("side", "id = -50000") }, { m: [1] });
  await expectQueued(env.source, g, "select bulk_then_fail(60000, 1000)", { after: key("side", "id = -60000") }, { m: [1] });
  await env.source.query(`begin;
                          savepoint a; insert into side select g, 1 from generate_series(70000, 71000) g; rollback to savepoint a;
                          savepoint b; insert into side select g, 2 from generate_series(80000, 80999) g; release savepoint b;
                          savepoint c; delete from b where id <= 1001; rollback to savepoint c;
                          update b set v = -v where id <= 1000;
                          commit`);
  await converged(env, ["b", "side"]);
});

test("a deferrable primary key: 1,000 and 1,001 keys shifted and reversed in one statement each", async () => {
  const env = await freshEnv("capv4_deferred");
  await subscribeTables(env, `create table d (id int primary key deferrable initially deferred, v int);
                              create table e (id int primary key deferrable initially immediate, v int)`, ["d", "e"]);
  const g = await groupId(env);
  const key = (t: string, where: string) => `select array[id::text]::text from ${t} where ${where}`;
  await env.source.query(`insert into d select g, g from generate_series(1, 1001) g; insert into d select g, g from generate_series(5000, 6000) g;
                          insert into e select g, g from generate_series(1, 2001) g`);
  // Shifted by one: keys 1..1001 old, 2..1002 new, each queued once per side.
  await expectQueued(env.source, g, "update d set id = id + 1 where id <= 1001",
    { before: key("d", "id <= 1001"), after: key("d", "id between 2 and 1002") }, { m: [2, 999], k: 1001 });
  await expectQueued(env.source, g, "begin; set constraints all deferred; update e set id = 1001 - id where id <= 1000; commit",
    { before: key("e", "id <= 1000"), after: key("e", "id between 1 and 1000") }, { m: [1000], k: 1000 });
  await env.source.query("update d set id = 3000 - id");
  await converged(env, ["d", "e"]);
});

test("keys of many types across the boundary: numeric printed differently, enum, collated and nondeterministic text, arrays with NULL and quoted elements, a domain, a composite, 20 kB keys", async () => {
  const env = await freshEnv("capv4_key_types");
  const icu = SOURCE_MAJOR >= 12 && Number(await value(env.source, "select count(*) from pg_collation where collprovider = 'i'")) > 0;
  const ddl = `
    create type mood as enum ('sad', 'ok', 'happy');
    create domain dtext as text check (value <> 'forbidden');
    create type pair as (a int, b text);
    create table kn (k numeric primary key, v int);
    create table ke (k mood, n int, v int, primary key (k, n));
    create table kc (k text collate "C" primary key, v int);
    create table ka (k text[] primary key, v int);
    create table kd (k dtext primary key, v int);
    create table kp (k pair primary key, v int);
    create table kl (k text primary key, v int);
    ${icu ? `create collation ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             create table kci (k text collate ci primary key, v int);` : ""}`;
  const tables = ["kn", "ke", "kc", "ka", "kd", "kp", "kl", ...(icu ? ["kci"] : [])];
  await subscribeTables(env, ddl, tables);
  const g = await groupId(env);
  const texts = `(array['NULL', '\\N', 'a,b', '{c}', '"', 'd e', 'f''g', 'h\\\\i', '', 'ÿ'])`;
  for (const n of [1000, 1001]) {
    const lo = n === 1000 ? 10000 : 30000;
    const range = `generate_series(${lo}, ${lo + n - 1}) g`;
    await env.source.query(`
      insert into kn select g + 0.5, 0 from ${range};
      insert into ke select (enum_range(null::mood))[1 + g % 3], g, 0 from ${range};
      insert into kc select ${texts}[1 + g % 10] || g, 0 from ${range};
      insert into ka select array[${texts}[1 + g % 10], null, g::text], 0 from ${range};
      insert into kd select 'd' || ${texts}[1 + g % 10] || g, 0 from ${range};
      insert into kp select row(g, ${texts}[1 + g % 10])::pair, 0 from ${range};
      insert into kl select repeat(md5(g::text), 625), 0 from ${range};
      ${icu ? `insert into kci select 'Key' || g, 0 from ${range};` : ""}`);
    // 1.50 is the key 1.5 printed differently: the target must end with 1.50.
    await expectQueued(env.source, g, `update kn set k = k::numeric(20, 2) where k between ${lo} and ${lo + n}`,
      { before: `select array[k::text]::text from kn where k between ${lo} and ${lo + n}`, after: `select array[k::text]::text from kn where k between ${lo} and ${lo + n}` },
      { k: n });
    await expectQueued(env.source, g, `update ka set k = k || 'x'::text where k[3]::int between ${lo} and ${lo + n}`,
      { before: `select array[k::text]::text from ka where k[3]::int between ${lo} and ${lo + n}`, after: `select array[k::text]::text from ka where k[3]::int between ${lo} and ${lo + n}` },
      { k: n });
    await env.source.query(`
      update ke set k = 'happy' where n between ${lo} and ${lo + n} and k <> 'happy';
      update kc set v = 1 where k like '%${lo}';
      update kd set k = k || 'x' where v = 0;
      update kp set k = row((k).a + 1000000, (k).b)::pair where (k).a between ${lo} and ${lo + n};
      update kl set v = 1 where v = 0;
      ${icu ? `update kci set k = lower(k) where v = 0; update kci set v = 1 where k = 'KEY${lo}';` : ""}
      delete from kl where v = 1 and k < '5'`);
  }
  await converged(env, tables);
});

test("REPEATABLE READ and SERIALIZABLE writers and plain ones on the same keys at once, statements of 1,000 and 1,001 rows, while the sidecar applies", async () => {
  const env = await freshEnv("capv4_concurrent");
  await subscribeTables(env, "create table b (id int primary key, v int)", ["b"]);
  await env.source.query("insert into b select g, 0 from generate_series(1, 3000) g");
  const sc = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  let stop = false;
  const rounds = [0, 0, 0];
  const writer = async (w: number, isolation: string) => {
    const c: PoolClient = await env.source.connect();
    try {
      for (let i = 0; !stop; i++) {
        const n = i % 2 === 0 ? 1000 : 1001;
        const lo = 1 + (i * 7 + w * 300) % 1900;
        try {
          await c.query(`begin isolation level ${isolation}`);
          await c.query(`update b set v = v + 1 where id between ${lo} and ${lo + n - 1}`);
          await c.query(`delete from b where id between ${lo + 100} and ${lo + 110}`);
          await c.query(`insert into b select g, ${w} from generate_series(${lo}, ${lo + n - 1}) g on conflict (id) do update set v = excluded.v`);
          await c.query("commit");
          rounds[w]++;
        } catch (err) {
          await c.query("rollback");
          const code = (err as { code?: string }).code;
          if (code !== "40001" && code !== "40P01") throw err;
        }
      }
    } finally {
      c.release();
    }
  };
  try {
    const running = [writer(0, "read committed"), writer(1, "repeatable read"), writer(2, "serializable")];
    await until("each writer committed a few times", async () => rounds.every((r) => r >= 4), 120_000);
    stop = true;
    await Promise.all(running);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true, sc.output());
  } finally {
    stop = true;
    await sc.stop();
  }
  await converged(env, ["b"]);
});

/**
 * Traps for what the two INSERTs of capture v4 evaluate, beyond the helpers'
 * operators on int4 (<= and > among them) and shadows of built-in functions
 * (nextval among them), in schemas before pg_catalog on the
 * writer's search_path.
 */
const V4_TRAPS = ["app", "public"].flatMap((schema) => [
  ...[
    ["/", "int8", "int4", "int8", "int84div"],
  ].map(([op, l, r, ret, fn]) => `
      create function ${schema}.trap_${fn}(${l}, ${r}) returns ${ret} language plpgsql volatile strict as $f$
      begin
          perform app.mark('operator ${op} (${l}, ${r})');
          return pg_catalog.${fn}($1, $2);
      end $f$;
      create operator ${schema}.${op} (leftarg = ${l}, rightarg = ${r}, function = ${schema}.trap_${fn});`),
  `create function ${schema}.cardinality(text[]) returns int language plpgsql volatile strict as $f$
   begin
       perform app.mark('function ${schema}.cardinality');
       return 1;
   end $f$;`,
]);

test("a hostile table owner's operators and functions on the search_path (cardinality, nextval, / and the int4 operators) and temporary tables named as the transition tables, at 1,000 and 1,001 rows: none runs, nothing captured wrong", async (t) => {
  if (SOURCE_MAJOR < 11) {
    t.skip("the owner's traps are CREATE OPERATOR ... FUNCTION, PostgreSQL 11+ (security-escalation-helpers)");
    return;
  }
  const s = await scene("capv4_hostile", { operators: true });
  try {
    const { env } = s;
    const ddl = "create table app.h (id int primary key, v text)";
    await s.srcApp.query(V4_TRAPS.join("\n"));
    await s.srcApp.query(ddl);
    await s.tgtApp.query(ddl);
    await env.source.query("select dbsync.add_table('app.h', 'g')");
    await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
    const g = await groupId(env);
    const c = await s.srcApp.connect();
    try {
      await c.query("set search_path = pg_temp, app, public, pg_catalog");
      for (const [sql, tag] of [
        ["select 5::int8 / 2", "operator / (int8, int4)"],
        ["select cardinality(array['a'])", "function app.cardinality"],
      ]) {
        await c.query(sql);
        assert.deepEqual(ranAs(await s.marks(), "source", tag), [s.app], `\`${sql}\` should fire the trap "${tag}"`);
      }
      await s.clearMarks();
      await c.query(`create temp table dbsync_new (id int, k text[]);
                     insert into dbsync_new select 666, '{666}' from generate_series(1, 1001)`);
      const key = (where: string) => `select array[id::text]::text from app.h where ${where}`;
      for (const [n, lo] of [[1, 10], [1000, 20000], [1001, 40000]]) {
        await expectQueued(env.source, g, `insert into app.h select g, 'x' from generate_series(${lo}, ${lo + n - 1}) g`,
          { after: key(`id between ${lo} and ${lo + n - 1}`) }, {}, c);
        await expectQueued(env.source, g, `update app.h set id = id + 100000 where id between ${lo} and ${lo + n - 1}`,
          { before: key(`id between ${lo} and ${lo + n - 1}`), after: key(`id between ${lo + 100000} and ${lo + 100000 + n - 1}`) }, { k: n }, c);
        await expectQueued(env.source, g, `delete from app.h where id between ${lo + 100000} and ${lo + 100000 + n / 2}`,
          { before: key(`id between ${lo + 100000} and ${lo + 100000 + n / 2}`) }, {}, c);
      }
    } finally {
      c.release();
    }
    await s.assertNoEscalation("capture");
    assert.deepEqual(ranAs(await s.marks(), "source", "function app.cardinality"), [], "capture reached the owner's cardinality");
    await converged(env, ["app.h"]);
    await s.assertNoEscalation("apply");
  } finally {
    await s.cleanup();
  }
});

// The dbsync before capture version 4: its capture is version 3.
const BEFORE_CAPTURE_4 = "a8cdc58e94d9d6d50013290e416e7d90335cda51";

test("upgrade from capture version 3: events queued by v3 (statements of 1,000, 1,001 and 2,001 rows) and by writers of such statements running while migrate regenerates capture, all applied", async (t) => {
  const env = await freshEnvAs(t, BEFORE_CAPTURE_4, "the version before capture 4", "capv4_upgrade");
  if (!env) return;
  assert.equal(await value(env.source, "select dbsync._capture_version()"), 3);
  await subscribeTables(env, `create table t (id int primary key, v int);
                              create table m (a int, b text, v int, primary key (a, b))`, ["t", "m"]);
  // Queued by v3, not applied yet.
  await env.source.query(`insert into t select g, 0 from generate_series(1, 1000) g;
                          insert into t select g, 0 from generate_series(1001, 2001) g;
                          insert into m select g, 'k,"{' || g, 0 from generate_series(1, 2001) g;
                          update t set id = id + 10000 where id <= 1001`);

  // Statements of 999, 1,000 and 1,001 rows in turn.
  const n = (i: number) => 999 + (i % 3);
  await migrateUnderWriter(env, (i) => `begin;
                       update t set v = v + 1 where id between 1002 and ${1002 + n(i) - 1};
                       insert into t select 100000 + ${i} * 2000 + g, ${i} from generate_series(0, ${n(i) - 1}) g;
                       update m set v = v + 1, b = b || 'x' where a between ${i % 50} and ${(i % 50) + n(i) - 1};
                       delete from t where id between 100000 + ${i} * 2000 and 100000 + ${i} * 2000 + ${i % 3};
                       commit`, 2);
  assert.deepEqual(
    (await env.source.query("select distinct capture_version as v from dbsync.tables")).rows.map((r) => r.v),
    [await value(env.source, "select dbsync._capture_version()")],
  );
  await env.source.query("update t set v = -v where id > 2000; insert into m select g, 'new', 1 from generate_series(1, 1000) g");
  await converged(env, ["t", "m"]);
});

test("changes made by PostgreSQL for the statement: foreign key cascades changing a child's key and deleting 1,001 children, TRUNCATE ... CASCADE, a rule's DO ALSO, a view's INSTEAD OF trigger", async () => {
  const env = await freshEnv("capv4_cascades");
  await subscribeTables(env, `
    create table par (id int primary key, v int);
    create table kid (par_id int references par on update cascade on delete cascade, n int, v int, primary key (par_id, n));
    create table ref (id int primary key, par_id int references par on update cascade on delete set null);
    create table audit (id bigserial primary key, par_id int);
    create rule par_audit as on update to par do also insert into audit (par_id) values (new.id);
    create view par_view as select id, v from par;
    create function par_view_ins() returns trigger language plpgsql as $f$
    begin
        insert into par values (NEW.id, NEW.v);
        return NEW;
    end $f$;
    create trigger par_view_ins instead of insert on par_view for each row execute function par_view_ins()`,
  ["par", "kid", "ref", "audit"]);
  await env.target.query("alter table par disable rule par_audit");
  await env.source.query(`insert into par_view select g, 0 from generate_series(1, 3) g;
                          insert into kid select 1 + g % 3, g, 0 from generate_series(1, 3003) g;
                          insert into ref select g, 1 + g % 3 from generate_series(1, 1001) g`);
  // The cascade changes the key of 1,001 kid rows.
  await env.source.query("update par set id = 10 where id = 1");
  await env.source.query("delete from par where id = 2");
  await env.source.query(`create table gone (id int primary key, par_id int references par);
                          insert into gone select g, 3 from generate_series(1, 1000) g`);
  await env.target.query("create table gone (id int primary key, par_id int references par)");
  await env.source.query("select dbsync.acknowledge_ddl(null); select dbsync.add_table('gone', 'g')");
  await env.source.query("insert into gone select g, 10 from generate_series(1001, 2001) g");
  await env.source.query("truncate par cascade");
  await env.source.query("insert into par values (1, 1); insert into kid select 1, g, 0 from generate_series(1, 1000) g");
  await converged(env, ["par", "kid", "ref", "audit", "gone"]);
});
