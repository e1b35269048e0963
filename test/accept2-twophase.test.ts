// Acceptance: two-phase commit, subtransactions and aborted writers, across a
// SIGKILLed sidecar and the source's crash (an immediate stop). Prepared
// transactions survive crash recovery with their xids in every snapshot until
// COMMIT or ROLLBACK PREPARED: no batch may skip their events, nor apply those of a
// rolled-back one. Private clusters (they restart).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "pg";
import { migrate } from "../src/migrate";
import { createDatabase, pool, retrying, startSidecar } from "./helpers";
import { assertTablesEqual } from "./kit/convergence";
import { privateClusters } from "./kit/private-clusters";

const clusters = privateClusters();

test("prepared transactions committed and rolled back after a SIGKILLed sidecar and the source's crash, subtransactions, a deadlock victim", async () => {
  const ddl = "create table t (id int primary key, v text); create table u (id int primary key, n int not null)";
  const [sourceUrl, targetUrl] = await Promise.all([createDatabase(clusters.source().url(), "acc2_2pc"), createDatabase(clusters.target().url(), "acc2_2pc")]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  await src.query(ddl);
  await dst.query(ddl);
  await src.query("select dbsync.add_table('t', 'g'), dbsync.add_table('u', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1)", [targetUrl]);
  await src.query("insert into t select g, 'v' || g from generate_series(1, 50) g; insert into u values (1, 0), (2, 0)");
  const inSync = async (what: string) =>
    assert.equal(await retrying(async () => (await src.query("select dbsync.wait_for_sync('s', '60 s') as ok")).rows[0].ok), true, what);
  // A session of its own per prepared transaction: PREPARE detaches it from the session.
  const prepare = async (gid: string, sql: string) => {
    const c = new Client({ connectionString: sourceUrl });
    await c.connect();
    try {
      // No setting: capture does not NOTIFY where transactions can be prepared.
      await c.query(`begin; ${sql}; prepare transaction '${gid}'`);
    } finally {
      await c.end();
    }
  };
  let sidecar = startSidecar(sourceUrl, ["--poll-interval", "100", "--rotate-after", "1"]);
  try {
    await inSync("the first copy");
    // Savepoints rolled back around captured writes, and more subtransactions than a snapshot keeps (64).
    const subs = Array.from({ length: 100 }, (_, i) =>
      `savepoint s${i}; insert into t values (${1000 + i}, 'sub'); ${i % 3 === 0 ? `rollback to savepoint s${i};` : `release savepoint s${i};`}`).join(" ");
    await prepare("acc2_commit", `update t set v = 'prepared' where id <= 10; delete from t where id between 11 and 15; ${subs}`);
    await prepare("acc2_rollback", "update t set v = 'rolled back' where id between 20 and 30; delete from t where id > 40; update u set n = 99");
    await src.query(`begin; savepoint a; insert into t values (2000, 'gone'); rollback to savepoint a; insert into t values (2001, 'kept'); ${subs.replace(/1(\d\d\d)/g, "5$1")} commit`);
    await inSync("with two transactions prepared");
    await assertTablesEqual(src, dst, ["t", "u"], "with two transactions prepared");
  } finally {
    await sidecar.stop("SIGKILL");
  }
  // The source crashes with both still prepared; rows keep changing after it.
  await clusters.source().stop("immediate");
  await clusters.source().start();
  await retrying(() => src.query("insert into t values (3000, 'after the crash')"));
  sidecar = startSidecar(sourceUrl, ["--poll-interval", "100", "--rotate-after", "1"]);
  try {
    await inSync("after the crash");
    // Slots rotate and ticks go by while the prepared transactions wait.
    await new Promise((r) => setTimeout(r, 3000));
    await src.query("insert into t values (3001, 'later')");
    await inSync("later");
    await src.query("commit prepared 'acc2_commit'");
    await src.query("rollback prepared 'acc2_rollback'");
    // A deadlock: one of the two writers is rolled back after its first write.
    const [a, b] = [new Client({ connectionString: sourceUrl }), new Client({ connectionString: sourceUrl })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query("begin; update u set n = n + 1 where id = 1");
      await b.query("begin; update u set n = n + 10 where id = 2");
      const outcomes = await Promise.allSettled([
        a.query("update u set n = n + 1 where id = 2").then(() => a.query("commit")),
        b.query("update u set n = n + 10 where id = 1").then(() => b.query("commit")),
      ]);
      assert.equal(outcomes.filter((o) => o.status === "rejected").length, 1, "one deadlock victim");
      await Promise.all([a.query("rollback"), b.query("rollback")]);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
    await inSync("after COMMIT and ROLLBACK PREPARED");
    await assertTablesEqual(src, dst, ["t", "u"], "after COMMIT and ROLLBACK PREPARED");
    assert.equal((await src.query("select last_error from dbsync.status where name = 's'")).rows[0].last_error, null);
  } finally {
    await sidecar.stop();
    await src.query("rollback prepared 'acc2_commit'").catch(() => undefined);
    await src.query("rollback prepared 'acc2_rollback'").catch(() => undefined);
  }
});
