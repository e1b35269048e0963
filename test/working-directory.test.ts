// dbsync's commands run wherever a DBA starts them, /tmp included, where anyone may
// write: files a library looks for in the working directory or its parents must
// not make them run someone else's code or tasks (graphile-worker's config file,
// which may be JavaScript, and its crontab: src/graphile-worker.ts, src/sidecar/jobs.ts).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { freshEnv, until, value } from "./helpers";
import { spawnDbsync } from "./kit/dbsync";
import { DEBUG_JSON, logMessages, NO_WORKER, oneSubscription } from "./kit/sidecar-start";

/**
 * A working directory below one that holds a .graphile-workerrc.js (cosmiconfig
 * searches upwards) which writes `marker` when it runs; `fn` gets both, and the
 * directories are removed after.
 */
async function belowConfigTrap(fn: (cwd: string, marker: string) => Promise<void>): Promise<void> {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-rc-"));
  try {
    const cwd = path.join(parent, "work");
    fs.mkdirSync(cwd);
    const marker = path.join(parent, "ran");
    fs.writeFileSync(path.join(parent, ".graphile-workerrc.js"), `require("fs").writeFileSync(${JSON.stringify(marker)}, "x"); module.exports = {};\n`);
    // A task of dbsync's every minute, with a payload of somebody else's choosing.
    fs.writeFileSync(path.join(cwd, "crontab"), '* * * * * sync ?fill=1h {"subscription":"s"}\n');
    await fn(cwd, marker);
  } finally {
    fs.rmSync(parent, { recursive: true, force: true });
  }
}

test("dbsync run below a .graphile-workerrc.js and in a directory with a crontab: runs neither, and replicates", { skip: NO_WORKER }, async () => {
  const env = await oneSubscription("workdir_run");
  await belowConfigTrap(async (cwd, marker) => {
    const s = spawnDbsync(["run", "--source", env.sourceUrl, "--poll-interval", "200"], { cwd, env: DEBUG_JSON });
    try {
      await until("the job runner started", async () => logMessages(s).includes("job runner started"), 30_000);
      assert.equal(fs.existsSync(marker), false, "graphile-worker ran the config file of a parent of the working directory");
      const known = await value(env.source, "select count(*)::int from dbsync_worker._private_known_crontabs");
      assert.equal(known, 0, `graphile-worker took the crontab of the working directory\n${s.output()}`);
      await env.source.query("insert into t values (1, 1)");
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true, s.output());
    } finally {
      await s.stop();
    }
  });
});

test("dbsync migrate run below a directory holding a .graphile-workerrc.js does not run it", { skip: NO_WORKER }, async () => {
  const env = await freshEnv("workdir_migrate", { migrate: false });
  await belowConfigTrap(async (cwd, marker) => {
    const m = spawnDbsync(["migrate", "--source", env.sourceUrl], { cwd });
    assert.equal(await m.exited, 0, m.output());
    assert.ok(Number(await value(env.source, "select count(*)::int from dbsync.migrations")) > 0, "dbsync is installed");
    assert.equal(fs.existsSync(marker), false, "dbsync migrate ran the config file of a parent of its working directory");
  });
});
