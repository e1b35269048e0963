// Acceptance: sequences as applications and other replicators' regression suites
// use them (pglogical's and Londiste's carry descending sequences and setval), each
// compared on both sides after wait_for_sync said the target had everything.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, freshEnv, startSidecar, value } from "./helpers";
import { setup, synced } from "./kit/convergence";

/** The value the next nextval() of `seq` starts after, on one side. */
async function lastUsed(env: Env, side: "source" | "target", seq: string): Promise<string> {
  return value<string>(env[side], `select last_value::text from ${seq}`);
}

test("a descending sequence: the target follows it down, and wait_for_sync waits for it", async () => {
  const env = await freshEnv("accept_seq_desc");
  await setup(env, "create sequence down increment by -1 start with -1 maxvalue -1; create table t (id int primary key)", ["t"]);
  await env.source.query("select dbsync.add_sequence('down', 'g')");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("select nextval('down') from generate_series(1, 3)");
    await env.source.query("insert into t values (1)");
    await synced(env);
    assert.equal(await lastUsed(env, "target", "down"), "-3");
    // Further down: a cutover now must not hand out -4 .. -50 again on the target.
    await env.source.query("select nextval('down') from generate_series(1, 47)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '20 s')"), true);
    assert.equal(await lastUsed(env, "target", "down"), await lastUsed(env, "source", "down"),
      "wait_for_sync returned true but the target's descending sequence is behind the source's");
  } finally {
    await sidecar.stop();
  }
});

/**
 * `sql` on the source; then wait_for_sync says the target has everything, and the
 * target's next nextval of each of `seqs` gives what the source's gives. Both are
 * called, and the source's call is carried before the next step: the target's own
 * call, as after a failover, is one dbsync does not know of, and the state it left
 * must be the one dbsync set.
 */
async function sameNextAfter(env: Env, sql: string, seqs: string[], label: string, sub = "s"): Promise<void> {
  await env.source.query(sql);
  assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '20 s')", [sub]), true, `${label}: wait_for_sync`);
  for (const seq of seqs) {
    const target = await value<string>(env.target, `select nextval('${seq}')::text`);
    const source = await value<string>(env.source, `select nextval('${seq}')::text`);
    assert.equal(target, source, `${label}: the target's next ${seq} after wait_for_sync said true`);
  }
  assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '20 s')", [sub]), true, `${label}: wait_for_sync after`);
}

/** A sidecar runs `body`, and is stopped after it. */
async function running(env: Env, body: () => Promise<void>): Promise<void> {
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await body();
  } finally {
    await sidecar.stop();
  }
}

/** Sequence sq carried by group g (its subscription s without tables of use). */
async function carriedSq(label: string): Promise<Env> {
  const env = await freshEnv(label);
  await setup(env, "create sequence sq; create table t (id int primary key)", ["t"]);
  await env.source.query("select dbsync.add_sequence('sq', 'g')");
  return env;
}

test("setval with is_called false, RESTART, is_called back and forth: the target's next nextval is the source's", async () => {
  const env = await carriedSq("accept_seq_setval");
  await running(env, async () => {
    await sameNextAfter(env, "select nextval('sq') from generate_series(1, 40)", ["sq"], "nextval x40");
    // pg_sequence_last_value() is NULL while is_called is false: none of these was carried.
    await sameNextAfter(env, "select setval('sq', 500, false)", ["sq"], "setval higher, is_called false");
    await sameNextAfter(env, "select setval('sq', 3, false)", ["sq"], "setval lower, is_called false");
    await sameNextAfter(env, "select setval('sq', 2)", ["sq"], "setval lower, is_called true");
    await sameNextAfter(env, "select setval('sq', 60)", ["sq"], "setval 60");
    await sameNextAfter(env, "select setval('sq', 60, false)", ["sq"], "setval 60 is_called false");
    await sameNextAfter(env, "select setval('sq', 60, true)", ["sq"], "setval 60 is_called true again");
    await sameNextAfter(env, "alter sequence sq restart", ["sq"], "alter sequence restart");
    await sameNextAfter(env, "alter sequence sq restart with 1000", ["sq"], "alter sequence restart with 1000");
    await env.source.query("select dbsync.pause('s')");
    await env.source.query("select setval('sq', 7, false)");
    await sameNextAfter(env, "select dbsync.resume('s')", ["sq"], "setval while paused");
  });
});

test("a sequence whose INCREMENT, MAXVALUE or CYCLE changed on the source only: the target's next nextval is the source's", async () => {
  const env = await carriedSq("accept_seq_alter");
  await running(env, async () => {
    await sameNextAfter(env, "select nextval('sq') from generate_series(1, 5)", ["sq"], "nextval x5");
    await sameNextAfter(env, "alter sequence sq increment by 10", ["sq"], "increment 10 on the source only");
    // The source's next wraps to its minvalue; the target's own sequence does not cycle.
    await sameNextAfter(env, "alter sequence sq increment by 1 maxvalue 100 cycle; select setval('sq', 100)", ["sq"],
      "at maxvalue, cycling on the source only");
  });
});

test("identity and serial columns after TRUNCATE ... RESTART IDENTITY and a RESTART of the identity", async () => {
  const env = await freshEnv("accept_seq_identity");
  await setup(env, `create table i (id int generated always as identity primary key, v int);
                    create table sr (id serial primary key, v int)`, ["i", "sr"]);
  await running(env, async () => {
    await sameNextAfter(env, "insert into i (v) select g from generate_series(1, 30) g; insert into sr (v) select g from generate_series(1, 30) g", ["i_id_seq", "sr_id_seq"], "30 rows each");
    await sameNextAfter(env, "truncate i, sr restart identity", ["i_id_seq", "sr_id_seq"], "truncate restart identity");
    await env.source.query("truncate i, sr restart identity");
    await sameNextAfter(env, "insert into i (v) values (1); insert into sr (v) values (1)", ["i_id_seq", "sr_id_seq"], "truncate restart identity, one row each");
    await sameNextAfter(env, "alter table i alter column id restart with 500", ["i_id_seq"], "identity restart with 500");
  });
});

test("a sequence owned by a table of another group, used by this group's table", async () => {
  const env = await freshEnv("accept_seq_other_group");
  const ddl = "create table o (id serial primary key); create table t (id int primary key default nextval('o_id_seq'))";
  await setup(env, ddl, ["t"]);
  await env.source.query("select dbsync.add_table('o', 'g2')");
  await env.source.query("select dbsync.add_subscription('s2', 'g2', $1, copy_data => false)", [env.targetUrl]);
  await running(env, async () => {
    await sameNextAfter(env, "insert into t select from generate_series(1, 25)", ["o_id_seq"], "used by the other group's table", "s2");
    await sameNextAfter(env, "truncate o restart identity", ["o_id_seq"], "its table truncated with restart identity", "s2");
  });
});
