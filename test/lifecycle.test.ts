// A clean lifecycle for a DBA: drop_subscription says what is left on the target
// and warns when a group is left without subscriptions; drop_group removes a group
// nothing uses; an execute_ddl that failed on one target can be skipped there after
// a fix by hand (skip_ddl); changes made outside execute_ddl can be acknowledged;
// a dropped subscription's metrics go.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freePort } from "../src/embedded/cluster";
import { Env, freshEnv, queueOf, sleep, sqlError, startSidecar, tableText, until, value } from "./helpers";

/** Runs sql on a connection of its own and returns its NOTICEs and WARNINGs. */
async function messages(env: Env, sql: string, params: unknown[] = []): Promise<{ severity: string; message: string; hint?: string }[]> {
  const c = await env.source.connect();
  const out: { severity: string; message: string; hint?: string }[] = [];
  c.on("notice", (n) => out.push({ severity: n.severity ?? "", message: n.message ?? "", hint: n.hint }));
  try {
    await c.query(sql, params);
  } finally {
    c.release();
  }
  return out;
}

test("drop_subscription names the target's leftovers and warns about a group left without subscriptions; drop_group", async () => {
  const env = await freshEnv("lifecycle_groups");
  await env.source.query("create table a (id int primary key); create table b (id serial primary key)");
  await env.source.query("select dbsync.add_table('a', 'g'), dbsync.add_table('b', 'g')");
  await env.source.query("select dbsync.add_subscription('s1', 'g', $1), dbsync.add_subscription('s2', 'g', $1)", [env.targetUrl]);
  const uuid = await value<string>(env.source, "select sub_uuid::text from dbsync.subscriptions where name = 's1'");

  const first = await messages(env, "select dbsync.drop_subscription('s1')");
  const notice = first.find((m) => m.severity === "NOTICE")!;
  assert.match(notice.message, /drop_subscription: "s1" dropped; its target keeps its data/);
  assert.match(notice.hint!, new RegExp(`delete from dbsync.applied where sub_uuid = '${uuid}'`));
  assert.equal(first.filter((m) => m.severity === "WARNING").length, 0, "s2 still delivers g");
  const last = await messages(env, "select dbsync.drop_subscription('s2')");
  const warning = last.find((m) => m.severity === "WARNING")!;
  assert.match(warning.message, /group "g" has no subscription left; its 2 table\(s\) are still captured/);
  assert.match(warning.hint!, /dbsync.remove_table .*dbsync.drop_group\('g'\)/);

  // drop_group refuses while something uses the group, and says what to do.
  await env.source.query("select dbsync.add_subscription('s3', 'g', $1)", [env.targetUrl]);
  let err = await sqlError(env.source, "select dbsync.drop_group('g')");
  assert.equal(err.code, "55006");
  assert.match(err.message, /group "g" is still delivered by subscription\(s\) 's3'/);
  await env.source.query("select dbsync.drop_subscription('s3')");
  err = await sqlError(env.source, "select dbsync.drop_group('g')");
  assert.match(err.message, /group "g" still captures tables/);
  assert.equal(err.hint, "Stop capturing them first: select dbsync.remove_table('public.a'); select dbsync.remove_table('public.b');");
  assert.match((await sqlError(env.source, "select dbsync.drop_group('nope')")).message, /unknown group "nope"/);
  const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  await env.source.query("select dbsync.remove_table('public.a'), dbsync.remove_table('public.b')");
  await env.source.query("select dbsync.drop_group('g')");
  assert.equal(await value(env.source, "select count(*)::int from dbsync.groups where name = 'g'"), 0);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.tables"), 0);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.sequences"), 0, "b's sequence is no longer carried");
  assert.equal(
    await value(env.source, "select count(*)::int from pg_class where relnamespace = 'dbsync'::regnamespace and relname ~ $1", [`^(events_${gid}(_\\d)?|events_seq_${gid}|group_state_${gid})$`]),
    0,
  );
  // The name is free again, and the tables can be added anew.
  await env.source.query("select dbsync.add_table('a', 'g')");
  await env.source.query("insert into a values (1)");
  assert.equal(await value(env.source, `select count(*)::int from dbsync.groups g cross join ${queueOf("g.group_id")} e where e.op = 'K'`), 1);
});

test("an execute_ddl that fails on one target can be skipped there; the others still get it", async () => {
  const env = await freshEnv("lifecycle_skip_ddl");
  await env.source.query("create table t (id int primary key, v text)");
  await env.target.query("create table t (id int primary key, v text, note text)"); // the DBA added note by hand
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await env.source.query("insert into t values (1, 'before')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    await env.source.query("select dbsync.execute_ddl('g', 'alter table t add column note text')");
    await env.source.query("insert into t values (2, 'after', 'noted')");
    await until("the DDL error", async () =>
      /failed on the target/.test((await value<string | null>(env.source, "select last_error from dbsync.status")) ?? ""));
    const error = await value<string>(env.source, "select last_error from dbsync.status");
    const ev = Number(/\(event (\d+)\)/.exec(error)![1]);
    assert.match(error, new RegExp(`select dbsync\\.skip_ddl\\('<subscription>', ${ev}\\)`));
    // Wrong calls say why.
    assert.match((await sqlError(env.source, "select dbsync.skip_ddl('s', 999999)")).message, /no execute_ddl event 999999 is queued for group "g"/);
    assert.match((await sqlError(env.source, "select dbsync.skip_ddl('nope', $1)", [ev])).message, /unknown subscription "nope"/);
    const said = await messages(env, "select dbsync.skip_ddl('s', $1)", [ev]);
    assert.match(said[0].message, new RegExp(`skip_ddl: "s" will not run event ${ev} on its target: alter table t add column note text`));
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, sidecar.output());
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
    assert.equal(await value(env.source, "select skipped_by::text from dbsync.skipped_ddl"), await value(env.source, "select current_user::text"));
    assert.match((await sqlError(env.source, "select dbsync.skip_ddl('s', $1)", [ev])).message, /already applied on the target of "s"/);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("changes made outside execute_ddl can be acknowledged once the targets have them", async () => {
  const env = await freshEnv("lifecycle_ack");
  await env.source.query("create table t (id int primary key); create table u (id int primary key)");
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_table('u', 'g')");
  await env.source.query("alter table t add column x int");
  await env.source.query("alter table u add column y int");
  await env.source.query("alter table u add column z int");
  const listed = (await env.source.query("select ddl_id, table_name, statement from dbsync.unreplicated_ddl order by ddl_id")).rows;
  assert.equal(listed.length, 3);
  assert.equal(await value(env.source, "select dbsync.acknowledge_ddl($1)", [listed[0].ddl_id]), 1);
  assert.deepEqual((await env.source.query("select table_name from dbsync.unreplicated_ddl order by ddl_id")).rows.map((r) => r.table_name), ["public.u", "public.u"]);
  assert.equal(await value(env.source, "select acknowledged_by::text from dbsync.ddl_log where ddl_id = $1", [listed[0].ddl_id]), await value(env.source, "select session_user::text"));
  const err = await sqlError(env.source, "select dbsync.acknowledge_ddl(424242)");
  assert.match(err.message, /no change 424242 in dbsync.unreplicated_ddl/);
  assert.equal(await value(env.source, "select dbsync.acknowledge_ddl(null)"), 2);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.unreplicated_ddl"), 0);
});

test("a dropped subscription's series leave /metrics", async () => {
  const env = await freshEnv("lifecycle_metrics");
  await env.source.query("create table t (id int primary key)");
  await env.target.query("create table t (id int primary key)");
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('gone', 'g', $1, copy_data => false)", [env.targetUrl]);
  const port = await freePort();
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200", "--metrics-port", String(port)]);
  const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  try {
    await env.source.query("insert into t values (1)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('gone', '30 s')"), true);
    await until("metrics", async () => /dbsync_batches_applied_total\{subscription="gone"\}/.test(await scrape().catch(() => "")));
    await env.source.query("select dbsync.drop_subscription('gone')");
    assert.doesNotMatch(await scrape(), /subscription="gone"/);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("a dropped replicated table leaves replication with a WARNING, not as a ghost (issue 20, bug 6)", async () => {
  const env = await freshEnv("lifecycle_drop_table");
  await env.source.query("create table keep (id int primary key); create table tmp (id int primary key)");
  await env.source.query("select dbsync.add_table('keep', 'g'), dbsync.add_table('tmp', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const out = await messages(env, "drop table tmp");
  assert.deepEqual(
    out.filter((m) => m.severity === "WARNING").map((m) => m.message),
    ["dbsync: replicated table public.tmp was dropped; it is no longer replicated (its rows stay on the targets)"],
  );
  assert.deepEqual((await env.source.query("select table_name from dbsync.table_status")).rows, [{ table_name: "public.keep" }]);
  assert.equal(await value(env.source, "select state from dbsync.status where name = 's'"), "streaming");
  // A table of the same name later is a new table: add_table takes it.
  await env.source.query("create table tmp (id int primary key)");
  assert.ok(Number(await value(env.source, "select dbsync.add_table('tmp', 'g')")) > 0);
});

test("a copy that cannot start makes the subscription an error in dbsync.status: the README's alert query finds it (issue 20, bug 3)", async () => {
  const env = await freshEnv("lifecycle_copy_cannot_start");
  await env.source.query("create table here (id int primary key); create table absent (id int primary key); insert into absent values (1)");
  await env.target.query("create table here (id int primary key)");
  await env.source.query("select dbsync.add_table('here', 'g'), dbsync.add_table('absent', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    const alert = `select name, state, lag_seconds, backlog_events, last_error from dbsync.status
                    where state <> 'streaming' or lag_seconds > 60`;
    await until("the alert", async () => (await env.source.query(alert)).rows[0]?.state === "error");
    const [row] = (await env.source.query(alert)).rows;
    assert.equal(row.name, "s");
    assert.match(row.last_error, /absent/);
    assert.equal(await value(env.source, "select last_error_table from dbsync.status"), "public.absent");
    // The other table streams meanwhile.
    await env.source.query("insert into here values (1)");
    await until("here streams", async () => (await value(env.target, "select count(*)::int from here")) === 1);
    // Retried with a back-off (1 s, 2 s ...), not at every batch, and no batch after
    // batch meanwhile: one a poll (200 ms) at most. It took a tick and logged the
    // error every few milliseconds.
    const ticks = "select last_tick_id::int from dbsync.groups";
    const [ticksBefore, logsBefore] = [await value<number>(env.source, ticks), sidecar.output().split("public.absent").length];
    await sleep(4000);
    const batches = await value<number>(env.source, ticks) - ticksBefore;
    assert.ok(batches <= 4000 / 200 + 5, `${batches} batches in 4 s while only the copy waits`);
    assert.ok(sidecar.output().split("public.absent").length - logsBefore <= 3, `logged at each retry only: ${sidecar.output().slice(-2000)}`);
    // Fixed on the target: copied at its next retry.
    await env.target.query("create table absent (id int primary key)");
    await until("absent copied", async () => (await value(env.target, "select count(*)::int from absent")) === 1, 60_000);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});
