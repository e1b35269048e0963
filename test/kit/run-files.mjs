// The test files of `npm test`, run by node:test's run() in the order test/run.ts gives
// them (`node --test` sorts its files by name, so the longest could not start first),
// DBSYNC_TEST_CONCURRENCY at once, reported by the spec reporter and then by
// kit/durations.mjs. Started as `node --require tsx/cjs test/kit/run-files.mjs FILE...`:
// each file's process gets the same --require. Plain JavaScript: it loads the
// reporters, which node loads before tsx's hooks are in place.
import process from "node:process";
import { PassThrough } from "node:stream";
import { run } from "node:test";
import { spec } from "node:test/reporters";
import durations from "./durations.mjs";

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
  if (e.type === "test:fail") failed++;
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
