// The privilege matrix of schema dbsync on the source, driven by the catalog so that
// it cannot go stale: every function (each overload, by regprocedure), every table,
// view, partition and sequence of the schema, and the event triggers' functions, for
// each kind of role: superuser, the dbsync owner, an admin role granted the README's
// recipe, a table owner, an application role, a monitoring role (dbsync.grant_monitor),
// the least-privilege sidecar role (dbsync.grant_sidecar), and PUBLIC. What the catalog says
// (has_function_privilege, has_table_privilege, has_column_privilege, schema
// USAGE) must equal the matrix written below; an object the matrix does not know
// fails the test by name. Then sessions as each role prove a sample of the answers,
// and the sidecar runs copy and stream as its least-privilege role.
// Roles are cluster-wide: their names are unique per run, and they are dropped at the end.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, test } from "node:test";
import { Client } from "pg";
import { migrate, WORKER_MIN_MAJOR } from "../src/migrate";
import { measuresDdl, measuresKeyColumns, partitionKey } from "./kit/measures";
import { SOURCE_MAJOR, TARGET_MAJOR, compat, createDatabase, Env, freshEnv, rows, sqlError, startSidecar, tableText, until, value } from "./helpers";

const sfx = crypto.randomBytes(4).toString("hex");
const KINDS = ["superuser", "owner", "admin", "tableOwner", "app", "monitor", "sidecar", "public"] as const;
type Kind = (typeof KINDS)[number];
// The role each kind is checked as. "owner" is postgres, who ran migrate (a superuser,
// so that the DDL event triggers exist); test (e) checks a non-superuser owner too.
const ROLE: Record<Kind, string> = {
  superuser: `dbsync_pm_su_${sfx}`,
  owner: "postgres",
  admin: `dbsync_pm_admin_${sfx}`,
  tableOwner: `dbsync_pm_towner_${sfx}`,
  app: `dbsync_pm_app_${sfx}`,
  monitor: `dbsync_pm_mon_${sfx}`,
  sidecar: `dbsync_pm_sidecar_${sfx}`,
  public: "public",
};
const NOBODY = `dbsync_pm_nobody_${sfx}`; // a login role with nothing but PUBLIC's rights
const OWNER2 = `dbsync_pm_owner_${sfx}`; // test (e): a dbsync owner that is no superuser
const createdRoles = [...KINDS.filter((k) => k !== "owner" && k !== "public").map((k) => ROLE[k]), NOBODY, OWNER2];

// ---------------------------------------------------------------------------------
// The expected matrix. Functions: who may EXECUTE each one.
//   public:  PUBLIC (so every role); grants.sql names them.
//   sidecar: the sidecar role (grant_sidecar), the admin role, the owner.
//   monitor: the monitoring role (grant_monitor), the admin role, the owner.
//   admin:   the admin role and the owner only.
// Superuser and owner may always do everything.
type FnTier = "public" | "sidecar" | "monitor" | "admin";
const MATRIX: Record<string, FnTier> = {
  // grants.sql: the status views' helpers, and the event triggers' functions.
  "dbsync._last_ev_id(integer)": "public",
  "dbsync._held_tables()": "public",
  "dbsync._on_ddl()": "public",
  "dbsync._on_drop()": "public",
  "dbsync._on_rewrite()": "public",
  // Which dbsync installed this (not SECURITY DEFINER).
  "dbsync.version()": "public",
  // What the status views call with their reader's rights to withhold row values (not SECURITY DEFINER).
  "dbsync._shows_values()": "public",
  "dbsync._without_values(text,boolean)": "public",
  "dbsync._differences_message(text,name,name,bigint,bigint,text[],boolean)": "public",
  "dbsync._held_message(bigint,text,text)": "public",
  // The WHEN of a plain table's replica-mode capture trigger, inlined and run as the writer
  // (not SECURITY DEFINER): its statement's start time and trigger depth.
  "dbsync._statement_mark(integer)": "public",
  // A plain table's BEFORE STATEMENT trigger in replica mode: fired, never called.
  "dbsync._mark_replica_statement()": "admin",
  // grant_monitor: waiting for a subscription only reads.
  "dbsync.wait_for_sync(text,interval)": "monitor",
  // grant_sidecar: what `dbsync run` calls.
  "dbsync.copy_lost_unlogged(integer,text[],text[])": "sidecar",
  "dbsync.begin_batch(text,bigint)": "sidecar",
  "dbsync._tick_key(integer,bigint)": "sidecar",
  "dbsync.batch_plan(integer,bigint,bigint,bigint,bigint,integer,bigint,boolean,jsonb)": "sidecar",
  "dbsync.batch_keys(integer,bigint,integer[],integer[],integer,integer)": "sidecar",
  "dbsync.record_progress(integer,bigint,bigint,double precision,jsonb,jsonb)": "sidecar",
  "dbsync.copy_progress(integer,integer,bigint,bigint,bigint)": "sidecar",
  "dbsync.copy_chunks(integer,bigint,jsonb)": "sidecar",
  "dbsync.table_error(integer,integer,text)": "sidecar",
  "dbsync.record_error(integer,text,text,text,bigint)": "sidecar",
  "dbsync.target_position(integer,bigint,bigint)": "sidecar",
  "dbsync.has_work(text)": "sidecar",
  "dbsync._with_work(integer,integer[],integer[])": "sidecar",
  "dbsync._poll_groups(integer[],bigint[],xid8[],boolean[])": "sidecar",
  "dbsync._capture_notifies()": "sidecar",
  "dbsync.set_sleeping(integer,boolean)": "sidecar",
  "dbsync.tick(integer,boolean)": "sidecar",
  "dbsync.maintain(integer,interval,interval)": "sidecar",
  "dbsync.table_layout(integer)": "sidecar",
  "dbsync._verify_begin(bigint)": "sidecar",
  "dbsync._verify_todo()": "sidecar",
  "dbsync._verify_schedule(interval,bigint)": "sidecar",
  "dbsync._verify_record(bigint)": "sidecar",
  "dbsync._skipped_ddl(integer)": "sidecar",
  // The sidecar protocol's reads and writes (src/source/protocol.ts): SECURITY INVOKER,
  // so the sidecar role's own table and column grants still decide.
  "dbsync.sidecar_subscription(text)": "sidecar",
  "dbsync.sidecar_subscriptions(integer)": "sidecar",
  "dbsync.sidecar_work()": "sidecar",
  "dbsync.sidecar_poll(integer[],bigint[],text[],boolean[])": "sidecar",
  "dbsync.sidecar_groups(interval)": "sidecar",
  "dbsync.sidecar_stop()": "sidecar",
  "dbsync.sidecar_sequences(integer)": "sidecar",
  "dbsync.sidecar_readiness()": "sidecar",
  "dbsync._verify_job(bigint)": "sidecar",
  "dbsync._verify_snapshot(bigint,text)": "sidecar",
  "dbsync._verify_release(bigint)": "sidecar",
  "dbsync._verify_comparing(bigint)": "sidecar",
  "dbsync._verify_counts(bigint,bigint,integer,integer,bigint,bigint,bigint,text[],bigint)": "sidecar",
  "dbsync._verify_done(bigint,text[],boolean)": "sidecar",
  "dbsync._verify_requeue(bigint)": "sidecar",
  "dbsync._verify_failed(bigint,text,bigint,integer)": "sidecar",
  "dbsync._lock_class(text)": "sidecar",
  "dbsync.sidecar_try_lock(text,integer)": "sidecar",
  "dbsync.sidecar_unlock(text,integer)": "sidecar",
  // Administration (README: SQL reference).
  "dbsync.create_group(text)": "admin",
  "dbsync.add_table(regclass,text,text[])": "admin",
  "dbsync.add_all_tables(name,text,boolean)": "admin",
  "dbsync.add_sequence(regclass,text)": "admin",
  "dbsync.remove_table(regclass)": "admin",
  "dbsync.add_subscription(text,text,text,boolean)": "admin",
  "dbsync.drop_subscription(text)": "admin",
  "dbsync.drop_group(text)": "admin",
  "dbsync.schema_ddl(text)": "admin",
  "dbsync.skip_ddl(text,bigint)": "admin",
  "dbsync.acknowledge_ddl(bigint)": "admin",
  "dbsync.pause(text)": "admin",
  "dbsync.resume(text)": "admin",
  "dbsync.resync_table(text,regclass)": "admin",
  "dbsync.resync_subscription(text)": "admin",
  "dbsync.verify_table(text,regclass,boolean)": "admin",
  "dbsync.verify_subscription(text,boolean)": "admin",
  "dbsync.execute_ddl(text,text)": "admin",
  "dbsync.uninstall()": "admin",
  "dbsync.grant_sidecar(name)": "admin", // and then refused to anyone but the owner (_require_owner)
  "dbsync.grant_monitor(name)": "admin", // likewise
  "dbsync.batch_events(integer,bigint,bigint)": "admin", // reads the queue: not the sidecar's
  // Internal helpers.
  "dbsync._base_type(oid)": "admin",
  "dbsync._begin_ddl(integer)": "admin",
  "dbsync._capture_stale(integer)": "admin",
  "dbsync._check_capturable(integer)": "admin",
  "dbsync._check_grantee(text,name,name)": "admin",
  "dbsync._check_name(text,text)": "admin",
  "dbsync._comment_line(text)": "admin",
  "dbsync._chunk_cmp(text[],jsonb,text,text[])": "admin",
  "dbsync._chunk_entry(jsonb,oid,text,jsonb,bigint)": "admin",
  "dbsync._chunk_next(oid,text,jsonb,text[],bigint)": "admin",
  "dbsync._chunk_order(oid,text[])": "admin",
  "dbsync._chunk_state(integer,integer,boolean,integer[])": "admin",
  "dbsync._compared_as_text(oid[])": "admin",
  "dbsync._one_text_per_value(oid,oid)": "admin",
  "dbsync._conninfo_check(text,text)": "admin",
  "dbsync._conninfo_own_password(text,text)": "admin",
  "dbsync._conninfo_keywords()": "admin",
  "dbsync._conninfo_known(text,text)": "admin",
  "dbsync._conninfo_parse(text,text)": "admin",
  "dbsync._ddl_group()": "admin",
  "dbsync._ddl_effects()": "admin",
  "dbsync._ddl_plan(integer,jsonb,jsonb)": "admin",
  "dbsync._end_ddl()": "admin",
  "dbsync._ddl_recopy(integer,jsonb,jsonb)": "admin",
  "dbsync._expr_immutable(pg_node_tree)": "admin",
  "dbsync._own_values(oid,smallint,boolean)": "admin",
  "dbsync._domain_checked(oid)": "admin",
  "dbsync._timestamp_columns(oid)": "admin",
  "dbsync._timestamps_retyped(integer)": "admin",
  "dbsync._column_names(oid)": "admin",
  "dbsync._columns_recorded(integer,text,jsonb)": "admin",
  "dbsync._own_values_added(oid,boolean)": "admin",
  "dbsync._request_copy(integer,integer[])": "admin",
  "dbsync._unlogged_lost()": "admin",
  "dbsync._own_ddl(text)": "admin",
  "dbsync._unlogged_tables()": "admin",
  "dbsync._add_owned_sequences(regclass,integer)": "admin",
  "dbsync._drop_capture_triggers(oid)": "admin",
  "dbsync._edit_distance(text,text)": "admin",
  "dbsync._batch_events(integer,pg_snapshot,pg_snapshot)": "admin",
  "dbsync._events_between(integer,pg_snapshot,pg_snapshot)": "admin",
  "dbsync._export_tick(integer,bigint)": "admin",
  "dbsync._grant_monitor_rights(name)": "admin",
  "dbsync._grant_set(text,name)": "admin",
  "dbsync._grant_select(regclass,name)": "admin",
  "dbsync._grant_sidecar_rights(name)": "admin",
  "dbsync._grant_to_sidecars(regclass)": "admin",
  "dbsync._group_id(text,boolean)": "admin",
  "dbsync._has_new_writers(integer,pg_snapshot)": "admin",
  "dbsync._install_capture(integer)": "admin",
  "dbsync._key_columns(regclass,text[])": "admin",
  "dbsync._key_is_unique(regclass,text[])": "admin",
  "dbsync._key_match(oid,text,text)": "admin",
  "dbsync._needs_pinned_output(oid[])": "admin",
  "dbsync._prints_by_search_path(oid[])": "admin",
  "dbsync._pin_output()": "admin",
  "dbsync._publish_group_state(integer)": "admin",
  "dbsync._queue_ddl(integer,text,text,jsonb)": "admin",
  "dbsync._ddl_settings()": "admin",
  "dbsync._queue_rows(integer,integer,regclass)": "admin",
  "dbsync._regrant_sidecars()": "admin",
  "dbsync._regrant_monitors()": "admin",
  "dbsync._require_owner(text)": "admin",
  "dbsync._session_is_owner()": "admin",
  "dbsync._restore_output(text[])": "admin",
  "dbsync._restored_by_dump()": "admin",
  "dbsync._sequence_goal(integer)": "admin",
  "dbsync._sequences_behind(integer,jsonb)": "admin",
  "dbsync._server_has(text)": "admin",
  "dbsync._snapshot_excluding_self()": "admin",
  "dbsync._sub(text)": "admin",
  "dbsync._sync_partitions(integer,boolean)": "admin",
  "dbsync._sync_blocker(integer)": "admin",
  "dbsync._synced(integer,pg_snapshot)": "admin",
  "dbsync._text_of(oid,text)": "admin",
  "dbsync._capture_function(text,integer,text,text)": "admin",
  "dbsync._capture_insert(integer,integer,\"char\",text,text)": "admin",
  "dbsync._capture_version()": "admin",
  "dbsync._capture_outdated()": "admin",
  "dbsync._protocol_functions()": "admin",
  "dbsync._capture_triggers(oid,boolean)": "admin",
  "dbsync._drop_capture_functions(integer)": "admin",
  "dbsync._enable_always(regclass)": "admin",
  "dbsync._follow_name(integer)": "admin",
  "dbsync._origin_mode()": "admin",
  "dbsync._pair_group(integer,text)": "admin",
  "dbsync._check_snapshot(oid[])": "admin",
  "dbsync._types_holding(oid)": "admin",
  "dbsync._unreplicated_ddl(integer,text,boolean)": "admin",
  "dbsync._key_text(text[],oid[],text)": "admin",
  "dbsync._upgrade_capture(integer)": "admin",
  "dbsync._uri_decode(text,text)": "admin",
  "dbsync._verify_hold(text)": "admin",
  // Before PostgreSQL 12 only (sql/compat/partition_tree.sql).
  ...(SOURCE_MAJOR < 12 ? { "dbsync._partition_tree(regclass)": "admin", "dbsync._partition_ancestors(regclass)": "admin" } : {}),
};
// As the source's major names the types (txid_snapshot before 13).
const FUNCTIONS: Record<string, FnTier> = Object.fromEntries(Object.entries(MATRIX).map(([sig, tier]) => [compat(sig), tier]));
// SECURITY DEFINER functions PUBLIC may execute: exactly these.
const PUBLIC_SECDEF = ["dbsync._last_ev_id(integer)", "dbsync._held_tables()", "dbsync._on_ddl()", "dbsync._on_drop()", "dbsync._on_rewrite()"];
// Not SECURITY DEFINER: what the status views call to withhold row values from their reader, and
// the WHEN of the replica-mode capture trigger.
const PUBLIC_HELPERS = [
  "dbsync._differences_message(text,name,name,bigint,bigint,text[],boolean)",
  "dbsync._held_message(bigint,text,text)",
  "dbsync._shows_values()",
  "dbsync._statement_mark(integer)",
  "dbsync._without_values(text,boolean)",
];
// Generated per replicated table (_install_capture): the capture trigger functions.
// Admin (granted after they exist) and owner; for a partitioned table also its owner,
// who clones the row trigger onto new partitions (PostgreSQL checks EXECUTE then).
const CAPTURE_FN = /^dbsync\.capture_(trunc_|old_|key_|row_)?(\d+)\(\)$/;
// Also generated per plain table: the key comparison in the WHEN of its key trigger,
// run as the writer (any role that may update the table): PUBLIC, not SECURITY
// DEFINER, and it reads nothing but its two arguments.
const KEY_CHANGED_FN = /^dbsync\.key_changed_\d+\(anyelement,anyelement\)$/;

function fnExpected(sig: string, kind: Kind, partitionedTableIds: Set<string>): boolean {
  if (kind === "superuser" || kind === "owner" || KEY_CHANGED_FN.test(sig)) return true;
  const cap = CAPTURE_FN.exec(sig);
  if (cap) return kind === "admin" || (kind === "tableOwner" && !cap[1] && partitionedTableIds.has(cap[2]));
  const tier = FUNCTIONS[sig];
  if (tier === "public") return true;
  if (tier === "sidecar") return kind === "admin" || kind === "sidecar";
  if (tier === "monitor") return kind === "admin" || kind === "monitor";
  return kind === "admin";
}

// Relations: the privileges each kind holds (table-level, plus any column-level grant).
// Only superuser and owner hold anything not listed here.
type RelTier = "ownerOnly" | "sidecarRead" | "sidecarReadVerify" | "monitored" | "adminRead";
const RELATIONS: Record<string, RelTier> = {
  // grant_sidecar: SELECT; grant_monitor and the admin recipe: status and table_status.
  subscriptions: "sidecarRead", // target_conninfo: never PUBLIC, monitor or admin
  groups: "sidecarRead",
  tables: "sidecarRead",
  sequences: "sidecarRead",
  verifications: "sidecarReadVerify", // + UPDATE of VERIFY_COLUMNS; the admin reads it (dbsync verify)
  status: "monitored",
  table_status: "monitored",
  unreplicated_ddl: "adminRead",
  // Nobody's but the owner's: the queue (row data), its bookkeeping, dbsync's own state.
  events: "ownerOnly",
  ticks: "ownerOnly",
  shapes: "ownerOnly",
  partitions: "ownerOnly",
  queue_slots: "ownerOnly",
  subscription_tables: "ownerOnly",
  subscription_sequences: "ownerOnly",
  verify_progress: "ownerOnly", // read through table_status
  sidecar_roles: "ownerOnly",
  monitor_roles: "ownerOnly",
  group_pairings: "ownerOnly", // add_table and add_subscription write it (_pair_group)
  ddl_context: "ownerOnly", // execute_ddl's marker: only dbsync's functions write it
  unlogged_intact: "ownerOnly", // its row goes with the unlogged tables at crash recovery: only maintain puts it back
  ddl_log: "ownerOnly",
  skipped_ddl: "ownerOnly", // read by the sidecar through _skipped_ddl
  installed_code: "ownerOnly",
  migrations: "ownerOnly",
  installed_at: "ownerOnly",
  ddl_log_ddl_id_seq: "ownerOnly",
  groups_group_id_seq: "ownerOnly",
  sequences_seq_id_seq: "ownerOnly",
  shapes_shape_id_seq: "ownerOnly",
  subscriptions_sub_id_seq: "ownerOnly",
  tables_table_id_seq: "ownerOnly",
  verifications_verification_id_seq: "ownerOnly",
};
// Per group (create_group): the queue's partitions and sequences.
const GROUP_REL = /^(events_\d+|events_\d+_\d+|events_seq_\d+|group_state_\d+)$/;
// The columns of dbsync.verifications a verification fills in (the sidecar may UPDATE
// them); never what was asked for (subscription, table, repair, requested_at, and
// background verification's range: background, key_after, row_limit).
const VERIFY_COLUMNS = [
  "state", "tick_id", "hold_tick", "started_at", "compare_started_at", "finished_at", "duration", "rows_estimated",
  "rows_compared", "chunks", "chunks_differing", "differing_count", "rows_missing", "rows_extra", "rows_different",
  "differing_keys", "rows_repaired", "error", "hold_snapshot", "key_reached", "reached_end",
];
const TABLE_PRIVS = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"];
const SEQ_PRIVS = ["SELECT", "UPDATE", "USAGE"];

function relExpected(rel: string, kind: Kind, isSeq: boolean): string[] {
  const all = isSeq ? SEQ_PRIVS : TABLE_PRIVS;
  if (kind === "superuser" || kind === "owner") return all;
  const tier = GROUP_REL.test(rel) ? "ownerOnly" : RELATIONS[rel];
  if (tier === "sidecarRead") return kind === "sidecar" ? ["SELECT"] : [];
  if (tier === "sidecarReadVerify") return kind === "sidecar" ? ["SELECT", "UPDATE(columns)"] : kind === "admin" ? ["SELECT"] : [];
  if (tier === "monitored") return kind === "sidecar" || kind === "monitor" || kind === "admin" ? ["SELECT"] : [];
  if (tier === "adminRead") return kind === "admin" ? ["SELECT"] : [];
  return [];
}
// Schema USAGE: without it nothing of dbsync is reachable.
const SCHEMA_USAGE: Kind[] = ["superuser", "owner", "admin", "monitor", "sidecar"];
const SCHEMA_CREATE: Kind[] = ["superuser", "owner"];

// ---------------------------------------------------------------------------------
let env: Env;
let groupId = 0;
let partitionedTableIds = new Set<string>();
const clients: Client[] = [];
const extraDbs: string[] = [];

function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = "";
  return u.toString();
}

async function connectAs(role: string, url = env.sourceUrl): Promise<Client> {
  const c = new Client({ connectionString: asRole(url, role) });
  await c.connect();
  c.on("error", () => undefined);
  clients.push(c);
  return c;
}

/** The SQLSTATE a statement ends with, or "ok". */
async function outcome(c: Client, sql: string): Promise<string> {
  try {
    await c.query(sql);
    return "ok";
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

async function denied(c: Client, sql: string) {
  const err = await sqlError(c, sql);
  assert.equal(err.code, "42501", `${sql}: expected permission denied, got ${err.code} ${err.message}`);
}

const tableDdl = (major: number) => `
  create schema app;
  create table app.orders (id int primary key, note text);
  ${measuresDdl(major)}`;

before(async () => {
  env = await freshEnv("privilege_matrix");
  const r = ROLE;
  await env.source.query(`
    create role ${r.superuser} login superuser;
    create role ${r.admin} login;
    create role ${r.tableOwner} login;
    create role ${r.app} login;
    create role ${r.monitor} login;
    create role ${r.sidecar} login;
    create role ${NOBODY} login;
    create role ${OWNER2} login;
    ${tableDdl(SOURCE_MAJOR)}
    alter schema app owner to ${r.tableOwner};
    alter table app.orders owner to ${r.tableOwner};
    alter table app.measures owner to ${r.tableOwner};
    alter table app.measures_1 owner to ${r.tableOwner};
    alter table app.measures_2 owner to ${r.tableOwner};
    grant usage on schema app to ${r.app};
    grant select, insert, update, delete, truncate on app.orders, app.measures, app.measures_1, app.measures_2 to ${r.app};
    insert into app.orders select g, 'o' || g from generate_series(1, 20) g;
    insert into app.measures select g, 1 + g % 2, 'm' || g from generate_series(1, 20) g;`);
  await env.target.query(tableDdl(TARGET_MAJOR));
  groupId = await value<number>(env.source, "select dbsync.create_group('g')");
  await env.source.query("select dbsync.add_table('app.orders', 'g'), dbsync.add_table('app.measures', 'g', key_columns => $1)", [measuresKeyColumns(SOURCE_MAJOR)]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => true)", [env.targetUrl]);
  // The documented grants, after everything exists (the admin recipe covers the
  // functions existing at the time of the grant: the capture functions too).
  await env.source.query(`
    select dbsync.grant_sidecar('${r.sidecar}');
    select dbsync.grant_monitor('${r.monitor}');
    grant usage on schema dbsync to ${r.admin};
    grant execute on all functions in schema dbsync to ${r.admin};
    grant select on dbsync.status, dbsync.table_status, dbsync.verifications, dbsync.unreplicated_ddl to ${r.admin};`);
  partitionedTableIds = new Set(
    (await rows<{ id: string }>(env.source, "select table_id::text as id from dbsync.tables where partitioned")).map((x) => x.id),
  );
});

after(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
  const problems: string[] = [];
  const admin = new Client({ connectionString: env.sourceUrl });
  await admin.connect();
  try {
    // The database of test (e) first: OWNER2 owns its dbsync, NOBODY holds rights in it.
    for (const db of extraDbs) {
      try {
        // Its sessions are closed above; WITH (FORCE) is 13+.
        await admin.query(`drop database "${db}"${SOURCE_MAJOR >= 13 ? " with (force)" : ""}`);
      } catch (err) {
        problems.push(`${db}: ${(err as Error).message}`);
      }
    }
    for (const role of createdRoles) {
      try {
        if ((await admin.query("select from pg_roles where rolname = $1", [role])).rowCount === 0) continue;
        await admin.query(`drop owned by ${role} cascade`);
        await admin.query(`drop role ${role}`);
      } catch (err) {
        problems.push(`${role}: ${(err as Error).message}`);
      }
    }
  } finally {
    await admin.end();
  }
  assert.deepEqual(problems, [], "dropping the test's roles");
});

// ---------------------------------------------------------------------------------
test("(a) every function of schema dbsync is in the matrix, and the catalog grants exactly what it says", async () => {
  const fns = await rows<{ sig: string; secdef: boolean; rettype: string }>(
    env.source,
    `select p.oid::regprocedure::text as sig, p.prosecdef as secdef, p.prorettype::regtype::text as rettype
       from pg_proc p where p.pronamespace = 'dbsync'::regnamespace order by 1`,
  );
  assert.ok(fns.length > 60, `only ${fns.length} functions`);
  // All differences at once: objects the matrix does not know, then rights it does not expect.
  const problems = [
    ...fns
      .filter((f) => !(f.sig in FUNCTIONS) && !CAPTURE_FN.test(f.sig) && !KEY_CHANGED_FN.test(f.sig))
      .map((f) => `new function ${f.sig}: decide who may call it and add it to the matrix`),
    ...Object.keys(FUNCTIONS)
      .filter((s) => !fns.some((f) => f.sig === s))
      .map((s) => `function ${s} is in the matrix but not in the catalog`),
  ];
  assert.ok(fns.some((f) => CAPTURE_FN.test(f.sig)), "the capture functions of the replicated tables");

  // The event triggers' functions (database-wide objects) are dbsync's and in the matrix.
  const evt = await rows<{ evtname: string; fn: string }>(
    env.source,
    "select evtname, evtfoid::regprocedure::text as fn from pg_event_trigger where evtname like 'dbsync%' order by 1",
  );
  assert.deepEqual(evt.map((e) => e.fn), ["dbsync._on_ddl()", "dbsync._on_drop()", "dbsync._on_rewrite()"]);
  for (const e of evt) assert.equal(FUNCTIONS[e.fn], "public", `${e.evtname}: ${e.fn}`);

  // One query: every (function, kind) pair the catalog answers differently from the matrix.
  const got = await rows<{ sig: string; kind: Kind; ok: boolean }>(
    env.source,
    `select p.oid::regprocedure::text as sig, k.kind, has_function_privilege(k.role, p.oid, 'execute') as ok
       from pg_proc p, unnest($1::text[], $2::text[]) as k(kind, role)
      where p.pronamespace = 'dbsync'::regnamespace`,
    [[...KINDS], KINDS.map((k) => ROLE[k])],
  );
  for (const g of got) {
    if (g.ok !== fnExpected(g.sig, g.kind, partitionedTableIds)) {
      problems.push(`${g.kind} (${ROLE[g.kind]}) ${g.ok ? "may" : "may not"} execute ${g.sig}`);
    }
  }
  assert.deepEqual(problems, [], "functions differ from the matrix");

  // SECURITY DEFINER functions PUBLIC may execute: only the three grants.sql documents.
  const secdefPublic = fns.filter((f) => f.secdef && got.some((g) => g.sig === f.sig && g.kind === "public" && g.ok));
  assert.deepEqual(secdefPublic.map((f) => f.sig).sort(), [...PUBLIC_SECDEF].sort());
  // Every SECURITY DEFINER function pins its search_path, but the generated capture
  // functions: a SET clause costs every captured statement, so they name nothing
  // through the search_path instead (test/capture-search-path.test.ts holds them to it).
  const unpinned = await rows<{ sig: string }>(
    env.source,
    `select p.oid::regprocedure::text as sig from pg_proc p
      where p.pronamespace = 'dbsync'::regnamespace and p.prosecdef
        and not coalesce('search_path=pg_catalog, pg_temp' = any (p.proconfig), false)`,
  );
  assert.deepEqual(unpinned.filter((u) => !CAPTURE_FN.test(u.sig)), []);
});

test("(b) every table, view, partition and sequence of schema dbsync is in the matrix, and so are the grants", async () => {
  const rels = await rows<{ rel: string; kind: string }>(
    env.source,
    `select c.relname::text as rel, c.relkind::text as kind from pg_class c
      where c.relnamespace = 'dbsync'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') order by 1`,
  );
  const problems = [
    ...rels
      .filter((r) => !(r.rel in RELATIONS) && !GROUP_REL.test(r.rel))
      .map((r) => `new relation dbsync.${r.rel}: decide who may read or write it and add it to the matrix`),
    ...Object.keys(RELATIONS)
      .filter((r) => !rels.some((x) => x.rel === r))
      .map((r) => `relation dbsync.${r} is in the matrix but not in the catalog`),
  ];
  assert.ok(rels.some((r) => r.rel === `events_${groupId}_0`), "the group's queue partitions");

  // Table-level privileges, and "UPDATE(columns)" etc. for grants on columns only.
  const got = await rows<{ rel: string; is_seq: boolean; kind: Kind; privs: string[] }>(
    env.source,
    `select c.relname::text as rel, c.relkind = 'S' as is_seq, k.kind,
            array(select p from unnest(case when c.relkind = 'S' then $3::text[] else $4::text[] end) p
                   where case when c.relkind = 'S' then has_sequence_privilege(k.role, c.oid, p)
                              else has_table_privilege(k.role, c.oid, p) end
                  union all
                  select p || '(columns)' from unnest(array['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) p
                   where c.relkind <> 'S' and not has_table_privilege(k.role, c.oid, p)
                     and has_any_column_privilege(k.role, c.oid, p)) as privs
       from pg_class c, unnest($1::text[], $2::text[]) as k(kind, role)
      where c.relnamespace = 'dbsync'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')`,
    [[...KINDS], KINDS.map((k) => ROLE[k]), SEQ_PRIVS, TABLE_PRIVS],
  );
  for (const g of got) {
    const want = relExpected(g.rel, g.kind, g.is_seq);
    if (JSON.stringify([...g.privs].sort()) !== JSON.stringify([...want].sort())) {
      problems.push(`${g.kind} (${ROLE[g.kind]}) on dbsync.${g.rel}: has [${g.privs}], expected [${want}]`);
    }
  }
  assert.deepEqual(problems, [], "relations differ from the matrix");

  // The columns the sidecar may update, exactly; the other kinds none (checked above).
  const cols = await rows<{ attname: string; upd: boolean; sel: boolean }>(
    env.source,
    `select a.attname::text, has_column_privilege($1, a.attrelid, a.attnum, 'UPDATE') as upd,
            has_column_privilege($1, a.attrelid, a.attnum, 'SELECT') as sel
       from pg_attribute a where a.attrelid = 'dbsync.verifications'::regclass and a.attnum > 0 and not a.attisdropped
      order by a.attnum`,
    [ROLE.sidecar],
  );
  assert.deepEqual(cols.filter((c) => c.upd).map((c) => c.attname).sort(), [...VERIFY_COLUMNS].sort());
  assert.ok(cols.every((c) => c.sel));
  // No kind but the owner's may read the conninfo.
  for (const k of KINDS) {
    const ok = await value<boolean>(env.source, "select has_column_privilege($1, 'dbsync.subscriptions', 'target_conninfo', 'SELECT')", [ROLE[k]]);
    assert.equal(ok, ["superuser", "owner", "sidecar"].includes(k), `${k} reading target_conninfo`);
  }

  // The schemas: USAGE is what makes anything above reachable.
  for (const k of KINDS) {
    const [s] = await rows<{ usage: boolean; create: boolean }>(
      env.source,
      "select has_schema_privilege($1, 'dbsync', 'USAGE') as usage, has_schema_privilege($1, 'dbsync', 'CREATE') as create",
      [ROLE[k]],
    );
    assert.equal(s.usage, SCHEMA_USAGE.includes(k), `${k}: USAGE on schema dbsync`);
    assert.equal(s.create, SCHEMA_CREATE.includes(k), `${k}: CREATE on schema dbsync`);
  }
  // Before graphile-worker's major there is no schema of it (test/migrate.test.ts): nothing to grant.
  if (SOURCE_MAJOR < WORKER_MIN_MAJOR) return;
  for (const k of KINDS) {
    const usage = await value<boolean>(env.source, "select has_schema_privilege($1, 'dbsync_worker', 'USAGE')", [ROLE[k]]);
    assert.equal(usage, ["superuser", "owner", "sidecar"].includes(k), `${k}: USAGE on schema dbsync_worker`);
  }
  // graphile-worker's tables: the sidecar's, nobody else's (but the owner's).
  const worker = await rows<{ rel: string; kind: Kind; any: boolean }>(
    env.source,
    `select c.relname::text as rel, k.kind,
            has_table_privilege(k.role, c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER') as any
       from pg_class c, unnest($1::text[], $2::text[]) as k(kind, role)
      where c.relnamespace = 'dbsync_worker'::regnamespace and c.relkind in ('r', 'p', 'v')`,
    [[...KINDS], KINDS.map((k) => ROLE[k])],
  );
  assert.ok(worker.length > 0);
  assert.deepEqual(
    worker.filter((w) => w.any !== ["superuser", "owner", "sidecar"].includes(w.kind)).map((w) => `${w.kind} on dbsync_worker.${w.rel}`),
    [],
  );
});

test("(c) sessions as each role: what the catalog says holds", async () => {
  const s: Record<Kind, Client | undefined> = {} as Record<Kind, Client | undefined>;
  for (const k of KINDS) if (k !== "owner") s[k] = await connectAs(k === "public" ? NOBODY : ROLE[k]);
  s.owner = await connectAs("postgres");
  const mismatches: string[] = [];

  // Every relation, as every kind: reading (and, for tables, deleting nothing) succeeds
  // exactly when the catalog says so. LIMIT 0 / WHERE false: the rights are checked, nothing is read or changed.
  const rels = await rows<{ rel: string; kind: string }>(
    env.source,
    `select format('dbsync.%I', c.relname) as rel, c.relkind::text as kind from pg_class c
      where c.relnamespace = 'dbsync'::regnamespace and c.relkind in ('r', 'p', 'v', 'S') order by 1`,
  );
  for (const k of KINDS) {
    const c = s[k]!;
    const role = k === "public" ? NOBODY : ROLE[k];
    for (const r of rels) {
      const usage = SCHEMA_USAGE.includes(k);
      const canRead = usage && (await value<boolean>(env.source, "select has_table_privilege($1, $2::regclass, 'SELECT')", [role, r.rel]));
      const read = await outcome(c, `select from ${r.rel} limit 0`);
      if (read !== (canRead ? "ok" : "42501")) mismatches.push(`${k} reading ${r.rel}: ${read}, catalog says ${canRead}`);
      if (r.kind === "r" || r.kind === "p") {
        const canDelete = usage && (await value<boolean>(env.source, "select has_table_privilege($1, $2::regclass, 'DELETE')", [role, r.rel]));
        await c.query("begin");
        const del = await outcome(c, `delete from ${r.rel} where false`);
        await c.query("rollback");
        if (del !== (canDelete ? "ok" : "42501")) mismatches.push(`${k} deleting from ${r.rel}: ${del}, catalog says ${canDelete}`);
      }
    }
  }

  // Every function a kind may not execute, called with NULL arguments: refused before
  // it runs (42501). Trigger functions cannot be called so, and are left out.
  const fns = await rows<{ sig: string; call: string }>(
    env.source,
    `select p.oid::regprocedure::text as sig,
            format('select %s(%s)', p.oid::regproc,
                   (select string_agg(format('null::%s', format_type(t, null)), ', ' order by i)
                      from unnest(p.proargtypes) with ordinality as a(t, i))) as call
       from pg_proc p
      where p.pronamespace = 'dbsync'::regnamespace and p.provariadic = 0
        and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype)
      order by 1`,
  );
  for (const k of ["admin", "tableOwner", "app", "monitor", "sidecar", "public"] as const) {
    for (const f of fns) {
      if (fnExpected(f.sig, k, partitionedTableIds)) continue;
      const got = await outcome(s[k]!, f.call);
      if (got !== "42501") mismatches.push(`${k} calling ${f.sig}: ${got}, expected 42501`);
    }
  }
  assert.deepEqual(mismatches, []);

  // The documented samples, with their own words.
  await denied(s.app!, "select dbsync.add_table('app.orders', 'g')");
  await denied(s.tableOwner!, "select dbsync.add_table('app.orders', 'g')");
  await denied(s.tableOwner!, "select dbsync.remove_table('app.orders')");
  // Its EXECUTE on its partitioned table's capture function (for cloning the row trigger
  // onto new partitions) does not let it put that function on another table: no USAGE.
  const [cap] = await rows<{ fn: string }>(
    env.source,
    "select format('dbsync.capture_%s()', table_id) as fn from dbsync.tables where relid = 'app.measures'::regclass",
  );
  assert.equal(await value(env.source, "select has_function_privilege($1, $2::regprocedure, 'execute')", [ROLE.tableOwner, cap.fn]), true);
  await s.tableOwner!.query("create table app.mine (id int)");
  await denied(s.tableOwner!, compat(`create trigger t after insert on app.mine for each row execute function ${cap.fn}`));
  await s.tableOwner!.query(`create table app.measures_3 partition of app.measures${partitionKey(SOURCE_MAJOR)} for values in (3)`); // the trigger is cloned
  await s.tableOwner!.query("drop table app.measures_3, app.mine");
  assert.ok((await rows(s.monitor!, "select name, state from dbsync.status")).length === 1);
  assert.ok((await rows(s.monitor!, "select table_name from dbsync.table_status")).length === 2);
  await denied(s.monitor!, "select * from dbsync.subscriptions");
  // The monitoring role waits (wait_for_sync only reads) and reads the views, and nothing more:
  // not the verifications (their differing keys), not a replicated table, no admin call.
  assert.equal(await value(s.monitor!, "select dbsync.wait_for_sync('s', '0 s')"), false);
  await denied(s.monitor!, "select * from dbsync.verifications");
  await denied(s.monitor!, "select * from app.orders");
  await denied(s.monitor!, "select dbsync.verify_table('s', 'app.orders')");
  await denied(s.monitor!, "select * from dbsync.verify_subscription('s')");
  await denied(s.monitor!, "select dbsync.pause('s')");
  await denied(s.monitor!, `select dbsync.grant_monitor('${ROLE.app}')`);
  // The admin role reads the views and the verifications (README: the admin grants).
  assert.equal((await rows(s.admin!, "select name from dbsync.status")).length, 1);
  assert.equal((await rows(s.admin!, "select from dbsync.verifications limit 0")).length, 0);
  await denied(s.public!, "select * from dbsync.status");
  // The sidecar: begin_batch works (READ COMMITTED; rolled back), admin functions do not.
  const side = s.sidecar!;
  await side.query("begin isolation level read committed");
  try {
    const b = await rows(side, "select * from dbsync.begin_batch('s')");
    assert.equal(b.length, 1);
  } finally {
    await side.query("rollback");
  }
  await denied(side, "select dbsync.add_subscription('x', 'g', 'dbname=x')");
  await denied(side, "select * from dbsync.events");
  await denied(side, `select * from dbsync.events_${groupId}_0`);
  await denied(side, "update dbsync.verifications set repair = true");
  await denied(side, "update dbsync.subscriptions set paused = true");
  // The admin role runs administration, but not grant_sidecar (only the owner may).
  assert.equal(await value(s.admin!, "select dbsync.wait_for_sync('s', '0 s')"), false);
  await denied(s.admin!, `select dbsync.grant_sidecar('${ROLE.admin}')`);
  await denied(s.admin!, `select dbsync.grant_monitor('${ROLE.app}')`);
  await denied(s.admin!, "select * from dbsync.subscriptions");
  // The superuser (not the owner) may do everything, grant_sidecar included.
  assert.equal(typeof (await value(s.superuser!, "select count(*)::int from dbsync.events")), "number");
  assert.equal(await value(s.superuser!, "select has_function_privilege('dbsync.grant_sidecar(name)', 'execute')"), true);
});

test("(d) the sidecar copies and streams end to end as its least-privilege role", async () => {
  assert.deepEqual(await rows(env.source, "select rolsuper from pg_roles where rolname = $1", [ROLE.sidecar]), [{ rolsuper: false }]);
  const sc = startSidecar(asRole(env.sourceUrl, ROLE.sidecar), ["--poll-interval", "200"]);
  try {
    const synced = async (what: string) => {
      const ok = await value<boolean>(env.source, "select dbsync.wait_for_sync('s', '30 s')");
      const st = await rows(env.source, "select state, last_error from dbsync.status");
      assert.ok(ok, `${what}: not in sync: ${JSON.stringify(st)}\n${sc.output()}`);
      for (const t of ["app.orders", "app.measures"]) assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t), `${what}: ${t}`);
    };
    await synced("copy");
    // Written by the application role, captured, applied by the sidecar role.
    const app = await connectAs(ROLE.app);
    await app.query("insert into app.orders values (100, 'new'); update app.orders set note = 'x' where id < 5; delete from app.orders where id = 6");
    await app.query("update app.measures set k = 2 where id = 1; insert into app.measures values (100, 1, 'new')");
    await synced("stream");
    // A batch that fails on the target with a DETAIL quoting a value: the owner reads
    // it in dbsync.status, the monitoring role reads the error without it (the value
    // is row data it was never granted), in the views and in wait_for_sync's reason.
    await env.target.query("create unique index orders_note on app.orders (note) where note like 'secret%'; insert into app.orders values (999, 'secret-note-42')");
    await app.query("insert into app.orders values (1000, 'secret-note-42')");
    await until("the batch fails", async () => /secret-note-42/.test(String(await value(env.source, "select last_error from dbsync.status"))));
    const mon = await connectAs(ROLE.monitor);
    const monError = String(await value(mon, "select last_error from dbsync.status"));
    assert.match(monError, /duplicate key value violates unique constraint "orders_note" \(detail withheld: /);
    assert.doesNotMatch(monError, /secret-note-42/);
    assert.doesNotMatch(JSON.stringify(await rows(mon, "select * from dbsync.table_status")), /secret-note-42/);
    const notices: string[] = [];
    mon.on("notice", (n) => notices.push(n.message ?? ""));
    assert.equal(await value(mon, "select dbsync.wait_for_sync('s', '0.2 s')"), false);
    assert.match(notices.join("\n"), /applying failed on "app"."orders".*detail withheld/);
    assert.doesNotMatch(notices.join("\n"), /secret-note-42/);
    await env.target.query("delete from app.orders where id = 999; drop index app.orders_note");
    await synced("after the conflict");
    assert.ok(
      Number(await value(env.source, "select count(*) from pg_stat_activity where datname = current_database() and usename = $1", [ROLE.sidecar])) > 0,
      "the sidecar's sessions run as the sidecar role",
    );
    assert.equal(await sc.stop(), 0, sc.output());
  } finally {
    await sc.stop();
  }
  assert.doesNotMatch(sc.output(), /permission denied/);
  assert.equal(await value(env.source, "select last_error from dbsync.status"), null);
});

test("(e) a dbsync owner that is no superuser holds every right; the superuser too", async () => {
  // Migrated by a role with only CREATE on the database.
  const url = await createDatabase(env.sourceUrl, "privilege_matrix_owner");
  const dbName = decodeURIComponent(new URL(url).pathname.slice(1));
  extraDbs.push(dbName);
  const p = new Client({ connectionString: url });
  await p.connect();
  clients.push(p);
  await p.query(`grant create on database "${dbName}" to ${OWNER2}`);
  await migrate(asRole(url, OWNER2));
  const own = new Client({ connectionString: asRole(url, OWNER2) });
  await own.connect();
  clients.push(own);
  await own.query("create schema app2; create table app2.t (id int primary key)");
  await own.query("select dbsync.create_group('g'), dbsync.add_table('app2.t', 'g')");
  for (const role of [OWNER2, ROLE.superuser]) {
    const missingFns = await rows(
      p,
      `select p.oid::regprocedure::text from pg_proc p
        where p.pronamespace = 'dbsync'::regnamespace and not has_function_privilege($1, p.oid, 'execute')`,
      [role],
    );
    assert.deepEqual(missingFns, [], `${role}: functions`);
    const missingRels = await rows(
      p,
      `select c.relname from pg_class c where c.relnamespace = 'dbsync'::regnamespace and c.relkind in ('r', 'p', 'v', 'S')
          and not (case when c.relkind = 'S' then has_sequence_privilege($1, c.oid, 'SELECT,UPDATE,USAGE')
                   else has_table_privilege($1, c.oid, 'SELECT') and has_table_privilege($1, c.oid, 'INSERT')
                        and has_table_privilege($1, c.oid, 'UPDATE') and has_table_privilege($1, c.oid, 'DELETE')
                        and has_table_privilege($1, c.oid, 'TRUNCATE') end)`,
      [role],
    );
    assert.deepEqual(missingRels, [], `${role}: relations`);
    assert.equal(await value(p, "select has_schema_privilege($1, 'dbsync', 'USAGE,CREATE')", [role]), true);
  }
  assert.deepEqual(
    await rows(p, "select distinct pg_get_userbyid(p.proowner)::text as o from pg_proc p where p.pronamespace = 'dbsync'::regnamespace"),
    [{ o: OWNER2 }],
  );
  // PUBLIC still has only the three functions, version(), the status views' helpers and the generated key comparisons, and no USAGE.
  const pub = await rows<{ sig: string }>(
    p,
    `select p.oid::regprocedure::text as sig from pg_proc p
      where p.pronamespace = 'dbsync'::regnamespace and has_function_privilege('public', p.oid, 'execute') order by 1`,
  );
  assert.deepEqual(pub.map((x) => x.sig).filter((sig) => !KEY_CHANGED_FN.test(sig)), [...PUBLIC_SECDEF, ...PUBLIC_HELPERS, "dbsync.version()"].sort());
  assert.equal(await value(p, "select has_schema_privilege('public', 'dbsync', 'USAGE')"), false);
  // A table it may not create triggers on: refused up front, with the ways out.
  await p.query(`create table app2.theirs (id int primary key); alter table app2.theirs owner to ${ROLE.tableOwner}`);
  const refused = await sqlError(own, "select dbsync.add_table('app2.theirs', 'g')");
  assert.equal(refused.code, "42501");
  assert.equal(refused.message, `add_table: the dbsync owner ${OWNER2} cannot create triggers on app2.theirs (owned by ${ROLE.tableOwner})`);
  assert.match(refused.hint ?? "", new RegExp(`alter table app2.theirs owner to ${OWNER2}\\), or .*\\(grant ${ROLE.tableOwner} to ${OWNER2}\\), or run dbsync migrate as a superuser`));
  assert.equal(await value(p, "select count(*)::int from dbsync.tables where relid = 'app2.theirs'::regclass"), 0);
  // The second way out works.
  await p.query(`grant ${ROLE.tableOwner} to ${OWNER2}`);
  assert.ok(Number(await value(own, "select dbsync.add_table('app2.theirs', 'g')")) > 0);
  // The non-superuser owner may grant the sidecar's and the monitoring rights.
  await own.query(`select dbsync.grant_monitor('${NOBODY}')`);
  assert.equal(await value(p, "select has_function_privilege($1, 'dbsync.wait_for_sync(text,interval)', 'execute')", [NOBODY]), true);
  await own.query(`select dbsync.grant_sidecar('${NOBODY}')`);
  assert.equal(await value(p, "select has_function_privilege($1, 'dbsync.begin_batch(text,bigint)', 'execute')", [NOBODY]), true);
  assert.equal(await value(p, "select has_table_privilege($1, 'app2.t', 'select')", [NOBODY]), true);
});
