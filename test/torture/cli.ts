// `npm run torture -- --minutes N [--seed S] [--major M] [--ddl add,drop,...|--no-ddl]
//                    [--faults resync,pause,kill|--no-faults] [--ops insert,update,...]
//                    [--tables ti,tc,...] [--writers N] [--keep-logs]`
// Starts its own source and target clusters (as test/run.ts does), runs the seeded
// divergence workload of test/torture/engine.ts against them and exits 1 when a target
// differs from the source or a subscription did not catch up (2 on bad usage).
// Env: DBSYNC_SEED (replay), DBSYNC_PG_MAJOR, DBSYNC_TORTURE_DDL, DBSYNC_TORTURE_FAULTS,
// DBSYNC_TORTURE_OPS, DBSYNC_TORTURE_TABLES (comma lists, "none" or "all").
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { majorFromEnv, reapOrphans, startCluster, stopAll } from "../../src/embedded/cluster";
import { createDatabase } from "../kit/databases";
import { ensureBuilt } from "../kit/dbsync";
import { runSeed } from "../kit/random";
import { DDL_KINDS, FAULT_KINDS, OP_KINDS, TABLES, parseKinds, runTorture, summary } from "./engine";

const USAGE =
  "usage: npm run torture -- --minutes N [--seed S] [--major M] [--ddl kinds|--no-ddl] " +
  "[--faults kinds|--no-faults] [--ops kinds] [--tables names] [--writers N] [--wait-seconds 120] [--keep-logs]\n" +
  `  ddl kinds: ${DDL_KINDS.join(",")}\n  fault kinds: ${FAULT_KINDS.join(",")}\n  op kinds: ${OP_KINDS.join(",")}\n` +
  `  tables: ${TABLES.join(",")}`;

/** `--name value` or `--name=value`. */
function arg(name: string): string | undefined {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return undefined;
}
const flag = (name: string) => process.argv.slice(2).includes(`--${name}`);

async function main(): Promise<number> {
  if (flag("help") || flag("h")) {
    console.log(USAGE);
    return 0;
  }
  const minutes = Number(arg("minutes") ?? 1);
  if (arg("seed") !== undefined) process.env.DBSYNC_SEED = arg("seed");
  const seed = runSeed();
  const major = arg("major") !== undefined ? Number(arg("major")) : majorFromEnv();
  const writers = Number(arg("writers") ?? 4);
  const waitSeconds = Number(arg("wait-seconds") ?? 120);
  let ddl, faults, ops, tables: (typeof TABLES)[number][] | undefined;
  try {
    ddl = flag("no-ddl") ? [] : parseKinds("ddl", arg("ddl") ?? process.env.DBSYNC_TORTURE_DDL, DDL_KINDS);
    faults = flag("no-faults") ? [] : parseKinds("fault", arg("faults") ?? process.env.DBSYNC_TORTURE_FAULTS, FAULT_KINDS);
    ops = parseKinds("op", arg("ops") ?? process.env.DBSYNC_TORTURE_OPS, OP_KINDS);
    tables = parseKinds("table", arg("tables") ?? process.env.DBSYNC_TORTURE_TABLES, TABLES);
    if (tables?.length === 0) throw new Error("--tables needs at least one table");
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (!(minutes > 0) || !Number.isInteger(seed) || !Number.isInteger(major) || !(writers >= 1) || !(waitSeconds > 0)) {
    console.error(USAGE);
    return 2;
  }
  console.log(`torture seed ${seed} (replay: --seed ${seed} or DBSYNC_SEED=${seed})`);
  console.log(
    `ddl: ${(ddl ?? DDL_KINDS).join(",") || "none"}; faults: ${(faults ?? FAULT_KINDS).join(",") || "none"}; ` +
      `ops: ${(ops ?? OP_KINDS).join(",") || "none"}; tables: ${(tables ?? TABLES).join(",")}; writers ${writers}; ${minutes} min`,
  );

  reapOrphans();
  ensureBuilt();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-torture-"));
  const [source, target] = await Promise.all([startCluster({ major }), startCluster({ major })]);
  console.log(`PostgreSQL ${source.major}: source on port ${source.port}, target on port ${target.port}`);
  const db = (url: string, name: string) => createDatabase(url, name, { name });
  const sourceUrl = await db(source.url(), "torture_src");
  const targetUrls: [string, string] = [await db(target.url(), "torture_t1"), await db(target.url(), "torture_t2")];
  const t0 = Date.now();
  const stamp = () => {
    const s = Math.floor((Date.now() - t0) / 1000);
    return `[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}]`;
  };
  const result = await runTorture({
    sourceUrl,
    targetUrls,
    seed,
    durationMs: minutes * 60_000,
    ddl,
    faults,
    ops,
    tables,
    writers,
    waitSeconds,
    workDir,
    log: (s) => console.log(`${stamp()} ${s}`),
  });
  console.log("\n" + summary(result));
  if (result.ok && !flag("keep-logs")) fs.rmSync(workDir, { recursive: true, force: true });
  return result.ok ? 0 : 1;
}

main()
  .then(async (code) => {
    await stopAll();
    process.exit(code);
  })
  .catch(async (err) => {
    console.error(err);
    await stopAll();
    process.exit(1);
  });
