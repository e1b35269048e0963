// A node:test reporter that test/run.ts adds to the spec reporter: at the end of a
// run, the slowest test files, to say where the suite's time goes. Plain JavaScript:
// node loads reporters before tsx's hooks are in place.
import path from "node:path";

export default async function* durations(source) {
  const perFile = new Map();
  for await (const e of source) {
    if ((e.type !== "test:pass" && e.type !== "test:fail") || e.data.nesting !== 0 || !e.data.file) continue;
    // Tests of one file run one after another: their durations add up to the file's.
    perFile.set(e.data.file, (perFile.get(e.data.file) ?? 0) + (e.data.details?.duration_ms ?? 0));
  }
  const slowest = [...perFile.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  if (!slowest.length) return;
  yield "\nslowest test files (s, the tests of a file one after another):\n";
  for (const [file, ms] of slowest) yield `  ${(ms / 1000).toFixed(1).padStart(6)}  ${path.basename(file)}\n`;
}
