// The sidecar killed with SIGKILL at random moments, again and again, while several
// clients write: once it runs again the target equals the source, and every
// inserted row arrived exactly once (an ALWAYS trigger on the target counts the
// inserts that apply transactions commit, so a batch applied twice would show even
// though the delete-then-insert apply would hide it in the table itself).
import assert from "node:assert/strict";
import { test } from "node:test";
import { SOURCE_DDL, TARGET_AUDIT, Workload } from "./kit/workload";
import { compat, freshEnv, seeded, sleep, startSidecar, until, value } from "./helpers";

test("SIGKILL at random moments under concurrent writes: nothing lost, nothing applied twice", async (t) => {
  const env = await freshEnv("sidecar_kill");
  await env.source.query(SOURCE_DDL("ins_only", "kv"));
  await env.target.query(SOURCE_DDL("ins_only", "kv") + compat(TARGET_AUDIT("ins_only"), "target"));
  await env.source.query("select dbsync.add_table('ins_only', 'k'), dbsync.add_table('kv', 'k')");
  await env.source.query("select dbsync.add_subscription('ks', 'k', $1, copy_data => false)", [env.targetUrl]);
  const args = ["--poll-interval", "100"];
  const appliedTick = () => value<number>(env.target, "select coalesce(max(tick_id), 0)::int from dbsync.applied").catch(() => 0);

  const rng = seeded("sidecar-kill");
  const load = new Workload(env.source, { rng, insertTable: "ins_only", kvTable: "kv", crossTable: true }).start();
  const KILLS = 20;
  let midApply = 0;
  let lastOutput = "";
  try {
    const t0 = Date.now();
    for (let i = 0; i < KILLS; i++) {
      const sidecar = startSidecar(env.sourceUrl, args, { DBSYNC_LOG_LEVEL: "info" });
      // Most lives are counted from the moment the sidecar runs, so that it dies while
      // applying; every fourth one dies at a random moment of its start-up.
      if (i % 4 !== 3) {
        await until("sidecar running", async () => sidecar.output().includes("dbsync sidecar running") || sidecar.proc.exitCode !== null, 20000).catch((err: Error) => {
          throw new Error(`${err.message} (life ${i + 1}); the sidecar printed:\n${sidecar.output()}`);
        });
        assert.equal(sidecar.proc.exitCode, null, sidecar.output());
      }
      // Every batch reads all that committed since the target's position, so a
      // backlog is one batch: half the lives last until it commits (and a moment
      // more), however busy the machine, or the kills would only ever roll the same
      // growing batch back.
      if (i % 2 === 0) await sleep(rng.int(100, 700));
      else {
        const before = await appliedTick();
        await until("a batch applied", async () => (await appliedTick()) > before, 60_000).catch(() => undefined);
        await sleep(rng.int(0, 1500));
      }
      const busy = await value<number>(
        env.target,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and xact_start is not null",
      );
      if (busy > 0) midApply++;
      sidecar.proc.kill("SIGKILL");
      await sidecar.stop(); // resolves once it is gone
      lastOutput = sidecar.output();
    }
    const killPhaseMs = Date.now() - t0;
    const tickAfterKills = await appliedTick();
    await load.stop();

    // Started once more, it catches up by itself.
    const final = startSidecar(env.sourceUrl, args);
    try {
      const tw = Date.now();
      const ok = await value(env.source, "select dbsync.wait_for_sync('ks', '90 s')");
      const catchUpMs = Date.now() - tw;
      assert.equal(ok, true, final.output() + lastOutput);
      t.diagnostic(
        `${KILLS} kills (${midApply} with an apply transaction open on the target); ` +
          `target reached tick ${tickAfterKills} during the kills (${killPhaseMs} ms); ${load.insertedRows} rows inserted, ` +
          `${load.churnTransactions} kv transactions; the last sidecar caught up in ${catchUpMs} ms`,
      );
      assert.ok(tickAfterKills > 5, `the killed sidecars applied almost nothing (tick ${tickAfterKills})`);
      assert.equal(load.unsureTransactions, 0, "a commit went unanswered");
      // Equal, and each row of ins_only inserted by exactly one committed apply.
      assert.deepEqual(await load.problems(env.source, env.target), []);
    } finally {
      assert.equal(await final.stop(), 0, final.output());
    }
  } finally {
    await load.stop().catch(() => undefined);
  }
});
