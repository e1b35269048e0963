// Errors a DBA can act on: a target that refuses a batch leaves PostgreSQL's DETAIL
// and HINT in dbsync.status, with dbsync's own advice where it knows the cause (a
// unique conflict, a missing partition, a missing column), and `dbsync wait` says
// why it timed out (paused, failing, copying, no sidecar).
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, parentKey, partitionKey, partitionKeyColumns, Side, startSidecar, tableText, until, value } from "./helpers";
import { runDbsync } from "./kit/dbsync";

const wait = (sourceUrl: string, sub: string, seconds: number) =>
  runDbsync(["wait", sub, "--timeout", String(seconds), "--source", sourceUrl], { env: { DBSYNC_LOG_LEVEL: "info" } });

test("a unique conflict and a missing partition on the target: DETAIL kept, dbsync's hint added, `dbsync wait` says why", async () => {
  const env = await freshEnv("errors_explained");
  const ddl = (side: Side) => `create table u (id int primary key, email text not null);
               create table ev (id int not null, at date not null, body text${parentKey("id, at", side)}) partition by range (at);
               create table ev_2024 partition of ev${partitionKey("id, at", side)} for values from ('2024-01-01') to ('2025-01-01');`;
  const ev2025 = (side: Side) => `create table ev_2025 partition of ev${partitionKey("id, at", side)} for values from ('2025-01-01') to ('2026-01-01')`;
  await env.source.query(`${ddl("source")} ${ev2025("source")}`);
  await env.target.query(ddl("target"));
  // The target has a unique index the source lacks, and a row in the way.
  await env.target.query("create unique index u_email on u (email); insert into u values (999, 'dup@example.com')");
  await env.source.query("select dbsync.add_table('u', 'g'), dbsync.add_table('ev', 'h', $1)", [partitionKeyColumns(["id", "at"])]);
  await env.source.query("select dbsync.add_subscription('su', 'g', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("select dbsync.add_subscription('se', 'h', $1, copy_data => false)", [env.targetUrl]);

  // No sidecar yet: wait says so.
  await env.source.query("insert into u values (1, 'dup@example.com')");
  const idle = await wait(env.sourceUrl, "su", 1);
  assert.equal(idle.code, 3, idle.stderr);
  assert.match(idle.stderr, /not in sync after 1 s: no sidecar is applying it .*dbsync run/);

  await env.source.query("insert into ev values (1, '2025-03-01', 'no partition for me on the target')");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    const errorOf = (sub: string) => value<string | null>(env.source, "select last_error from dbsync.status where name = $1", [sub]);
    await until("both errors recorded", async () => !!(await errorOf("su")) && !!(await errorOf("se")));
    const unique = (await errorOf("su"))!;
    assert.match(unique, /duplicate key value violates unique constraint "u_email"/);
    assert.match(unique, /\(detail: Key \(email\)=\(dup@example\.com\) already exists\.\)/);
    assert.match(unique, /\(hint: The target holds a row the source does not have .*dbsync verify <subscription> "public"\."u" --repair/);
    const partition = (await errorOf("se"))!;
    assert.match(partition, /no partition of relation "ev" found for row/);
    assert.match(partition, /\(detail: Partition key of the failing row contains \(at\) = \(2025-03-01\)\.\)/);
    assert.match(partition, /\(hint: The target's partitioned table "public"\."ev" has no partition for this row: create it on the target/);

    const failing = await wait(env.sourceUrl, "su", 1);
    assert.equal(failing.code, 3, failing.stderr);
    assert.match(failing.stderr, /not in sync after 1 s: applying failed on "public"\."u" \d+ s ago: duplicate key value/);
    await env.source.query("select dbsync.pause('se')");
    const paused = await wait(env.sourceUrl, "se", 1);
    assert.match(paused.stderr, /not in sync after 1 s: subscription "se" is paused \(select dbsync.resume\('se'\) to go on\)/);

    // The fixes the hints name: both resume by themselves.
    await env.target.query("delete from u where id = 999");
    await env.target.query(ev2025("target"));
    await env.source.query("select dbsync.resume('se')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('su', '60 s')"), true, sidecar.output());
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('se', '60 s')"), true, sidecar.output());
    assert.deepEqual(await tableText(env.target, "u"), await tableText(env.source, "u"));
    assert.deepEqual(await tableText(env.target, "ev"), await tableText(env.source, "ev"));
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("wait_for_sync's NOTICE at its timeout names tables still being copied", async () => {
  const env = await freshEnv("errors_copying");
  await env.source.query("create table big (id int primary key, pad text)");
  await env.target.query("create table big (id int primary key, pad text)");
  await env.source.query("insert into big select g, repeat('x', 200) from generate_series(1, 300000) g");
  await env.source.query("select dbsync.add_table('big', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  // A target lock holds the copy in place (the copy empties the table first).
  const c = await env.target.connect();
  await c.query("begin; lock table big in access exclusive mode");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await until("the copy started", async () =>
      Number(await value(env.target, "select count(*) from pg_locks where not granted and relation = 'big'::regclass")) > 0);
    const notices: string[] = [];
    const s = await env.source.connect();
    s.on("notice", (n) => notices.push(n.message ?? ""));
    try {
      assert.equal((await s.query("select dbsync.wait_for_sync('s', '1 s') as ok")).rows[0].ok, false);
    } finally {
      s.release();
    }
    assert.match(notices.join("\n"), /wait_for_sync: "s" not in sync after 1 s: still copying 1 table\(s\): public\.big \(0 rows copied(, of about \d+)?\)/);
  } finally {
    await c.query("rollback");
    c.release();
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true, sidecar.output());
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});
