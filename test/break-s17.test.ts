// Attacks on positions (s17): a late progress report of a process that stalled, and
// a source that failed over to a standby that lagged (each failed before its fix);
// then attacks on that fix, the tick keys (migration 0024), kept as guards: a sidecar
// of an older version, two processes killed in turn, a target's old dbsync.applied.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";
import { DbsyncError } from "../src/errors";
import { migrate } from "../src/migrate";
import { ensureTargetSchema } from "../src/target/progress";
import { Env, createDatabase, freshEnv, pool, retrying, sleep, startSidecar, value } from "./helpers";
import { assertTablesEqual, failsWith, setup, status, synced } from "./kit/convergence";
import { oldTree, runAs } from "./kit/migrate-as";
import { privateClusters } from "./kit/private-clusters";
import { connectAs, rolesDroppedAfter } from "./kit/roles";

const clusters = privateClusters();

const position = (env: Env) => value<string>(env.source, "select position_tick::text from dbsync.subscriptions where name = 's'");

/** Subscription s of table t on fresh databases, its sub_id and group_id, a sidecar started, rows 1 to 10 applied. */
async function syncedTen(label: string) {
  const env = await freshEnv(label);
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const ids = (await env.source.query("select sub_id, group_id from dbsync.subscriptions where name = 's'")).rows[0];
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  await env.source.query("insert into t select g, 'a' from generate_series(1, 10) g");
  await synced(env).catch(async (err) => {
    await sidecar.stop();
    throw err;
  });
  return { env, subId: ids.sub_id as number, groupId: ids.group_id as number, sidecar };
}

// Two `dbsync run` processes: one stalls after its batch committed on the target, the
// other takes the subscription over and moves it on; then the first one's report of
// its batch (record_progress of an older tick) arrives. It moved the position back,
// to a tick upkeep had deleted meanwhile: maintain then found no position snapshot for
// the subscription and truncated queue slots it still needed, and the next sidecar
// (the target's position is ahead: taken from there) silently missed their rows.
test("a stalled process's late progress report does not move the position back, and upkeep keeps what the subscription needs", async () => {
  const ready = await syncedTen("brk17_late_report");
  const { env, subId, groupId } = ready;
  let sidecar = ready.sidecar;
  try {
    const old = await position(env);
    await env.source.query("insert into t select g, 'b' from generate_series(11, 20) g");
    await synced(env);
    const now = await position(env);
    assert.ok(Number(now) > Number(old));
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    // Upkeep deletes ticks no subscription stands on once they are a minute old.
    await env.source.query("update dbsync.ticks set created_at = created_at - interval '2 minutes'");
    await env.source.query("select dbsync.maintain($1, '1 h')", [groupId]);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.ticks where tick_id = $1", [old]), 0, "the old tick is gone");
    // The stalled process's report of its batch, which ended at the old tick.
    await env.source.query("select dbsync.record_progress($1, $2, 10, 0.1)", [subId, old]);
    assert.equal(await position(env), now, "a late report moved the position back");
    // Rows after the position, in the current slot; upkeep switches slots twice.
    await env.source.query("insert into t select g, 'c' from generate_series(21, 30) g");
    await env.source.query("select dbsync.maintain($1, '0 s')", [groupId]);
    await env.source.query("select dbsync.maintain($1, '0 s')", [groupId]);
    sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

/**
 * The source's data directory as it is now (the cluster stopped, copied with
 * `cp -a`, started again): a standby that stops receiving here, to be promoted later.
 */
async function standbyCopy(label: string): Promise<string> {
  const src = clusters.source();
  const copy = `${src.dataDir}-${label}`;
  await src.stop();
  execFileSync("cp", ["-a", src.dataDir, copy]);
  await src.start();
  return copy;
}

/** The source fails over to the standby copied earlier: it takes the source's place (data directory, port). */
async function promote(copy: string): Promise<void> {
  const src = clusters.source();
  await src.stop();
  fs.rmSync(src.dataDir, { recursive: true, force: true });
  fs.renameSync(copy, src.dataDir);
  await src.start();
}

// The source fails over to a standby that lagged: it lacks the last batches the
// target applied, and makes its own ticks again under the same ids. The target's
// position (a tick id) then named a tick of the new source that is another one:
// target_position took it as a tick the target had reached, and the sidecar went on
// from there, silently missing the new source's rows committed before it and keeping
// the rows the new source never had.
test("a failover to a standby that lagged, which made ticks again under the ids the target stands at: an error that says resync, not a silent skip", async () => {
  const [sourceUrl, targetUrl] = await Promise.all([
    createDatabase(clusters.source().url(), "brk17_failover"),
    createDatabase(clusters.target().url(), "brk17_failover"),
  ]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  const env: Env = { sourceUrl, targetUrl, source: src, target: dst };
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const groupId = await value<number>(src, "select group_id from dbsync.subscriptions where name = 's'");
  let sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
  try {
    await src.query("insert into t select g, 'a' from generate_series(1, 10) g");
    await synced(env);
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    const copy = await standbyCopy("standby");
    const before = Number(await value(src, "select last_tick_id from dbsync.groups where group_id = $1", [groupId]));
    // The old source goes on: batches the standby never receives.
    sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
    for (let i = 11; i <= 15; i++) {
      await retrying(() => src.query("insert into t values ($1, 'lost with the old source')", [i]));
      await synced(env);
    }
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    const reached = Number(await value(dst, "select tick_id from dbsync.applied"));
    assert.ok(reached > before, `the target moved on (${before} -> ${reached})`);
    await promote(copy);
    // The promoted standby takes writes, and its upkeep takes ticks: up to and past
    // the id the target stands at.
    await retrying(() => src.query("insert into t select g, 'new source' from generate_series(21, 30) g"));
    while (Number(await value(src, "select dbsync.tick($1, true)", [groupId])) <= reached);
    sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
    assert.equal(await value(src, "select dbsync.wait_for_sync('s', '10 s')"), false, "in sync, though the target holds rows the source lost and lacks its new ones");
    // Under load the restarted sidecar may take seconds to reach the target: wait for its verdict.
    await failsWith(env, /stands at tick \d+, but this source's tick \d+ is another one .*failed over.*resync_subscription\('s'\)/);
    assert.equal((await status(env))?.state, "error");
    // What the DBA is told to do.
    await src.query("select dbsync.resync_subscription('s')");
    await synced(env);
    await assertTablesEqual(src, dst, ["t"]);
  } finally {
    await sidecar.stop();
  }
});

/** The target's position and the key it recorded for that tick, and the source's position and its tick's key. */
async function keys(env: Env) {
  const target = (await env.target.query("select tick_id::text as tick, case when key_tick = tick_id then tick_key::text end as key from dbsync.applied")).rows[0];
  const source = (await env.source.query(`select s.position_tick::text as tick, dbsync._tick_key(s.group_id, s.position_tick)::text as key
                                            from dbsync.subscriptions s where s.name = 's'`)).rows[0];
  return { target, source };
}

// A sidecar of before migration 0024 (a3ee1fb, the version before the keys), still
// running after it, applies batches: it moves the target's tick_id alone (its UPDATE
// knows no key), and would call the two-argument target_position. The key the target
// has is then of another tick: unknown, accepted (key_tick says which tick it is of),
// never taken for a failover.
test("a sidecar of an older version moves the target's position without its key: the next one accepts it, and records keys again", async (t) => {
  const git = spawnSync("git", ["-C", path.join(__dirname, ".."), "cat-file", "-e", `${BEFORE_0024}^{commit}`]);
  if (git.status !== 0) return t.skip("the git history with the version before 0024 is not here");
  const ready = await syncedTen("brk17_old_sidecar");
  const { env, subId } = ready;
  let sidecar = ready.sidecar;
  const dir = oldTree(BEFORE_0024);
  try {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    const before = await keys(env);
    assert.ok(before.target.key !== null && before.target.key === before.source.key, JSON.stringify(before));
    sidecar = runAs(dir, env.sourceUrl);
    await env.source.query("insert into t select g, 'old sidecar' from generate_series(11, 20) g");
    await synced(env);
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    const moved = await keys(env);
    assert.ok(Number(moved.target.tick) > Number(before.target.tick), JSON.stringify([before, moved]));
    assert.equal(moved.target.key, null, "the key recorded is of another tick");
    assert.notEqual(moved.source.key, null);
    // Its call when the target's position is not the source's.
    assert.equal(await value(env.source, "select dbsync.target_position($1, $2)::text", [subId, moved.target.tick]), moved.target.tick);
    sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
    await env.source.query("insert into t select g, 'new sidecar' from generate_series(21, 30) g");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["t"]);
    assert.equal((await status(env))?.last_error, null);
    const after = await keys(env);
    assert.deepEqual(after.target, after.source, "the target records the key of its tick again");
  } finally {
    await sidecar.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The version before migration 0024. */
const BEFORE_0024 = "a3ee1fb";

// Two processes apply one subscription under writes and are SIGKILLed in turn,
// mid-batch or between a target commit and its report: the target's key is always
// that of its tick on the source (a key written with another tick would read as a
// failover and stop the subscription), and the tables end equal.
test("two processes SIGKILLed in turn under writes: the target's key stays its tick's, nothing lost", async () => {
  const env = await freshEnv("brk17_kills");
  await setup(env, "create table t (id int primary key, n int not null)", ["t"]);
  await env.source.query("insert into t select g, 0 from generate_series(1, 100) g");
  const args = ["--poll-interval", "50"];
  const sidecars = [startSidecar(env.sourceUrl, args), startSidecar(env.sourceUrl, args)];
  let stopping = false;
  const writer = (async () => {
    for (let i = 1; !stopping; i++) {
      await env.source.query(`update t set n = n + 1 where id = ${(i % 100) + 1}; insert into t values (${1000 + i}, ${i})`);
      if (i % 10 === 0) await sleep(5);
    }
  })();
  try {
    await synced(env);
    for (let round = 0; round < 6; round++) {
      await sleep(300 + round * 97);
      const i = round % 2;
      await sidecars[i].stop("SIGKILL");
      sidecars[i] = startSidecar(env.sourceUrl, args);
      const k = await keys(env);
      // (Read apart: they may be a batch apart, but a key there is its tick's.)
      if (k.target.key !== null && k.target.tick === k.source.tick) assert.equal(k.target.key, k.source.key, JSON.stringify(k));
    }
    stopping = true;
    await writer;
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["t"]);
    assert.equal((await status(env))?.last_error, null);
    const k = await keys(env);
    assert.deepEqual(k.target, k.source);
  } finally {
    stopping = true;
    await writer.catch(() => undefined);
    await Promise.all(sidecars.map((s) => s.stop()));
  }
});

// A target's dbsync.applied made by a sidecar of before 0024 gets the key columns at
// the first connect; a target role that may not alter it gets a 42501 error that
// says what its owner runs.
test("a dbsync.applied without the key columns: added at connect, or a 42501 error with the ALTER to run", async () => {
  const env = await freshEnv("brk17_applied_columns");
  const role = `dbsync_brk17_${process.pid}`;
  rolesDroppedAfter().push({ url: env.targetUrl, role });
  await env.target.query(`create role ${role} login;
    create schema dbsync;
    create table dbsync.applied (sub_uuid uuid primary key, subscription text not null, tick_id bigint not null,
                                 applied_at timestamptz not null default now());
    create table dbsync.copied (sub_uuid uuid not null, table_id int not null, copy_tick bigint not null, rows bigint not null,
                                copied_at timestamptz not null default now(), primary key (sub_uuid, table_id));
    create unlogged table dbsync.unlogged_intact (sub_uuid uuid primary key);
    grant usage on schema dbsync to ${role}; grant select, insert, update, delete on all tables in schema dbsync to ${role}`);
  const columns = "select string_agg(attname, ',' order by attnum) from pg_attribute where attrelid = 'dbsync.applied'::regclass and attnum > 0";
  const asRole = await connectAs(env.targetUrl, role);
  try {
    // Owned by a superuser: trusted, but the role may not alter it.
    const refused = await ensureTargetSchema(asRole).then(() => undefined, (e: unknown) => e);
    assert.ok(refused instanceof DbsyncError, `not refused as it should be: ${String(refused)}`);
    assert.equal(refused.context.sqlstate, "42501");
    assert.match(refused.message, /dbsync\.applied lacks the columns tick_key and key_tick/);
    assert.match(refused.context.hint ?? "", /ALTER TABLE dbsync\.applied ADD COLUMN IF NOT EXISTS tick_key bigint, ADD COLUMN IF NOT EXISTS key_tick bigint/);
    assert.equal(await value(env.target, columns), "sub_uuid,subscription,tick_id,applied_at");
    // Given to the role, the sidecar adds them itself.
    await env.target.query(`alter schema dbsync owner to ${role}; alter table dbsync.applied owner to ${role};
      alter table dbsync.copied owner to ${role}; alter table dbsync.unlogged_intact owner to ${role}`);
    await ensureTargetSchema(asRole);
    assert.equal(await value(env.target, columns), "sub_uuid,subscription,tick_id,applied_at,tick_key,key_tick");
    await ensureTargetSchema(asRole);
  } finally {
    await asRole.end();
  }
});
