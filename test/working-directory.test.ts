// dbsync's commands run wherever a DBA starts them, /tmp included, where anyone may
// write: a file a library looks for in the working directory or its parents must
// not make them run someone else's code (graphile-worker's config file, which may
// be JavaScript: src/graphile-worker.ts).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { WORKER_MIN_MAJOR } from "../src/migrate";
import { freshEnv, SOURCE_MAJOR, value } from "./helpers";
import { spawnDbsync } from "./kit/dbsync";

test("dbsync migrate run below a directory holding a .graphile-workerrc.js does not run it", {
  skip: SOURCE_MAJOR < WORKER_MIN_MAJOR && `graphile-worker needs PostgreSQL ${WORKER_MIN_MAJOR}`,
}, async () => {
  const env = await freshEnv("workdir_migrate", { migrate: false });
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-rc-"));
  try {
    const cwd = path.join(parent, "work");
    fs.mkdirSync(cwd);
    const marker = path.join(parent, "ran");
    fs.writeFileSync(path.join(parent, ".graphile-workerrc.js"), `require("fs").writeFileSync(${JSON.stringify(marker)}, "x"); module.exports = {};\n`);
    const m = spawnDbsync(["migrate", "--source", env.sourceUrl], { cwd });
    assert.equal(await m.exited, 0, m.output());
    assert.equal(await value(env.source, "select count(*)::int from dbsync.migrations") > 0, true);
    assert.equal(fs.existsSync(marker), false, "dbsync migrate ran the config file of a parent of its working directory");
  } finally {
    fs.rmSync(parent, { recursive: true, force: true });
  }
});
