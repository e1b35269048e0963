// An older dbsync's `migrate`, run from its own tree taken out of git history: the
// upgrade tests start from a database an older version installed.
import assert from "node:assert/strict";
import { execSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { TestContext } from "node:test";
import { migrate } from "../../src/migrate";
import { Env, freshEnv, Sidecar, SOURCE_MAJOR, until } from "../helpers";
import { asRole } from "./roles";

/**
 * The tree of the version at `commit` (its src, sql, migrations), with this
 * checkout's node_modules, in a new temporary folder the caller removes; its CLI is
 * `node --import tsx <dir>/src/cli.ts`.
 */
export function oldTree(commit: string): string {
  const root = path.join(__dirname, "..", "..");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-old-"));
  execSync(`git -C ${JSON.stringify(root)} archive ${commit} src sql migrations package.json | tar -x -C ${JSON.stringify(dir)}`);
  fs.symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"));
  return dir;
}

/** `dbsync migrate` of the version at `commit`, run from its own tree. */
export function migrateAs(commit: string, url: string): void {
  const dir = oldTree(commit);
  try {
    const r = spawnSync(process.execPath, ["--import", "tsx", path.join(dir, "src", "cli.ts"), "migrate", "--source", url], { encoding: "utf8" });
    assert.equal(r.status, 0, `migrate of ${commit}: ${r.stdout}${r.stderr}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `dbsync run` of an older version's tree (oldTree), through tsx: a sidecar not yet upgraded. */
export function runAs(dir: string, sourceUrl: string): Sidecar {
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(dir, "src", "cli.ts"), "run", "--source", sourceUrl, "--poll-interval", "100"], {
    env: { ...process.env, DBSYNC_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout.on("data", (b) => (out += b));
  proc.stderr.on("data", (b) => (out += b));
  const exited = new Promise<number | null>((resolve) => proc.once("close", (code) => resolve(code)));
  return {
    proc,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** The commits from which migrate installs on a source older than `below` (before each, what failed there). */
const FIRST_INSTALLING: { below: number; commit: string; failed: string }[] = [
  { below: 11, commit: "0d9fa8c4a588437fd7b223d2f84a722f80cb0b20", failed: "pg_index.indnkeyatts" },
  { below: 13, commit: "cf39483fc0688b38f8ccdbcd4bbb7711eb33c998", failed: "the regcollation type" },
];

/**
 * Fresh databases whose source the dbsync at `commit` (`what`, for the skip
 * message) migrated, as `installer` if given (a superuser login role made here, that
 * the caller drops: rolesDroppedAfter); undefined, the test skipped, where the git
 * history lacks it or that dbsync did not install on the source's major.
 */
export async function freshEnvAs(t: TestContext, commit: string, what: string, label: string, installer?: string): Promise<Env | undefined> {
  const git = (...args: string[]) => spawnSync("git", ["-C", path.join(__dirname, "..", ".."), ...args]).status === 0;
  if (!git("cat-file", "-e", `${commit}^{commit}`)) {
    t.skip(`the git history with ${what} is not here`);
    return undefined;
  }
  const missing = FIRST_INSTALLING.find((f) => SOURCE_MAJOR < f.below && !git("merge-base", "--is-ancestor", f.commit, commit));
  if (missing) {
    t.skip(`${what} did not install on PostgreSQL ${SOURCE_MAJOR} (${missing.failed}: it predates ${missing.commit.slice(0, 7)}): no database to upgrade`);
    return undefined;
  }
  const env = await freshEnv(label, { migrate: false });
  if (installer) await env.source.query(`create role ${installer} login superuser`);
  migrateAs(commit, installer ? asRole(env.sourceUrl, installer) : env.sourceUrl);
  return env;
}

/**
 * Today's `migrate` while a writer commits `round(i)` (i = 1, 2, ...) in a loop: it
 * starts after a few rounds, must regenerate the capture of `upgraded` tables, and
 * the writer goes on for a few rounds on the new capture before it stops.
 */
export async function migrateUnderWriter(env: Env, round: (i: number) => string, upgraded: number): Promise<void> {
  let stop = false;
  let rounds = 0;
  const writing = (async () => {
    const c = await env.source.connect();
    try {
      for (let i = 1; !stop; i++, rounds++) await c.query(round(i));
    } finally {
      c.release();
    }
  })();
  try {
    await until("the writers run", async () => rounds > 3, 60_000);
    const result = await migrate(env.sourceUrl);
    assert.equal(result.captureUpgraded, upgraded, JSON.stringify(result));
    const before = rounds;
    await until("the writers run on the new capture", async () => rounds > before + 3, 60_000);
  } finally {
    stop = true;
    await writing;
  }
}
