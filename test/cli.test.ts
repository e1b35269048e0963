// The `dbsync` command line as users run it: a child process, its output and its
// exit code (0 ok, 1 error, 2 bad usage, 3 `wait` timed out).
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, orAfter, parentKey, partitionKey, partitionKeyColumns, Side, rows, startSidecar, value } from "./helpers";
import { DbsyncResult as Result, runDbsync } from "./kit/dbsync";

/** `dbsync ARGS` with stdin not a terminal, and no source in the environment. */
const cli = (args: string[]) => runDbsync(args, { env: { DBSYNC_LOG_LEVEL: "warn" }, unset: ["DBSYNC_SOURCE_URL", "DATABASE_URL"] });

const show = (r: Result) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

const COMMANDS = ["migrate", "run", "status", "wait", "verify", "schema", "demo", "uninstall"];

test("--help of dbsync and of every command shows examples and exits 0", async () => {
  const top = await cli(["--help"]);
  assert.equal(top.code, 0, show(top));
  assert.match(top.stdout, /Examples?:\n {2}dbsync /, show(top));
  assert.match(top.stdout, /Exit codes: 0 ok, 1 error, 2 usage, 3 timeout/);
  // Every command dbsync lists (verify may not exist yet in this checkout).
  const listed = COMMANDS.filter((c) => new RegExp(`^  ${c}\\b`, "m").test(top.stdout));
  for (const c of ["migrate", "run", "status", "wait", "demo", "uninstall"]) assert.ok(listed.includes(c), `${c} missing from --help`);
  const results = await Promise.all(listed.map((c) => cli([c, "--help"])));
  listed.forEach((c, i) => {
    const r = results[i];
    assert.equal(r.code, 0, `${c}: ${show(r)}`);
    assert.match(r.stdout, new RegExp(`^Usage: dbsync ${c}`, "m"), `${c}: ${show(r)}`);
    assert.match(r.stdout, /Examples?:\n {2}(dbsync|DBSYNC_|npm run)/, `${c} --help has no example: ${show(r)}`);
  });
});

test("bad usage exits 2 with a message on stderr", async () => {
  const cases = [
    ["frobnicate"], // unknown command
    ["status", "--bogus"], // unknown option
    ["wait"], // missing argument
    ["run", "--concurrency", "0"], // invalid option value
    ["run", "--log-level", "loud"], // not a level
    ["run", "--log-format", "xml"],
    ["run", "--metrics-port", "70000"],
    ["wait", "s", "--timeout", "soon"],
    [], // no command
  ];
  const results = await Promise.all(cases.map((args) => cli(args)));
  cases.forEach((args, i) => {
    const r = results[i];
    assert.equal(r.code, 2, `dbsync ${args.join(" ")}: ${show(r)}`);
    assert.ok(r.stderr.trim().length > 0, `dbsync ${args.join(" ")}: nothing on stderr`);
    assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
  });
  assert.match(results[cases.findIndex((c) => c.includes("loud"))].stderr, /Allowed choices are trace, debug, info, warn, error, fatal, silent/);
});

test("status --json lists the subscriptions; wait exits 3 at its timeout and 0 once in sync", async () => {
  const env = await freshEnv("cli_status_wait");
  const ddl = "create table items (id int primary key, name text)";
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("select dbsync.add_table('items', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("select dbsync.pause('s')");
  await env.source.query("insert into items select g, 'x' from generate_series(1, 10) g");

  const st = await cli(["status", "--json", "--source", env.sourceUrl]);
  assert.equal(st.code, 0, show(st));
  const doc = JSON.parse(st.stdout);
  assert.equal(doc.subscriptions.length, 1);
  assert.equal(doc.subscriptions[0].name, "s");
  assert.equal(doc.subscriptions[0].group_name, "g");
  assert.equal(doc.subscriptions[0].state, "paused");
  assert.ok(Number(doc.subscriptions[0].backlog_events) >= 1, st.stdout);
  assert.equal(doc.tables[0].table_name, "public.items");
  assert.doesNotMatch(st.stdout, new RegExp(env.targetUrl.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), "no conninfo in status");

  const text = await cli(["status", "--source", env.sourceUrl]);
  assert.equal(text.code, 0, show(text));
  assert.match(text.stdout, /^s \(group g\): paused/m);

  const sidecar = startSidecar(env.sourceUrl);
  try {
    const late = await cli(["wait", "s", "--timeout", "1", "--source", env.sourceUrl]);
    assert.equal(late.code, 3, show(late));
    assert.match(late.stderr, /not in sync after 1 s: subscription "s" is paused/);
    assert.equal(await value(env.target, "select count(*)::int from items"), 0);

    await env.source.query("select dbsync.resume('s')");
    const ok = await cli(["wait", "s", "--timeout", "60", "--source", env.sourceUrl]);
    assert.equal(ok.code, 0, show(ok));
    assert.match(ok.stdout, /in sync/);
    assert.equal(await value(env.target, "select count(*)::int from items"), 10);

    const unknown = await cli(["wait", "nope", "--timeout", "1", "--source", env.sourceUrl]);
    assert.equal(unknown.code, 1, show(unknown));
    assert.match(unknown.stderr, /^dbsync: unknown subscription "nope"/m);
    assert.doesNotMatch(unknown.stderr, /dbsync: dbsync:/);
    assert.doesNotMatch(unknown.stderr, /^\s+at /m, "no stack trace");
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

const appDdl = (side: Side) => `
  create table items (id int primary key, name text);
  create table events (id int not null, at date not null, body text${parentKey("id, at", side)}) partition by range (at);
  create table events_2024 partition of events${partitionKey("id, at", side)} for values from ('2024-01-01') to ('2025-01-01');
  create table events_2025 partition of events${partitionKey("id, at", side)} for values from ('2025-01-01') to ('2026-01-01');
  create table plain_notes (id int primary key, body text);`;

async function installedApp(label: string) {
  const env = await freshEnv(label);
  await env.source.query(appDdl("source"));
  await env.target.query(appDdl("target"));
  await env.source.query("select dbsync.add_table('items', 'g'), dbsync.add_table('events', 'g', $1), dbsync.add_table('plain_notes', 'h')", [partitionKeyColumns(["id", "at"])]);
  await env.source.query("select dbsync.remove_table('plain_notes')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("insert into items select g, 'x' from generate_series(1, 5) g");
  await env.source.query("insert into events values (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b')");
  return env;
}

async function assertRemoved(env: Awaited<ReturnType<typeof installedApp>>) {
  assert.deepEqual(
    await rows(env.source, "select nspname from pg_namespace where nspname in ('dbsync', 'dbsync_worker')"),
    [],
  );
  assert.deepEqual(await rows(env.source, "select tgname, tgrelid::regclass::text from pg_trigger where tgname like 'dbsync%'"), []);
  assert.deepEqual(await rows(env.source, "select evtname from pg_event_trigger where evtname like 'dbsync%'"), []);
  assert.deepEqual(await rows(env.source, "select proname from pg_proc where proname like 'capture%'"), []);
  // The application's tables keep their data and work as before, with nothing of dbsync in the way.
  assert.equal(await value(env.source, "select count(*)::int from items"), 5);
  assert.equal(await value(env.source, "select count(*)::int from events"), 2);
  await env.source.query("insert into items values (100, 'after')");
  await env.source.query("update items set name = 'changed' where id <= 3");
  await env.source.query("delete from items where id = 4");
  await env.source.query("insert into events values (3, '2025-06-01', 'c')");
  await env.source.query("truncate events_2024");
  await env.source.query("update events set body = 'z'");
  await env.source.query("truncate items");
  assert.equal(await value(env.source, "select count(*)::int from events"), 2);
}

test("uninstall without --yes and without a terminal refuses with exit 2 and changes nothing", async () => {
  const env = await installedApp("cli_uninstall_refuse");
  const r = await cli(["uninstall", "--source", env.sourceUrl]);
  assert.equal(r.code, 2, show(r));
  assert.match(r.stderr, /--yes/);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.tables where removed_at is null"), 2);
  assert.ok(Number(await value(env.source, "select count(*) from pg_trigger where tgname like 'dbsync%'")) > 0);
});

test("uninstall --yes removes triggers, capture functions, schemas and jobs; the tables still work", async () => {
  const env = await installedApp("cli_uninstall");
  // A sidecar ran once (graphile-worker's schema holds its jobs), and is stopped first.
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  assert.ok(Number(await value(env.source, "select count(*) from pg_trigger where tgname like 'dbsync%'")) >= 5);
  // The test clusters' role is a superuser: migrate installed the DDL event trigger.
  assert.equal(await value(env.source, "select count(*)::int from pg_event_trigger where evtname = 'dbsync_ddl_watch'"), 1);

  const r = await cli(["uninstall", "--yes", "--source", env.sourceUrl]);
  assert.equal(r.code, 0, show(r));
  // (Named with their schema: uninstall resolves names in pg_catalog only.)
  assert.match(r.stdout, /stop capturing 2 table\(s\): public\.items, public\.events/);
  assert.match(r.stdout, /drop the DDL event triggers dbsync_ddl_watch, dbsync_drop_watch and dbsync_rewrite_watch/);
  assert.match(r.stdout, /removed dbsync from database/);
  assert.match(r.stdout, /drop schema dbsync cascade/, "tells what to do on targets");
  assert.doesNotMatch(r.stdout, /password/);
  await assertRemoved(env);
  // The target keeps its data.
  assert.equal(await value(env.target, "select count(*)::int from items"), 5);

  const again = await cli(["uninstall", "--yes", "--source", env.sourceUrl]);
  assert.equal(again.code, 0, show(again));
  assert.match(again.stdout, /nothing to uninstall/);

  // And it can be installed again from scratch.
  const m = await cli(["migrate", "--source", env.sourceUrl]);
  assert.equal(m.code, 0, show(m));
  assert.equal(await value(env.source, "select count(*)::int from dbsync.tables"), 0);
});

test("select dbsync.uninstall() does the same from SQL, dropping its own schema last", async () => {
  const env = await installedApp("sql_uninstall");
  await env.source.query("select dbsync.uninstall()");
  await assertRemoved(env);
});

test("dbsync.uninstall() is all or nothing and not for PUBLIC", async () => {
  const env = await installedApp("sql_uninstall_priv");
  const role = `dbsync_uninst_${Math.random().toString(36).slice(2, 8)}`;
  await env.source.query(`create role ${role}`);
  const c = await env.source.connect();
  try {
    await c.query("begin");
    await c.query(`set local role ${role}`);
    await assert.rejects(c.query("select dbsync.uninstall()"), /permission denied/);
    await c.query("rollback");
    // Rolled back with its transaction: everything is still there.
    await c.query("begin");
    await c.query("select dbsync.uninstall()");
    await c.query("rollback");
    assert.equal((await c.query("select count(*)::int as n from dbsync.tables where removed_at is null")).rows[0].n, 2);
    await c.query("insert into items values (42, 'still captured')");
    assert.ok(Number((await c.query("select dbsync._last_ev_id(group_id) as n from dbsync.groups where name = 'g'")).rows[0].n) > 0);
  } finally {
    await c.query("rollback").catch(() => undefined);
    c.release();
    await env.source.query(`drop role ${role}`).catch(() => undefined);
  }
});

test("a running sidecar stops with one clear message when dbsync is uninstalled under it", async () => {
  const env = await installedApp("cli_uninstall_running");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "info" });
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecar.output());
    const r = await cli(["uninstall", "--yes", "--source", env.sourceUrl]);
    assert.equal(r.code, 0, show(r));
    const code = await orAfter(sidecar.exited, 20_000, "still running");
    assert.equal(code, 0, sidecar.output());
    assert.match(sidecar.output(), /dbsync was removed from the source.*the sidecar stops/);
    // Not a line per retry of a missing relation. Each of graphile-worker's workers
    // (--concurrency, 4) that asked for a job after the uninstall and before the stop
    // reports it once, in two lines (its console.trace and its logger's error): under
    // load all four did, which a bound of 3 lines for the whole output took for a retry loop.
    const lines = sidecar.output().split("\n").filter((l) => /does not exist/.test(l));
    assert.ok(lines.length <= 3 + 2 * 4, sidecar.output());
  } finally {
    await sidecar.stop("SIGKILL");
  }
});
