// What the two demos (`npm run demo`, `npm run demo:upgrade`) share: timestamped
// output for people, one place that stops everything a demo started whatever way
// it ends (done, failure, Ctrl-C), a paced write load made of weighted operations,
// and the live view of dbsync.status. Never loaded by `dbsync run`.
import { Client } from "pg";
import pino from "pino";
import type { Cluster } from "./embedded/cluster";
import { embeddedMissing } from "./dev-only";
import { messageOf } from "./errors";
import { REDACT, type Log } from "./log";
import type { Sidecar } from "./sidecar/run";

// ---------------------------------------------------------------------------------
// Output

export const tty = !!process.stdout.isTTY;
const color = tty && !process.env.NO_COLOR;
const paint = (code: number) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
export const bold = paint(1);
export const dim = paint(2);
export const green = paint(32);
export const red = paint(31);
export const yellow = paint(33);
export const cyan = paint(36);

export const t0 = Date.now();
const stamp = () => dim(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`);
export const say = (s: string) => console.log(`${stamp()} ${s}`);
export const more = (s: string) => console.log(`         ${s}`);
export const num = (n: number | string | null | undefined) =>
  n === null || n === undefined ? "-" : Math.round(Number(n)).toLocaleString("en-US");
export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** The embedded-cluster module, or an error saying how to get it (it is a development dependency). */
export async function embedded(script: string): Promise<typeof import("./embedded/cluster")> {
  try {
    const cluster = await import("./embedded/cluster");
    res.stopAll = cluster.stopAll;
    return cluster;
  } catch {
    throw new Error(embeddedMissing(script));
  }
}

/** An embedded server of that major, stopped with the demo. */
export async function startServer(script: string, major: number): Promise<Cluster> {
  const cluster = await embedded(script);
  try {
    const c = await cluster.startCluster({ major });
    res.clusters.push(c);
    return c;
  } catch (err) {
    throw new Error(/No embedded PostgreSQL/.test(messageOf(err)) ? embeddedMissing(script, major) : messageOf(err));
  }
}

// ---------------------------------------------------------------------------------
// What the demo started, so that any way out stops it all.

interface Resources {
  clusters: Cluster[];
  clients: Client[];
  sidecar?: Sidecar;
  load?: Load;
  stopAll?: () => Promise<void>;
}
export const res: Resources = { clusters: [], clients: [] };
let cleaning: Promise<void> | undefined;
let shuttingDown = false;

function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    shuttingDown = true;
    res.load?.stop();
    await res.load?.done.catch(() => undefined);
    if (res.sidecar) await withTimeout(res.sidecar.stop(), 10_000).catch(() => undefined);
    await Promise.all(res.clients.map((c) => c.end().catch(() => undefined)));
    await res.stopAll?.().catch(() => undefined);
  })());
}

/** A connection closed by the cleanup. */
export async function connect(url: string): Promise<Client> {
  const c = new Client({ connectionString: url, application_name: "dbsync demo" });
  c.on("error", () => undefined); // a server stopped under it: the next query says so
  await c.connect();
  res.clients.push(c);
  return c;
}

/** A server going away under an idle pooled connection, as happens at shutdown. */
function connectionGone(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? "";
  return code.startsWith("57P") || code === "ECONNRESET" || /Connection terminated|terminating connection/.test(messageOf(err));
}

/**
 * Runs a demo and returns its exit code: what `demo` returns, 1 when it throws
 * (said in one line, no stack trace), 130 on Ctrl-C; everything it started is
 * stopped before this returns.
 */
export async function runGuarded(demo: () => Promise<number>): Promise<number> {
  let interrupted = false;
  // A reader gone (a pipe closed): nothing to tell, but everything to stop.
  process.stdout.on("error", () => undefined);
  // Idle connections that a stopped component left in a pool see their server go
  // at shutdown; that is expected then.
  process.on("uncaughtException", (err) => {
    if (shuttingDown && connectionGone(err)) return;
    console.log(`\n${red("demo failed")}: ${messageOf(err)}`);
    void cleanup().then(() => process.exit(1));
  });
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.log(`\n${yellow("interrupted")}: stopping the sidecar and both servers ...`);
    void cleanup().then(() => process.exit(130));
    // (the main flow, failing on closed connections meanwhile, returns 130 too)
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let code: number;
  try {
    code = await demo();
  } catch (err) {
    if (!interrupted) console.log(`\n${red("demo failed")}: ${messageOf(err)}`);
    code = 1;
  }
  if (interrupted) {
    await cleanup();
    return 130;
  }
  process.stdout.write(`${stamp()} stopping the sidecar and both servers ... `);
  await cleanup();
  console.log("done");
  return code;
}

/** Until Ctrl-C, for --keep. */
export async function untilInterrupted(): Promise<void> {
  console.log("Press Ctrl-C to stop them.");
  await new Promise<void>((resolve) => {
    process.removeAllListeners("SIGINT");
    process.removeAllListeners("SIGTERM");
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  console.log("");
}

/** The sidecar, in this process (what `dbsync run` runs), logging warnings into memory. */
export async function startDemoSidecar(sourceUrl: string): Promise<{ warnings(): string[] }> {
  const sidecarLog = collectingLog();
  const { startSidecar } = await import("./sidecar/run");
  res.sidecar = await startSidecar({
    sourceUrl,
    concurrency: 4,
    pollIntervalMs: 500,
    rotateAfterSeconds: 10,
    log: sidecarLog.log,
  });
  return { warnings: sidecarLog.lines };
}

/** A pino logger like createLog('warn'), writing into memory instead of stdout. */
function collectingLog(): { log: Log; lines(): string[] } {
  const lines: string[] = [];
  const log = pino(
    { level: "warn", redact: REDACT },
    {
      write(s: string) {
        try {
          const o = JSON.parse(s);
          lines.push(`${o.subscription ? o.subscription + ": " : ""}${o.msg ?? ""}${o.err ? " (" + o.err + ")" : ""}`);
        } catch {
          lines.push(s.trim());
        }
      },
    },
  );
  return { log, lines: () => lines };
}

// ---------------------------------------------------------------------------------
// The write load: a few clients, each a loop of short transactions at a steady
// pace, as a web application would send them. Each transaction is one operation,
// drawn by weight.

/** Highest ids seen, shared by the clients: what the operations pick rows from. */
export type Ids = Record<string, number>;

export interface LoadContext {
  c: Client;
  ids: Ids;
  /** A random integer in 1..n. */
  rnd(n: number): number;
  /** e.g. "web-1". */
  actor: string;
  /** Transactions committed so far by all clients. */
  committed: number;
}

export interface Operation {
  weight: number;
  run(ctx: LoadContext): Promise<unknown>;
}

export interface Load {
  ready: Promise<void>;
  done: Promise<void>;
  stop(): void;
  stats(): { committed: number; failed: number; seconds: number; lastError?: string };
}

export function startLoad(url: string, clients: number, rate: number, ops: Operation[], ids: Ids): Load {
  let stopping = false;
  let committed = 0;
  let failed = 0;
  let lastError: string | undefined;
  const started = Date.now();
  let ended: number | undefined;
  const rnd = (n: number) => 1 + Math.floor(Math.random() * n);
  const total = ops.reduce((s, o) => s + o.weight, 0);
  const pick = () => {
    let p = Math.random() * total;
    for (const o of ops) if ((p -= o.weight) < 0) return o;
    return ops[ops.length - 1];
  };
  const workers: Promise<void>[] = [];
  const readies: Promise<void>[] = [];
  const perClientMs = (1000 * clients) / rate;

  for (let w = 0; w < clients; w++) {
    let markReady!: () => void;
    readies.push(new Promise((r) => (markReady = r)));
    workers.push(
      (async () => {
        const c = await connect(url);
        markReady();
        const actor = `web-${w + 1}`;
        let next = Date.now();
        while (!stopping) {
          next += perClientMs;
          try {
            await pick().run({ c, ids, rnd, actor, committed });
            committed++;
          } catch (err) {
            if (stopping) break;
            failed++;
            lastError = messageOf(err);
          }
          await sleep(next - Date.now());
          if (next < Date.now() - 1000) next = Date.now(); // far behind: do not burst
        }
      })(),
    );
  }
  const done = Promise.all(workers).then(() => {
    ended = Date.now();
  });
  const load: Load = {
    ready: Promise.all(readies).then(() => undefined),
    done,
    stop: () => {
      stopping = true;
    },
    stats: () => ({ committed, failed, seconds: ((ended ?? Date.now()) - started) / 1000, lastError }),
  };
  res.load = load;
  return load;
}

// ---------------------------------------------------------------------------------
// Live status: dbsync.status and dbsync.table_status. On a terminal the block is
// redrawn in place; in a log, each call adds its lines.

export class StatusView {
  private drawn = 0;
  private last = new Map<string, { events: number; at: number }>();
  private lastLoad: { committed: number; at: number };
  private headerShown = false;
  private readonly started = Date.now();

  constructor(private readonly c: Client, private readonly load: Load) {
    this.lastLoad = { committed: load.stats().committed, at: Date.now() };
  }

  /** Shows the status; returns the subscriptions' rows. */
  async show(): Promise<{ name: string; state: string; lag_seconds: string; last_error: string | null }[]> {
    const { rows: subs } = await this.c.query(
      `select name, group_name, state, lag_seconds, backlog_events, events_applied, last_error from dbsync.status order by name`,
    );
    const { rows: tables } = await this.c.query(
      `select subscription, table_name, state, rows_copied, rows_estimated from dbsync.table_status order by subscription, table_name`,
    );
    const now = Date.now();
    const l = this.load.stats();
    const loadRate = ((l.committed - this.lastLoad.committed) * 1000) / Math.max(1, now - this.lastLoad.at);
    this.lastLoad = { committed: l.committed, at: now };

    const lines: string[] = [];
    const header =
      "  " + "time".padStart(5) + "  " + "subscription".padEnd(15) + "group".padEnd(7) + "state".padEnd(11) +
      "lag".padStart(7) + "backlog".padStart(9) + "applied/s".padStart(11) + "  tables";
    if (tty || !this.headerShown) {
      lines.push(dim(header));
      this.headerShown = true;
    }
    const secs = `${((now - this.started) / 1000).toFixed(1)}s`.padStart(5);
    subs.forEach((s, i) => {
      const prev = this.last.get(s.name);
      const events = Number(s.events_applied);
      const applied = prev ? ((events - prev.events) * 1000) / Math.max(1, now - prev.at) : 0;
      this.last.set(s.name, { events, at: now });
      const mine = tables.filter((t) => t.subscription === s.name);
      const streaming = mine.filter((t) => t.state === "streaming").length;
      // The most telling one first: a failing table, then a copy under way.
      const rank = (t: { state: string; rows_copied: string }) =>
        t.state === "error" ? 0 : t.state === "copying" ? (Number(t.rows_copied) > 0 ? 1 : 2) : 3;
      const busy = mine.filter((t) => t.state !== "streaming").sort((a, b) => rank(a) - rank(b));
      let tcol = `${streaming}/${mine.length} streaming`;
      if (busy.length) {
        const t = busy[0];
        tcol = `${t.table_name.replace(/^public\./, "")} ${t.state}` +
          (t.state === "copying" ? " " + (t.rows_estimated === null && Number(t.rows_copied) === 0 ? "(starting)" : bar(Number(t.rows_copied), t.rows_estimated === null ? null : Number(t.rows_estimated))) : "") +
          (busy.length > 1 ? dim(` +${busy.length - 1} more`) : "");
      }
      const stateCol = (s.state === "streaming" ? green : s.state === "error" ? red : yellow)(String(s.state).padEnd(11));
      lines.push(
        "  " + (i === 0 ? secs : "     ") + "  " + String(s.name).padEnd(15) + String(s.group_name).padEnd(7) + stateCol +
          `${Number(s.lag_seconds).toFixed(1)} s`.padStart(7) + num(s.backlog_events).padStart(9) + num(applied).padStart(11) +
          "  " + tcol,
      );
      if (s.last_error) lines.push("         " + red(`last error: ${String(s.last_error).slice(0, 120)}`));
    });
    lines.push("         " + dim(`load: ${num(loadRate)} tx/s, ${num(l.committed)} transactions so far`));

    if (tty && this.drawn) process.stdout.write(`\x1b[${this.drawn}F\x1b[J`);
    process.stdout.write(lines.join("\n") + "\n");
    this.drawn = lines.length;
    return subs;
  }

  finish() {
    this.drawn = 0;
    console.log("");
  }
}

function bar(done: number, total: number | null): string {
  if (!total) return `${num(done)} rows`;
  const frac = Math.min(1, done / total);
  const width = 12;
  const full = Math.round(frac * width);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${Math.round(frac * 100)}% ${num(done)}/${num(total)}`;
}
