// Who may do what. dbsync belongs to postgres (who ran migrate). Application roles
// need nothing from dbsync to write captured tables; they can neither administer
// replication nor read the queue or the targets' conninfo; nor can PUBLIC. Rights
// to administer or to monitor are granted explicitly. Capture runs as the dbsync
// owner with a pinned search_path and settings, whatever the writer's session says.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { Client, Pool } from "pg";
import { migrate } from "../src/migrate";
import { Env, freshEnv, queueOf, rows, SOURCE_MAJOR, sqlError, value } from "./helpers";
import { measuresDdl, measuresKeyColumns, moveToPartition2 } from "./kit/measures";

let env: Env;
let src: Pool;
const sfx = crypto.randomBytes(4).toString("hex");
const APP = `dbsync_app_${sfx}`;
const ADMIN = `dbsync_admin_${sfx}`;
const MON = `dbsync_mon_${sfx}`;
const NOBODY = `dbsync_nobody_${sfx}`;
const clients: Client[] = [];

function urlAs(role: string): string {
  const u = new URL(env.sourceUrl);
  u.username = role;
  return u.toString();
}

/** A session on the source database as `role` (trust auth: no password). */
async function connectAs(role: string): Promise<Client> {
  const c = new Client({ connectionString: urlAs(role) });
  await c.connect();
  clients.push(c);
  return c;
}

async function denied(c: Client, sql: string, params: unknown[] = []) {
  const err = await sqlError(c, sql, params);
  assert.equal(err.code, "42501", `${sql}: expected permission denied, got ${err.code} ${err.message}`);
  assert.match(err.message, /permission denied/);
}

let groupId: number;

before(async () => {
  env = await freshEnv("api_privileges");
  src = env.source;
  await src.query(`
    create role ${APP} login;
    create role ${ADMIN} login;
    create role ${MON} login;
    create role ${NOBODY} login;
    create schema app;
    grant usage on schema app to ${APP};
    create table app.orders (id int primary key, note text, ts timestamptz, f float8, b bytea, iv interval);
    grant select, insert, update, delete, truncate on app.orders to ${APP};
    ${measuresDdl(SOURCE_MAJOR)}
    grant select, insert, update, delete, truncate on app.measures, app.measures_1, app.measures_2 to ${APP};
    -- Keyed by values whose text depends on the session's settings.
    create table app.stamps (ts timestamptz, f float8, b bytea, iv interval, d date, note text,
                             primary key (ts, f, b, iv, d));
    grant select, insert, update, delete on app.stamps to ${APP};
  `);
  groupId = await value<number>(src, "select dbsync.create_group('app')");
  await value(src, "select dbsync.add_table('app.orders', 'app')");
  await value(src, "select dbsync.add_table('app.measures', 'app', key_columns => $1)", [measuresKeyColumns(SOURCE_MAJOR)]);
  await value(src, "select dbsync.add_table('app.stamps', 'app')");
  await value(src, "select dbsync.add_subscription('app_sub', 'app', $1, copy_data => false)", [
    env.targetUrl + " secret-looking-conninfo",
  ]);
});

after(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
});

/** The captured events of a table, oldest first, as postgres sees them. */
async function eventsOf(table: string) {
  return rows<{ ev_id: string; op: string; row: (string | null)[] | null; columns: string[] }>(
    src,
    `select e.ev_id, e.op::text as op, e.row, s.columns from dbsync.tables t join dbsync.shapes s using (table_id)
     cross join ${queueOf("t.group_id")} e
     where t.relid = $1::regclass and e.shape_id = s.shape_id order by e.ev_id`,
    [table],
  );
}

/**
 * Runs one statement in `c` and returns what it queued for `table`, as "op:key/key"
 * strings in queue order. The keys one statement queues have no order among
 * themselves, so those of each op are sorted, 'K' first.
 */
async function queued(c: Client | Pool, table: string, sql: string): Promise<string[]> {
  const before = (await eventsOf(table)).length;
  await c.query(sql);
  const evs = (await eventsOf(table)).slice(before);
  const show = (e: { op: string; row: (string | null)[] | null }) => `${e.op}${e.row ? ":" + e.row.join("/") : ""}`;
  // A statement's keys, then (TRUNCATE) its one 'T': nothing may follow the 'T'.
  const t = evs.findIndex((e) => e.op === "T");
  assert.ok(t === -1 || t === evs.length - 1, `${sql}: events after the T: ${evs.map(show)}`);
  return [...evs.filter((e) => e.op !== "T").map(show).sort(), ...evs.filter((e) => e.op === "T").map(show)];
}

test("(a) an application role with only table rights writes a captured table, and its changes are captured", async () => {
  const app = await connectAs(APP);
  assert.equal(await value(app, "select has_schema_privilege('dbsync', 'usage')"), false);

  // Capture records which keys changed: 'K' with the key's text (an UPDATE lists the
  // old and the new key, each once), and 'T' for a TRUNCATE.
  const o = (sql: string) => queued(app, "app.orders", sql);
  assert.deepEqual(await o("insert into app.orders (id, note) values (1, 'one'), (2, 'two')"), ["K:1", "K:2"]);
  assert.deepEqual(await o("update app.orders set note = 'uno' where id = 1"), ["K:1"]);
  assert.deepEqual(await o("update app.orders set id = 3 where id = 2"), ["K:2", "K:3"]); // key change
  assert.deepEqual(await o("delete from app.orders where id = 1"), ["K:1"]);
  assert.deepEqual(await o("truncate app.orders"), ["T"]);
  const ev = await eventsOf("app.orders");
  assert.equal(ev.length, 7);
  // Every event's shape names the key's columns.
  assert.ok(ev.every((e) => JSON.stringify(e.columns) === '["id"]'), JSON.stringify(ev));

  // A partitioned table: row triggers cloned to partitions, truncate of one partition.
  const m = (sql: string) => queued(app, "app.measures", sql);
  assert.deepEqual(await m("insert into app.measures values (1, 1, 'a'), (2, 2, 'b')"), ["K:1/1", "K:2/2"]);
  assert.deepEqual(await m(moveToPartition2(SOURCE_MAJOR, 1)), ["K:1/1", "K:1/2"]);
  assert.deepEqual(await m("update app.measures set v = 'a2' where id = 1"), ["K:1/2"]); // in place
  assert.deepEqual(await m("insert into app.measures_1 values (3, 1, 'c')"), ["K:3/1"]); // straight into a partition
  // Truncating one partition queues its rows' keys; truncating the whole table
  // queues the keys of each partition (BEFORE TRUNCATE fires on each), then one T.
  assert.deepEqual(await m("truncate app.measures_2"), ["K:1/2", "K:2/2"]);
  assert.deepEqual(await m("truncate app.measures"), ["K:3/1", "T"]);
  const pev = await eventsOf("app.measures");
  assert.equal(pev.length, 10);
  assert.ok(pev.every((e) => JSON.stringify(e.columns) === '["id","k"]'), JSON.stringify(pev));
  // (Queue events: the keys of one statement on a plain table are one 'M' event.)
  assert.equal(await value(src, "select backlog_events::int from dbsync.status where name = 'app_sub'"), new Set([...ev, ...pev].map((e) => e.ev_id)).size);
});

test("(b) the application role can neither administer dbsync nor read it", async () => {
  const app = await connectAs(APP);
  const calls = [
    "select dbsync.add_table('app.orders', 'app')",
    "select dbsync.create_group('x')",
    "select dbsync.add_subscription('x', 'app', 'dbname=x')",
    "select dbsync.pause('app_sub')",
    "select dbsync.resume('app_sub')",
    "select dbsync.drop_subscription('app_sub')",
    "select dbsync.remove_table('app.orders')",
    "select dbsync.wait_for_sync('app_sub', '0 s')",
    `select dbsync.tick(${groupId}, true)`,
    `select dbsync.maintain(${groupId})`,
    "select * from dbsync.next_batch('app_sub')",
    "select * from dbsync.advance('app_sub', null, 0, 0, 1)",
    `select * from dbsync.batch_events(${groupId}, 0, 1)`,
    "select dbsync.record_progress(1, 0, 0, 0)",
    "select dbsync.record_error(1, 'x', null, null, null)",
  ];
  for (const sql of calls) await denied(app, sql);
  for (const rel of ["events", `events_${groupId}`, `events_${groupId}_0`, "subscriptions", "status", "table_status", "groups", "tables", "ticks"]) {
    await denied(app, `select * from dbsync.${rel}`);
  }
  await denied(app, "select target_conninfo from dbsync.subscriptions");
  // Nothing changed on the way.
  assert.deepEqual(await rows(src, "select name, paused from dbsync.subscriptions"), [{ name: "app_sub", paused: false }]);
  assert.equal(await value(src, "select count(*)::int from dbsync.tables where removed_at is null"), 3);
});

test("(c) PUBLIC has no access to the schema, the queue, the conninfo or the functions", async () => {
  assert.equal(await value(src, "select has_schema_privilege('public', 'dbsync', 'usage')"), false);
  assert.equal(await value(src, "select has_schema_privilege('public', 'dbsync', 'create')"), false);
  // No relation of the schema (queue partitions included) grants PUBLIC anything.
  const relsForPublic = await rows(
    src,
    `select c.relname from pg_class c
     where c.relnamespace = 'dbsync'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S')
       and exists (select from aclexplode(coalesce(c.relacl, acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char", c.relowner))) a
                   where a.grantee = 0)`,
  );
  assert.deepEqual(relsForPublic, []);
  assert.equal(await value(src, "select has_table_privilege('public', 'dbsync.events', 'select')"), false);
  assert.equal(await value(src, "select has_column_privilege('public', 'dbsync.subscriptions', 'target_conninfo', 'select')"), false);
  // Functions: none executable by PUBLIC that could change or reveal anything.
  const fnsForPublic = await rows<{ proname: string }>(
    src,
    `select p.proname from pg_proc p
     where p.pronamespace = 'dbsync'::regnamespace
       and exists (select from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a where a.grantee = 0)
     order by 1`,
  );
  assert.deepEqual(
    // _last_ev_id and _held_tables serve the status views (SECURITY DEFINER, called with the
    // reader's rights; PUBLIC has no USAGE on the schema, so only its readers reach them); _on_ddl, _on_drop and _on_rewrite are the event triggers'
    // functions, fired by whoever alters or drops a replicated table and callable in no other way;
    // version() says which dbsync installed this; the status views' helpers that withhold
    // row values from their reader only format text (none is SECURITY DEFINER);
    // key_changed_<table> is the key trigger's WHEN, run as the writer: it only
    // compares its two arguments; _statement_mark is the replica-mode capture trigger's WHEN,
    // run as the writer too: it returns its statement's start time and trigger depth.
    fnsForPublic
      .map((r) => r.proname)
      .filter((n) => !["_last_ev_id", "_held_tables", "_on_ddl", "_on_drop", "_on_rewrite", "version", "_shows_values", "_without_values", "_differences_message",
        "_held_message", "_statement_mark"].includes(n))
      .filter((n) => !/^key_changed_\d+$/.test(n)),
    [],
  );

  const nobody = await connectAs(NOBODY);
  await denied(nobody, "select * from dbsync.events");
  await denied(nobody, "select target_conninfo from dbsync.subscriptions");
  await denied(nobody, "select * from dbsync.status");
  await denied(nobody, "select dbsync.add_table('app.orders')");
});

test("(d) a role granted usage and execute administers replication (functions run as the dbsync owner)", async () => {
  await src.query(`
    grant usage on schema dbsync to ${ADMIN};
    grant execute on all functions in schema dbsync to ${ADMIN};
    create table public.adm_t (id int primary key, v text); -- owned by postgres; ${ADMIN} has no right on it
  `);
  const adm = await connectAs(ADMIN);
  assert.equal(await value(adm, "select has_table_privilege('public.adm_t', 'select')"), false);
  const gid = await value<number>(adm, "select dbsync.create_group('adm')");
  assert.ok(gid > 0);
  await value(adm, "select dbsync.add_table('public.adm_t', 'adm')");
  // ins, upd, del, key, trunc, and replica with its mark and unmark (the logical replication apply worker's).
  assert.equal(await value(src, "select count(*)::int from pg_trigger where tgrelid = 'public.adm_t'::regclass"), 8);
  // Not the dbsync owner: its conninfo carries a password of its own (the test
  // cluster trusts local logins, and the sidecar, not run here, would refuse it).
  const withPassword = new URL(env.targetUrl);
  withPassword.password = "adm";
  await value(adm, "select dbsync.add_subscription('adm_sub', 'adm', $1)", [withPassword.toString()]);
  await value(adm, "select dbsync.pause('adm_sub')");
  assert.equal(await value(src, "select paused from dbsync.subscriptions where name = 'adm_sub'"), true);
  await value(adm, "select dbsync.resume('adm_sub')");
  assert.equal(await value(src, "select paused from dbsync.subscriptions where name = 'adm_sub'"), false);
  assert.equal(await value(adm, "select dbsync.wait_for_sync('adm_sub', '0 s')"), false); // the table is not copied
  // Errors reach it like they reach the owner.
  const err = await sqlError(adm, "select dbsync.add_table('public.adm_t', 'elsewhere')");
  assert.equal(err.code, "42710");
  await value(adm, "select dbsync.remove_table('public.adm_t')");
  assert.equal(await value(src, "select count(*)::int from pg_trigger where tgrelid = 'public.adm_t'::regclass"), 0);
  await value(adm, "select dbsync.drop_subscription('adm_sub')");
  assert.equal(await value(src, "select count(*)::int from dbsync.subscriptions where name = 'adm_sub'"), 0);
  // Execute rights do not open the tables.
  await denied(adm, "select * from dbsync.events");
  await denied(adm, "select target_conninfo from dbsync.subscriptions");
});

test("(e) a monitoring role (grant_monitor) reads the status views and waits, and nothing else", async () => {
  await src.query(`select dbsync.grant_monitor('${MON}')`);
  assert.deepEqual(await rows(src, "select role_name::text from dbsync.monitor_roles"), [{ role_name: MON }]);
  // Every migrate grants the recorded roles again.
  await src.query(`revoke execute on function dbsync.wait_for_sync(text, interval) from ${MON}`);
  await migrate(env.sourceUrl);
  assert.equal(await value(src, "select has_function_privilege($1, 'dbsync.wait_for_sync(text,interval)', 'execute')", [MON]), true);
  assert.equal(await value(src, "select dbsync._regrant_monitors()"), 1);
  await src.query("insert into app.orders (id, note) values (100, 'x'), (101, 'y')");
  const mon = await connectAs(MON);
  const mine = await rows(mon, "select name, group_name, state, paused, backlog_events::int as backlog from dbsync.status order by name");
  const owners = await rows(src, "select name, group_name, state, paused, backlog_events::int as backlog from dbsync.status order by name");
  assert.ok(owners.length > 0);
  assert.ok((owners[0].backlog as number) > 0);
  assert.deepEqual(mine, owners, "the monitoring role sees what the owner sees");
  assert.deepEqual(
    await rows(mon, "select subscription, table_name, state from dbsync.table_status order by 1, 2"),
    await rows(src, "select subscription, table_name, state from dbsync.table_status order by 1, 2"),
  );
  // The views do not expose conninfo.
  const cols = await rows<{ column_name: string }>(
    src,
    "select column_name from information_schema.columns where table_schema = 'dbsync' and table_name in ('status', 'table_status')",
  );
  assert.ok(!cols.some((c) => /conninfo/.test(c.column_name)));

  for (const rel of ["subscriptions", "events", `events_${groupId}_0`, "groups", "ticks", "tables", "subscription_tables"]) {
    await denied(mon, `select * from dbsync.${rel}`);
  }
  await denied(mon, "select target_conninfo from dbsync.subscriptions");
  await denied(mon, "select * from dbsync.verifications");
  await denied(mon, "select * from app.orders");
  assert.equal(await value(mon, "select dbsync.wait_for_sync('app_sub', '0 s')"), false);
  await denied(mon, "select dbsync.verify_table('app_sub', 'app.orders')");
  await denied(mon, "select dbsync.resync_table('app_sub', 'app.orders')");
  await denied(mon, "select dbsync.pause('app_sub')");
  await denied(mon, "select dbsync.add_table('app.orders')");
  await denied(mon, `select * from dbsync.batch_events(${groupId}, 0, 1)`);
  await denied(mon, `select nextval('dbsync.events_seq_${groupId}')`);
});

test("(f) capture functions are SECURITY DEFINER and look nothing up through the search_path; a hostile session changes nothing", async () => {
  const capture = await rows<{ proname: string; prosecdef: boolean; proconfig: string[] | null }>(
    src,
    "select proname, prosecdef, proconfig from pg_proc where pronamespace = 'dbsync'::regnamespace and proname like 'capture\\_%' order by 1",
  );
  assert.ok(capture.length >= 4, JSON.stringify(capture)); // orders, measures, measures' truncate, stamps
  // Capture functions run inside the application's statements, where a SET clause
  // costs a GUC push and pop per call: they pin search_path only where a key's text
  // depends on it (reg* keys), and otherwise name every object schema-qualified
  // (security-escalation checks each name in their bodies; the hostile session below
  // must change nothing). Any other setting would be a mistake.
  for (const f of capture) {
    assert.equal(f.prosecdef, true, `${f.proname} is not SECURITY DEFINER`);
    assert.ok(!f.proconfig || f.proconfig.includes("search_path=pg_catalog, pg_temp"), `${f.proname}: ${f.proconfig}`);
  }
  // Every other SECURITY DEFINER function of dbsync pins its search_path to trusted schemas only.
  const unpinned = await rows(
    src,
    `select proname, proconfig from pg_proc
     where pronamespace = 'dbsync'::regnamespace and prosecdef and proname !~ '^capture_(trunc_|key_|old_|row_)?\\d+$'
       and not coalesce('search_path=pg_catalog, pg_temp' = any (proconfig), false)`,
  );
  assert.deepEqual(unpinned, []);

  // The writer sets up shadows of what the trigger body calls, and odd settings.
  await src.query(`create schema evil authorization ${APP}`);
  const app = await connectAs(APP);
  await app.query(`
    create table evil.hits (what text);
    create function evil.nextval(regclass) returns bigint language sql
      as $$ insert into evil.hits values ('nextval'); select -1::bigint $$;
    create function evil.pg_notify(text, text) returns void language sql
      as $$ insert into evil.hits values ('pg_notify') $$;
    -- pg_catalog's own argument types (anycompatible from PostgreSQL 14), so that the path's order decides.
    create function evil.array_position(${SOURCE_MAJOR >= 14 ? "anycompatiblearray, anycompatible" : "anyarray, anyelement"}) returns int language sql
      as $$ insert into evil.hits values ('array_position'); select 1 $$;
    -- An exact match beats pg_catalog.format(text, variadic "any") wherever evil is in the path.
    create function evil.format(text, smallint, name, name) returns text language sql
      as $$ insert into evil.hits values ('format'); select 'select 1' $$;
    create function evil.int4eq(int, int) returns boolean language sql
      as $$ insert into evil.hits values ('int4eq'); select true $$;
    create operator evil.= (leftarg = int, rightarg = int, procedure = evil.int4eq);
    create function evil.text(int) returns text language sql
      as $$ insert into evil.hits values ('text'); select 'evil' $$;
    create table evil.groups (group_id int, cur_slot smallint, sleeping boolean);
    -- What capture calls to read the queue's state and to pin its output settings.
    create function evil.pg_sequence_last_value(regclass) returns bigint language sql
      as $$ insert into evil.hits values ('pg_sequence_last_value'); select 0::bigint $$;
    create function evil.current_setting(text) returns text language sql
      as $$ insert into evil.hits values ('current_setting'); select 'ISO, YMD' $$;
    create function evil.set_config(text, text, boolean) returns text language sql
      as $$ insert into evil.hits values ('set_config'); select '' $$;
  `);
  await app.query("set search_path = evil, pg_catalog, app");
  // The shadows are live in this session...
  await app.query("create sequence evil.s");
  await app.query("select pg_notify('x', 'y')");
  await app.query("select nextval('evil.s'::regclass)");
  await app.query("select 1 = 1");
  await app.query("select array_position(array[1], 1)");
  await app.query("select format('%s', 1::smallint, 'a'::name, 'b'::name)");
  await app.query("select pg_sequence_last_value('evil.s'::regclass)");
  await app.query("select current_setting('datestyle')");
  await app.query("select set_config('evil.x', 'y', false)");
  assert.deepEqual(
    (await rows<{ what: string }>(app, "select what from evil.hits order by 1")).map((r) => r.what),
    ["array_position", "current_setting", "format", "int4eq", "nextval", "pg_notify", "pg_sequence_last_value", "set_config"],
  );
  await app.query("truncate evil.hits");
  await app.query(`set timezone = 'Asia/Tokyo'; set datestyle = 'SQL, DMY'; set extra_float_digits = 0;
                   set bytea_output = 'escape'; set intervalstyle = 'sql_standard'`);

  // ...but the capture runs with its own path and settings.
  // (The writer's own WHERE clauses use pg_catalog's operator explicitly: evil.= would
  // fire in its own query, which is its business.)
  const o = (sql: string) => queued(app, "app.orders", sql);
  assert.deepEqual(await o("insert into orders (id, note) values (500, 'hostile')"), ["K:500"]);
  assert.deepEqual(await o("update orders set note = 'hostile2' where id operator(pg_catalog.=) 500"), ["K:500"]);
  assert.deepEqual(await o("update orders set id = 502 where id operator(pg_catalog.=) 500"), ["K:500", "K:502"]);
  const m = (sql: string) => queued(app, "app.measures", sql);
  assert.deepEqual(await m("insert into measures values (7, 1, 'h'), (8, 1, 'i')"), ["K:7/1", "K:8/1"]);
  assert.deepEqual(await m("update measures set v = 'hostile' where id operator(pg_catalog.=) 7"), ["K:7/1"]);
  assert.deepEqual(await m("delete from measures where id operator(pg_catalog.=) 7"), ["K:7/1"]);
  assert.deepEqual(await m("truncate measures_1"), ["K:8/1"]);
  assert.deepEqual(await queued(src, "app.orders", "insert into app.orders (id, note) values (501, 'owner')"), ["K:501"]);

  // Keys whose text depends on the session's settings, written by the hostile
  // session (inside a transaction, so that its settings are seen after the capture).
  const vals = "'2024-01-02 03:04:05+00', '0.30000000000000004', '\\x0102', '1 day 02:03:04', '13/01/2021'";
  await app.query("begin");
  await app.query(`insert into stamps (ts, f, b, iv, d, note) values (${vals}, 'hostile')`);
  await app.query("update stamps set note = 'hostile2'");
  // The capture put the writer's settings back.
  const settings: unknown[] = [];
  for (const g of ["datestyle", "intervalstyle", "extra_float_digits", "timezone", "bytea_output"]) {
    settings.push(await value(app, `show ${g}`));
  }
  assert.deepEqual(settings, ["SQL, DMY", "sql_standard", "0", "Asia/Tokyo", "escape"]);
  await app.query("commit");
  assert.equal(await value(app, "select count(*)::int from evil.hits"), 0, "a shadow function ran inside the capture");
  // One key per statement, the same.
  const sev = await eventsOf("app.stamps");
  assert.deepEqual(sev.map((e) => e.op), ["K", "K"]);
  assert.deepEqual(sev[1].row, sev[0].row);
  const key = sev[0].row!;
  assert.equal(key.length, 5);
  // Same values whatever the writer's settings: where they would make the text
  // ambiguous (DateStyle, extra_float_digits, IntervalStyle) capture pins its own;
  // TimeZone and bytea_output change the text but not the value it reads back as.
  // The float8 as extra_float_digits = 3 prints it: shortest exact from PostgreSQL 12, 18 digits before.
  const f8 = SOURCE_MAJOR >= 12 ? "0.30000000000000004" : "0.300000000000000044";
  assert.deepEqual([key[1], key[3], key[4]], [f8, "1 day 02:03:04", "2021-01-13"]);
  assert.equal(
    await value(
      src,
      `select $1::timestamptz = '2024-01-02 03:04:05+00' and $2::float8 = '0.30000000000000004'
              and $3::bytea = '\\x0102'::bytea and $4::interval = '1 day 02:03:04' and $5::date = '2021-01-13'`,
      key,
    ),
    true,
    JSON.stringify(key),
  );
  // The key finds its row.
  assert.equal(
    await value<number>(src, "select count(*)::int from app.stamps where (ts, f, b, iv, d) = ($1::timestamptz, $2::float8, $3::bytea, $4::interval, $5::date)", key),
    1,
  );
  const ids = await rows<{ ev_id: string }>(src, "select ev_id::text from dbsync.events order by ev_id");
  assert.ok(ids.every((r) => Number(r.ev_id) > 0), "event ids come from the real sequence");
});

/** `dbsync ARGS` against the source as `role`. */
function cliAs(role: string, args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", path.join(__dirname, "..", "src", "cli.ts"), ...args, "--source", urlAs(role)], {
    encoding: "utf8",
    env: { ...process.env, DBSYNC_LOG_LEVEL: "warn" },
  });
  return { code: r.status, out: r.stdout, err: r.stderr, all: `exit ${r.status}\n${r.stdout}\n${r.stderr}` };
}

test("(g) the monitoring role sees no value of a replicated row; the owner and admin roles do; a missing grant is named", async () => {
  // What dbsync records, as it would: background verification found rows of
  // app.orders differing (their keys), it failed once on app.measures with a DETAIL
  // quoting a row (one value imitating the start of a hint), a chunked copy of
  // app.measures stands at a key, and the last batch failed with a unique
  // violation whose DETAIL quotes a value.
  await src.query(`
    insert into dbsync.verify_progress (sub_id, table_id, differences, differing_keys, found_at)
    select s.sub_id, t.table_id, 2, '{secret-key-1,secret-key-2}', now()
      from dbsync.subscriptions s, dbsync.tables t where s.name = 'app_sub' and t.relid = 'app.orders'::regclass;
    insert into dbsync.verify_progress (sub_id, table_id, errors, last_error, last_error_at)
    select s.sub_id, t.table_id, 1, 'verification failed (detail: Failing row contains (7, secret-row (hint: secret-after)).)', now()
      from dbsync.subscriptions s, dbsync.tables t where s.name = 'app_sub' and t.relid = 'app.measures'::regclass;
    update dbsync.subscription_tables st set state = 'copying', chunk_request = st.copy_request, chunk_key = '{secret-key-3}'
      from dbsync.tables t where t.table_id = st.table_id and t.relid = 'app.measures'::regclass;
    update dbsync.subscriptions set last_error_table = '"app"."orders"',
      last_error = 'duplicate key value violates unique constraint "orders_note" (detail: Key (note)=(secret-note) already exists.) (hint: Delete the row.)';
    grant select on dbsync.status, dbsync.table_status, dbsync.verifications, dbsync.unreplicated_ddl to ${ADMIN};
  `);
  const mon = await connectAs(MON);
  const adm = await connectAs(ADMIN);
  const statusSql = "select * from dbsync.status where name = 'app_sub'";
  const tablesSql = "select * from dbsync.table_status where subscription = 'app_sub' order by table_name";
  for (const [who, c] of [["owner", src], ["admin", adm]] as const) {
    const all = JSON.stringify([await rows(c, statusSql), await rows(c, tablesSql)]);
    for (const secret of ["secret-note", "secret-key-1", "secret-key-3", "secret-row", "secret-after"]) assert.match(all, new RegExp(secret), `${who}: ${secret}`);
  }
  const [st] = await rows<{ last_error: string }>(mon, statusSql);
  const tables = await rows<Record<string, unknown>>(mon, tablesSql);
  assert.doesNotMatch(JSON.stringify([st, tables]), /secret/);
  assert.equal(st.last_error, 'duplicate key value violates unique constraint "orders_note" (detail withheld: it may quote row values, which this role may not read)');
  const orders = tables.find((t) => t.table_name === "app.orders")!;
  const measures = tables.find((t) => t.table_name === "app.measures")!;
  assert.equal(orders.verify_differences, "2");
  assert.equal(orders.verify_differing_keys, null);
  assert.match(String(measures.last_verify_error), /^verification failed \(detail withheld/);
  assert.equal(measures.copied_up_to, null);
  // The message of the differences, without the batch's error in front of it.
  await src.query("update dbsync.subscriptions set last_error = null, last_error_table = null");
  assert.match(
    String(await value(mon, "select last_error from dbsync.table_status where table_name = 'app.orders'")),
    /^2 row\(s\) of app.orders differ on the target \(found by background verification; its keys are in dbsync.verifications\); copy the table again with select dbsync.resync_table\('app_sub', 'app.orders'\)$/,
  );
  assert.match(String(await value(src, "select last_error from dbsync.table_status where table_name = 'app.orders'")), /keys: secret-key-1, secret-key-2\)/);
  await src.query(`update dbsync.subscriptions set last_error_table = '"app"."orders"',
    last_error = 'duplicate key value violates unique constraint "orders_note" (detail: Key (note)=(secret-note) already exists.)'`);

  // The CLI as the monitoring role: status and wait work, and say nothing secret.
  const status = cliAs(MON, ["status", "--json"]);
  assert.equal(status.code, 0, status.all);
  assert.doesNotMatch(status.out, /secret/);
  const wait = cliAs(MON, ["wait", "app_sub", "--timeout", "1"]);
  assert.equal(wait.code, 3, wait.all);
  assert.match(wait.err, /not in sync after 1 s: applying failed on "app"."orders".*detail withheld/);
  assert.doesNotMatch(wait.all, /secret/);
  // What it may not do, each refused with the grants to run.
  const verify = cliAs(MON, ["verify", "app_sub"]);
  assert.equal(verify.code, 1, verify.all);
  assert.match(verify.err, new RegExp(`^dbsync: permission denied for function verify_subscription \\(role ${MON} lacks dbsync's administration rights\\)$`, "m"));
  assert.match(verify.err, new RegExp(`^hint: As the dbsync owner .*: grant usage on schema dbsync to ${MON}; grant execute on all functions in schema dbsync to ${MON}; grant select on dbsync.status, dbsync.table_status, dbsync.verifications, dbsync.unreplicated_ddl to ${MON};$`, "m"));
  const nobody = cliAs(NOBODY, ["wait", "app_sub", "--timeout", "1"]);
  assert.equal(nobody.code, 1, nobody.all);
  assert.match(nobody.err, new RegExp(`^dbsync: permission denied for schema dbsync \\(role ${NOBODY} lacks the monitoring rights\\)$`, "m"));
  assert.match(nobody.err, new RegExp(`^hint: As the dbsync owner \\(the role that ran dbsync migrate\\): select dbsync.grant_monitor\\('${NOBODY}'\\);$`, "m"));
  // `dbsync run` as a role without the sidecar's rights: the grant to run, not a bare 42501.
  for (const role of [NOBODY, MON]) {
    const run = cliAs(role, ["run"]);
    assert.equal(run.code, 1, run.all);
    assert.match(run.err, new RegExp(`^dbsync: permission denied for .* \\(role ${role} lacks the sidecar's rights\\)$`, "m"));
    assert.match(run.err, new RegExp(`^hint: As the dbsync owner \\(the role that ran dbsync migrate\\): select dbsync.grant_sidecar\\('${role}'\\);$`, "m"));
  }
  await src.query("update dbsync.subscriptions set last_error = null, last_error_table = null");
});
