// Acceptance: row level security on either side. A policy that the sidecar's roles
// are subject to is a table owner's code and would hide rows: the copy, a batch's
// reads and its writes must fail loudly (dbsync.status), never leave the target
// with fewer or older rows while wait_for_sync says it is in sync.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { test } from "node:test";
import { REPLICA_MODE_FUNCTION } from "../src/target/progress";
import { Env, TARGET_MAJOR, freshEnv, startSidecar, until, value } from "./helpers";
import { assertTablesEqual, status } from "./kit/convergence";
import { asRole, rolesDroppedAfter } from "./kit/roles";

const sfx = crypto.randomBytes(4).toString("hex");
const made = rolesDroppedAfter();

/** A login role on the server of `url`, dropped after the file. */
async function role(env: Env, side: "source" | "target", name: string): Promise<string> {
  const r = `acc2_${name}_${sfx}`;
  await env[side].query(`create role ${r} login`);
  made.push({ url: side === "source" ? env.sourceUrl : env.targetUrl, role: r });
  return r;
}

/** In sync with every table equal, or the subscription in error; which, and the error. */
async function equalOrLoud(env: Env, tables: string[]): Promise<string | null> {
  let err: string | null = null;
  await until("applied, or an error", async () => {
    if ((await value(env.source, "select dbsync.wait_for_sync('s', '2 s')")) === true) return true;
    err = (await status(env))?.last_error ?? null;
    return err !== null;
  }, 90_000);
  if (err === null) await assertTablesEqual(env.source, env.target, tables, "in sync");
  return err;
}

test("a source table with a policy hiding rows from the sidecar's role (ENABLE ROW LEVEL SECURITY): the copy and the stream fail loudly, never copy fewer rows", async () => {
  const env = await freshEnv("acc2_rls_source");
  const sidecarRole = await role(env, "source", "sidecar");
  await env.source.query(`select dbsync.grant_sidecar('${sidecarRole}')`);
  const ddl = "create table t (id int primary key, v text); create table plain (id int primary key)";
  await env.source.query(`${ddl}; insert into t select g, 'v' || g from generate_series(1, 20) g; insert into plain values (1)`);
  await env.target.query(ddl);
  // The policy shows the sidecar's role the even rows only; the owner (dbsync's, a superuser here) sees them all.
  await env.source.query(`alter table t enable row level security; create policy evens on t for select using (id % 2 = 0)`);
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_table('plain', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(asRole(env.sourceUrl, sidecarRole), ["--poll-interval", "200"]);
  try {
    const first = await equalOrLoud(env, ["t", "plain"]);
    assert.match(first ?? "", /row-level security/, "the copy of t did not fail, or failed for another reason");
    // The source's error, not the target's: no advice about the target role.
    assert.match(first ?? "", /source raised it/);
    assert.doesNotMatch(first ?? "", /target role/);
    // Once the policy is gone, the copy and the rows written meanwhile arrive (the
    // error stays in dbsync.status until the retry succeeds).
    await env.source.query("update t set v = 'later' where id <= 5; delete from t where id = 20; insert into plain values (2)");
    await env.source.query("drop policy evens on t; alter table t disable row level security");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '90 s')"), true, "in sync once the policy is gone");
    await assertTablesEqual(env.source, env.target, ["t", "plain"], "once the policy is gone");
    // A policy added while it streams (FORCE: the owner's too).
    await env.source.query(`alter table t enable row level security; alter table t force row level security;
      create policy odds on t for select using (id % 2 = 1)`);
    await env.source.query("update t set v = 'hidden?' where id in (2, 3); insert into t values (100, 'new')");
    const streaming = await equalOrLoud(env, ["t", "plain"]);
    assert.match(streaming ?? "", /row-level security/, "the batch read t under the policy");
  } finally {
    await sidecar.stop();
  }
});

test("a target table owned by another role with a policy the sidecar's target role is subject to: writes fail loudly, never skip rows", async () => {
  const env = await freshEnv("acc2_rls_target");
  const applier = await role(env, "target", "applier");
  const db = new URL(env.targetUrl).pathname.slice(1);
  await env.target.query(`grant create on database "${db}" to ${applier}`);
  if (TARGET_MAJOR >= 15) await env.target.query(`grant set on parameter session_replication_role to ${applier}`);
  else await env.target.query(`create schema dbsync authorization ${applier}; ${REPLICA_MODE_FUNCTION}; grant execute on function dbsync.enter_replica_mode() to ${applier}`);
  const ddl = "create table t (id int primary key, v text)";
  await env.source.query(`${ddl}; insert into t select g, 'v' || g from generate_series(1, 20) g`);
  // The table belongs to the target's superuser; the applier may write it, under a policy
  // that lets it see and write ids up to 10 only.
  await env.target.query(`${ddl}; grant select, insert, update, delete, truncate on t to ${applier};
    alter table t enable row level security; create policy low on t using (id <= 10) with check (id <= 10)`);
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [asRole(env.targetUrl, applier)]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    const first = await equalOrLoud(env, ["t"]);
    assert.match(first ?? "", /row-level security/, "the copy into t did not fail, or failed for another reason");
    // Without the policy's WITH CHECK: still one the applier is subject to.
    await env.target.query("drop policy low on t; create policy low on t using (id <= 10)");
    await env.source.query("update t set v = 'changed' where id > 5; delete from t where id in (9, 19)");
    // (The first error stays in dbsync.status: the retries must keep failing, never report in sync.)
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '10 s')"), false, "the target's writes went through its policy");
    assert.match((await status(env))?.last_error ?? "", /row-level security/);
  } finally {
    await sidecar.stop();
  }
});
