// Noticing a hung link (no RST, no FIN: a stuck NAT, a frozen proxy, a dead cable)
// in bounded time instead of after the kernel's TCP timeouts (minutes to hours).
// A statement in flight is watched for progress: bytes received, bytes the kernel
// took, or rows waiting for us to read them. After the link timeout
// (DBSYNC_QUERY_TIMEOUT_MS) without any, the server is asked on a separate short
// connection (pg_stat_activity of that backend). If it cannot be reached, or the
// backend is gone, idle, or blocked sending to us, the link is dead: the socket is
// destroyed and the statement fails with SQLSTATE 08006 (transient: the sidecar
// records it and retries). A backend still working (a long sort, a lock wait, a
// 1,000,000-row batch, a COPY waiting for the other side of a pipeline) is left
// alone and checked again later: no legitimate statement or COPY is ever killed
// here, however long it runs; statement_timeout stays the tool for that.
import type { Socket } from "node:net";
import { Client, ClientConfig } from "pg";
import { LinkLostError, isSqlstate } from "../errors";

/** How long end() may wait for the server before the socket is dropped: on a hung link it never answers. */
export const END_GRACE_MS = 2000;

interface Internals {
  connection?: { stream?: Socket };
  processID?: number | null;
}

export function socketOf(c: Client): Socket | undefined {
  return (c as unknown as Internals).connection?.stream;
}

/** host:port of a client, for messages that must say which link is down. */
export function where(config: ClientConfig, c: Client): string {
  const host = c.host || config.host || "?";
  return `${host}${c.port ? ":" + c.port : ""}`;
}

/** What the client tells its watchdog. */
export interface Watchdog {
  /** A statement goes out (a COPY's stream object, or a query's first argument). */
  busy(statement: unknown): void;
  /** Nothing is in flight (the client ended, or drained its queue). */
  idle(): void;
  /** The link is dead: stop watching and destroy the socket with `err`. */
  kill(err: Error): void;
}

/**
 * Watches `client`'s statements; `backendPid`: the pid the server reported (not a
 * pooler's). `timeoutMs` <= 0: never watched.
 */
export function watchLink(client: Client & { backendPid?: number }, config: ClientConfig, timeoutMs: number): Watchdog {
  let busy = false;
  let lastMark = "";
  let lastProgress = 0;
  let probing = false;
  let timer: NodeJS.Timeout | undefined;
  /** The last stream-like statement (COPY): to tell "we sent it all" from "we wait for our upstream". */
  let submittable: { writableEnded?: boolean } | undefined;

  const mark = () => {
    const s = socketOf(client);
    if (!s) return "";
    return `${s.bytesRead}/${(s.bytesWritten ?? 0) - s.writableLength}`;
  };
  const idle = () => {
    busy = false;
    submittable = undefined;
    if (timer) clearInterval(timer);
    timer = undefined;
  };
  client.on("drain", idle);
  client.on("end", idle);

  const kill = (err: Error) => {
    idle();
    const s = socketOf(client);
    if (s && !s.destroyed) s.destroy(err);
  };

  async function check() {
    if (!busy || probing) return;
    const s = socketOf(client);
    if (!s || s.destroyed) return idle();
    const m = mark();
    // Data waiting in the socket for us to read means the link delivers and we are the slow side.
    if (m !== lastMark || s.readableLength > 0) {
      lastMark = m;
      lastProgress = Date.now();
      return;
    }
    const silentMs = Date.now() - lastProgress;
    if (silentMs < timeoutMs) return;
    probing = true;
    try {
      const pid = client.backendPid ?? (client as unknown as Internals).processID;
      const verdict = await probe(config, pid, timeoutMs, submittable?.writableEnded === true, s.writableLength > 0);
      if (!busy || socketOf(client) !== s || s.destroyed) return;
      if (mark() !== lastMark || verdict.alive) {
        lastMark = mark();
        lastProgress = Date.now();
        return;
      }
      kill(
        new LinkLostError(
          `connection to ${where(config, client)} lost: no reply for ${Math.round((Date.now() - lastProgress) / 1000)} s and ${verdict.why}`,
        ),
      );
    } finally {
      probing = false;
    }
  }

  return {
    busy(statement) {
      const first = statement as { submit?: unknown; writableEnded?: boolean } | undefined;
      if (first && typeof first.submit === "function") submittable = first;
      if (busy || timeoutMs <= 0) return;
      busy = true;
      lastMark = mark();
      lastProgress = Date.now();
      timer = setInterval(() => void check(), Math.max(50, Math.min(1000, Math.floor(timeoutMs / 4))));
      timer.unref();
    },
    idle,
    kill,
  };
}

interface Verdict {
  alive: boolean;
  why: string;
}

/**
 * Is the server still working on backend `pid`'s statement? Asked on a new, short
 * connection with the same settings. Unreachable server, missing backend, a backend
 * idle (it answered and we got nothing) or blocked sending to us: dead.
 */
async function probe(config: ClientConfig, pid: number | null | undefined, timeoutMs: number, sentAll: boolean, unsent: boolean): Promise<Verdict> {
  const limit = Math.max(1000, Math.min(timeoutMs, config.connectionTimeoutMillis || 10_000));
  const p = new Client({
    ...config,
    application_name: "dbsync probe",
    connectionTimeoutMillis: limit,
    query_timeout: limit,
    statement_timeout: limit,
    idle_in_transaction_session_timeout: undefined,
  });
  p.on("error", () => undefined);
  const hardStop = setTimeout(() => socketOf(p)?.destroy(), limit * 2 + 1000);
  hardStop.unref();
  try {
    await p.connect();
    const { rows } = await p.query<{ state: string | null; wait_event_type: string | null; wait_event: string | null }>(
      "select state, wait_event_type, wait_event from pg_stat_activity where pid = $1",
      [pid],
    );
    if (!rows.length) return { alive: false, why: `its server process ${pid} is gone` };
    const { state, wait_event: ev } = rows[0];
    if (state === null || state === "disabled") return { alive: true, why: "the server does not say" };
    if (state !== "active") return { alive: false, why: `its server process ${pid} is ${state}: the reply was lost` };
    if (ev === "ClientWrite") return { alive: false, why: `its server process ${pid} is blocked sending to us` };
    if (ev === "ClientRead" && (sentAll || unsent)) {
      return { alive: false, why: `its server process ${pid} waits for data we sent` };
    }
    return { alive: true, why: "the server is still working" };
  } catch (err) {
    const e = err as { code?: unknown; message?: string };
    // The server answered with an SQL error (too many connections, a permission...):
    // the link works; this check cannot tell more.
    if (isSqlstate(e.code) && e.code.slice(0, 2) !== "08") {
      return { alive: true, why: "the check was refused" };
    }
    return { alive: false, why: `the server cannot be reached (${e.message ?? String(err)})` };
  } finally {
    clearTimeout(hardStop);
    // A probe on a hung link cannot end politely.
    const s = socketOf(p);
    const ended = p.end().catch(() => undefined);
    const t = setTimeout(() => s?.destroy(), END_GRACE_MS);
    t.unref();
    void ended.then(() => clearTimeout(t));
  }
}
