// Session 21's hostile runs: settings a DBA set per database or per role (the
// sidecar's sessions get them unless dbsync pins them), operations racing writers
// (resync, remove and add of tables), crashes at awkward moments and hostile roles.
// The property: the target never differs from the source without an error in
// dbsync.status, and nobody gets dbsync's rights.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { Client, Pool } from "pg";
import { SOURCE_DDL, Workload } from "./kit/workload";
import { Env, SOURCE_MAJOR, freshEnv, rows, seeded, sleep, sqlError, startSidecar, until, value } from "./helpers";
import { convergedOrError, failsWith, setup, strictlyConverged, synced } from "./kit/convergence";
import { createDatabase } from "./kit/databases";
import { runDbsync } from "./kit/dbsync";

/** ALTER DATABASE (the pool's) SET `setting`: every new session of that database gets it. */
async function setForDatabase(p: Pool, setting: string): Promise<void> {
  await p.query(`do $$ begin execute format('alter database %I set ${setting.replace(/'/g, "''")}', current_database()); end $$`);
}

/** A pool of sessions that read committed whatever the database says (and `options` besides). */
function readCommitted(url: string, options = ""): Pool {
  const p = new Pool({ connectionString: url, max: 4, options: `-c default_transaction_isolation=read\\ committed ${options}` });
  after(() => p.end());
  return p;
}

/** verify_table(s, table, repair) run by the sidecar: done, no row differing. */
async function verifiedEqual(env: Env, table: string): Promise<void> {
  const id = await value<string>(env.source, "select dbsync.verify_table('s', $1, true)::text", [table]);
  const outcome = () => rows(env.source, "select state, error, differing_count::int from dbsync.verifications where verification_id = $1", [id]);
  await until("the verification", async () => ["done", "error"].includes((await outcome())[0].state as string), 60_000);
  assert.deepEqual(await outcome(), [{ state: "done", error: null, differing_count: 0 }]);
}

// Failed before the fix (the verification stayed queued): the sidecar's sessions took
// the database's default isolation, and the poll and the queue upkeep refuse to run
// outside READ COMMITTED (logged as retried, never in dbsync.status).
test("source and target databases with default_transaction_isolation = serializable: writers, resync, remove and add under way, equal; a verification runs", async () => {
  let env = await freshEnv("brk21_serializable");
  await setup(env, SOURCE_DDL("ins_only", "kv") + "; create table third (id int primary key, v int)", ["ins_only", "kv", "third"], { copyData: true });
  for (const p of [env.source, env.target]) await setForDatabase(p, "default_transaction_isolation = 'serializable'");
  // The writers take the database's default; the test's checks (wait_for_sync refuses to run serializable) read committed.
  const writers = env.source;
  env = { ...env, source: readCommitted(env.sourceUrl), target: readCommitted(env.targetUrl) };
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const load = new Workload(writers, { rng: seeded("brk21-serializable"), crossTable: true }).start();
  try {
    await synced(env);
    for (let i = 0; i < 6; i++) {
      await env.source.query("insert into third select g, $1 from generate_series(1, 50) g on conflict (id) do update set v = excluded.v", [i]);
      if (i % 3 === 0) await env.source.query("select dbsync.resync_table('s', 'kv')");
      if (i % 3 === 1) await env.source.query("select dbsync.remove_table('third')");
      if (i % 3 === 2) await env.source.query("select dbsync.add_table('third', 'g')");
      await sleep(300);
    }
    await load.stop();
    await strictlyConverged(env, ["ins_only", "kv", "third"]);
    await verifiedEqual(env, "kv");
  } finally {
    await load.stop();
    await sidecar.stop();
  }
});

/** Tables still replicated that a change not yet acknowledged holds (as dbsync._synced counts them). */
async function held(env: Env): Promise<number> {
  return Number(await value(env.source, "select count(*) from dbsync._held_tables()"));
}

// Failed before the fix: dbsync's SQL wrote regular expressions and LIKE patterns
// as '\{...', '\d+', 'dbsync\_capture\_%', which a session with
// standard_conforming_strings = off (a legacy application's database or role, or
// any session's own SET) reads as E'{...', 'd+', 'dbsync_capture_%'. The DDL watch
// runs in the session of the DDL: it took now() for an immutable default, neither
// held the table nor copied it again, and the target kept its own clock's values.
test("ADD COLUMN ... DEFAULT now() from a database with standard_conforming_strings = off: held (outside execute_ddl) or copied again (through it), then equal", async () => {
  const env = await freshEnv("brk21_scs_off");
  await setup(env, "create table t (id int primary key, v int); create table u (id int primary key, v int)", ["t", "u"]);
  await env.source.query("insert into t select g, g from generate_series(1, 20) g; insert into u select g, g from generate_series(1, 20) g");
  await setForDatabase(env.source, "standard_conforming_strings = off");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const c = new Client({ connectionString: env.sourceUrl });
  await c.connect();
  try {
    await synced(env);
    assert.equal(await value(c, "show standard_conforming_strings"), "off");
    await c.query("alter table t add column c timestamptz default now()");
    assert.equal(await held(env), 1, "ADD COLUMN ... DEFAULT now() outside execute_ddl is held");
    await c.query("select dbsync.execute_ddl('g', 'alter table u add column c timestamptz default now()')");
    await sleep(1200);
    await env.target.query("alter table t add column c timestamptz default now()");
    assert.ok(Number(await value(env.source, "select dbsync.acknowledge_ddl(null)")) >= 1);
    await strictlyConverged(env, ["t", "u"]);
  } finally {
    await c.end();
    await sidecar.stop();
  }
});

/**
 * The string literals of `sql` that hold a backslash without the E prefix, as
 * "line: literal". Such a literal reads one way with standard_conforming_strings on
 * and another with it off, and dbsync's functions run in sessions that choose it.
 * Dollar quotes are read through: the function bodies inside them are SQL too.
 */
function ambiguousLiterals(sql: string): string[] {
  const found: string[] = [];
  for (let i = 0; i < sql.length; i++) {
    if (sql.startsWith("--", i)) {
      i = sql.indexOf("\n", i);
      if (i < 0) break;
    } else if (sql[i] === "'") {
      const escaped = /[Ee]/.test(sql[i - 1] ?? "") && !/[\w$]/.test(sql[i - 2] ?? "");
      let j = i + 1;
      for (; j < sql.length; j++) {
        if (escaped && sql[j] === "\\") j++;
        else if (sql[j] === "'" && sql[j + 1] === "'") j++;
        else if (sql[j] === "'") break;
      }
      const literal = sql.slice(i, j + 1);
      if (!escaped && literal.includes("\\")) found.push(`${sql.slice(0, i).split("\n").length}: ${literal}`);
      i = j;
    }
  }
  return found;
}

test("no literal of dbsync's SQL reads otherwise under standard_conforming_strings = off", () => {
  const root = path.join(__dirname, "..");
  const files = ["sql", "migrations"].flatMap((d) => fs.readdirSync(path.join(root, d), { recursive: true }).map((f) => path.join(d, String(f))))
    .filter((f) => f.endsWith(".sql"));
  assert.ok(files.length > 100, files.join(", "));
  assert.deepEqual(ambiguousLiterals("select 'a\\b', E'a\\\\b', 'it''s', e'\\''"), ["1: 'a\\b'"]);
  const found = files.flatMap((f) => ambiguousLiterals(fs.readFileSync(path.join(root, f), "utf8")).map((l) => `${f}:${l}`));
  assert.deepEqual(found, [], "write them E'...' with the backslash doubled");
});

// Failed before the fix: _comment_line wrote a line break as '\n', which a session
// with standard_conforming_strings = off reads as a line break.
test("dbsync schema of a source database with standard_conforming_strings = off: a name's line break in a comment, piped into the target, runs nothing", async () => {
  const env = await freshEnv("brk21_scs_schema");
  await setForDatabase(env.source, "standard_conforming_strings = off");
  const evil = `"type\n; create table pwned (); --"`;
  await env.source.query(`create type ${evil} as (a int); create table t (id int primary key, c ${evil}); select dbsync.add_table('t', 'g')`);
  const r = await runDbsync(["schema", "--group", "g", "--source", env.sourceUrl]);
  assert.equal(r.code, 0, r.stderr);
  await env.target.query(`create type ${evil} as (a int)`);
  await env.target.query(r.stdout);
  assert.deepEqual((await env.target.query("select relname from pg_class where relname = 'pwned'")).rows, []);
});

// Failed before the fix: _check_snapshot knew a capture function by its regproc's
// text, 'dbsync.capture_N'; with quote_all_identifiers = on (any session may set it)
// that text is '"dbsync"."capture_N"', the check found nothing, and a table owner's
// DISABLE TRIGGER ALL in a snapshot older than the add_table switched capture off.
test("DDL in a REPEATABLE READ transaction older than the table's add_table, with quote_all_identifiers = on: refused as without it", async () => {
  const env = await freshEnv("brk21_quote_all");
  await env.source.query("create table t (id int primary key, v text)");
  const c = await env.source.connect();
  try {
    await c.query("set quote_all_identifiers = on; begin isolation level repeatable read; select 1");
    await env.source.query("select dbsync.add_table('t', 'g')");
    const err = await sqlError(c, "alter table t disable trigger all");
    await c.query("rollback");
    assert.equal(err.code, "40001", err.message);
  } finally {
    c.release();
  }
});

/**
 * Settings a DBA may give a database (or a role), each of which changes what
 * dbsync's own SQL does in the sessions that call it (the API, the capture and
 * DDL triggers): quoting, NULL comparison, the isolation of autocommit
 * statements, the reading of literals and the writing of values.
 */
const HOSTILE_SETTINGS = [
  "quote_all_identifiers = on",
  "transform_null_equals = on",
  "default_transaction_isolation = 'repeatable read'",
  "standard_conforming_strings = off",
  "DateStyle = 'SQL, DMY'",
  "IntervalStyle = 'sql_standard'",
  "TimeZone = 'Pacific/Chatham'",
  "extra_float_digits = -15",
  "bytea_output = 'escape'",
  "array_nulls = off",
  "xmloption = document",
  "plpgsql.variable_conflict = use_column",
];

test("source and target databases with hostile settings: copy, stream, execute_ddl renames, resync, verify with repair, remove and add, equal", async () => {
  let env = await freshEnv("brk21_settings");
  const ddl = `create table a (id int primary key, v text, ts timestamptz, n numeric, f float8, iv interval, b bytea, arr int[], x xml, m money);
    create table "K" ("T" timestamptz, d date, v text, primary key ("T", d))`;
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query(`insert into a select g, 'row\\' || g, timestamptz '2024-01-02 03:04:05.678+05' + g * interval '1 day', g / 7.0, g / 3.0,
                            g * interval '1 day 2 hours', '\\x00ff'::bytea, array[g, null], xmlparse(content '<r/>'), g * 1.5
                          from generate_series(1, 300) g;
    insert into "K" select timestamptz '2024-01-02 00:00+00' + g * interval '1 minute', date '2024-02-01' + g, 'k' || g from generate_series(1, 100) g`);
  for (const p of [env.source, env.target]) for (const s of HOSTILE_SETTINGS) await setForDatabase(p, s);
  const writer = new Client({ connectionString: env.sourceUrl });
  await writer.connect();
  env = { ...env, source: readCommitted(env.sourceUrl), target: readCommitted(env.targetUrl) };
  await env.source.query(`select dbsync.add_table('a', 'g'), dbsync.add_table('"K"', 'g'), dbsync.add_subscription('s', 'g', $1)`, [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100", "--copy-chunk-rows", "50"]);
  let stop = false;
  let written = 0;
  // One writer in the database's REPEATABLE READ; a renamed table's old name fails its transaction, which is then left out.
  const writing = (async () => {
    for (let i = 1; !stop; i = (i % 300) + 1) {
      try {
        await writer.query("begin");
        await writer.query("update a set n = n + 1, ts = ts + interval '1 second', arr = arr || $1::int where id = $1", [i]);
        await writer.query(`insert into "${written % 2 ? "K" : "K2"}" values ('03/01/2025 10:00:00'::timestamptz + $1 * interval '1 second', '05/06/2025', 'w') on conflict do nothing`, [written]);
        await writer.query("commit");
        written++;
      } catch {
        await writer.query("rollback");
      }
      await sleep(20);
    }
  })();
  try {
    await synced(env);
    await env.source.query(`select dbsync.execute_ddl('g', 'alter table a rename column v to w; alter table "K" rename to "K2"')`);
    await env.source.query(`select dbsync.execute_ddl('g', 'alter table a add column d date default ''01/02/2024''')`);
    await env.source.query("select dbsync.resync_table('s', 'a')");
    await sleep(500);
    await env.source.query(`select dbsync.remove_table('"K2"')`);
    await env.source.query(`select dbsync.add_table('"K2"', 'g')`);
    await sleep(500);
    stop = true;
    await writing;
    assert.ok(written > 0);
    await strictlyConverged(env, ["a", '"K2"']);
    assert.equal(await value(env.target, "select to_char(d, 'YYYY-MM-DD') from a limit 1"), "2024-02-01");
    await verifiedEqual(env, "a");
  } finally {
    stop = true;
    await writing.catch(() => undefined);
    await writer.end();
    await sidecar.stop();
  }
});

// A target that lost its last commits (synchronous_commit = off on the target and an
// immediate stop, or a restore from a backup a moment old) stands at an older tick,
// and a table copied since is empty there again, though the source took the copy for
// done and streams the table. Here the loss is made by hand: the target's rows and
// records put back as they were before add_table.
test("a target that lost a new table's copy with its last commits: copied again or an error, never left empty and in sync", async () => {
  const env = await freshEnv("brk21_lost_copy");
  await setup(env, "create table t (id int primary key, v text)", ["t"], { copyData: true });
  let sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t values (1, 'x')");
    await synced(env);
    await env.source.query("create table u (id int primary key, v text); insert into u select g, 'u' || g from generate_series(1, 3) g");
    await env.target.query("create table u (id int primary key, v text); create table saved as select * from dbsync.applied; create table saved_copied as select * from dbsync.copied");
    await env.source.query("select dbsync.add_table('u', 'g')");
    await synced(env);
    await sidecar.stop();
    await env.target.query(`truncate u; delete from dbsync.copied; insert into dbsync.copied select * from saved_copied;
      update dbsync.applied a set tick_id = s.tick_id, tick_key = s.tick_key, key_tick = s.key_tick from saved s where s.sub_uuid = a.sub_uuid`);
    sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
    await env.source.query("insert into t values (2, 'y')");
    await convergedOrError(env, ["t", "u"]);
  } finally {
    await sidecar.stop();
  }
});

// One table under a steady writer while the DBA resyncs it, removes and adds it,
// resyncs the whole subscription, pauses and resumes, and drops and adds a second
// subscription to another target: copies in chunks of 20 rows, each cut short by
// the next call. Both targets end equal, or an error says why.
test("resync, remove and add, resync_subscription, pause and resume, a second subscription dropped and added, all under a writer mid-copy", async () => {
  const env = await freshEnv("brk21_races");
  await setup(env, "create table a (id int primary key, v int, s text)", ["a"], { copyData: true });
  await env.source.query("insert into a select g, g, repeat('x', 50) from generate_series(1, 400) g");
  const target2Url = await createDatabase(env.targetUrl, "brk21_races2");
  const target2 = readCommitted(target2Url);
  await target2.query("create table a (id int primary key, v int, s text)");
  const rng = seeded("brk21-races");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100", "--copy-chunk-rows", "20"]);
  let stop = false;
  const writing = (async () => {
    while (!stop) {
      const k = rng.int(1, 600);
      await env.source.query(rng.chance(0.2) ? "delete from a where id = $1" : "insert into a values ($1, 0, 'w') on conflict (id) do update set v = a.v + 1", [k]);
    }
  })();
  try {
    await env.source.query("select dbsync.add_subscription('s2', 'g', $1)", [target2Url]);
    for (let i = 0; i < 14; i++) {
      const op = [
        "select dbsync.resync_table('s', 'a')",
        "select dbsync.remove_table('a')",
        "select dbsync.add_table('a', 'g')",
        "select dbsync.resync_subscription('s')",
        "select dbsync.pause('s2')",
        "select dbsync.resume('s2')",
        "select dbsync.drop_subscription('s2')",
        "select dbsync.add_subscription('s2', 'g', $1)",
      ][rng.int(0, 7)];
      await env.source.query(op, op.includes("$1") ? [target2Url] : []).catch((err: Error) => console.log(`# ${op}: ${err.message}`));
      await sleep(rng.int(50, 600));
    }
    await env.source.query("select dbsync.add_table('a', 'g')").catch(() => undefined);
    await env.source.query("select dbsync.resume('s2')").catch(() => undefined);
    await env.source.query("select dbsync.add_subscription('s2', 'g', $1)", [target2Url]).catch(() => undefined);
    await sleep(500);
    stop = true;
    await writing;
    await strictlyConverged(env, ["a"]);
    await convergedOrError({ ...env, target: target2 }, ["a"], { sub: "s2" });
  } finally {
    stop = true;
    await writing.catch(() => undefined);
    await sidecar.stop();
  }
});

// Failed before the fix: add_table pairs the new table with the subscriptions its
// statement sees, add_subscription the new subscription with the tables its statement
// sees; run at once in two transactions, neither saw the other's row, and the new
// subscription never copied nor streamed the new table, in sync all the same.
test("add_table and add_subscription of one group in two transactions at once, either committing first: the new subscription gets the new table", async () => {
  const env = await freshEnv("brk21_pairing");
  const ddl = "create table t (id int primary key, v text); create table u (id int primary key, v text); create table w (id int primary key, v text)";
  await setup(env, ddl, ["t"], { copyData: true });
  await env.source.query("insert into t values (1, 't'); insert into u select g, 'u' from generate_series(1, 10) g; insert into w select g, 'w' from generate_series(1, 10) g");
  const targets = await Promise.all(["brk21_pairing2", "brk21_pairing3"].map((l) => createDatabase(env.targetUrl, l)));
  for (const url of targets) await readCommitted(url).query(ddl);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const a = await env.source.connect();
  try {
    // The table's transaction commits first, then the subscription's.
    await a.query("begin; select dbsync.add_table('u', 'g')");
    const second = env.source.query("select dbsync.add_subscription('s2', 'g', $1)", [targets[0]]);
    await sleep(300);
    await a.query("commit");
    await second;
    // The subscription's first.
    await a.query("begin");
    await a.query("select dbsync.add_subscription('s3', 'g', $1)", [targets[1]]);
    const table = env.source.query("select dbsync.add_table('w', 'g')");
    await sleep(300);
    await a.query("commit");
    await table;
    await env.source.query("insert into t values (2, 't')");
    for (const [sub, url] of [["s", env.targetUrl], ["s2", targets[0]], ["s3", targets[1]]]) {
      await convergedOrError({ ...env, target: readCommitted(url) }, ["t", "u", "w"], { sub, errorOk: false });
    }
  } finally {
    a.release();
    await sidecar.stop();
  }
});

// add_table and add_subscription both write their group's row of
// dbsync.group_pairings (_pair_group): a REPEATABLE READ transaction whose snapshot
// predates the other's commit paired silently without it, and fails now, saying what
// to do; done again in READ COMMITTED, the new subscription gets the table.
test("add_table in a REPEATABLE READ transaction whose snapshot predates another session's add_subscription of the group: a serialization failure, then paired when retried", async () => {
  const env = await freshEnv("brk21_pairing_rr");
  await setup(env, "create table t (id int primary key); create table u (id int primary key)", ["t"], { copyData: true });
  const a = await env.source.connect();
  try {
    await a.query("begin isolation level repeatable read; select 1");
    await env.source.query("select dbsync.add_subscription('s2', 'g', $1)", [env.targetUrl]);
    const err = await sqlError(a, "select dbsync.add_table('u', 'g')");
    assert.equal(err.code, "40001", err.message);
    assert.match(err.message, /add_table: an add_table or add_subscription of the same group committed after/);
    assert.match(err.hint ?? "", /READ COMMITTED/);
    await a.query("rollback");
    await a.query("select dbsync.add_table('u', 'g')");
    assert.deepEqual(await rows(env.source, "select table_name from dbsync.table_status where subscription = 's2' order by 1"), [{ table_name: "public.t" }, { table_name: "public.u" }]);
  } finally {
    a.release();
  }
});

// Held, kept as a guard: a target database made read-only (a DBA's
// default_transaction_read_only = on, as before a failover) refuses the batch, and
// dbsync.status says so; set back, the rows arrive.
test("a target database with default_transaction_read_only = on: an error in dbsync.status, then equal once it is off", async () => {
  const env = await freshEnv("brk21_read_only");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  await setForDatabase(env.target, "default_transaction_read_only = on");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t values (1, 'x')");
    await failsWith(env, /read-only/);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '1 s')"), false);
    await setForDatabase(env.target, "default_transaction_read_only = off");
    await strictlyConverged(env, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

// The sidecar's sessions wait idle between batches (its LISTEN session always):
// a database's idle_session_timeout (PostgreSQL 14) ended them, and dbsync.status
// kept the subscription in state error with 57P05. Each session now sets it to 0 at
// connect (src/db/client.ts; a start-up option would be refused before 14).
test("source and target databases with idle_session_timeout = 300 ms: writes between idle pauses arrive, equal, no error left", {
  skip: SOURCE_MAJOR < 14 && "idle_session_timeout comes with PostgreSQL 14",
}, async () => {
  const env = await freshEnv("brk21_idle_timeout");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  for (const p of [env.source, env.target]) await setForDatabase(p, "idle_session_timeout = '300ms'");
  const checks: Env = { ...env, source: readCommitted(env.sourceUrl, "-c idle_session_timeout=0"), target: readCommitted(env.targetUrl, "-c idle_session_timeout=0") };
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    for (let i = 1; i <= 6; i++) {
      await checks.source.query("insert into t values ($1, 'x')", [i]);
      await sleep(800);
    }
    await strictlyConverged(checks, ["t"]);
  } finally {
    await sidecar.stop();
  }
});
