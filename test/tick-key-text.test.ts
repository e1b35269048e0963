// Tick keys (up to 16 digits) whatever the sessions' settings say: a float8's text is
// rounded to 15 digits where extra_float_digits is below 1 (a source database with
// extra_float_digits = 0 made the control session read begin_batch's key rounded,
// and the target recorded another key than its tick's). Migration 0032 makes
// sidecar_subscription return the key as a bigint; every session dbsync opens pins
// extra_float_digits (src/db/settings.ts VALUE_OPTIONS); a sidecar of before 0032
// goes on working after it.
import assert from "node:assert/strict";
import fs from "node:fs";
import { test } from "node:test";
import { loadSubscription } from "../src/source/protocol";
import { Env, freshEnv, rows, startSidecar, value } from "./helpers";
import { assertTablesEqual, setup, status, synced } from "./kit/convergence";
import { oldTree, runAs } from "./kit/migrate-as";

/** A key of 16 digits, not a multiple of 10: what a float8 rounded to 15 digits changes. */
const KEY = "1604879570491282";

/** Table t in subscription s, rows 1 to 10 applied by a sidecar of this tree (then stopped). */
async function syncedTen(label: string): Promise<Env> {
  const env = await freshEnv(label);
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t select g, 'a' from generate_series(1, 10) g");
    await synced(env);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  return env;
}

/** The key of the subscription's position on the source, and the one the target recorded. */
async function keys(env: Env) {
  const source = await value<string>(env.source, "select dbsync._tick_key(group_id, position_tick)::text from dbsync.subscriptions where name = 's'");
  const target = await value<string>(env.target, "select case when key_tick = tick_id then tick_key::text end from dbsync.applied");
  return { source, target };
}

test("sidecar_subscription's position_key is the tick's key to the last digit, in a session with extra_float_digits = 0", async () => {
  const env = await syncedTen("tkey_subscription");
  await env.source.query(
    `update dbsync.ticks k set tick_key = $1 from dbsync.subscriptions s
      where s.name = 's' and k.group_id = s.group_id and k.tick_id = s.position_tick`,
    [KEY],
  );
  const c = await env.source.connect();
  try {
    await c.query("set extra_float_digits = 0");
    assert.equal(await value(c, "select position_key::text from dbsync.sidecar_subscription('s')"), KEY);
    assert.equal((await loadSubscription(c, "s"))?.position_key, Number(KEY));
  } finally {
    c.release(true);
  }
});

// Every statement of the sidecar that moves the subscription's row (its progress,
// from the control sessions; its sleep flag) records the session's settings: none
// may follow the source database's.
test("the sidecar's source sessions, control ones included, run with dbsync's extra_float_digits and DateStyle, not the database's", async () => {
  const env = await freshEnv("tkey_sessions");
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const db = await value<string>(env.source, "select current_database()");
  await env.source.query(`alter database "${db}" set extra_float_digits = 0`);
  await env.source.query(`alter database "${db}" set datestyle = 'SQL, DMY'`);
  await env.source.query(`
    create table seen (app text, efd text, ds text);
    create function see() returns trigger language plpgsql as $$
    begin
      insert into public.seen values (current_setting('application_name'), current_setting('extra_float_digits'), current_setting('datestyle'));
      return null;
    end $$;
    create trigger see after update on dbsync.subscriptions for each statement execute procedure see();`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t select g, 'a' from generate_series(1, 10) g");
    await synced(env);
    await env.source.query("insert into t select g, 'b' from generate_series(11, 20) g");
    await synced(env);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  const seen = await rows<{ app: string; efd: string; ds: string }>(
    env.source,
    "select distinct app, efd, ds from seen where app like 'dbsync%' order by 1, 2, 3",
  );
  assert.ok(seen.some((s) => s.app === "dbsync control"), JSON.stringify(seen));
  assert.deepEqual(seen.filter((s) => s.efd !== "3" || s.ds !== "ISO, YMD"), [], JSON.stringify(seen));
});

// The sidecar of the version before 0032 (c635371) read the key as
// position_key::bigint::text, which a bigint serves as well: it applies after the
// migration, and the target records its tick's key.
test("a sidecar of before migration 0032 applies after it, and the target records its tick's key", async (t) => {
  const env = await syncedTen("tkey_old_sidecar");
  let dir: string;
  try {
    dir = oldTree(BEFORE_0032);
  } catch {
    return t.skip("the git history with the version before 0032 is not here");
  }
  const sidecar = runAs(dir, env.sourceUrl);
  try {
    await env.source.query("insert into t select g, 'old sidecar' from generate_series(11, 20) g");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["t"]);
    assert.equal((await status(env))?.last_error, null);
    const k = await keys(env);
    assert.ok(k.source !== null && k.target === k.source, JSON.stringify(k));
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The version before migration 0032. */
const BEFORE_0032 = "c635371";
