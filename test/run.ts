// `npm test`: start a source and a target cluster (majors from DBSYNC_PG_MAJOR,
// default 17, and DBSYNC_PG_TARGET_MAJOR, default the source's), run every test
// file with node's test runner against them, and stop both clusters whatever
// happens. Arguments narrow the run to matching files, DBSYNC_TEST_NAME (a regular
// expression) to matching test names.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { reapOrphans, startCluster, stopAll, targetMajorFromEnv } from "../src/embedded/cluster";

async function main() {
  reapOrphans();
  const filters = process.argv.slice(2);
  const dir = __dirname;
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".test.ts"))
    .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)))
    .sort()
    .map((f) => path.join(dir, f));
  const [source, target] = await Promise.all([startCluster(), startCluster({ major: targetMajorFromEnv() })]);
  console.log(
    `PostgreSQL ${source.major} source on port ${source.port}, PostgreSQL ${target.major} target on port ${target.port}`,
  );
  const child = spawn(
    process.execPath,
    [
      "--import", "tsx", "--test", "--test-concurrency=2", "--test-reporter=spec",
      // DBSYNC_TEST_NAME=regex runs only the tests whose name matches.
      ...(process.env.DBSYNC_TEST_NAME ? [`--test-name-pattern=${process.env.DBSYNC_TEST_NAME}`] : []),
      ...files,
    ],
    {
      stdio: "inherit",
      env: {
        ...process.env,
        DBSYNC_TEST_SOURCE_URL: source.url(),
        DBSYNC_TEST_TARGET_URL: target.url(),
        DBSYNC_TEST_SOURCE_DATA: source.dataDir,
        DBSYNC_TEST_TARGET_DATA: target.dataDir,
        DBSYNC_TEST_SOURCE_MAJOR: String(source.major),
        DBSYNC_TEST_TARGET_MAJOR: String(target.major),
      },
    },
  );
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  const code: number = await new Promise((r) => child.once("exit", (c, s) => r(c ?? (s ? 1 : 0))));
  await stopAll();
  process.exit(code);
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
