// Security: no code of a table owner ever runs with dbsync's rights.
// A role that merely owns a replicated table (and a schema for it) can create
// types, casts, operators, functions that shadow built-ins, domains with checks,
// and triggers. None of that may run as the dbsync owner (the role that ran
// migrate: a superuser here) or as the sidecar's source or target role — else the
// owner runs `alter role ... superuser` with their rights. Each test sets traps that
// record who ran them (see security-escalation-helpers.ts), first proves the trap
// fires when the owner itself uses the construct, then drives one path of dbsync and
// asserts the owner is no superuser on either side and no trap ran as anybody else.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { test } from "node:test";
import { Pool } from "pg";
import { Env, SOURCE_MAJOR, Sidecar, freshEnv, rows, startSidecar, tableText, until, value } from "./helpers";
import { Scene, Traps, ranAs, scene } from "./security-escalation-helpers";

const SIDECAR_ARGS = ["--poll-interval", "200"];

/**
 * Reachability: as the owner, on `side`, each statement fires the trap `tag`, run as
 * the owner. Proves the trap would be reached by dbsync code that used the construct.
 */
async function reach(s: Scene, side: "source" | "target", checks: Array<[sql: string, tag: string]>) {
  const p = side === "source" ? s.srcApp : s.tgtApp;
  const c = await p.connect();
  try {
    for (const [sql, tag] of checks) {
      await c.query(sql);
      await c.query("reset search_path");
      const who = ranAs(await s.marks(), side, tag);
      assert.deepEqual(who, [s.app], `${side}: \`${sql}\` should have fired the trap "${tag}" as the owner`);
    }
  } finally {
    c.release();
  }
  await s.clearMarks();
}

const CAST_TO_TEXT: Array<[string, string]> = [
  ["select 'x'::app.e::text", "cast app.e -> text"],
  ["select 'x'::app.de::text", "cast app.e -> text"],
];
const CAST_FROM_TEXT: Array<[string, string]> = [["select 'x'::text::app.e", "cast text -> app.e"]];
const DOMAIN_CHECK: Array<[string, string]> = [["select 'v'::text::app.dc", "domain check"]];
const OPERATORS: Array<[string, string]> = [
  // The owner's sessions default to search_path = app, pg_catalog (alter role ... set).
  ["select 1 = 1", "operator = (int4)"],
  ["select 'a'::text = 'b'", "operator = (text)"],
  ["select lower('A')", "function app.lower"],
  // An exact match in public beats pg_catalog's polymorphic =(anyenum, anyenum), whatever the order.
  ["set search_path = \"$user\", public; select 'x'::app.e = 'y'::app.e", "operator = (app.e)"],
  ["set search_path = \"$user\", public; select 'x'::app.e > 'y'::app.e", "operator > (app.e)"],
  ["set search_path = \"$user\", public; select 'x'::app.e <= 'y'::app.e", "operator <= (app.e)"],
  ["set search_path = public, pg_catalog; select 1 < 2", "operator < (int4)"],
  ["set search_path = public, pg_catalog; select md5('a')", "function public.md5"],
  ["set search_path = public, pg_catalog; select left('abc', 1)", "function public.left"],
  ["set search_path = public, pg_catalog; select text('x'::app.e)", "function public.text"],
];

// PostgreSQL 10 has no primary key on a partitioned table: one per partition, and key_columns for add_table.
const PG10 = SOURCE_MAJOR < 11;

async function subscribe(s: Scene, tables: string[], copyData: boolean, targetConninfo = s.env.targetUrl, keyColumns: string[] | null = null) {
  for (const t of tables) await s.env.source.query("select dbsync.add_table($1, 'g', key_columns => $2)", [t, keyColumns]);
  await s.env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => $2)", [targetConninfo, copyData]);
}

async function waitSync(env: Env, sidecar: Sidecar, what: string) {
  const ok = await value<boolean>(env.source, "select dbsync.wait_for_sync('s', '40 s')");
  if (!ok) {
    const st = await rows(env.source, "select state, last_error, last_error_table from dbsync.status");
    const ts = await rows(env.source, "select table_name, state, last_error from dbsync.table_status");
    assert.fail(`${what}: not in sync: ${JSON.stringify(st)} ${JSON.stringify(ts)}\n${sidecar.output()}`);
  }
}

async function assertSameData(env: Env, tables: string[]) {
  for (const t of tables) assert.deepEqual(await tableText(env.target, t), await tableText(env.source, t), t);
}

/** verify_table run by the sidecar; returns the verification row once finished. */
async function verifyBySidecar(env: Env, sc: Sidecar, table: string, repair: boolean) {
  const id = Number(await value(env.source, "select dbsync.verify_table('s', $1, $2)", [table, repair]));
  const state = async () =>
    (
      await rows<{ state: string; error: string | null; differing: number; repaired: number }>(
        env.source,
        "select state, error, differing_count::int as differing, rows_repaired::int as repaired from dbsync.verifications where verification_id = $1",
        [id],
      )
    )[0];
  await until(`verification of ${table}`, async () => ["done", "error"].includes((await state()).state), 60_000).catch(async (err) => {
    const st = await rows(env.source, "select name, state, last_error from dbsync.status");
    assert.fail(`${err}: ${JSON.stringify(await state())} ${JSON.stringify(st)}\n${sc.output().slice(-3000)}`);
  });
  return state();
}

/**
 * The owner's writes: inserts, updates of values and of keys, deletes (keys as text).
 * `keyType`: compare keys as that type (PostgreSQL resolves no `=` for a domain over an enum).
 */
async function writeAsOwner(p: Pool, table: string, keyCol: string, keys: [string, string, string, string], keyType = "") {
  const [a, b, c, d] = keys;
  const k = keyType ? `${keyCol}::${keyType}` : keyCol;
  const t = keyType && `::${keyType}`;
  await p.query(`insert into ${table} (${keyCol}, v) values ($1, 'one'), ($2, 'two')`, [a, b]);
  await p.query(`update ${table} set v = 'uno' where ${k} = $1${t}`, [a]);
  await p.query(`update ${table} set ${keyCol} = $2 where ${k} = $1${t}`, [b, c]);
  await p.query(`insert into ${table} (${keyCol}, v) values ($1, 'four')`, [d]);
  await p.query(`delete from ${table} where ${k} = $1${t}`, [d]);
}

/** More writes to rows already on the target, so that the apply's statements meet existing rows. */
async function rewriteAsOwner(p: Pool, table: string, keyCol: string, keys: [string, string], keyType = "") {
  const [a, c] = keys;
  const k = keyType ? `${keyCol}::${keyType}` : keyCol;
  const t = keyType && `::${keyType}`;
  await p.query(`update ${table} set v = 'again' where ${k} = $1${t}`, [a]);
  await p.query(`delete from ${table} where ${k} = $1${t}`, [c]);
}

async function withScene(label: string, traps: Traps, fn: (s: Scene) => Promise<void>) {
  const s = await scene(label, traps);
  try {
    await fn(s);
  } finally {
    await s.cleanup();
  }
}

/**
 * The sidecar around `fn`. With a scene: if `fn` fails (out of sync, a failed
 * verification...), an escalation that happened meanwhile is reported first.
 */
async function withSidecar(env: Env, fn: (sc: Sidecar) => Promise<void>, s?: Scene) {
  const sc = startSidecar(env.sourceUrl, SIDECAR_ARGS);
  let failure: unknown;
  try {
    await fn(sc);
  } catch (err) {
    failure = err;
  } finally {
    await sc.stop();
  }
  if (failure !== undefined) {
    if (s) await s.assertNoEscalation("before this test's own failure below");
    throw failure;
  }
}

// ---------------------------------------------------------------------------
// 1. Capture: a hostile cast app.e -> text, which `col::text` in SECURITY DEFINER
//    capture code would resolve.

test("1a capture: a hostile cast (enum -> text) on a column added by a plain ALTER TABLE never runs as the dbsync owner", async () => {
  await withScene("esc_capture_col", { castToText: true }, async (s) => {
    const { env } = s;
    await s.srcApp.query("create table app.t (id int primary key, v text)");
    await s.tgtApp.query("create table app.t (id int primary key, v text)");
    await subscribe(s, ["app.t"], false);
    assert.equal(await value(env.source, "select count(*)::int from pg_event_trigger where evtname = 'dbsync_ddl_watch'"), 1);
    await reach(s, "source", CAST_TO_TEXT);

    // The owner's own DDL: the event trigger regenerates capture for it.
    await s.srcApp.query("alter table app.t add column p app.e default 'x'");
    await s.srcApp.query("insert into app.t (id, v) values (1, 'a'), (2, 'b')");
    await s.srcApp.query("update app.t set p = 'y' where id = 1");
    await s.srcApp.query("delete from app.t where id = 2");
    // Capture did run (the test is not vacuous): the writes are queued.
    assert.ok(Number(await value(env.source, "select backlog_events from dbsync.status where name = 's'")) >= 3);
    await s.assertNoEscalation("capture of a non-key enum column");
  });
});

const KEY_CASES: Array<{ name: string; ddl: string; table: string; keys: [string, string, string, string]; keyType?: string; more?: string[]; keyColumns?: string[] | null }> = [
  {
    name: "an enum primary key",
    ddl: "create table app.tk (k app.e primary key, v text)",
    table: "app.tk",
    keys: ["x", "y", "z", "y"],
  },
  {
    name: "a primary key of a domain over the enum",
    ddl: "create table app.tk (k app.de primary key, v text)",
    table: "app.tk",
    keys: ["x", "y", "z", "y"],
    keyType: "app.e",
  },
  {
    name: "an enum key of a partitioned table (row triggers, partition TRUNCATE)",
    ddl: `create table app.tk (k app.e not null, v text${PG10 ? "" : ", primary key (k)"}) partition by list (k);
          create table app.tk_x partition of app.tk${PG10 ? " (primary key (k))" : ""} for values in ('x');
          create table app.tk_yz partition of app.tk${PG10 ? " (primary key (k))" : ""} for values in ('y', 'z')`,
    keyColumns: PG10 ? ["k"] : null,
    table: "app.tk",
    keys: ["x", "y", "z", "y"],
    more: ["insert into app.tk values ('y', 'again')", "truncate app.tk_yz", "truncate app.tk"],
  },
];

for (const kc of KEY_CASES) {
  test(`1b capture: a hostile cast (enum -> text) on ${kc.name} never runs as the dbsync owner`, async () => {
    await withScene("esc_capture_key", { castToText: true }, async (s) => {
      const { env } = s;
      await reach(s, "source", CAST_TO_TEXT);
      await s.srcApp.query(kc.ddl);
      await s.tgtApp.query(kc.ddl);
      await subscribe(s, [kc.table], false, s.env.targetUrl, kc.keyColumns ?? null);
      // A write that fails is a bug too, but the escalation is reported first.
      let writeError: unknown;
      try {
        await writeAsOwner(s.srcApp, kc.table, "k", kc.keys, kc.keyType);
        for (const sql of kc.more ?? []) await s.srcApp.query(sql);
      } catch (err) {
        writeError = err;
      }
      await s.assertNoEscalation(`capture of ${kc.name}`);
      assert.equal(writeError, undefined, `the owner's writes failed: ${writeError}`);
      assert.ok(Number(await value(env.source, "select backlog_events from dbsync.status where name = 's'")) >= 5);
    });
  });
}

// ---------------------------------------------------------------------------
// 2. The sidecar turns captured text back into key values: a hostile cast
//    text -> app.e, and a domain key whose CHECK calls the owner's function.

test("2 sidecar: a hostile cast (text -> enum) and a domain CHECK on keys never run as the sidecar's roles (stream and verify, source and target)", async () => {
  await withScene("esc_from_text", { castFromText: true, domainCheck: true }, async (s) => {
    const { env } = s;
    await reach(s, "source", [...CAST_FROM_TEXT, ...DOMAIN_CHECK]);
    await reach(s, "target", CAST_FROM_TEXT);
    const ddl = `create table app.tk (k app.e primary key, v text);
                 create table app.tdc (k app.dc primary key, v text)`;
    await s.srcApp.query(ddl);
    await s.tgtApp.query(ddl);
    await subscribe(s, ["app.tk", "app.tdc"], false);
    await withSidecar(env, async (sc) => {
      await writeAsOwner(s.srcApp, "app.tk", "k", ["x", "y", "z", "y"]);
      await writeAsOwner(s.srcApp, "app.tdc", "k", ["a", "b", "c", "d"]);
      await waitSync(env, sc, "stream");
      await rewriteAsOwner(s.srcApp, "app.tk", "k", ["x", "z"]);
      await rewriteAsOwner(s.srcApp, "app.tdc", "k", ["a", "c"]);
      await waitSync(env, sc, "stream, rows already on the target");
      await assertSameData(env, ["app.tk", "app.tdc"]);
      await s.assertNoEscalation("streaming with hostile text -> key conversions");
      for (const t of ["app.tk", "app.tdc"]) {
        const v = await verifyBySidecar(env, sc, t, false);
        assert.equal(v.state, "done", `verify ${t}: ${JSON.stringify(v)}\n${sc.output()}`);
      }
    }, s);
    await s.assertNoEscalation("verify with hostile text -> key conversions");
  });
});

// ---------------------------------------------------------------------------
// 3. Operators and functions the owner puts where unqualified names look:
//    app.= / public.= for its enum (an exact match beats =(anyenum, anyenum)),
//    public.=(int4, int4) and shadows of lower, md5, left, format, ..., and its
//    own sessions' search_path = app, pg_catalog.

test("3 operators and functions shadowing built-ins (public, app, search_path) never run as the dbsync owner or the sidecar's roles", async () => {
  await withScene("esc_operators", { operators: true }, async (s) => {
    const { env } = s;
    await reach(s, "source", OPERATORS);
    await reach(s, "target", OPERATORS);
    const ddl = `create table app.tk (k app.e primary key, v text);
                 create table app.ti (id int primary key, v text, p app.e);
                 create table app.tt (k text primary key, v text)`;
    await s.srcApp.query(ddl);
    await s.tgtApp.query(ddl);
    await subscribe(s, ["app.tk", "app.ti", "app.tt"], false);
    await withSidecar(env, async (sc) => {
      await writeAsOwner(s.srcApp, "app.tk", "k", ["x", "y", "z", "y"]);
      await writeAsOwner(s.srcApp, "app.ti", "id", ["1", "2", "3", "4"]);
      await writeAsOwner(s.srcApp, "app.tt", "k", ["a", "b", "c", "d"]);
      await s.srcApp.query("update app.ti set p = 'z'");
      await waitSync(env, sc, "stream");
      await rewriteAsOwner(s.srcApp, "app.tk", "k", ["x", "z"]);
      await rewriteAsOwner(s.srcApp, "app.ti", "id", ["1", "3"]);
      await rewriteAsOwner(s.srcApp, "app.tt", "k", ["a", "c"]);
      await waitSync(env, sc, "stream, rows already on the target");
      await assertSameData(env, ["app.tk", "app.ti", "app.tt"]);
      await s.assertNoEscalation("streaming with hostile operators");
      for (const t of ["app.tk", "app.ti", "app.tt"]) {
        const v = await verifyBySidecar(env, sc, t, false);
        assert.equal(v.state, "done", `verify ${t}: ${JSON.stringify(v)}\n${sc.output()}`);
      }
    }, s);
    await s.assertNoEscalation("verify with hostile operators");
  });
});

// ---------------------------------------------------------------------------
// 4. Each path of the sidecar with every trap in place (casts both ways, operators,
//    shadows; a domain CHECK on the source only: on the target, see test 5).

const ALL: Traps = { castToText: true, castFromText: true, domainCheck: true, operators: true };
const ALL_TABLES = ["app.tk", "app.tdc", "app.ti"];
const ALL_DDL = `create table app.tk (k app.e primary key, v text, p app.e);
                 create table app.tdc (k app.dc primary key, v text);
                 create table app.ti (id int primary key, v text, p app.e)`;
const ALL_ROWS = `insert into app.tk values ('x', 'one', 'y'), ('y', 'two', null);
                  insert into app.tdc values ('a', 'one'), ('b', 'two');
                  insert into app.ti select g, 'v' || g, 'z' from generate_series(1, 20) g`;

async function allTraps(s: Scene) {
  await reach(s, "source", [...CAST_TO_TEXT, ...CAST_FROM_TEXT, ...DOMAIN_CHECK, ...OPERATORS]);
  await reach(s, "target", [...CAST_TO_TEXT, ...CAST_FROM_TEXT, ...OPERATORS]);
  await s.srcApp.query(ALL_DDL);
  await s.tgtApp.query(ALL_DDL);
}

test("4a copy (add_subscription with copy_data) with every trap in place runs none of them as a privileged role", async () => {
  await withScene("esc_copy", ALL, async (s) => {
    const { env } = s;
    await allTraps(s);
    await s.srcApp.query(ALL_ROWS);
    await subscribe(s, ALL_TABLES, true);
    await withSidecar(env, async (sc) => {
      await waitSync(env, sc, "copy");
      await assertSameData(env, ALL_TABLES);
    }, s);
    await s.assertNoEscalation("copy");
  });
});

test("4b resync_table with every trap in place runs none of them as a privileged role", async () => {
  await withScene("esc_resync", ALL, async (s) => {
    const { env } = s;
    await allTraps(s);
    await s.srcApp.query(ALL_ROWS); // before add_table: not captured, only a copy brings them
    await subscribe(s, ALL_TABLES, false);
    await withSidecar(env, async (sc) => {
      await waitSync(env, sc, "start");
      for (const t of ALL_TABLES) await env.source.query("select dbsync.resync_table('s', $1)", [t]);
      await until(
        "resync done",
        async () => (await value<number>(env.source, "select count(*)::int from dbsync.table_status where state <> 'streaming'")) === 0 &&
          (await value<number>(env.target, "select count(*)::int from app.ti")) === 20,
        40_000,
      ).catch((err) => assert.fail(`${err}\n${sc.output()}`));
      await waitSync(env, sc, "resync");
      await assertSameData(env, ALL_TABLES);
    }, s);
    await s.assertNoEscalation("resync_table");
  });
});

test("4c verify_table (with repair) run by the sidecar with every trap in place runs none of them as a privileged role", async () => {
  await withScene("esc_verify", ALL, async (s) => {
    const { env } = s;
    await allTraps(s);
    await s.srcApp.query(ALL_ROWS);
    await s.tgtApp.query(ALL_ROWS);
    // Drift on the target: missing, extra and different rows, in every table.
    await s.tgtApp.query(`delete from app.tk where k = 'x'; update app.tk set p = 'z' where k = 'y'; insert into app.tk values ('z', 'extra', 'x');
                          delete from app.tdc where k = 'a'; insert into app.tdc values ('c', 'extra');
                          delete from app.ti where id = 3; update app.ti set p = 'x' where id = 5; insert into app.ti values (99, 'extra', 'x')`);
    await subscribe(s, ALL_TABLES, false);
    await s.clearMarks();
    await withSidecar(env, async (sc) => {
      for (const t of ALL_TABLES) {
        const v = await verifyBySidecar(env, sc, t, true);
        assert.equal(v.state, "done", `verify ${t}: ${JSON.stringify(v)}\n${sc.output()}`);
        assert.ok(v.differing > 0, `verify ${t} found no difference: ${JSON.stringify(v)}`);
      }
      await assertSameData(env, ALL_TABLES);
    }, s);
    await s.assertNoEscalation("verify_table with repair");
  });
});

test("4d streaming apply with every trap in place runs none of them as a privileged role", async () => {
  await withScene("esc_stream", ALL, async (s) => {
    const { env } = s;
    await allTraps(s);
    await subscribe(s, ALL_TABLES, false);
    await withSidecar(env, async (sc) => {
      await s.srcApp.query(ALL_ROWS);
      await waitSync(env, sc, "stream");
      await writeAsOwner(s.srcApp, "app.tdc", "k", ["c", "d", "e", "f"]);
      await s.srcApp.query("update app.tk set k = 'z', p = 'x' where k = 'x'; delete from app.tk where k = 'y'");
      await s.srcApp.query("update app.ti set id = id + 100, p = 'y' where id % 3 = 0; delete from app.ti where id % 5 = 0");
      await waitSync(env, sc, "stream");
      await assertSameData(env, ALL_TABLES);
    }, s);
    await s.assertNoEscalation("streaming apply");
  });
});

// ---------------------------------------------------------------------------
// 5. On the target, the sidecar's target role writes tables that somebody else
//    owns: their CHECK constraints, domain CHECKs and ENABLE ALWAYS triggers run as
//    that role. That cannot be avoided; the mitigation is a target role that is no
//    superuser. This test runs the sidecar with such a role and checks that it
//    works, and that the owner's code ran as it (documented) and never as a superuser.

test("5 target: CHECK, domain CHECK and ENABLE ALWAYS trigger of a target table run as the (non-superuser) target role only", async () => {
  await withScene("esc_target", { domainCheck: true, targetDomainCheck: true }, async (s) => {
    const { env } = s;
    const major = Math.floor(Number(await value(env.target, "select current_setting('server_version_num')")) / 10000);
    if (major < 15) {
      // Before 15 only a superuser may set session_replication_role.
      console.log("# skipped: PostgreSQL < 15 cannot grant SET on session_replication_role");
      return;
    }
    const apply = `esc_apply_${s.sfx}`;
    const pw = crypto.randomBytes(12).toString("hex");
    s.extraRoles.push({ side: "target", role: apply });
    await env.target.query(`create role ${apply} login password '${pw}' nosuperuser nocreatedb nocreaterole`);
    await env.target.query(`grant set on parameter session_replication_role to ${apply}`);
    // The target role creates schema dbsync and its tables on first contact (README, "Privileges").
    await env.target.query(`grant create on database ${new URL(env.targetUrl).pathname.slice(1)} to ${apply}`);
    await s.tgtApp.query(`
      create function app.vcheck(text) returns boolean language plpgsql volatile as $f$
      begin
          perform app.mark('target CHECK constraint');
          return true;
      end $f$;
      create function app.trg() returns trigger language plpgsql volatile as $f$
      begin
          perform app.mark('target trigger ENABLE ALWAYS');
          if tg_op = 'DELETE' then return old; end if;
          return new;
      end $f$;
      create table app.tt (id int primary key, v text check (app.vcheck(v)), d app.dc);
      create trigger hostile before insert or update or delete on app.tt for each row execute function app.trg();
      alter table app.tt enable always trigger hostile;
      grant usage on schema app to ${apply};
      grant select, insert, update, delete, truncate on app.tt to ${apply};`);
    await s.srcApp.query("create table app.tt (id int primary key, v text, d text)");
    await s.srcApp.query("insert into app.tt select g, 'v' || g, 'd' || g from generate_series(1, 10) g");
    await reach(s, "target", [
      ["select app.vcheck('a')", "target CHECK constraint"],
      ["select 'v'::text::app.dc", "domain check"],
    ]);
    const u = new URL(env.targetUrl);
    u.username = apply;
    u.password = pw;
    await subscribe(s, ["app.tt"], true, u.toString());
    s.allowed.add(apply);
    await withSidecar(env, async (sc) => {
      await waitSync(env, sc, "copy as a non-superuser target role");
      await s.srcApp.query("insert into app.tt values (11, 'new', 'd11'); update app.tt set v = 'upd' where id = 2; update app.tt set id = 100 where id = 3; delete from app.tt where id = 4");
      await waitSync(env, sc, "streaming as a non-superuser target role");
      await assertSameData(env, ["app.tt"]);
      await s.tgtApp.query("delete from app.tt where id = 5");
      const v = await verifyBySidecar(env, sc, "app.tt", true);
      assert.equal(v.state, "done", `verify as a non-superuser target role: ${JSON.stringify(v)}\n${sc.output()}`);
      await assertSameData(env, ["app.tt"]);
    }, s);
    assert.equal(await value(env.target, "select rolsuper from pg_roles where rolname = $1", [apply]), false);
    const marks = await s.marks();
    // Documented behaviour: the target role does run the target table's code.
    for (const tag of ["target CHECK constraint", "target trigger ENABLE ALWAYS", "domain check"]) {
      assert.ok(ranAs(marks, "target", tag).includes(apply), `${tag}: ran as ${JSON.stringify(ranAs(marks, "target", tag))}`);
    }
    await s.assertNoEscalation("target-side code under a non-superuser target role");
  });
});

// ---------------------------------------------------------------------------
// 6. A settings flag any session can set is no guard: `set dbsync.in_execute_ddl = on`
//    must not hide a table owner's ALTER TABLE from the DDL watch.

test("6 `set dbsync.in_execute_ddl = on` in the owner's session does not hide its ALTER TABLE from the DDL watch", async () => {
  await withScene("esc_flag", {}, async (s) => {
    const { env } = s;
    await s.srcApp.query("create table app.t (id int primary key, v text)");
    await s.tgtApp.query("create table app.t (id int primary key, v text, q int)");
    await subscribe(s, ["app.t"], false);
    assert.equal(await value(env.source, "select count(*)::int from pg_event_trigger where evtname = 'dbsync_ddl_watch'"), 1);
    const c = await s.srcApp.connect();
    try {
      await c.query("set dbsync.in_execute_ddl = on");
      await c.query("alter table app.t add column q int");
      await c.query("insert into app.t values (1, 'a', 42)");
    } finally {
      c.release();
    }
    const logged = await value<number>(
      env.source,
      "select count(*)::int from dbsync.unreplicated_ddl where table_name = 'app.t' and statement like '%add column q%'",
    );
    let replicated: unknown = null;
    await withSidecar(env, async (sc) => {
      await waitSync(env, sc, "stream");
      replicated = await value(env.target, "select q from app.t where id = 1");
    }, s);
    assert.ok(
      logged > 0 || replicated === 42,
      `the DDL watch was skipped: not in dbsync.unreplicated_ddl (${logged}) and the new column did not reach the target (q = ${replicated})`,
    );
    assert.equal(logged, 1, "the ALTER TABLE is listed in dbsync.unreplicated_ddl");
  });
});

// ---------------------------------------------------------------------------
// 7. Catalog: every SECURITY DEFINER function of schema dbsync pins its search_path,
//    to trusted schemas only, with pg_temp named last (unnamed, it is searched first);
//    but the generated capture functions, which run in every captured statement and
//    would pay for the SET clause each time: their bodies must name nothing through
//    the search_path (test/capture-search-path.test.ts tries it with a hostile one).

/** What a capture function's body names through the search_path: unqualified calls, casts, operators, relations. */
function unqualifiedNames(body: string): string[] {
  const s = body
    .replace(/^#variable_conflict \w+$/m, "")
    .replace(/'(?:[^']|'')*'/g, "''")
    .replace(/operator\(pg_catalog\.[^)\s]+\)/gi, " ")
    .replace(/:=/g, " ");
  const found: string[] = [];
  for (const m of s.matchAll(/::\s*([\w."]+)/g)) if (!m[1].startsWith("pg_catalog.")) found.push(`cast to ${m[1]}`);
  const rest = s.replace(/::\s*pg_catalog\.[\w"]+(\[\])?/g, " ");
  for (const m of rest.matchAll(/([\w$]+)(\.[\w$"]+)?\s*\(/g)) {
    const qualified = m[2] !== undefined;
    // (Keywords, not functions: ARRAY(subquery) and EXISTS(subquery) are syntax.)
    if (qualified ? !["pg_catalog", "dbsync"].includes(m[1]) : !["select", "if", "elsif", "and", "or", "not", "in", "exists", "array", "from", "over"].includes(m[1].toLowerCase())) {
      found.push(`call of ${m[0]}`);
    }
  }
  for (const m of rest.matchAll(/[<>=!~+\-*/%^|&#@?]+/g)) found.push(`operator ${m[0]}`);
  for (const m of rest.matchAll(/\b(?:from|join|into|update|table)\s+([\w."]+)/gi)) {
    if (!m[1].startsWith("dbsync.") && !["dbsync_new", "dbsync_old"].includes(m[1])) found.push(`relation ${m[1]}`);
  }
  return found;
}

test("7 every SECURITY DEFINER function in schema dbsync has a pinned search_path of trusted schemas, pg_temp last; capture functions name nothing through it", async () => {
  const env = await freshEnv("esc_catalog");
  // Generated capture functions too: a plain and a partitioned table, keys of
  // settings-dependent types (the output settings check) and of a domain.
  await env.source.query(`create domain dk as int;
                          create type e as enum ('a');
                          create domain de as e;
                          create table t (id int primary key, v text);
                          create table p (id int not null, k int not null${PG10 ? "" : ", primary key (id, k)"}) partition by list (k);
                          create table p1 partition of p${PG10 ? " (primary key (id, k))" : ""} for values in (1);
                          create table ts (at timestamptz, d dk, x de, primary key (at, d, x))`);
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_table('p', 'g', key_columns => $1), dbsync.add_table('ts', 'g')", [
    PG10 ? ["id", "k"] : null,
  ]);
  const fns = await rows<{ fn: string; owner: string; proconfig: string[] | null; body: string }>(
    env.source,
    `select p.oid::regprocedure::text as fn, pg_get_userbyid(p.proowner) as owner, p.proconfig, p.prosrc as body
       from pg_proc p where p.pronamespace = 'dbsync'::regnamespace and p.prosecdef order by 1`,
  );
  assert.ok(fns.some((f) => f.fn.startsWith("dbsync.capture_")), `no capture function among ${fns.map((f) => f.fn)}`);
  const bad: string[] = [];
  for (const f of fns) {
    const sp = (f.proconfig ?? []).find((c) => c.startsWith("search_path="));
    if (!sp) {
      if (/^dbsync\.capture_(old_|key_|trunc_|row_)?\d+\(\)$/.test(f.fn)) {
        bad.push(...unqualifiedNames(f.body).map((n) => `${f.fn}: ${n}`));
      } else {
        bad.push(`${f.fn}: no search_path (${JSON.stringify(f.proconfig)})`);
      }
      continue;
    }
    const path = sp
      .slice("search_path=".length)
      .split(",")
      .map((x) => x.trim().replace(/^"(.*)"$/, "$1"));
    const untrusted = path.filter((x) => !["pg_catalog", "pg_temp", "dbsync"].includes(x));
    if (untrusted.length) bad.push(`${f.fn}: untrusted schemas in ${sp}`);
    if (path[path.length - 1] !== "pg_temp") bad.push(`${f.fn}: pg_temp is not named last in ${sp}`);
  }
  assert.deepEqual(bad, []);
  // The check finds what it looks for (it is not vacuous).
  assert.deepEqual(unqualifiedNames("select x = 1, f(y)::public.t from events e, pg_catalog.g(z)"), [
    "cast to public.t",
    "call of f(",
    "operator =",
    "relation events",
  ]);
});
