// Least privilege for `dbsync run`. On the source the sidecar runs as a login role
// that is neither the dbsync owner nor a superuser, granted by
// dbsync.grant_sidecar(role); the owner keeps `dbsync migrate` and administration.
// On the target it runs as a non-superuser that owns the replicated tables and may set
// session_replication_role (PostgreSQL 15+). Copy, stream, truncate, execute_ddl,
// resync, sequences and verify (with repair) all work so; the sidecar role can call
// no admin function and cannot read the queue; a monitoring role still sees the
// status views and nothing else. Roles are cluster-wide: their names are unique per run.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, test } from "node:test";
import { Client } from "pg";
import { migrate, WORKER_MIN_MAJOR } from "../src/migrate";
import { enterReplicaMode, REPLICA_MODE_FUNCTION } from "../src/target/progress";
import { Env, freshEnv, rows, SOURCE_MAJOR, sqlError, startSidecar, tableText, until, value } from "./helpers";
import { measuresDdl, measuresKeyColumns, moveToPartition2 } from "./kit/measures";
import { asRole, connectAs as connectAsRole } from "./kit/roles";

const sfx = crypto.randomBytes(4).toString("hex");
const SIDECAR = `dbsync_sidecar_${sfx}`; // source
const TARGET_ROLE = `dbsync_applier_${sfx}`; // target
const MON = `dbsync_mon_${sfx}`; // source
const OTHER_ADMIN = `dbsync_admin_${sfx}`; // source: EXECUTE on every dbsync function
const TABLES = ["app.orders", "app.measures"];

let env: Env;
let targetMajor = 0;
// graphile-worker's schema, which migrate creates from PostgreSQL 12 (its sidecar's grants with it).
const WORKER = SOURCE_MAJOR >= WORKER_MIN_MAJOR;

let groupId = 0;
const clients: Client[] = [];
const rolesOn = { source: [] as string[], target: [] as string[] };

/** A session as `role` (the test clusters trust local connections). */
async function connectAs(url: string, role: string): Promise<Client> {
  const c = await connectAsRole(url, role);
  clients.push(c);
  return c;
}

async function denied(c: Client, sql: string, params: unknown[] = []) {
  const err = await sqlError(c, sql, params);
  assert.equal(err.code, "42501", `${sql}: expected permission denied, got ${err.code} ${err.message}`);
}

const tableDdl = (major: number) => `
  create table app.orders (id serial primary key, note text, n int);
  ${measuresDdl(major)}
  create sequence app.counter;`;

const TARGET_BOOKKEEPING = `
  create table dbsync.applied (
      sub_uuid uuid primary key, subscription text not null, tick_id bigint not null,
      applied_at timestamptz not null default now());
  create table dbsync.copied (
      sub_uuid uuid not null, table_id int not null, copy_tick bigint not null, rows bigint not null,
      copied_at timestamptz not null default now(), primary key (sub_uuid, table_id));`;

before(async () => {
  env = await freshEnv("sidecar_role");
  targetMajor = Math.floor(Number(await value(env.target, "select current_setting('server_version_num')")) / 10000);
  // Source: the application's tables belong to the dbsync owner (postgres, who ran migrate).
  await env.source.query(`create schema app; ${tableDdl(SOURCE_MAJOR)}
    insert into app.orders (note, n) select 'o' || g, g from generate_series(1, 50) g;
    insert into app.measures select g, 1 + g % 2, 'm' || g from generate_series(1, 40) g;
    select setval('app.counter', 7);`);
  await env.source.query(`create role ${SIDECAR} login; create role ${MON} login; create role ${OTHER_ADMIN} login`);
  rolesOn.source.push(SIDECAR, MON, OTHER_ADMIN);
  // Target: a role that owns the replicated tables and dbsync's bookkeeping schema.
  await env.target.query(`create role ${TARGET_ROLE} login`);
  rolesOn.target.push(TARGET_ROLE);
  await env.target.query(`create schema app authorization ${TARGET_ROLE}; create schema dbsync authorization ${TARGET_ROLE}`);
  if (targetMajor >= 15) await env.target.query(`grant set on parameter session_replication_role to ${TARGET_ROLE}`);
  // Before 15 only a superuser may set it: the README's function, made once by a superuser.
  else await env.target.query(`${REPLICA_MODE_FUNCTION}; grant execute on function dbsync.enter_replica_mode() to ${TARGET_ROLE}`);
  const tgt = await connectAs(env.targetUrl, TARGET_ROLE);
  await tgt.query(tableDdl(targetMajor));
  // dbsync's bookkeeping on the target (src/target/progress.ts), made by the role in the
  // schema it was given: the sidecar creates it only with CREATE on the database.
  await tgt.query(TARGET_BOOKKEEPING);
});

after(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
  // Roles are cluster-wide: drop them, on each cluster from this test's database.
  const problems: string[] = [];
  for (const [side, url] of [["source", env.sourceUrl], ["target", env.targetUrl]] as const) {
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      for (const role of rolesOn[side]) {
        try {
          if ((await admin.query("select from pg_roles where rolname = $1", [role])).rowCount === 0) continue;
          await admin.query(`drop owned by ${role} cascade`);
          await admin.query(`drop role if exists ${role}`);
        } catch (err) {
          problems.push(`${side} ${role}: ${(err as Error).message}`);
        }
      }
    } finally {
      await admin.end();
    }
  }
  assert.deepEqual(problems, [], "dropping the test's roles");
});

test("(a) grant_sidecar: only the dbsync owner may call it, for a role that exists", async () => {
  // An admin role with EXECUTE on every dbsync function administers replication, but
  // cannot hand out the sidecar's rights (which read every replicated table).
  await env.source.query(`grant usage on schema dbsync to ${OTHER_ADMIN}; grant execute on all functions in schema dbsync to ${OTHER_ADMIN}`);
  const adm = await connectAs(env.sourceUrl, OTHER_ADMIN);
  for (const sql of [
    `select dbsync.grant_sidecar('${OTHER_ADMIN}')`,
    `select dbsync._grant_sidecar_rights('${OTHER_ADMIN}')`,
    "select dbsync._regrant_sidecars()",
    // The helpers add_table uses grant only replicated tables, only to recorded sidecar roles.
    `select dbsync._grant_select('pg_catalog.pg_authid', '${OTHER_ADMIN}')`,
    "select dbsync._grant_to_sidecars('pg_catalog.pg_authid')",
  ]) {
    await denied(adm, sql);
  }
  assert.equal(await value(env.source, "select has_table_privilege($1, 'pg_catalog.pg_authid', 'select')", [OTHER_ADMIN]), false);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.sidecar_roles"), 0);
  if (WORKER) assert.equal(await value(env.source, "select has_schema_privilege($1, 'dbsync_worker', 'usage')", [OTHER_ADMIN]), false);

  const nobody = await connectAs(env.sourceUrl, SIDECAR);
  await denied(nobody, `select dbsync.grant_sidecar('${SIDECAR}')`); // PUBLIC has no EXECUTE

  const err = await sqlError(env.source, "select dbsync.grant_sidecar('no_such_role_here')");
  assert.equal(err.code, "42704");
  // A predefined role: pg_read_all_data comes with PostgreSQL 14, pg_monitor with 10.
  const predefined = SOURCE_MAJOR >= 14 ? "pg_read_all_data" : "pg_monitor";
  assert.equal((await sqlError(env.source, `select dbsync.grant_sidecar('${predefined}')`)).code, "42939");
  assert.equal(
    await value(env.source, "select has_function_privilege('public', 'dbsync.grant_sidecar(name)', 'execute')"),
    false,
  );
  const fn = await rows<{ prosecdef: boolean; proconfig: string[] }>(
    env.source,
    "select prosecdef, proconfig from pg_proc where oid = 'dbsync.grant_sidecar(name)'::regprocedure",
  );
  assert.equal(fn[0].prosecdef, true);
  assert.deepEqual(fn[0].proconfig, ["search_path=pg_catalog, pg_temp"]);
});

test("(b) dbsync run as the sidecar role: copy, stream, truncate, execute_ddl, resync, sequences, verify", async () => {
  const src = env.source;
  // One table added before the grant (grant_sidecar grants it), one after (add_table grants it).
  groupId = await value<number>(src, "select dbsync.create_group('g')");
  await value(src, "select dbsync.add_table('app.measures', 'g', key_columns => $1)", [measuresKeyColumns(SOURCE_MAJOR)]);
  await value(src, "select dbsync.grant_sidecar($1)", [SIDECAR]);
  await value(src, "select dbsync.grant_sidecar($1)", [SIDECAR]); // again: no error, one row
  assert.deepEqual(await rows(src, "select role_name::text from dbsync.sidecar_roles"), [{ role_name: SIDECAR }]);
  await value(src, "select dbsync.add_table('app.orders', 'g')");
  await value(src, "select dbsync.add_sequence('app.counter', 'g')");
  for (const rel of ["app.measures", "app.orders", "app.orders_id_seq", "app.counter"]) {
    assert.equal(await value(src, "select has_table_privilege($1, $2, 'select')", [SIDECAR, rel]), true, rel);
  }
  // Neither superuser nor owner of anything dbsync has.
  assert.deepEqual(await rows(src, "select rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = $1", [SIDECAR]), [
    { rolsuper: false, rolbypassrls: false, rolcreaterole: false },
  ]);
  assert.equal(
    await value(
      src,
      `select count(*)::int from pg_class c where c.relowner = $1::regrole
         and c.relnamespace::regnamespace::text in ('dbsync', 'dbsync_worker')`,
      [SIDECAR],
    ),
    0,
  );

  const targetConninfo = asRole(env.targetUrl, TARGET_ROLE);
  await value(src, "select dbsync.add_subscription('s', 'g', $1, copy_data => true)", [targetConninfo]);

  const sc = startSidecar(asRole(env.sourceUrl, SIDECAR), ["--poll-interval", "200"]);
  try {
    const synced = async (what: string) => {
      const ok = await value<boolean>(src, "select dbsync.wait_for_sync('s', '60 s')");
      if (!ok) {
        const st = await rows(src, "select state, last_error, last_error_table from dbsync.status");
        const ts = await rows(src, "select table_name, state, last_error from dbsync.table_status");
        assert.fail(`${what}: not in sync: ${JSON.stringify(st)} ${JSON.stringify(ts)}\n${sc.output()}`);
      }
      for (const tbl of TABLES) assert.deepEqual(await tableText(env.target, tbl), await tableText(src, tbl), `${what}: ${tbl}`);
      assert.equal(await value(src, "select last_error from dbsync.status where name = 's'"), null, `${what}\n${sc.output()}`);
    };
    await synced("initial copy");
    // It really is the sidecar role on the source (and the target role on the target).
    assert.ok(
      Number(await value(src, "select count(*) from pg_stat_activity where datname = current_database() and usename = $1", [SIDECAR])) > 0,
      "the sidecar's sessions run as the sidecar role",
    );
    assert.ok(
      Number(await value(env.target, "select count(*) from pg_stat_activity where datname = current_database() and usename = $1", [TARGET_ROLE])) > 0,
      "the sidecar's target sessions run as the target role",
    );

    // Stream: inserts, updates (a key change, a move between partitions), deletes.
    await src.query("insert into app.orders (note, n) select 'new' || g, g from generate_series(1, 20) g");
    await src.query("update app.orders set note = 'changed' where id % 3 = 0");
    await src.query("update app.orders set id = id + 1000 where id in (1, 2)");
    await src.query("delete from app.orders where id between 10 and 15");
    await src.query("insert into app.measures values (100, 1, 'x'), (101, 2, 'y')");
    await src.query(moveToPartition2(SOURCE_MAJOR, 100));
    await src.query("delete from app.measures where id = 101");
    await src.query("select nextval('app.counter') from generate_series(1, 5)");
    await synced("stream");
    assert.equal(await value(env.target, "select last_value::int from app.counter"), 12);
    assert.equal(
      await value(env.target, "select last_value::int from app.orders_id_seq"),
      await value(src, "select last_value::int from app.orders_id_seq"),
    );

    // TRUNCATE, of a table and of one partition.
    await src.query("truncate app.orders");
    await src.query("truncate app.measures_1");
    await src.query("insert into app.orders (note, n) values ('after truncate', 1)");
    await synced("truncate");

    // execute_ddl (the owner runs it): the target role applies it to the tables it owns.
    await value(src, "select dbsync.execute_ddl('g', 'alter table app.orders add column extra text')");
    await src.query("insert into app.orders (note, n, extra) values ('with extra', 2, 'e')");
    await src.query("update app.orders set extra = 'x' where note = 'after truncate'");
    await synced("execute_ddl");
    assert.equal(await value(env.target, "select count(*)::int from app.orders where extra is not null"), 2);

    // resync_table copies the table again inside the stream.
    await src.query("insert into app.measures select g, 1 + g % 2, 'r' || g from generate_series(200, 260) g");
    await value(src, "select dbsync.resync_table('s', 'app.measures')");
    await synced("resync_table");
    assert.equal(await value(src, "select state from dbsync.table_status where table_name = 'app.measures'"), "streaming");

    // verify_table, then with repair after the target diverged behind dbsync's back.
    const verify = async (table: string, repair: boolean) => {
      const id = Number(await value(src, "select dbsync.verify_table('s', $1, $2)", [table, repair]));
      const state = async () =>
        (
          await rows<{ state: string; error: string | null; differing: number; repaired: number; compared: number }>(
            src,
            `select state, error, differing_count::int as differing, rows_repaired::int as repaired, rows_compared::int as compared
               from dbsync.verifications where verification_id = $1`,
            [id],
          )
        )[0];
      await until(`verification of ${table}`, async () => ["done", "error"].includes((await state()).state), 60_000).catch(async (err) => {
        assert.fail(`${err}: ${JSON.stringify(await state())}\n${sc.output().slice(-3000)}`);
      });
      return state();
    };
    const v1 = await verify("app.measures", false);
    assert.equal(v1.state, "done", JSON.stringify(v1));
    assert.equal(v1.differing, 0);
    assert.ok(v1.compared > 0);
    await env.target.query("delete from app.orders where note = 'with extra'");
    const v2 = await verify("app.orders", true);
    assert.equal(v2.state, "done", `${JSON.stringify(v2)}\n${sc.output().slice(-3000)}`);
    assert.equal(v2.differing, 1);
    assert.equal(v2.repaired, 1);
    await synced("verify with repair");

    assert.equal(await sc.stop(), 0, sc.output());
  } finally {
    await sc.stop();
  }
  assert.doesNotMatch(sc.output(), /permission denied/, sc.output());
});

test("(c) the sidecar role can call no admin function and cannot read the queue or change dbsync's tables", async () => {
  const side = await connectAs(env.sourceUrl, SIDECAR);
  for (const sql of [
    "select dbsync.add_table('app.orders', 'g')",
    "select dbsync.add_sequence('app.counter', 'g')",
    "select dbsync.remove_table('app.orders')",
    "select dbsync.create_group('x')",
    "select dbsync.add_subscription('x', 'g', 'dbname=x')",
    "select dbsync.drop_subscription('s')",
    "select dbsync.pause('s')",
    "select dbsync.resume('s')",
    "select dbsync.resync_table('s', 'app.orders')",
    "select dbsync.resync_subscription('s')",
    "select dbsync.verify_table('s', 'app.orders')",
    "select dbsync.execute_ddl('g', 'drop table app.orders')",
    "select dbsync.uninstall()",
    `select dbsync.grant_sidecar('${SIDECAR}')`,
    `select dbsync._grant_to_sidecars('app.orders')`,
    `select * from dbsync.batch_events(${groupId}, 0, 1)`,
  ]) {
    await denied(side, sql);
  }
  for (const rel of ["events", `events_${groupId}`, `events_${groupId}_0`, "ticks", "shapes", "subscription_tables", "ddl_log", "sidecar_roles"]) {
    await denied(side, `select * from dbsync.${rel}`);
  }
  await denied(side, `select nextval('dbsync.events_seq_${groupId}')`);
  await denied(side, "update dbsync.subscriptions set paused = true");
  await denied(side, "update dbsync.subscriptions set target_conninfo = 'dbname=elsewhere'");
  await denied(side, "delete from dbsync.subscriptions");
  await denied(side, "update dbsync.verifications set repair = true");
  await denied(side, "insert into dbsync.sidecar_roles values ('x')");
  await denied(side, "create table dbsync.mine (x int)");
  // What it may do: read what the sidecar reads, and the replicated tables (only read).
  assert.equal(await value(side, "select count(*)::int from dbsync.subscriptions"), 1);
  await denied(side, "insert into app.orders (note) values ('no')");
  await denied(side, "delete from app.orders");
  // Nothing changed on the way.
  assert.deepEqual(await rows(env.source, "select name, paused from dbsync.subscriptions"), [{ name: "s", paused: false }]);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.tables where removed_at is null"), 2);
});

test("(c2) the protocol's functions give a role no more than its own grants: an admin role with EXECUTE on all of them cannot read a target's conninfo or change a verification", async () => {
  // SECURITY INVOKER (sql/manifest.txt, protocol): what they read and write is checked
  // against the caller's own table and column rights, which only a sidecar role has.
  const protocol = await rows<{ fn: string; secdef: boolean; config: string[] | null }>(
    env.source,
    `select p.oid::regprocedure::text as fn, p.prosecdef as secdef, p.proconfig as config
       from pg_proc p
      where p.pronamespace = 'dbsync'::regnamespace and p.proname = any (dbsync._protocol_functions())
        and (p.proname like 'sidecar\\_%' or p.proname in ('_verify_job', '_verify_snapshot', '_verify_release', '_verify_comparing',
                                                        '_verify_counts', '_verify_done', '_verify_requeue', '_verify_failed'))`,
  );
  // sidecar_try_lock and sidecar_unlock too: they take an advisory lock, which any role may.
  assert.equal(protocol.length, 18, protocol.map((p) => p.fn).join(", "));
  for (const p of protocol) {
    assert.equal(p.secdef, false, `${p.fn} must run with its caller's rights`);
    assert.deepEqual(p.config, ["search_path=pg_catalog, pg_temp"], p.fn);
  }
  const id = await value<string>(env.source, "select max(verification_id)::text from dbsync.verifications");
  assert.ok(id, "test (b) ran a verification");
  const before = await rows(env.source, "select state, error, rows_compared::text, hold_snapshot, differing_keys from dbsync.verifications where verification_id = $1", [id]);
  const adm = await connectAs(env.sourceUrl, OTHER_ADMIN); // EXECUTE on every dbsync function (test a)
  const mon = await connectAs(env.sourceUrl, MON); // PUBLIC's EXECUTE only
  const calls = [
    "select * from dbsync.sidecar_subscription('s')",
    "select * from dbsync.sidecar_subscriptions()",
    "select * from dbsync.sidecar_work()",
    "select * from dbsync.sidecar_poll(null, null, null, null)",
    "select * from dbsync.sidecar_groups()",
    "select dbsync.sidecar_stop()",
    `select * from dbsync.sidecar_sequences(${groupId})`,
    "select * from dbsync.sidecar_readiness()",
    `select * from dbsync._verify_job(${id})`,
    `select dbsync._verify_snapshot(${id}, 'x')`,
    `select dbsync._verify_release(${id})`,
    `select dbsync._verify_comparing(${id})`,
    `select dbsync._verify_counts(${id}, 1, 1, 1, 1, 1, 1, '{x}', 1)`,
    `select dbsync._verify_done(${id}, '{x}', true)`,
    `select dbsync._verify_requeue(${id})`,
    `select dbsync._verify_failed(${id}, 'forged', 0, 0)`,
  ];
  for (const sql of calls) {
    await denied(adm, sql);
    await denied(mon, sql);
  }
  const side = await connectAs(env.sourceUrl, SIDECAR);
  await denied(side, "select dbsync._protocol_functions()");
  // What the sidecar role reads through them, it reads anyway.
  assert.equal((await rows(side, "select * from dbsync.sidecar_subscription('s')"))[0].name, "s");
  assert.deepEqual(await rows(env.source, "select state, error, rows_compared::text, hold_snapshot, differing_keys from dbsync.verifications where verification_id = $1", [id]), before);
});

test("(d) the target role is no superuser and owns only the replicated tables and dbsync's bookkeeping", async () => {
  assert.deepEqual(await rows(env.target, "select rolsuper, rolbypassrls from pg_roles where rolname = $1", [TARGET_ROLE]), [
    { rolsuper: false, rolbypassrls: false },
  ]);
  // The sidecar created its bookkeeping in the schema the DBA gave the role.
  assert.deepEqual(
    await rows(
      env.target,
      "select c.relname::text, pg_get_userbyid(c.relowner)::text as owner from pg_class c where c.relnamespace = 'dbsync'::regnamespace and c.relkind = 'r' order by 1",
    ),
    [
      { relname: "applied", owner: TARGET_ROLE },
      { relname: "copied", owner: TARGET_ROLE },
      { relname: "unlogged_intact", owner: TARGET_ROLE },
    ],
  );
});

test("(e) a monitoring role still reads the status views, and nothing else", async () => {
  await env.source.query(`grant usage on schema dbsync to ${MON}; grant select on dbsync.status, dbsync.table_status to ${MON}`);
  const mon = await connectAs(env.sourceUrl, MON);
  const q = "select name, group_name, state, paused, backlog_events::int as backlog from dbsync.status order by name";
  assert.deepEqual(await rows(mon, q), await rows(env.source, q));
  const q2 = "select subscription, table_name, state from dbsync.table_status order by 1, 2";
  assert.deepEqual(await rows(mon, q2), await rows(env.source, q2));
  assert.equal((await rows(mon, q2)).length, 2);
  for (const rel of ["subscriptions", "events", "groups", "tables", "verifications", "sidecar_roles"]) {
    await denied(mon, `select * from dbsync.${rel}`);
  }
  if (WORKER) await denied(mon, `select * from dbsync_worker.jobs`);
  await denied(mon, "select * from app.orders");
  await denied(mon, "select dbsync.begin_batch('s')");
  await denied(mon, `select dbsync.tick(${groupId}, true)`);
});

test("(f) migrate grants the recorded sidecar roles again", async () => {
  const fnPriv = "select has_function_privilege($1, 'dbsync.tick(int, boolean)', 'execute')";
  const policies = `select count(*)::int from pg_policy p where p.polrelid::regclass::text like 'dbsync_worker.%'
                      and $1::regrole = any (p.polroles)`;
  assert.equal(await value(env.source, fnPriv, [SIDECAR]), true);
  const nPolicies = await value<number>(env.source, policies, [SIDECAR]);
  if (WORKER) assert.ok(nPolicies >= 3, `policies on graphile-worker's tables: ${nPolicies}`);
  // Rights lost (a DBA's revoke, a function re-created by an upgrade) come back with migrate.
  await env.source.query(`revoke execute on function dbsync.tick(int, boolean) from ${SIDECAR};
                          revoke select on app.orders from ${SIDECAR}`);
  if (WORKER) {
    await env.source.query(`revoke all on all tables in schema dbsync_worker from ${SIDECAR}`);
    await env.source.query(`drop policy "dbsync_sidecar_${await value(env.source, "select $1::regrole::oid::text", [SIDECAR])}" on dbsync_worker._private_jobs`);
  }
  assert.equal(await value(env.source, fnPriv, [SIDECAR]), false);
  await migrate(env.sourceUrl);
  assert.equal(await value(env.source, fnPriv, [SIDECAR]), true);
  assert.equal(await value(env.source, "select has_table_privilege($1, 'app.orders', 'select')", [SIDECAR]), true);
  if (WORKER) assert.equal(await value(env.source, "select has_table_privilege($1, 'dbsync_worker._private_jobs', 'update')", [SIDECAR]), true);
  assert.equal(await value(env.source, policies, [SIDECAR]), nPolicies);
  // A recorded role that was dropped is skipped, not an error.
  await env.source.query("create role dbsync_gone_" + sfx);
  rolesOn.source.push("dbsync_gone_" + sfx);
  await value(env.source, "select dbsync.grant_sidecar($1)", ["dbsync_gone_" + sfx]);
  await env.source.query(`drop owned by dbsync_gone_${sfx} cascade; drop role dbsync_gone_${sfx}`);
  await migrate(env.sourceUrl);
  assert.equal(await value(env.source, "select dbsync._regrant_sidecars()"), 1);
});

test("(g) a target role that may not set session_replication_role: a clear error naming both ways; with the superuser's function it enters replica mode", async () => {
  const role = `dbsync_norep_${crypto.randomBytes(3).toString("hex")}`;
  await env.target.query(`create role ${role} login`);
  rolesOn.target.push(role);
  const c = await connectAs(env.targetUrl, role);
  const err = await enterReplicaMode(c).then(() => undefined, (e: Error & { context?: { hint?: string } }) => e);
  assert.ok(err, "a role without the right entered replica mode");
  assert.match(err.message, /may not set session_replication_role/);
  assert.match(err.context?.hint ?? "", /grant set on parameter session_replication_role/);
  assert.match(err.context?.hint ?? "", /dbsync\.enter_replica_mode/);
  await env.target.query(`grant usage on schema dbsync to ${role}`);
  await env.target.query(`grant execute on function dbsync.enter_replica_mode() to ${role}`).catch(async () => {
    await env.target.query(REPLICA_MODE_FUNCTION);
    await env.target.query(`grant execute on function dbsync.enter_replica_mode() to ${role}`);
  });
  await enterReplicaMode(c);
  assert.equal(await value(c, "select current_setting('session_replication_role')"), "replica");
  assert.equal(await value(env.target, "select rolsuper from pg_roles where rolname = $1", [role]), false);
  // Again inside a transaction, as after execute_ddl's DDL in a batch (apply.ts
  // restoreSession): the way that works, without a refused SET aborting it.
  await c.query("begin");
  await enterReplicaMode(c);
  assert.equal(await value(c, "select current_setting('session_replication_role')"), "replica");
  await c.query("commit");
});
