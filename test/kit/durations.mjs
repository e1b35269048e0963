// A node:test reporter that test/run.ts adds to the spec reporter: at the end of a
// run, the slowest test files and the sum of every file's time, to say where the
// suite's time goes. On a whole-suite run (DBSYNC_TEST_DURATIONS_FILE set by run.ts)
// it writes every file's time to that file: the next run starts the longest files
// first. Plain JavaScript: node loads reporters before tsx's hooks are in place.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

export default async function* durations(source) {
  const perFile = new Map();
  for await (const e of source) {
    if ((e.type !== "test:pass" && e.type !== "test:fail") || e.data.nesting !== 0 || !e.data.file) continue;
    // Tests of one file run one after another: their durations add up to the file's.
    perFile.set(e.data.file, (perFile.get(e.data.file) ?? 0) + (e.data.details?.duration_ms ?? 0));
  }
  const all = [...perFile.entries()].sort((a, b) => b[1] - a[1]);
  if (!all.length) return;
  const seconds = (ms) => Math.round(ms / 100) / 10;
  yield "\nslowest test files (s, the tests of a file one after another):\n";
  for (const [file, ms] of all.slice(0, 12)) yield `  ${seconds(ms).toFixed(1).padStart(6)}  ${path.basename(file)}\n`;
  const sum = all.reduce((s, [, ms]) => s + ms, 0);
  yield `  ${seconds(sum).toFixed(1).padStart(6)}  sum over ${all.length} files\n`;
  const out = process.env.DBSYNC_TEST_DURATIONS_FILE;
  if (out) {
    const json = Object.fromEntries(all.map(([file, ms]) => [path.basename(file), seconds(ms)]));
    fs.writeFileSync(out, JSON.stringify(json, null, 1) + "\n");
  }
}
