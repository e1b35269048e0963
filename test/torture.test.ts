// A short run of the seeded divergence workload (test/torture/engine.ts) inside
// `npm test`: four writers at every isolation level, application triggers, deferrable
// keys, writable CTEs, TRUNCATE, long REPEATABLE READ transactions, DDL through
// execute_ddl, resync_table, pause/resume and sidecar SIGKILLs, two subscriptions of
// one group (one with an initial copy racing the writes); then every table is compared
// row by row with both targets. The long form is `npm run torture -- --minutes N`.
//
// Replay a failing run with DBSYNC_SEED=<seed printed below>. Narrow it with
// DBSYNC_TORTURE_DDL / _FAULTS / _OPS / _TABLES (comma lists, "none" or "all") and
// DBSYNC_TORTURE_SECONDS (workload length, default 45).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { createDatabase } from "./helpers";
import { runSeed } from "./kit/random";
import { DDL_KINDS, FAULT_KINDS, OP_KINDS, TABLES, parseKinds, runTorture, summary } from "./torture/engine";

test("torture: seeded random workload with DDL, resyncs, pauses and sidecar kills; both targets equal the source", async () => {
  const src = process.env.DBSYNC_TEST_SOURCE_URL;
  const tgt = process.env.DBSYNC_TEST_TARGET_URL;
  if (!src || !tgt) throw new Error("run the tests with `npm test`: it starts the PostgreSQL clusters");
  const seed = runSeed();
  const seconds = Number(process.env.DBSYNC_TORTURE_SECONDS ?? 45);
  console.log(`torture seed ${seed} (replay: DBSYNC_SEED=${seed} npm test -- torture)`);
  const [sourceUrl, t1, t2] = await Promise.all([
    createDatabase(src, "torture_src"),
    createDatabase(tgt, "torture_t1"),
    createDatabase(tgt, "torture_t2"),
  ]);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-torture-"));
  const result = await runTorture({
    sourceUrl,
    targetUrls: [t1, t2],
    seed,
    durationMs: seconds * 1000,
    // Every DDL kind, fault and operation unless narrowed by the environment.
    ddl: parseKinds("ddl", process.env.DBSYNC_TORTURE_DDL, DDL_KINDS),
    faults: parseKinds("fault", process.env.DBSYNC_TORTURE_FAULTS, FAULT_KINDS),
    ops: parseKinds("op", process.env.DBSYNC_TORTURE_OPS, OP_KINDS),
    tables: parseKinds("table", process.env.DBSYNC_TORTURE_TABLES, TABLES),
    waitSeconds: 120,
    workDir,
    log: () => undefined,
  });
  const text = summary(result);
  console.log(text);
  assert.ok(result.ok, text);
  fs.rmSync(workDir, { recursive: true, force: true });
});
