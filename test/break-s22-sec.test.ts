// Session 22's hostile roles on real clusters: an admin role (EXECUTE on dbsync's
// functions, not the dbsync owner) steering the sidecar's target connections, an
// ordinary writer forging the replica-mode mark, PUBLIC calling what it may call.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Client, Pool } from "pg";
import { Env, freshEnv, queueOf, sqlError, startSidecar, until, value } from "./helpers";
import { REPLICA_MODE_FUNCTION } from "../src/target/progress";
import { failsWith, setup } from "./kit/convergence";

const SECRET = "SECRETsidecar22";

/** A session on the source database as `role` (the test clusters trust local logins). */
async function connectAs(env: Env, role: string): Promise<Client> {
  const u = new URL(env.sourceUrl);
  u.username = role;
  const c = new Client({ connectionString: u.toString() });
  await c.connect();
  return c;
}

/** Role `role` (cluster-wide: made once), then `grants` run in `db`. */
async function loginRole(db: Pool, role: string, grants: string): Promise<void> {
  await db.query(`do $$ begin if not exists (select from pg_roles where rolname = '${role}') then create role ${role} login; end if; end $$`);
  await db.query(grants);
}

const ADMIN_GRANTS = (role: string) => `grant usage on schema dbsync to ${role}; grant execute on all functions in schema dbsync to ${role}`;

/**
 * A server that speaks just enough of the protocol to ask for a cleartext password,
 * and records every password it is sent.
 */
async function passwordCatcher(): Promise<{ port: number; got: string[]; close(): Promise<void> }> {
  const got: string[] = [];
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let started = false;
    sock.on("error", () => undefined);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return;
          const len = buf.readInt32BE(0);
          const code = buf.readInt32BE(4);
          buf = buf.subarray(len);
          if (code === 80877103 || code === 80877104) sock.write("N"); // SSLRequest, GSSENCRequest: no
          else {
            started = true;
            sock.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])); // AuthenticationCleartextPassword
          }
        } else {
          if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return;
          const len = buf.readInt32BE(1);
          if (buf[0] === 0x70) got.push(buf.subarray(5, 1 + len).toString("utf8").replace(/\0$/, ""));
          sock.end();
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, got, close: () => new Promise((r) => server.close(() => r())) };
}

// README Security: an admin role "reads the views and the verifications, not the
// queue, not target_conninfo and no replicated table". A target conninfo is where the
// sidecar goes with its own credentials: its environment (PGPASSWORD, PGPASSFILE and
// ~/.pgpass, PGSERVICE, ~/.postgresql/postgresql.key) and its host's trust and peer
// logins. An admin role's subscription aimed at its own server was sent the
// sidecar's PGPASSWORD (with which it reads every target_conninfo and replicated
// table); one aimed at a server that trusts the sidecar's host connected as whatever
// role it named, and execute_ddl then ran its statements there as that role. As
// dblink and postgres_fdw do for non-superusers, a conninfo given by a role other
// than the dbsync owner must carry its own password, and the server must ask for it.
describe("a target conninfo given by an admin role that is not the dbsync owner", () => {
  let env: Env;
  let adm: Client;
  const ADMIN = "dbsync_admin_b22";
  before(async () => {
    env = await freshEnv("b22_conninfo");
    await setup(env, "create table t (id int primary key, v text)", ["t"]);
    await loginRole(env.source, ADMIN, ADMIN_GRANTS(ADMIN));
    adm = await connectAs(env, ADMIN);
  });
  after(async () => {
    await adm.end();
  });

  test("without a password of its own, or naming the sidecar's files: refused, nothing stored; the sidecar's PGPASSWORD reaches no one", async () => {
    const catcher = await passwordCatcher();
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"], { PGPASSWORD: SECRET });
    try {
      const evil = `host=127.0.0.1 port=${catcher.port} dbname=x user=dbsync_sidecar sslmode=disable`;
      const err = await sqlError(adm, "select dbsync.add_subscription('evil', 'g', $1)", [evil]);
      assert.equal(err.code, "42501", `${err.code} ${err.message}`);
      assert.match(err.message, /add_subscription: a target conninfo given by a role other than the dbsync owner must carry its own password/);
      for (const kw of ["passfile=/tmp/x", "service=x", "sslkey=/tmp/x", "sslcert=/tmp/x", "sslpassword=x"]) {
        const e = await sqlError(adm, "select dbsync.add_subscription('evil', 'g', $1)", [`${evil} password=mine ${kw}`]);
        assert.equal(e.code, "42501", `${kw}: ${e.code} ${e.message}`);
        assert.match(e.message, new RegExp(`"${kw.split("=")[0]}"`));
      }
      assert.equal(await value(env.source, "select count(*)::int from dbsync.subscriptions where name = 'evil'"), 0);
      // The sidecar had a chance to connect to anything stored.
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(catcher.got, []);
      // Its own password is what it sends there.
      await value(adm, "select dbsync.add_subscription('evil', 'g', $1)", [`${evil} password=mine`]);
      await until("the catcher asked", async () => catcher.got.length > 0, 30_000);
      assert.deepEqual([...new Set(catcher.got)], ["mine"]);
    } finally {
      await sidecar.stop();
      await catcher.close();
      await env.source.query("select dbsync.drop_subscription(name) from dbsync.subscriptions where name = 'evil'");
    }
  });

  test("aimed at a server that does not ask for its password (trust, peer, a certificate): the sidecar refuses the connection", async () => {
    const u = new URL(env.targetUrl);
    u.password = "whatever";
    await value(adm, "select dbsync.add_subscription('trusted', 'g', $1)", [u.toString()]);
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
    try {
      await failsWith(env, /did not ask for the password/, "trusted");
      // The owner's own subscription to the same server works.
      await env.source.query("insert into t values (1, 'a')");
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    } finally {
      await sidecar.stop();
      await env.source.query("select dbsync.drop_subscription('trusted')");
    }
  });
});

// execute_ddl is SECURITY INVOKER: an admin role that owns one table of a group
// (here its own) runs DDL with its own rights, so one on a table of the group it
// does not own fails on the source, and nothing is queued for the targets. Held.
test("execute_ddl by an admin role that owns one table of the group: DDL on another table is refused, nothing queued", async () => {
  const env = await freshEnv("b22_exec");
  const ADMIN = "dbsync_admin_b22";
  await loginRole(env.source, ADMIN, `${ADMIN_GRANTS(ADMIN)}; grant create on schema public to ${ADMIN}`);
  await setup(env, "create table t (id int primary key, v text); create table mine (id int primary key)", ["t", "mine"]);
  await env.source.query(`alter table mine owner to ${ADMIN}`);
  const adm = await connectAs(env, ADMIN);
  try {
    const queued = () => value<number>(env.source, "select count(*)::int from dbsync.ddl_log");
    const n = await queued();
    for (const ddl of ["alter table public.t add column z int", "drop table public.t", "truncate public.t",
                       "alter table public.mine add column z int; alter table public.t add column z int"]) {
      const err = await sqlError(adm, "select dbsync.execute_ddl('g', $1)", [ddl]);
      assert.equal(err.code, "42501", `${ddl}: ${err.code} ${err.message}`);
    }
    assert.equal(await queued(), n);
    await adm.query("select dbsync.execute_ddl('g', 'alter table public.mine add column z int')");
    assert.equal(await queued(), n + 1);
  } finally {
    await adm.end();
  }
});

// Before PostgreSQL 15 a superuser makes dbsync.enter_replica_mode() on the target
// (README Security; the sidecar's error hint gives the SQL). A new function is
// executable by PUBLIC: a role later granted USAGE on the target's schema dbsync, to
// read dbsync.applied, entered replica mode with it and wrote its own rows with the
// target's triggers and foreign keys off. The recipe revokes it from PUBLIC.
test("the target's dbsync.enter_replica_mode() made by the recipe: a role granted USAGE on schema dbsync cannot call it", async () => {
  const env = await freshEnv("b22_replica_fn");
  const READER = "dbsync_applied_reader_b22";
  await loginRole(env.target, READER, `create schema dbsync; ${REPLICA_MODE_FUNCTION}; grant usage on schema dbsync to ${READER}`);
  const u = new URL(env.targetUrl);
  u.username = READER;
  const reader = new Client({ connectionString: u.toString() });
  await reader.connect();
  try {
    const err = await sqlError(reader, "select dbsync.enter_replica_mode()");
    assert.equal(err.code, "42501", `${err.code} ${err.message}`);
    assert.equal(await value(reader, "select current_setting('session_replication_role')"), "origin");
  } finally {
    await reader.end();
  }
});

// The replica-mode row trigger (dbsync_capture_replica) skips a row WHEN the setting
// dbsync.statement holds its statement's mark (statement_timestamp() and trigger
// depth, both readable by anyone). A writer sets it to the mark of its own next
// statements (one query string: one statement_timestamp), then writes: in origin
// mode the replica trigger does not fire at all, and in replica mode (a role granted
// SET on session_replication_role, PostgreSQL 15+; a superuser before) the ALWAYS
// statement triggers capture the rows anyway. Only the logical replication apply
// worker fires no statement trigger (README Limits: a table owner's trigger there).
// Held, kept as a guard.
describe("an ordinary writer forging the replica-mode mark dbsync.statement", () => {
  let env: Env;
  let writer: Client;
  const WRITER = "dbsync_writer_b22";
  before(async () => {
    env = await freshEnv("b22_forge");
    await setup(env, "create table t (id int primary key, v text)", ["t"]);
    await loginRole(env.source, WRITER, `grant select, insert, update, delete on t to ${WRITER}`);
    const major = await value<number>(env.source, "select current_setting('server_version_num')::int / 10000");
    if (major >= 15) await env.source.query(`grant set on parameter session_replication_role to ${WRITER}`);
    writer = major >= 15 ? await connectAs(env, WRITER) : await connectAs(env, new URL(env.sourceUrl).username || "postgres");
  });
  after(async () => {
    await writer.end();
  });

  for (const mode of ["origin", "replica"]) {
    test(`in ${mode} mode, its INSERT, UPDATE and DELETE are still captured`, async () => {
      const base = mode === "origin" ? 0 : 100;
      const forge = `set session_replication_role = ${mode};
        select set_config('dbsync.statement', statement_timestamp()::text || ' ' || pg_trigger_depth()::text, false)`;
      await writer.query(`${forge}; insert into t select g, 'new' from generate_series(${base + 1}, ${base + 5}) g`);
      await writer.query(`${forge}; update t set v = 'upd' where id = ${base + 2}`);
      await writer.query(`${forge}; delete from t where id = ${base + 3}`);
      await writer.query(`${forge}; update t set id = ${base + 50} where id = ${base + 4}`);
      await writer.query("reset session_replication_role");
      const keys = await value<string[]>(env.source,
        `select coalesce(array_agg(distinct e.row[1] order by e.row[1]), '{}') from ${queueOf("(select group_id from dbsync.groups where name = 'g')")} e
          where e.row[1]::int between ${base + 1} and ${base + 50}`);
      assert.deepEqual(keys.map(Number).sort((a, b) => a - b), [1, 2, 3, 4, 5, 50].map((k) => base + k));
    });
  }
});

// What PUBLIC may execute in schema dbsync (sql/grants.sql), called by a role that
// has USAGE on the schema and nothing else (a monitoring role) with other groups'
// ids, NULLs, negative ids and huge arguments: clean answers, nothing written,
// nothing read beyond a counter. The functions no grant opens (_pair_group,
// _mark_replica_statement, _follow_name, _statement_mark's callers) are refused.
describe("what PUBLIC may call, called with hostile arguments", () => {
  let env: Env;
  let mon: Client;
  const MON = "dbsync_mon_b22";
  before(async () => {
    env = await freshEnv("b22_public");
    await setup(env, "create table t (id int primary key, v text)", ["t"]);
    await loginRole(env.source, MON, `select dbsync.grant_monitor('${MON}')`);
    mon = await connectAs(env, MON);
  });
  after(async () => {
    await mon.end();
  });

  test("PUBLIC's functions answer cleanly and change nothing; the others are refused", async () => {
    const before = await value<string>(env.source, "select md5(string_agg(t::text, ',' order by t::text)) from (select * from dbsync.subscriptions) t");
    const big = "x".repeat(1_000_000);
    const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
    const calls: [string, unknown[]][] = [
      ["select dbsync._last_ev_id(g) from unnest(array[null, -1, 0, 2147483647, $1]) g", [gid]],
      ["select * from dbsync._held_tables()", []],
      ["select dbsync._statement_mark(d) from unnest(array[null, -2147483648, 2147483647]) d", []],
      ["select dbsync.version()", []],
      ["select dbsync._shows_values()", []],
      ["select dbsync._without_values($1, false), dbsync._without_values(null, null)", [`${big} (detail: secret)`]],
      ["select dbsync._differences_message($1, 'x''\"', 'y', -1, null, array_fill('k'::text, array[100000]), true)", [big]],
      ["select dbsync._held_message(-1, $1, null), dbsync._held_message(null, null, null)", [big]],
    ];
    // Answered, or refused by a plain SQL error (a NULL where a name must be): never
    // a permission error (the status views need them) nor an internal one.
    for (const [sql, params] of calls) {
      await mon.query(sql, params).catch((err: { code?: string; message: string }) => {
        assert.ok(/^22/.test(err.code ?? ""), `${sql}: ${err.code} ${err.message}`);
      });
    }
    assert.equal(await value(mon, "select dbsync._shows_values()"), false);
    for (const sql of [
      "select dbsync._pair_group(1, 'x')",
      "select dbsync._follow_name(1)",
      "select dbsync._mark_replica_statement()",
      "select dbsync.add_subscription('x', 'g', 'password=x')",
      "select dbsync.execute_ddl('g', 'select 1')",
    ]) {
      const err = await sqlError(mon, sql);
      assert.ok(["42501", "0A000", "42883"].includes(err.code ?? ""), `${sql}: ${err.code} ${err.message}`);
    }
    assert.equal(await value(env.source, "select md5(string_agg(t::text, ',' order by t::text)) from (select * from dbsync.subscriptions) t"), before);
  });
});

// A database's statement_timeout, lock_timeout or transaction_timeout (ALTER
// DATABASE ... SET, by its owner; a common guard for applications) reached the
// sidecar's sessions: node-postgres sends no statement_timeout of 0, so the
// database's applied to every copy, batch and upkeep statement of the sidecar, and a
// copy longer than it never finished ("canceling statement due to statement timeout"
// in dbsync.status, nothing applied).
test("source and target databases with statement_timeout, lock_timeout and transaction_timeout of a few milliseconds: copied and streamed, equal", async () => {
  const env0 = await freshEnv("b22_timeouts");
  await setup(env0, "create table t (id int primary key, v text, pad text)", ["t"], { copyData: true });
  await env0.source.query("insert into t select g, 'v' || g, repeat('x', 200) from generate_series(1, 20000) g");
  for (const p of [env0.source, env0.target]) {
    await p.query(`do $$ begin execute format('alter database %I set statement_timeout = ''5ms''', current_database());
      execute format('alter database %I set lock_timeout = ''5ms''', current_database());
      if current_setting('server_version_num')::int >= 170000 then
        execute format('alter database %I set transaction_timeout = ''50ms''', current_database());
      end if; end $$`);
  }
  const own = (url: string) => {
    const p = new Pool({ connectionString: url, max: 4, options: "-c statement_timeout=0 -c lock_timeout=0" });
    // (No transaction_timeout for the test's own sessions either, on 17.)
    p.on("connect", (c) => void c.query("select set_config('transaction_timeout', '0', false) where current_setting('server_version_num')::int >= 170000").catch(() => undefined));
    after(() => p.end());
    return p;
  };
  const env: Env = { ...env0, source: own(env0.sourceUrl), target: own(env0.targetUrl) };
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("update t set v = 'streamed' where id % 100 = 0");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, `${JSON.stringify(await value(env.source, "select row_to_json(s) from dbsync.status s"))}`);
    assert.equal(await value(env.target, "select count(*)::int from t"), 20000);
    assert.equal(await value(env.target, "select count(*)::int from t where v = 'streamed'"), 200);
  } finally {
    await sidecar.stop();
  }
});
