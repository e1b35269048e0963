// `npm test`: build dist/ if it is older than src/ (the tests run `bin/dbsync.js`,
// the built code), start a source and a target cluster (on /dev/shm when it has
// room, see memoryClustersDir; majors from DBSYNC_PG_MAJOR,
// default 17, and DBSYNC_PG_TARGET_MAJOR, default the source's), migrate a template
// database once, run every test file with node's test runner against them, and stop
// both clusters whatever happens. Arguments narrow the run to matching files,
// DBSYNC_TEST_NAME (a regular expression) to matching test names; DBSYNC_SEED replays
// the random choices of a run (it prints its seed); DBSYNC_TEST_CONCURRENCY sets how
// many files run at once. The longest files start first (their times in
// test/durations.json, which a whole-suite run rewrites): the run does not end on one
// long file left alone at the tail.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Cluster, clustersDir, reapOrphans, startCluster, stopAll, targetMajorFromEnv } from "../src/embedded/cluster";
import { Cpu, cpuSeconds } from "./kit/cpu";
import { createTemplate, TEMPLATE } from "./kit/databases";
import { ensureBuilt } from "./kit/dbsync";
import { runSeed } from "./kit/random";

/** Each test file's seconds in the last whole-suite run (written by kit/durations.mjs). */
const DURATIONS = "durations.json";

/**
 * Longest first, by the last whole run's times; a file it did not have (new) first
 * of all, as it may be long; alphabetical among equals.
 */
function longestFirst(file: string): (a: string, b: string) => number {
  let known: Record<string, number> = {};
  try {
    known = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    // No times yet: alphabetical order.
  }
  const time = (f: string) => known[f] ?? Infinity;
  return (a, b) => time(b) - time(a) || (a < b ? -1 : a > b ? 1 : 0);
}

/** statfs's f_type of a tmpfs. */
const TMPFS_MAGIC = 0x01021994;
/**
 * Room for a whole run's clusters, with a margin: their WAL (up to 1 GB each), the
 * databases of the files running (each file's are dropped when it ends, see
 * kit/run-files.mjs) and the files' private clusters.
 */
const MEMORY_NEEDED = 8 * 2 ** 30;

/**
 * The clusters' folders on /dev/shm when it is a tmpfs with room to spare, in
 * memory and on it; else undefined (the temp folder). The data of a run is thrown
 * away and the servers run with fsync off: a disk adds only its writes and, at the
 * end, the deletion of every database (40 s of a 669 s run, ext4 with `discard`).
 */
function memoryClustersDir(): string | undefined {
  const dir = "/dev/shm";
  try {
    const st = fs.statfsSync(dir);
    return st.type === TMPFS_MAGIC && st.bavail * st.bsize >= MEMORY_NEEDED && os.freemem() >= MEMORY_NEEDED ? dir : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The run's CPU-seconds by where they went: the files' processes with all they
 * started (kit/run-files.mjs's tree, ended), then each server, stopped one after the
 * other (a server's CPU counts once it has exited: its own and its backends').
 * Undefined without /proc.
 */
async function serversCpu(before: Cpu | undefined, source: Cluster, target: Cluster): Promise<string | undefined> {
  const files = cpuSeconds();
  await source.stop("immediate");
  const afterSource = cpuSeconds();
  await target.stop("immediate");
  const afterTarget = cpuSeconds();
  if (!before || !files || !afterSource || !afterTarget) return undefined;
  const s = (n: number) => n.toFixed(0);
  const parts = {
    files: files.children - before.children,
    source: afterSource.children - files.children,
    target: afterTarget.children - afterSource.children,
    run: afterTarget.self,
  };
  const all = Object.values(parts).reduce((a, b) => a + b, 0);
  return (
    `CPU: ${s(all)} CPU-s: the files' processes and what they started ${s(parts.files)}, ` +
    `the source server ${s(parts.source)}, the target server ${s(parts.target)}, this process ${s(parts.run)} ` +
    `(each file's in the table above)`
  );
}

async function main() {
  // DBSYNC_PG_CLUSTERS_DIR given: the caller's choice. The test files inherit it (their private clusters).
  const memory = process.env.DBSYNC_PG_CLUSTERS_DIR ? undefined : memoryClustersDir();
  if (memory) process.env.DBSYNC_PG_CLUSTERS_DIR = memory;
  reapOrphans();
  // A file's path (test/x.test.ts, as a shell completes it) or any part of its name.
  const filters = process.argv.slice(2).map((f) => path.basename(f));
  const dir = __dirname;
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".test.ts"))
    .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)))
    .sort(longestFirst(path.join(dir, DURATIONS)))
    .map((f) => path.join(dir, f));
  if (files.length === 0) {
    console.error(`no test file in ${dir} has a name containing ${filters.join(" or ")}`);
    process.exit(2);
  }
  const wholeSuite = filters.length === 0 && !process.env.DBSYNC_TEST_NAME;
  const seed = runSeed();
  const replay = `DBSYNC_SEED=${seed} npm test${filters.length ? " -- " + filters.join(" ") : ""}`;
  console.log(`seed ${seed} (replay: ${replay})`);
  ensureBuilt();
  const started = Date.now();
  const databasesDir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-test-databases-"));
  const cpuDir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-test-cpu-"));
  // Prepared transactions: the two-phase commit tests (adversarial.test.ts). Where they
  // are allowed capture sends no NOTIFY unless dbsync.notify = on (_capture_notifies):
  // on, the files run as on a server of PostgreSQL's default (none allowed, NOTIFY);
  // capture-twophase.test.ts's private clusters have the rule's default.
  const [source, target] = await Promise.all([
    startCluster({ settings: { max_prepared_transactions: 10, "dbsync.notify": "on" } }),
    startCluster({ major: targetMajorFromEnv() }),
  ]);
  await createTemplate(source.url());
  console.log(
    `PostgreSQL ${source.major} source on port ${source.port}, PostgreSQL ${target.major} target on port ${target.port}, ` +
      `both in ${clustersDir()}; ` +
      `template ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  // tsx's require hook only: its ESM hooks (`--import tsx`) run in a thread of their own
  // that loads tsx again, 0.2 of the 0.5 CPU-second a file's process took to load
  // test/helpers.ts. Without them import() of a .ts module fails: test files import statically.
  // The CPU of what ended before: the build, the clusters' data copies.
  const before = cpuSeconds();
  const child = spawn(
    process.execPath,
    ["--require", "tsx/cjs", "--require", path.join(dir, "kit", "file-cpu.ts"), path.join(dir, "kit", "run-files.mjs"), ...files],
    {
      stdio: "inherit",
      env: {
        ...process.env,
        DBSYNC_SEED: String(seed),
        DBSYNC_TEST_SOURCE_URL: source.url(),
        DBSYNC_TEST_TARGET_URL: target.url(),
        DBSYNC_TEST_SOURCE_DATA: source.dataDir,
        DBSYNC_TEST_TARGET_DATA: target.dataDir,
        DBSYNC_TEST_SOURCE_MAJOR: String(source.major),
        DBSYNC_TEST_TARGET_MAJOR: String(target.major),
        DBSYNC_TEST_TEMPLATE: TEMPLATE,
        // Each file's databases, dropped once it has ended (kit/run-files.mjs).
        DBSYNC_TEST_DATABASES_DIR: databasesDir,
        // Each file's CPU-seconds, reported by kit/durations.mjs (kit/file-cpu.ts).
        DBSYNC_TEST_CPU_DIR: cpuDir,
        // Read by kit/durations.mjs: only a whole run has every file's time.
        ...(wholeSuite ? { DBSYNC_TEST_DURATIONS_FILE: path.join(dir, DURATIONS) } : {}),
      },
    },
  );
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  const code: number = await new Promise((r) => child.once("exit", (c, s) => r(c ?? (s ? 1 : 0))));
  // Said apart: deleting a whole run's databases from a disk took 40 s and more (see memoryClustersDir).
  const stopping = Date.now();
  const cpu = await serversCpu(before, source, target);
  await stopAll();
  fs.rmSync(databasesDir, { recursive: true, force: true });
  fs.rmSync(cpuDir, { recursive: true, force: true });
  if (cpu) console.log(cpu);
  const seconds = (since: number) => ((Date.now() - since) / 1000).toFixed(0);
  console.log(`${code === 0 ? "passed" : "FAILED"} in ${seconds(started)} s (clusters stopped and deleted in ${seconds(stopping)} s); seed ${seed}` +
    (code === 0 ? "" : ` (replay: ${replay})`));
  process.exit(code);
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
