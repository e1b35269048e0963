// Acceptance: what a replicated table's owner may do to dbsync's capture triggers
// on its table outside execute_ddl; writes made after it must not vanish silently.
import { test } from "node:test";
import { freshEnv, startSidecar } from "./helpers";
import { convergedOrError, setup, synced } from "./kit/convergence";

for (const [label, ddl, write] of [
  ["ENABLE TRIGGER (origin mode only), then a write in replica mode", "alter table t enable trigger dbsync_capture_ins", "begin; set local session_replication_role = replica; insert into t values (2, 'two'); commit"],
  ["ENABLE TRIGGER ALL (origin mode only), then a write in replica mode", "alter table t enable trigger all", "begin; set local session_replication_role = replica; insert into t values (2, 'two'); update t set v = 'x' where id = 1; commit"],
  ["DROP TRIGGER of a capture trigger", "drop trigger dbsync_capture_ins on t", "insert into t values (2, 'two')"],
  ["ALTER TRIGGER ... RENAME, then DROP TRIGGER", "alter trigger dbsync_capture_ins on t rename to mine; drop trigger mine on t", "insert into t values (2, 'two')"],
] as const) {
  test(`a table owner's ${label}`, async () => {
    const env = await freshEnv("acc_owner_trig");
    await setup(env, "create table t (id int primary key, v text)", ["t"]);
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
    try {
      await env.source.query("insert into t values (1, 'one')");
      await synced(env);
      // Refused, or undone by dbsync: either way the next write reaches the target.
      await env.source.query(ddl).catch((err: Error) => console.log(`# refused: ${err.message}`));
      await env.source.query(write);
      await convergedOrError(env, ["t"]);
    } finally {
      await sidecar.stop();
    }
  });
}
