// A node:test reporter that test/run.ts adds to the spec reporter: at the end of a
// run, the slowest test files and the sum of every file's time, to say where the
// suite's time goes. A file's time is its process's, from start to exit (node's
// test:complete event of the file): loading included, and the time it stays after
// its last test, which a timer or handle left open costs (a Promise.race with a 12 s
// sleep kept faults-links 13 s longer); a file with 5 s or more outside its tests is
// named; then the files with the most CPU-seconds (kit/cpu.ts). On a whole-suite
// run (DBSYNC_TEST_DURATIONS_FILE set by run.ts) it writes every file's time to that
// file: the next run starts the longest files first. Plain JavaScript: node loads
// reporters before tsx's hooks are in place.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

/** Time a file may spend outside its tests (loading, hooks, clusters of its own) before it is named. */
const OUTSIDE_MS = 5000;

export default async function* durations(source) {
  const tests = new Map();
  const files = new Map();
  for await (const e of source) {
    if (e.data?.nesting !== 0 || !e.data.file) continue;
    const ms = e.data.details?.duration_ms ?? 0;
    // The file itself (a test named by its path), once its process has exited.
    if (e.type === "test:complete" && e.data.name === e.data.file) files.set(e.data.file, ms);
    // Tests of one file run one after another: their durations add up.
    else if (e.type === "test:pass" || e.type === "test:fail") tests.set(e.data.file, (tests.get(e.data.file) ?? 0) + ms);
  }
  const all = [...new Set([...tests.keys(), ...files.keys()])]
    .map((file) => ({ file, ms: files.get(file) ?? tests.get(file) ?? 0, tests: tests.get(file) ?? 0 }))
    .sort((a, b) => b.ms - a.ms);
  if (!all.length) return;
  const seconds = (ms) => Math.round(ms / 100) / 10;
  const s = (ms) => seconds(ms).toFixed(1).padStart(6);
  yield "\nslowest test files (s, from the start of the file's process to its exit):\n";
  for (const { file, ms } of all.slice(0, 12)) yield `  ${s(ms)}  ${path.basename(file)}\n`;
  const sum = all.reduce((n, f) => n + f.ms, 0);
  yield `  ${s(sum)}  sum over ${all.length} files\n`;
  const outside = all.filter((f) => f.ms - f.tests >= OUTSIDE_MS && files.has(f.file));
  if (outside.length) {
    yield "time outside the tests (s: loading, before/after hooks, or a timer or handle left open that kept the process):\n";
    for (const f of outside) yield `  ${s(f.ms - f.tests)}  ${path.basename(f.file)}\n`;
  }
  yield* cpuTable(process.env.DBSYNC_TEST_CPU_DIR);
  const out = process.env.DBSYNC_TEST_DURATIONS_FILE;
  if (out) {
    const json = Object.fromEntries(all.map(({ file, ms }) => [path.basename(file), seconds(ms)]));
    fs.writeFileSync(out, JSON.stringify(json, null, 1) + "\n");
  }
}

/**
 * The files with the most CPU-seconds (kit/file-cpu.ts records them at each file's
 * exit): the file's own process, and what it started and waited for (sidecars,
 * `dbsync` commands, private clusters). The shared servers' CPU is test/run.ts's to
 * say, for the run as a whole: their backends are not told apart by file.
 */
function* cpuTable(dir) {
  if (!dir) return;
  const all = fs
    .readdirSync(dir)
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")))
    .sort((a, b) => b.self + b.children - (a.self + a.children));
  if (!all.length) return;
  const s = (n) => n.toFixed(1).padStart(6);
  yield "test files with the most CPU-seconds (their own process + what they started: sidecars, commands, private clusters):\n";
  for (const f of all.slice(0, 12)) yield `  ${s(f.self + f.children)} = ${s(f.self)} + ${s(f.children)}  ${path.basename(f.file)}\n`;
  const self = all.reduce((n, f) => n + f.self, 0);
  const children = all.reduce((n, f) => n + f.children, 0);
  yield `  ${s(self + children)} = ${s(self)} + ${s(children)}  sum over ${all.length} files\n`;
}
