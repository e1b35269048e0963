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
