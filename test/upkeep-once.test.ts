// Queue upkeep at scale (issue 19): a group's upkeep runs once per spacing however
// many sidecars call it (groups.maintained_at), and an idle group's queue is not
// rotated (groups.rotated_ev_id), so it costs no TRUNCATE and no upkeep tick.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";

const SLOT = "select cur_slot::int from dbsync.groups where group_id = $1";

async function group(label: string) {
  const env = await freshEnv(label);
  await env.source.query("create table q (id int primary key)");
  await env.target.query("create table q (id int primary key)");
  await env.source.query("select dbsync.add_table('q', 'g')");
  const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  return { env, gid };
}

test("a call inside the spacing does nothing; one without spacing (an older sidecar's) works as before", async () => {
  const { env, gid } = await group("upkeep_spacing");
  await env.source.query("insert into q values (1)");
  await env.source.query("select dbsync.maintain($1, '0 s', '1 h')", [gid]);
  const first = await value<number>(env.source, SLOT, [gid]);
  const at = await value<string>(env.source, "select maintained_at::text from dbsync.groups where group_id = $1", [gid]);
  assert.ok(at, "maintained_at set");
  await env.source.query("insert into q values (2)");
  // Rotation due (0 s) and an event since: only the spacing stops it.
  assert.equal(await value(env.source, "select dbsync.maintain($1, '0 s', '1 h')", [gid]), false);
  assert.equal(await value(env.source, SLOT, [gid]), first, "spaced out: no switch");
  assert.equal(await value(env.source, "select maintained_at::text from dbsync.groups where group_id = $1", [gid]), at);
  await env.source.query("select dbsync.maintain($1, '0 s')", [gid]);
  assert.equal(await value(env.source, SLOT, [gid]), (first + 1) % 3, "without spacing: switched");
  // A spacing already over lets it run.
  await sleep(300);
  await env.source.query("insert into q values (3)");
  await env.source.query("select dbsync.maintain($1, '0 s', '0.1 s')", [gid]);
  assert.equal(await value(env.source, SLOT, [gid]), (first + 2) % 3);
});

test("sidecar_groups(spacing) lists the groups whose upkeep is due; without spacing (an older sidecar's) every group", async () => {
  const { env, gid } = await group("upkeep_due");
  await env.source.query("select dbsync.create_group('h')");
  const other = await value<number>(env.source, "select group_id from dbsync.groups where name = 'h'");
  const due = async (spacing: string | null) =>
    (await env.source.query<{ g: number }>("select g from dbsync.sidecar_groups($1::interval) g", [spacing])).rows.map((r) => r.g);
  assert.deepEqual(await due("1 h"), [gid, other], "never maintained: due");
  await env.source.query("select dbsync.maintain($1, '30 s', '1 h')", [gid]);
  assert.deepEqual(await due("1 h"), [other]);
  assert.deepEqual(await due(null), [gid, other]);
  assert.deepEqual((await env.source.query<{ g: number }>("select g from dbsync.sidecar_groups() g")).rows.map((r) => r.g), [gid, other]);
  await sleep(300);
  assert.deepEqual(await due("0.1 s"), [gid, other], "spacing over: due again");
});

test("two sidecars share the upkeep: a process whose pass comes inside the spacing calls maintain for no group", async () => {
  const { env } = await group("upkeep_shared");
  const db = await value<string>(env.source, "select current_database()");
  // Counted by the server (pg_stat_user_functions) for the sidecars' sessions:
  // maintain's calls, and the upkeeps it did (each calls _unlogged_lost once).
  await env.source.query(`alter database "${db}" set track_functions = 'pl'`);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecars = [1, 2].map(() => startSidecar(env.sourceUrl, ["--rotate-after", "1"], { DBSYNC_LOG_LEVEL: "info" }));
  // (Stopped before it handles SIGTERM, a process exits by the signal: on a loaded machine its start takes seconds.)
  await until("both running", async () => sidecars.every((s) => s.output().includes("dbsync sidecar running")), 60_000);
  await sleep(8000);
  for (const s of sidecars) assert.equal(await s.stop(), 0, s.output());
  // A backend's counts reach the shared statistics when it exits (PostgreSQL 15+) or
  // within half a second (the statistics collector before).
  await sleep(1000);
  const calls = async (fn: string) =>
    value<number>(env.source, "select coalesce(sum(calls), 0)::int from pg_stat_user_functions where schemaname = 'dbsync' and funcname = $1", [fn]);
  const [called, done] = [await calls("maintain"), await calls("_unlogged_lost")];
  // Two processes, a pass a second each: about half of the calls found the group
  // spaced out (its row locked, a transaction id and a commit for nothing). Now
  // only two passes reading at once call it both.
  assert.ok(done >= 3, `${done} upkeeps in 8 s`);
  assert.ok(called - done <= 1, `maintain called ${called} times for ${done} upkeeps`);
});

test("a call inside the spacing takes no transaction id (no row lock, no commit to flush)", async () => {
  const { env, gid } = await group("upkeep_no_xid");
  await env.source.query("select dbsync.maintain($1, '30 s', '1 h')", [gid]);
  const c = await env.source.connect();
  try {
    await c.query("begin");
    assert.equal(await value(c, "select dbsync.maintain($1, '30 s', '1 h')", [gid]), false);
    assert.equal(await value(c, "select txid_current_if_assigned() is null"), true);
    await c.query("commit");
  } finally {
    c.release();
  }
});

test("a second process calling while the first maintains waits for it, then does nothing", async () => {
  const { env, gid } = await group("upkeep_two");
  await env.source.query("insert into q values (1)");
  const a = await env.source.connect();
  const b = await env.source.connect();
  try {
    await a.query("begin");
    await a.query("select dbsync.maintain($1, '0 s', '1 h')", [gid]);
    const slot = await value<number>(a, SLOT, [gid]);
    await env.source.query("insert into q values (2)");
    const bPid = await value<number>(b, "select pg_backend_pid()");
    const second = b.query<{ m: boolean }>("select dbsync.maintain($1, '0 s', '1 h') as m", [gid]);
    await sleep(300);
    assert.equal(
      await value(env.source, "select wait_event_type from pg_stat_activity where pid = $1", [bPid]),
      "Lock",
      "the second call waits for the group's row",
    );
    await a.query("commit");
    assert.equal((await second).rows[0].m, false);
    assert.equal(await value(env.source, SLOT, [gid]), slot, "the second call switched nothing");
  } finally {
    a.release();
    b.release();
  }
});

test("an idle group's slot is not switched again; a write makes the next upkeep switch it", async () => {
  const { env, gid } = await group("upkeep_idle");
  await env.source.query("insert into q values (1)");
  await env.source.query("select dbsync.maintain($1, '0 s')", [gid]);
  const slot = await value<number>(env.source, SLOT, [gid]);
  for (let i = 0; i < 3; i++) await env.source.query("select dbsync.maintain($1, '0 s')", [gid]);
  assert.equal(await value(env.source, SLOT, [gid]), slot, "nothing written since the switch: no switch");
  // The old slot is truncated all the same (no subscription needs it).
  assert.equal(await value(env.source, "select count(*)::int from dbsync.queue_slots where group_id = $1 and switched_at is not null", [gid]), 0);
  // A write numbers an event: the next upkeep switches.
  await env.source.query("insert into q values (2)");
  await env.source.query("select dbsync.maintain($1, '0 s')", [gid]);
  assert.equal(await value(env.source, SLOT, [gid]), (slot + 1) % 3);
});

test("two sidecars, one second rotation, an idle group: no upkeep ticks, no batches, and writes still arrive", async () => {
  const { env, gid } = await group("upkeep_sidecars");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecars = [startSidecar(env.sourceUrl, ["--rotate-after", "1"]), startSidecar(env.sourceUrl, ["--rotate-after", "1"])];
  try {
    await env.source.query("insert into q select generate_series(1, 100)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecars[0].output());
    // Let the written slot be switched from and truncated (three upkeeps), then idle.
    await sleep(5000);
    const before = await value<string>(env.source, "select last_tick_id::text from dbsync.groups where group_id = $1", [gid]);
    const slot = await value<number>(env.source, SLOT, [gid]);
    await sleep(4000);
    assert.equal(await value(env.source, "select last_tick_id::text from dbsync.groups where group_id = $1", [gid]), before, "no tick for an idle group");
    assert.equal(await value(env.source, SLOT, [gid]), slot, "no switch for an idle group");
    await env.source.query("insert into q select generate_series(101, 200)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecars[0].output());
    assert.deepEqual(await tableText(env.target, "q"), await tableText(env.source, "q"));
  } finally {
    for (const s of sidecars) assert.equal(await s.stop(), 0, s.output());
  }
});
