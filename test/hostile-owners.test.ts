// Hostile non-superuser roles on the target. The sidecar's target role
// (README, Security: "a non-superuser that can write the replicated tables and
// nothing more") must never run code that another role wrote, other than the
// replicated tables' own triggers and constraints (the README's accepted case).
//  - a role with CREATE on the target database makes schema dbsync, with
//    dbsync.applied and dbsync.copied, before the sidecar's first connect: the
//    sidecar finds them (to_regclass) and writes its position into that role's table
//    at every batch, so that role's ENABLE ALWAYS trigger runs as the target role;
//  - a role with CREATE on schema public defines public.pg_advisory_xact_lock(text):
//    the sidecar's first connect calls pg_advisory_xact_lock($1) with an untyped
//    parameter, which resolves to the text variant (unknown prefers the string
//    category; the search_path order does not matter between different argument types).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, Pool } from "pg";
import { migrate } from "../src/migrate";
import { REPLICA_MODE_FUNCTION } from "../src/target/progress";
import { uninstall } from "../src/uninstall";
import { Env, freshEnv, startSidecar, until, value } from "./helpers";
import { asRole, connectAs, rolesDroppedAfter } from "./kit/roles";
import { SOURCE_MAJOR, TARGET_MAJOR } from "./helpers";

/** Before PostgreSQL 15 every role may create in schema public: no grant needed for the attacks below. */
const publicCreate = (major: number, role: string) => (major >= 15 ? `; grant create on schema public to ${role}` : "");

const sfx = String(process.pid);
const APPLIER = `b3_applier_${sfx}`;
const MALLORY = `b3_mallory_${sfx}`;
const made = rolesDroppedAfter();

/** The target role of the README's Security section, owning the replicated table t (which Mallory may not read). */
async function targetRoles(env: Env, label: string) {
  const applier = `${APPLIER}_${label}`;
  const mallory = `${MALLORY}_${label}`;
  await env.target.query(`create role ${applier} login; create role ${mallory} login`);
  made.push({ url: env.targetUrl, role: applier }, { url: env.targetUrl, role: mallory });
  if (TARGET_MAJOR >= 15) await env.target.query(`grant set on parameter session_replication_role to ${applier}`);
  const ddl = "create table t (id int primary key, v text)";
  await env.source.query(ddl);
  await env.target.query(`${ddl}; alter table t owner to ${applier}; revoke all on t from public`);
  await env.source.query("select dbsync.add_table('t', 'g')");
  return { applier, mallory };
}

test("a role with CREATE on the target database makes schema dbsync first: its trigger on dbsync.applied must not run as the sidecar's target role", async () => {
  const env = await freshEnv("b3_hostile_schema");
  const { applier, mallory } = await targetRoles(env, "schema");
  const db = new URL(env.targetUrl).pathname.slice(1);
  await env.target.query(`grant create on database "${db}" to ${mallory}`);
  const m = await connectAs(env.targetUrl, mallory);
  try {
    await m.query(`create schema dbsync;
      create table dbsync.applied (sub_uuid uuid primary key, subscription text not null, tick_id bigint not null,
                                   applied_at timestamptz not null default now());
      create table dbsync.copied (sub_uuid uuid not null, table_id int not null, copy_tick bigint not null, rows bigint not null,
                                  copied_at timestamptz not null default now(), primary key (sub_uuid, table_id));
      create table dbsync.loot (who text, data text);
      grant usage on schema dbsync to public;
      grant all on dbsync.applied, dbsync.copied, dbsync.loot to public;
      create function dbsync.spy() returns trigger language plpgsql as $$
      begin
        insert into dbsync.loot select current_user, (select string_agg(v, ',' order by id) from public.t);
        return new;
      end $$;
      create trigger spy after insert or update on dbsync.applied for each row execute procedure dbsync.spy();
      alter table dbsync.applied enable always trigger spy`);
    // Before 15 the target role may not set session_replication_role: the sidecar then calls
    // dbsync.enter_replica_mode() (README, Security), here Mallory's, which runs as the target role.
    if (TARGET_MAJOR < 15) {
      await m.query(`create function dbsync.enter_replica_mode() returns void language plpgsql as $$
        begin insert into dbsync.loot values (current_user, 'enter_replica_mode'); end $$;
        grant execute on function dbsync.enter_replica_mode() to public`);
    }
    await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [asRole(env.targetUrl, applier)]);
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
    try {
      await env.source.query("insert into t values (1, 'secret-1'), (2, 'secret-2')");
      await until("applied, or an error", async () =>
        (await value(env.source, "select dbsync.wait_for_sync('s', '2 s')")) === true ||
        !!(await value(env.source, "select last_error from dbsync.status where name = 's'")), 60_000);
      const loot = (await m.query("select who, data from dbsync.loot where data is not null")).rows;
      const st = await value(env.source, "select last_error from dbsync.status where name = 's'");
      assert.deepEqual(loot, [], `Mallory's trigger ran as ${loot[0]?.who} and read t (which Mallory may not read): ${JSON.stringify(loot)}; status error: ${st}`);
    } finally {
      await sidecar.stop();
    }
  } finally {
    await m.end();
  }
});

test("a role with CREATE on schema public defines public.pg_advisory_xact_lock(text): the sidecar's first connect must not call it", async () => {
  const env = await freshEnv("b3_hostile_public");
  const { applier, mallory } = await targetRoles(env, "public");
  const db = new URL(env.targetUrl).pathname.slice(1);
  // The target role makes dbsync's schema itself at its first connect (README: CREATE on the database).
  await env.target.query(`grant create on database "${db}" to ${applier}${publicCreate(TARGET_MAJOR, mallory)}`);
  const m = await connectAs(env.targetUrl, mallory);
  try {
    await m.query(`create table public.loot (who text, data text);
      grant all on public.loot to public;
      create function public.pg_advisory_xact_lock(k text) returns void language plpgsql as $$
      begin
        insert into public.loot select current_user, (select string_agg(v, ',' order by id) from public.t);
      end $$;
      grant execute on function public.pg_advisory_xact_lock(text) to public`);
    await env.source.query("insert into t values (1, 'secret-1'), (2, 'secret-2')");
    // The target has the rows too (a copy made earlier), so Mallory's function has something to read.
    await env.target.query("insert into t values (1, 'secret-1'), (2, 'secret-2')");
    await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [asRole(env.targetUrl, applier)]);
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
    try {
      await env.source.query("update t set v = 'secret-3' where id = 1");
      await until("applied, or an error", async () =>
        (await value(env.source, "select dbsync.wait_for_sync('s', '2 s')")) === true ||
        !!(await value(env.source, "select last_error from dbsync.status where name = 's'")), 60_000);
      const loot = (await m.query("select who, data from public.loot")).rows;
      assert.deepEqual(loot, [], `Mallory's public.pg_advisory_xact_lock(text) ran as ${loot[0]?.who}: ${JSON.stringify(loot)}`);
    } finally {
      await sidecar.stop();
    }
  } finally {
    await m.end();
  }
});

test("a role with CREATE on schema public of the source defines public.pg_advisory_xact_lock(text): dbsync migrate (a superuser) must not call it", async () => {
  const env = await freshEnv("b3_hostile_migrate", { migrate: false });
  const mallory = `${MALLORY}_migrate`;
  await env.source.query(`create role ${mallory} login${publicCreate(SOURCE_MAJOR, mallory)}`);
  made.push({ url: env.sourceUrl, role: mallory });
  const m = await connectAs(env.sourceUrl, mallory);
  try {
    await m.query(`create table public.loot (who text, superuser boolean);
      grant all on public.loot to public;
      create function public.pg_advisory_xact_lock(k text) returns void language plpgsql as $$
      begin
        insert into public.loot select current_user, (select rolsuper from pg_roles where rolname = current_user);
      end $$;
      grant execute on function public.pg_advisory_xact_lock(text) to public`);
    await migrate(env.sourceUrl);
    const loot = (await m.query("select who, superuser from public.loot")).rows;
    assert.deepEqual(loot, [], `Mallory's public.pg_advisory_xact_lock(text) ran inside dbsync migrate as ${JSON.stringify(loot)}`);
  } finally {
    await m.end();
  }
});

test("the source database's owner puts public before pg_catalog in its search_path and defines public.now(): dbsync migrate (a superuser) must not bind dbsync's defaults to it", async () => {
  const env = await freshEnv("b3_hostile_dbowner", { migrate: false });
  const mallory = `${MALLORY}_dbowner`;
  const db = new URL(env.sourceUrl).pathname.slice(1);
  await env.source.query(`create role ${mallory} login; alter database ${db} owner to ${mallory}${publicCreate(SOURCE_MAJOR, mallory)}`);
  made.push({ url: env.sourceUrl, role: mallory });
  const m = await connectAs(env.sourceUrl, mallory);
  try {
    // A database's owner may set its settings; before 15 anyone may create in public.
    await m.query(`alter database ${db} set search_path = public, pg_catalog;
      create table public.loot (who text, superuser boolean);
      grant all on public.loot to public;
      create function public.now() returns timestamptz language plpgsql as $$
      begin
        insert into public.loot select current_user, (select rolsuper from pg_roles where rolname = current_user);
        return pg_catalog.now();
      end $$;
      grant execute on function public.now() to public`);
    await migrate(env.sourceUrl);
    // Every default dbsync made calls pg_catalog's functions only.
    const bound = await value<string[]>(env.source, `select coalesce(array_agg(distinct p.oid::regprocedure::text), '{}') from pg_depend d
      join pg_attrdef ad on ad.oid = d.objid join pg_class c on c.oid = ad.adrelid
      join pg_proc p on p.oid = d.refobjid
      where d.classid = 'pg_attrdef'::regclass and d.refclassid = 'pg_proc'::regclass
        and c.relnamespace = 'dbsync'::regnamespace and p.pronamespace <> 'pg_catalog'::regnamespace`);
    assert.deepEqual(bound, [], "dbsync's column defaults call a function of Mallory's");
    const fresh = new Client({ connectionString: env.sourceUrl });
    await fresh.connect();
    try {
      await fresh.query("create table t (id int primary key); select dbsync.add_table('t', 'g')");
    } finally {
      await fresh.end();
    }
    const loot = (await m.query("select who, superuser from public.loot")).rows;
    assert.deepEqual(loot, [], `Mallory's public.now() ran as ${JSON.stringify(loot)}`);
  } finally {
    await m.end();
  }
});

test("a table owner with CREATE on schema public defines public.format(text, text, text), drops its replicated table: dbsync uninstall (a superuser) must not call it", async () => {
  const env = await freshEnv("b3_hostile_uninstall");
  const mallory = `${MALLORY}_uninstall`;
  await env.source.query(`create role ${mallory} login${publicCreate(SOURCE_MAJOR, mallory)}`);
  made.push({ url: env.sourceUrl, role: mallory });
  // Without the DDL event triggers (a dbsync owner that is not a superuser), a dropped table's row stays.
  await env.source.query("alter event trigger dbsync_drop_watch disable").catch(() => undefined);
  const m = await connectAs(env.sourceUrl, mallory);
  try {
    await m.query(`create table public.m (id int primary key);
      create table public.loot (who text, superuser boolean);
      grant all on public.loot to public;
      create function public.format(f text, a text, b text) returns text language plpgsql as $$
      begin
        insert into public.loot select current_user, (select rolsuper from pg_roles where rolname = current_user);
        return a || '.' || b;
      end $$;
      grant execute on function public.format(text, text, text) to public`);
    await env.source.query("select dbsync.add_table('public.m', 'g')");
    await m.query("drop table public.m");
    const code = await uninstall({ sourceUrl: env.sourceUrl, yes: true });
    const loot = (await m.query("select who, superuser from public.loot")).rows;
    assert.deepEqual(loot, [], `Mallory's public.format(text, text, text) ran inside dbsync uninstall (exit ${code}) as ${JSON.stringify(loot)}`);
  } finally {
    await m.end();
  }
});

test("a role with CREATE on the source database makes schema dbsync before dbsync migrate: it must not get code run by the migrating superuser", async () => {
  const env = await freshEnv("b3_hostile_src_schema", { migrate: false });
  const mallory = `${MALLORY}_srcschema`;
  const db = new URL(env.sourceUrl).pathname.slice(1);
  await env.source.query(`create role ${mallory} login; grant create on database "${db}" to ${mallory}`);
  made.push({ url: env.sourceUrl, role: mallory });
  const m = await connectAs(env.sourceUrl, mallory);
  try {
    await m.query("create schema dbsync; create schema mal; grant usage on schema mal to public; create table mal.loot (who text, superuser boolean); grant all on mal.loot to public");
    let first: string | undefined;
    try {
      await migrate(env.sourceUrl);
    } catch (err) {
      first = String(err);
    }
    if (first === undefined) {
      // Installed into Mallory's schema: as its owner she may drop any object in it and put her own in its place.
      await m.query(`drop function dbsync._regrant_sidecars();
        create function dbsync._regrant_sidecars() returns void language plpgsql as $$
        begin
          insert into mal.loot select current_user, (select rolsuper from pg_roles where rolname = current_user);
        end $$`);
      await migrate(env.sourceUrl).catch((err) => (first = String(err)));
    }
    const loot = (await m.query("select who, superuser from mal.loot")).rows;
    assert.deepEqual(loot, [], `dbsync migrate installed into a schema owned by ${mallory} and ran her function as ${JSON.stringify(loot)}`);
  } finally {
    await m.end();
  }
});

test("a role with CREATE on schema public of the source defines an aggregate public.jsonb_object_agg(text, boolean): the sidecar's wake-ups (graphile-worker's add_job) must not run it", async () => {
  const env = await freshEnv("b3_hostile_add_job");
  const mallory = `${MALLORY}_addjob`;
  await env.source.query(`create role ${mallory} login${publicCreate(SOURCE_MAJOR, mallory)}`);
  made.push({ url: env.sourceUrl, role: mallory });
  const m = await connectAs(env.sourceUrl, mallory);
  try {
    await m.query(`create table public.loot (who text, conninfo text);
      grant all on public.loot to public;
      create function public.spy_final(s jsonb) returns jsonb language plpgsql as $$
      begin
        insert into public.loot select current_user, (select string_agg(target_conninfo, ' | ') from dbsync.subscriptions);
        return s;
      exception when others then
        insert into public.loot values (current_user, sqlerrm);
        return s;
      end $$;
      create function public.spy_step(s jsonb, k text, v boolean) returns jsonb language sql as $$ select s $$;
      create aggregate public.jsonb_object_agg(text, boolean) (sfunc = public.spy_step, stype = jsonb, finalfunc = public.spy_final, initcond = '{}');
      grant execute on function public.spy_final(jsonb), public.spy_step(jsonb, text, boolean) to public`);
    // Two subscriptions, one apply slot: the second is a wake-up in the job queue at start (add_job).
    await env.source.query("create table t (id int primary key); create table u (id int primary key)");
    await env.target.query("create table t (id int primary key); create table u (id int primary key)");
    await env.source.query("select dbsync.add_table('t', 'g1'), dbsync.add_table('u', 'g2')");
    await env.source.query("select dbsync.add_subscription('s1', 'g1', $1, copy_data => false)", [env.targetUrl]);
    await env.source.query("select dbsync.add_subscription('s2', 'g2', $1, copy_data => false)", [env.targetUrl]);
    await env.source.query("insert into t values (1); insert into u values (1)");
    const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"]);
    try {
      await until("both applied", async () =>
        (await value(env.source, "select dbsync.wait_for_sync('s1', '1 s') and dbsync.wait_for_sync('s2', '1 s')")) === true, 60_000);
      await env.source.query("insert into t values (2); insert into u values (2)");
      await until("both applied again", async () =>
        (await value(env.source, "select dbsync.wait_for_sync('s1', '1 s') and dbsync.wait_for_sync('s2', '1 s')")) === true, 60_000);
      const loot = (await m.query("select who, conninfo from public.loot")).rows;
      assert.deepEqual(loot, [], `Mallory's aggregate ran inside the sidecar's add_job as ${JSON.stringify(loot).slice(0, 400)}`);
    } finally {
      await sidecar.stop();
    }
  } finally {
    await m.end();
  }
});

/**
 * As `mallory`, the owner of the database at `url`: public before pg_catalog in the
 * database's search_path, and in public a now() and the operators text = text and
 * name = name that log who called them into public.loot.
 */
async function shadowBuiltins(m: Client, url: string) {
  const db = new URL(url).pathname.slice(1);
  await m.query(`alter database "${db}" set search_path = public, pg_catalog;
    create table public.loot (who text, what text);
    grant all on public.loot to public;
    create function public.now() returns timestamptz language plpgsql as $$
    begin
      insert into public.loot values (current_user, 'now()');
      return pg_catalog.now();
    end $$;
    create function public.spy_texteq(a text, b text) returns boolean language plpgsql as $$
    begin
      insert into public.loot values (current_user, 'text = text');
      return pg_catalog.texteq(a, b);
    end $$;
    create operator public.= (leftarg = text, rightarg = text, procedure = public.spy_texteq);
    create function public.spy_nameeq(a name, b name) returns boolean language plpgsql as $$
    begin
      insert into public.loot values (current_user, 'name = name');
      return pg_catalog.nameeq(a, b);
    end $$;
    create operator public.= (leftarg = name, rightarg = name, procedure = public.spy_nameeq);
    grant execute on function public.now(), public.spy_texteq(text, text), public.spy_nameeq(name, name) to public`);
}

/** Rows inserted, updated in place and deleted (each way the target merges a piece), then applied or an error; the error. */
async function writeAndWait(source: Client | Pool): Promise<unknown> {
  await source.query("insert into t values (1, 'one'), (2, 'two')");
  await source.query("update t set v = 'uno' where id = 1; delete from t where id = 2");
  await until("applied, or an error", async () =>
    (await value(source, "select dbsync.wait_for_sync('s', '2 s')")) === true ||
    !!(await value(source, "select last_error from dbsync.status where name = 's'")), 60_000);
  return value(source, "select last_error from dbsync.status where name = 's'");
}

const lootOf = async (m: Client) => (await m.query("select who, what, count(*)::int as n from public.loot group by 1, 2 order by 2")).rows;

test("the target database's owner puts public before pg_catalog in its search_path and shadows now() and text = text: the sidecar's target role must not run them", async () => {
  const env = await freshEnv("b3_hostile_tgt_dbowner");
  const { applier, mallory } = await targetRoles(env, "tdbowner");
  const db = new URL(env.targetUrl).pathname.slice(1);
  // The target role makes dbsync's schema itself at its first connect; Mallory owns the database
  // (a database's owner may set its settings; from 15 on, public is hers).
  await env.target.query(`grant create on database "${db}" to ${applier}; alter database "${db}" owner to ${mallory}${publicCreate(TARGET_MAJOR, mallory)}`);
  // Before 15 the target role enters replica mode through the README's function, made by a superuser.
  if (TARGET_MAJOR < 15) {
    await env.target.query(`create schema dbsync authorization ${applier}; ${REPLICA_MODE_FUNCTION}; grant execute on function dbsync.enter_replica_mode() to ${applier}`);
  }
  const m = await connectAs(env.targetUrl, mallory);
  try {
    await shadowBuiltins(m, env.targetUrl);
    await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [asRole(env.targetUrl, applier)]);
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
    try {
      const st = await writeAndWait(env.source);
      const loot = await lootOf(m);
      assert.deepEqual(loot, [], `Mallory's functions ran as the sidecar's target role: ${JSON.stringify(loot)}; status error: ${st}`);
      assert.equal(st, null);
    } finally {
      await sidecar.stop();
    }
  } finally {
    await m.end();
  }
});

test("the source database's owner puts public before pg_catalog in its search_path and shadows now() and text = text: the sidecar must not run them", async () => {
  const env = await freshEnv("b3_hostile_src_dbowner");
  const mallory = `${MALLORY}_sdbowner`;
  const db = new URL(env.sourceUrl).pathname.slice(1);
  await env.source.query(`create role ${mallory} login; alter database "${db}" owner to ${mallory}${publicCreate(SOURCE_MAJOR, mallory)}`);
  made.push({ url: env.sourceUrl, role: mallory });
  const ddl = "create table t (id int primary key, v text)";
  await env.source.query(`${ddl}; select dbsync.add_table('t', 'g')`);
  await env.target.query(ddl);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  // The test's own session keeps the search_path it started with (the shadows would log its statements too).
  const admin = new Client({ connectionString: env.sourceUrl });
  await admin.connect();
  const m = await connectAs(env.sourceUrl, mallory);
  try {
    await shadowBuiltins(m, env.sourceUrl);
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
    try {
      const st = await writeAndWait(admin);
      const loot = await lootOf(m);
      assert.deepEqual(loot, [], `Mallory's functions ran in the sidecar's sessions: ${JSON.stringify(loot)}; status error: ${st}`);
      assert.equal(st, null);
    } finally {
      await sidecar.stop();
    }
  } finally {
    await m.end();
    await admin.end();
  }
});
