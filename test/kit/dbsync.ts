// dbsync as users run it: `node bin/dbsync.js ...`, the built code in dist/, as a
// child process. For the tests, the torture run, the soak and the benchmark. Built
// code rather than the TypeScript through tsx: what ships is what is tested, and a
// start costs a quarter of the CPU (tsx compiles every module at each start).
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

export const ROOT = path.join(__dirname, "..", "..");
/** The installed command: it runs dist/dbsync.js, the compiled CLI bundled into one file. */
export const DBSYNC_BIN = path.join(ROOT, "bin", "dbsync.js");
const BUILT = path.join(ROOT, "dist", "dbsync.js");

/** Why dist/ is not the code checked out (missing, or older than these sources); empty when it is. */
export function staleBuild(): string[] {
  if (!fs.existsSync(BUILT)) return [`${path.relative(ROOT, BUILT)} is missing`];
  const builtAt = fs.statSync(BUILT).mtimeMs;
  const newer: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const f = path.join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else if (f.endsWith(".ts") && fs.statSync(f).mtimeMs > builtAt) newer.push(path.relative(ROOT, f));
    }
  };
  walk(path.join(ROOT, "src"));
  for (const f of ["tsconfig.json", "package.json"]) if (fs.statSync(path.join(ROOT, f)).mtimeMs > builtAt) newer.push(f);
  return newer.length ? [`dist/ is older than ${newer.slice(0, 3).join(", ")}${newer.length > 3 ? " ..." : ""}`] : [];
}

/** Builds dist/ (`npm run build`) unless it is up to date: `npm test` runs the code checked out. */
export function ensureBuilt(): void {
  const why = staleBuild();
  if (!why.length) return;
  console.log(`building dist/ (${why[0]}) ...`);
  const r = spawnSync("npm", ["run", "--silent", "build"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status ?? r.error?.message}): fix the type errors above`);
}

/** Refuses to go on with a dist/ that is not the code checked out (the benchmark measures it). */
export function assertBuilt(): void {
  const why = staleBuild();
  if (why.length) throw new Error(`${why[0]}: run \`npm run build\` (npm run bench does it)`);
}

export interface DbsyncProcess {
  proc: ChildProcess;
  /** Everything it printed so far (stdout and stderr, interleaved); empty with onLine or logFile. */
  output(): string;
  /** The exit code once it has exited and its output is read to the end (null after a signal). */
  exited: Promise<number | null>;
  /** `signal` (SIGTERM), then SIGKILL after `killAfterMs` if given; resolves to the exit code. */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<number | null>;
}

export interface SpawnOptions {
  /** Added to this process's environment; DBSYNC_LOG_LEVEL defaults to warn. */
  env?: NodeJS.ProcessEnv;
  /** Removed from the environment (DBSYNC_SOURCE_URL, to test the CLI without it). */
  unset?: string[];
  /** Each complete line of output, as it comes (instead of keeping the output: a long run's debug log is big). */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Append the output to this file instead of keeping it in memory. */
  logFile?: string;
  /** Its working directory (default: the checkout). */
  cwd?: string;
  /** The dbsync to run (default: this checkout's DBSYNC_BIN; bench:latency-ab runs another checkout's). */
  bin?: string;
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

/** Kills every dbsync process still running (a test's clean-up). */
export function killAll(): void {
  for (const p of live) p.kill("SIGKILL");
}

/** `dbsync ARGS` as a child process. */
export function spawnDbsync(args: string[], opts: SpawnOptions = {}): DbsyncProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, DBSYNC_LOG_LEVEL: process.env.DBSYNC_LOG_LEVEL ?? "warn", ...opts.env };
  for (const k of opts.unset ?? []) delete env[k];
  const log = opts.logFile ? fs.openSync(opts.logFile, "a") : undefined;
  const proc = spawn(process.execPath, [opts.bin ?? DBSYNC_BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env,
    stdio: ["ignore", log ?? "pipe", log ?? "pipe"],
  });
  if (log !== undefined) fs.closeSync(log);
  let out = "";
  // Lines may be split across chunks: each stream keeps its unfinished line.
  const partial = { stdout: "", stderr: "" };
  const collect = (stream: "stdout" | "stderr") => (b: Buffer) => {
    const s = b.toString();
    if (!opts.onLine) {
      out += s;
      return;
    }
    const lines = (partial[stream] + s).split("\n");
    partial[stream] = lines.pop()!;
    for (const line of lines) opts.onLine(line, stream);
  };
  proc.stdout?.on("data", collect("stdout"));
  proc.stderr?.on("data", collect("stderr"));
  live.add(proc);
  // "close": exited, and stdout/stderr read to the end.
  const exited = new Promise<number | null>((resolve) =>
    proc.once("close", (code) => {
      live.delete(proc);
      for (const stream of ["stdout", "stderr"] as const) if (partial[stream]) opts.onLine?.(partial[stream], stream);
      resolve(code);
    }),
  );
  return {
    proc,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM", killAfterMs?: number) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const timer = killAfterMs === undefined ? undefined : setTimeout(() => proc.kill("SIGKILL"), killAfterMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export interface DbsyncResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `dbsync ARGS` run to its end; killed after `timeoutMs`. */
export async function runDbsync(args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<DbsyncResult> {
  const p = spawnDbsync(args, opts);
  const r = { stdout: "", stderr: "" };
  p.proc.stdout?.on("data", (b) => (r.stdout += b));
  p.proc.stderr?.on("data", (b) => (r.stderr += b));
  const timer = setTimeout(() => p.proc.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, ...r };
}

/**
 * The keys a JSON log line (one object) holds more than once at its top level:
 * pino writes a child logger's fields and those of the call both, so a field given
 * twice shows twice (JSON.parse keeps only the last).
 */
export function repeatedLogKeys(line: string): string[] {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === '"') {
      let j = i + 1;
      while (j < line.length && line[j] !== '"') j += line[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) {
        const key = JSON.parse(line.slice(i, j + 1)) as string;
        if (seen.has(key)) repeated.add(key);
        seen.add(key);
        expectKey = false;
      }
      i = j;
    } else if (ch === "{" || ch === "[") {
      depth++;
      expectKey = ch === "{" && depth === 1;
    } else if (ch === "}" || ch === "]") depth--;
    else if (ch === "," && depth === 1) expectKey = true;
  }
  return [...repeated];
}
