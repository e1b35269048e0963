// The test files of `npm test`, run by node:test's run() in the order test/run.ts gives
// them (`node --test` sorts its files by name, so the longest could not start first),
// DBSYNC_TEST_CONCURRENCY at once, reported by the spec reporter and then by
// kit/durations.mjs. Started as `node --require tsx/cjs test/kit/run-files.mjs FILE...`:
// each file's process gets the same --require. Plain JavaScript: it loads the
// reporters, which node loads before tsx's hooks are in place.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { PassThrough } from "node:stream";
import { run } from "node:test";
import { spec } from "node:test/reporters";
import pg from "pg";
import durations from "./durations.mjs";

/**
 * Drops the databases of the test files whose process has ended (each process lists
 * its own in DBSYNC_TEST_DATABASES_DIR, see kit/databases.ts): the clusters then hold
 * the databases of the files running, not the 300 of a whole run, 3 GB each (in
 * memory, see test/run.ts), which the end of the run would delete.
 */
function dropEnded() {
  const dir = process.env.DBSYNC_TEST_DATABASES_DIR;
  if (!dir) return;
  for (const pid of fs.readdirSync(dir)) {
    if (alive(Number(pid))) continue;
    const file = path.join(dir, pid);
    const byCluster = new Map();
    for (const line of fs.readFileSync(file, "utf8").split("\n").filter(Boolean)) {
      const [url, name] = JSON.parse(line);
      byCluster.set(url, [...(byCluster.get(url) ?? []), name]);
    }
    fs.rmSync(file);
    for (const [url, names] of byCluster) void drop(url, names);
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function drop(url, names) {
  const c = new pg.Client({ connectionString: url, application_name: "dbsync test drop" });
  c.on("error", () => undefined);
  try {
    await c.connect();
    // Before 13 no FORCE: a database some killed sidecar's session still holds stays, the end of the run deletes it.
    const force = Number((await c.query("show server_version_num")).rows[0].server_version_num) >= 130000 ? " with (force)" : "";
    for (const name of names) await c.query(`drop database if exists "${name}"${force}`).catch(() => undefined);
  } catch {
    // A file's private cluster, stopped with its process.
  } finally {
    await c.end().catch(() => undefined);
  }
}

const files = process.argv.slice(2);
const events = run({
  files,
  // Files at once: 3 on 2 CPUs, as a file works about half of its time and waits for
  // the rest (a sidecar's poll, a timeout it proves): 20 files took 218 s at 3 at once
  // and 325 s at 2 (2026-12-03, 183 and 194 CPU-s, the same tests passed).
  concurrency: Number(process.env.DBSYNC_TEST_CONCURRENCY ?? 3),
  // DBSYNC_TEST_NAME=regex runs only the tests whose name matches.
  ...(process.env.DBSYNC_TEST_NAME ? { testNamePatterns: [new RegExp(process.env.DBSYNC_TEST_NAME)] } : {}),
});
const toSpec = new PassThrough({ objectMode: true });
const toDurations = new PassThrough({ objectMode: true });
let failed = 0;
events.on("data", (e) => {
  // A test marked todo (a known break, kept as its test) fails without failing the run, as with node --test.
  if (e.type === "test:fail" && !e.data.todo) failed++;
  // A file's own test:complete comes once its process has exited.
  if (e.type === "test:complete" && e.data.nesting === 0 && e.data.name === e.data.file) dropEnded();
  toSpec.write(e);
  toDurations.write(e);
});
events.on("end", () => {
  toSpec.end();
  toDurations.end();
});
let summary = "";
const summed = (async () => {
  for await (const line of durations(toDurations)) summary += line;
})();
const reported = toSpec.compose(spec);
reported.pipe(process.stdout, { end: false });
reported.on("end", async () => {
  await summed;
  process.stdout.write(summary);
  process.exitCode = failed ? 1 : 0;
});
