// Attacks on execute_ddl's scoped look at what its statement did (dbsync._ddl_effects:
// its group's tables and partitions, and the relations the transaction holds locks on)
// and on batch_plan's catalog reads for a whole batch at once. The danger of the first
// is silence: rows of a replicated table changed by the statement, neither copied again
// nor refused, so that a target's run of the statement leaves its own rows. "local" is
// a table outside every group with one row more on the target than on the source: a
// statement that reads it changes other rows there, so only a copy makes the tables
// equal again.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PoolClient } from "pg";
import { attachedKey, compat, Env, freshEnv, parentKey, partitionKeyColumns, Side, SOURCE_MAJOR, sqlError, startSidecar, TARGET_MAJOR, value } from "./helpers";
import { assertTablesEqual, firstBatchEqual, setup, synced } from "./kit/convergence";
import { planErrorAfterDdl } from "./kit/plan-race";

// (A partitioned table's primary key comes with PostgreSQL 11.)
const PARTITIONED = SOURCE_MAJOR >= 11;
/** The tables on a server of `major`: hp only from 11 (the target's own DDL when the majors differ). */
const tablesOn = (major: number) => `create table t (id int primary key, v int); create table u (id int primary key, v int); create table local (id int);
  create table h1 (id int primary key, v int); create table h_audit (id serial primary key, tag text);
  ${major >= 11 ? "create table hp (id int primary key, v int) partition by range (id); create table hp1 partition of hp for values from (0) to (100)" : ""}`;

/** Group g (t, u) subscribed; group h (h1, h_audit, hp) not; local differs; fn runs with the sidecar after the first sync. */
async function withGroups(label: string, fn: (env: Env, c: PoolClient) => Promise<void>): Promise<void> {
  const env = await freshEnv(label);
  await setup(env, tablesOn(SOURCE_MAJOR), ["t", "u"], { copyData: true, targetDdl: tablesOn(TARGET_MAJOR) });
  await env.source.query("select dbsync.add_table('h1', 'h'), dbsync.add_table('h_audit', 'h')");
  if (PARTITIONED) await env.source.query("select dbsync.add_table('hp', 'h'); insert into hp select g, 0 from generate_series(1, 10) g");
  await env.source.query(`insert into t select g, 0 from generate_series(1, 10) g; insert into u select g, 0 from generate_series(1, 10) g;
    insert into h1 select g, 0 from generate_series(1, 10) g; insert into local select generate_series(1, 5)`);
  await env.target.query("insert into local select generate_series(1, 6)");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const c = await env.source.connect();
  try {
    await synced(env);
    await fn(env, c);
  } finally {
    c.release();
    await sidecar.stop();
  }
}

async function converged(env: Env): Promise<void> {
  assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true,
    JSON.stringify(await env.source.query("select state, last_error from dbsync.status")));
  await assertTablesEqual(env.source, env.target, ["t", "u"]);
}

async function refused(c: PoolClient, ddl: string, changed: RegExp): Promise<void> {
  await c.query("begin");
  try {
    const e = await sqlError(c, "select dbsync.execute_ddl('g', $1)", [ddl]);
    assert.equal(e.code, "22023", `${ddl}: ${e.message}`);
    assert.match(e.message, changed, ddl);
  } finally {
    await c.query("rollback");
  }
}

const WRITE_U = "update u set v = v + 1 where id in (select id from local)";

test("DDL with an UPDATE, a DO block, a view's INSTEAD OF trigger writing a table of the group: copied again", async () => {
  await withGroups("scatk_own", async (env, c) => {
    const view = `create view uv as select * from u;
      create function uv_upd() returns trigger language plpgsql as $f$ begin update u set v = new.v where id = old.id; return new; end $f$;
      create trigger uv_upd instead of update on uv for each row execute function uv_upd()`;
    await env.source.query(compat(view, "source"));
    await env.target.query(compat(view, "target"));
    await c.query(`select dbsync.execute_ddl('g', 'alter table t add column a int; ${WRITE_U.replace(/'/g, "''")}')`);
    await c.query(`select dbsync.execute_ddl('g', 'alter table t add column b int; do $d$ begin ${WRITE_U} ; end $d$')`);
    await c.query("select dbsync.execute_ddl('g', 'alter table t add column c int; update uv set v = v + 10 where id in (select id from local)')");
    await converged(env);
  });
});

test("DDL writing another group's table through a DO block, a function, a TRUNCATE in a function, a trigger, an event trigger, a partition: refused", async () => {
  await withGroups("scatk_other", async (env, c) => {
    await env.source.query(compat(`create function touch_h1() returns void language sql as $f$ update h1 set v = v + 1 where id = 1 $f$;
      create function trunc_h1() returns void language plpgsql as $f$ begin truncate h1; end $f$;
      create function u_to_h1() returns trigger language plpgsql as $f$ begin update h1 set v = new.v where id = new.id; return new; end $f$;
      create trigger u_to_h1 after update on u for each row execute function u_to_h1()`));
    await refused(c, "alter table t add column a int; do $d$ begin update h1 set v = 5 where id = 2; end $d$", /public\.h1 of group "h"/);
    await refused(c, "alter table t add column a int; select touch_h1()", /public\.h1 of group "h"/);
    await refused(c, "alter table t add column a int; select trunc_h1()", /public\.h1 of group "h"/);
    await refused(c, "alter table t add column a int; update u set v = 3 where id = 3", /public\.h1 of group "h"/);
    if (PARTITIONED) {
      await refused(c, "alter table t add column a int; delete from hp1 where id = 4", /public\.hp of group "h"/);
      await refused(c, "alter table t add column a int; update hp set v = 9 where id = 5", /public\.hp of group "h"/);
      await refused(c, "alter table hp1 add constraint big check (v < 1000)", /public\.hp (of|belongs to) group "h"/);
    }
    // Written first in the transaction, outside the statement: its counts before it are known.
    await c.query("begin; update h1 set v = 1 where id = 7");
    try {
      const e = await sqlError(c, "select dbsync.execute_ddl('g', 'alter table t add column a int; update h1 set v = 2 where id = 8')");
      assert.equal(e.code, "22023", e.message);
    } finally {
      await c.query("rollback");
    }
    // An application's ALWAYS event trigger writing its audit table, of another group.
    await env.source.query(compat(`create function audit() returns event_trigger language plpgsql as $f$ begin insert into public.h_audit (tag) values (tg_tag); end $f$;
      create event trigger scatk_audit on ddl_command_end execute function audit(); alter event trigger scatk_audit enable always`));
    try {
      await refused(c, "alter table t add column a int", /public\.h_audit of group "h"/);
    } finally {
      await env.source.query("drop event trigger scatk_audit");
    }
    assert.equal(await value(env.source, "select count(*)::int from dbsync.events where op = 'X'"), 0);
  });
});

test("a table of the group truncated and filled again by the statement, as many rows as the transaction wrote to it before (its counts as before): the targets end with the source's rows", async () => {
  await withGroups("scatk_leftover", async (env, c) => {
    await c.query("begin");
    await c.query("insert into u select g, 0 from generate_series(101, 105) g");
    await c.query("select dbsync.execute_ddl('g', 'alter table t add column a int; truncate u; insert into u select id, 1 from local')");
    await c.query("commit");
    await converged(env);
  });
});

test("ALTER COLUMN TYPE ... USING that reads another table: the rewritten table is copied again", async () => {
  await withGroups("scatk_using", async (env, c) => {
    const notices: string[] = [];
    c.on("notice", (n) => notices.push(n.message ?? ""));
    for (const db of [env.source, env.target]) await db.query("create function nlocal() returns int language sql stable as 'select count(*)::int from local'");
    await c.query("select dbsync.execute_ddl('g', 'alter table u alter column v type bigint using v + nlocal()')");
    assert.ok(notices.some((n) => /public\.u is copied again by every subscription: its column v was rewritten/.test(n)), notices.join("; "));
    await converged(env);
  });
});

test("one batch of tables whose same-named columns differ in type, typmod, collation, domain, with dropped and generated columns and partitions in other column orders", async () => {
  const env = await freshEnv("scatk_plan");
  const tables = ["a", "b", "c", "d", "p"];
  const ddl = (side: Side) => `create domain pos as int check (value > 0); create domain short as varchar(3);
    create table a (id int primary key, v numeric(6, 2), w text collate "C", x int);
    create table b (id int primary key, gone int, v numeric, w text, x pos);
    create table c (id int primary key, v numeric(12, 5), w varchar(5), x short, g int${Math.min(SOURCE_MAJOR, TARGET_MAJOR) >= 12 ? " generated always as (id * 3) stored" : ""});
    create table d (id bigint primary key, v float8, w short, x text);
    alter table b drop column gone;
    create table p (id int not null, v text, w int not null${parentKey("id, w", side)}) partition by list (w);
    create table p1 (w int not null, id int not null, v text${attachedKey("id, w", side)}); alter table p attach partition p1 for values in (1);
    create table p2 (v text, dropped int, id int not null, w int not null${attachedKey("id, w", side)}); alter table p2 drop column dropped; alter table p attach partition p2 for values in (2)`;
  await setup(env, ddl("source"), tables, { keyColumns: { p: partitionKeyColumns(["id", "w"]) }, targetDdl: ddl("target") });
  // Before the sidecar starts: its first batch holds all of it.
  await env.source.query(`begin;
    insert into a select g, g / 7.0, 'a' || g, g from generate_series(1, 20) g;
    insert into b select g, g / 7.0, 'b' || g, g from generate_series(1, 20) g;
    insert into c (id, v, w, x) select g, g / 7.0, 'c' || g, g % 100 from generate_series(1, 20) g;
    -- (eighths: a float8's text is the same on every major, where 10 and 11 print 15 digits of a seventh)
    insert into d select g, g / 8.0, 'd' || (g % 10), 'x' || g from generate_series(1, 20) g;
    insert into p select g, 'p' || g, 1 + g % 2 from generate_series(1, 20) g;
    update a set v = v + 1, w = w || 'z' where id <= 5; update b set x = x + 1 where id > 15; update c set w = 'u' where id = 3;
    delete from d where id > 15; update p set v = 'q' where id < 8; delete from p where id = 9;
    commit`);
  await firstBatchEqual(env, tables);
});

test("200 tables changed in one batch, alike and not", async () => {
  const env = await freshEnv("scatk_many");
  const tables = Array.from({ length: 200 }, (_, i) => `m${i}`);
  await setup(env, tables.map((t, i) => `create table ${t} (id int primary key, v ${["int", "text", "numeric", "bigint"][i % 4]}, w text)`).join(";"), tables);
  await env.source.query(`begin; ${tables.map((t) => `insert into ${t} select g, g, 'w' || g from generate_series(1, 5) g; update ${t} set w = null where id = 2`).join(";")}; commit`);
  await firstBatchEqual(env, tables);
});

test("columns of one type swapped by renames after a batch's snapshot, before its plan locked the table: the plan asks for a new snapshot, not the rows under each other's names", async () => {
  const env = await freshEnv("scatk_swap");
  await setup(env, "create table a (id int primary key, v int, m text); create table b (id int primary key, v int, w int)", ["a", "b"]);
  await env.source.query("insert into a values (1, 1, 'x'); insert into b values (1, 10, 20)");
  const err = await planErrorAfterDdl(env, "alter table b rename v to x; alter table b rename w to v; alter table b rename x to w");
  assert.equal(err.code, "40001", err.message);
});

test("a statement that turns track_counts off (a superuser's) before it writes a table the transaction had locked: refused, not run unseen", async () => {
  await withGroups("scatk_counts", async (env, c) => {
    await c.query("begin");
    await c.query("update u set v = v where id = 1");
    const e = await sqlError(c, `select dbsync.execute_ddl('g', 'alter table t add column a int; set local track_counts = off; ${WRITE_U}')`);
    await c.query("rollback");
    assert.equal(e.code, "55000", e.message);
    await converged(env);
  });
});

test("a foreign key from a table of the group to another group's table (its triggers made on that table) is not refused", async () => {
  await withGroups("scatk_fk", async (env, c) => {
    await env.target.query("delete from h1; insert into h1 select g, 0 from generate_series(1, 10) g");
    await c.query("select dbsync.execute_ddl('g', 'alter table t add constraint t_h1 foreign key (id) references h1 (id)')");
    await converged(env);
  });
});
