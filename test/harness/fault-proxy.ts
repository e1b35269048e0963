// A TCP proxy on 127.0.0.1 in front of a PostgreSQL server, for fault tests. The
// test switches it at any moment between:
//   pass       forward both ways
//   delay(ms)  forward each chunk ms later (order kept)
//   blackhole  keep every socket open but forward nothing either way, and stop
//              reading so the senders' buffers fill up: a hung link, no RST, no
//              FIN. Connections opened meanwhile hang too (their startup packet is
//              held). Restoring delivers what was held, like TCP retransmission
//              after an outage: a side that gave up meanwhile sees the other side's
//              close only then.
// and can drop connections (RST or FIN) at once. Black-hole and drop take an
// optional filter on the connection's startup parameters (application_name,
// user, database), read from the client's first packet, so that one kind of
// connection (say the LISTEN one) can be cut alone.
import net from "node:net";

export interface ProxyConnection {
  id: number;
  applicationName?: string;
  user?: string;
  database?: string;
  /** The client asked for TLS: startup parameters unknown. */
  tls: boolean;
  openedAt: number;
  bytesUp: number;
  bytesDown: number;
  /** Traffic is held by a black-hole right now. */
  held: boolean;
}

export type ConnectionFilter = (c: ProxyConnection) => boolean;

export interface ProxyStats {
  accepted: number;
  open: number;
  held: number;
  dropped: number;
  bytesUp: number;
  bytesDown: number;
  /** Connections accepted so far, by application_name ("?" when unknown). */
  byApplication: Record<string, number>;
}

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string;
  mode(): string;
  pass(): void;
  delay(ms: number): void;
  blackhole(filter?: ConnectionFilter): void;
  /** Close current connections (RST by default) and return how many; the mode stays. */
  drop(how?: "rst" | "fin", filter?: ConnectionFilter): number;
  connections(): ProxyConnection[];
  stats(): ProxyStats;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** The server's port (a function: the server may move after a restart). */
  port: number | (() => number);
  host?: string;
}

interface Direction {
  queue: { buf: Buffer; due: number }[];
  timer?: NodeJS.Timeout;
  /** The source side ended (FIN): end the destination once the queue is flushed. */
  ended: boolean;
}

interface Conn {
  info: ProxyConnection;
  client: net.Socket;
  upstream?: net.Socket;
  upstreamReady: boolean;
  up: Direction; // client -> server
  down: Direction; // server -> client
  startup: Buffer; // the client's first bytes until the startup packet is complete
  classified: boolean;
  closed: boolean;
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const upstreamHost = opts.host ?? "127.0.0.1";
  const upstreamPort = typeof opts.port === "function" ? opts.port : () => opts.port as number;
  let mode: "pass" | "delay" | "blackhole" = "pass";
  let delayMs = 0;
  let holdFilter: ConnectionFilter | undefined;
  const conns = new Set<Conn>();
  let nextId = 1;
  const totals = { accepted: 0, dropped: 0, bytesUp: 0, bytesDown: 0 };
  const byApplication: Record<string, number> = {};

  const isHeld = (c: Conn) => mode === "blackhole" && c.classified && (!holdFilter || holdFilter(c.info));

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (client) => {
    totals.accepted++;
    const c: Conn = {
      info: { id: nextId++, tls: false, openedAt: Date.now(), bytesUp: 0, bytesDown: 0, held: false },
      client,
      upstreamReady: false,
      up: { queue: [], ended: false },
      down: { queue: [], ended: false },
      startup: Buffer.alloc(0),
      classified: false,
      closed: false,
    };
    conns.add(c);
    client.setNoDelay(true);
    client.on("data", (buf: Buffer) => {
      c.info.bytesUp += buf.length;
      totals.bytesUp += buf.length;
      if (!c.classified) {
        c.startup = Buffer.concat([c.startup, buf]);
        // sslmode=prefer (libpq's default, and dbsync's) asks for TLS first. The test
        // servers have none: answer 'N' as they would, and read the startup packet that
        // follows. Not while every new connection is held: then nothing answers.
        if (c.startup.length >= 8 && c.startup.readUInt32BE(0) === 8 && [80877103, 80877104].includes(c.startup.readUInt32BE(4))
            && !(mode === "blackhole" && !holdFilter)) {
          c.startup = c.startup.subarray(8);
          client.write("N");
          if (!c.startup.length) return;
        }
        if (!classify(c)) return; // wait for the rest of the startup packet
        buf = c.startup;
        c.startup = Buffer.alloc(0);
      }
      enqueue(c, c.up, buf);
      update(c);
    });
    client.on("end", () => {
      c.up.ended = true;
      pump(c, c.up);
    });
    client.on("error", () => undefined);
    client.on("close", () => {
      // A reset (or a full close) from the client: pass it on once nothing is held.
      c.up.ended = true;
      if (!isHeld(c)) finish(c, c.up);
    });
  });
  server.on("error", () => undefined);

  /** Parse the startup packet once complete; true when the connection is classified. */
  function classify(c: Conn): boolean {
    const b = c.startup;
    if (b.length < 8) return false;
    const len = b.readUInt32BE(0);
    const code = b.readUInt32BE(4);
    if (code === 80877103 || code === 80877104) {
      c.info.tls = true; // SSLRequest / GSSENCRequest: what follows is encrypted
    } else {
      if (b.length < len) return false;
      const parts = b.subarray(8, len).toString("utf8").split("\0");
      for (let i = 0; i + 1 < parts.length; i += 2) {
        const [k, v] = [parts[i], parts[i + 1]];
        if (k === "application_name") c.info.applicationName = v;
        else if (k === "user") c.info.user = v;
        else if (k === "database") c.info.database = v;
      }
    }
    c.classified = true;
    const app = c.info.applicationName ?? "?";
    byApplication[app] = (byApplication[app] ?? 0) + 1;
    return true;
  }

  function enqueue(c: Conn, d: Direction, buf: Buffer) {
    d.queue.push({ buf, due: Date.now() + (mode === "delay" ? delayMs : 0) });
  }

  function connectUpstream(c: Conn) {
    if (c.upstream || c.closed) return;
    const u = net.connect({ host: upstreamHost, port: upstreamPort(), allowHalfOpen: true });
    c.upstream = u;
    u.setNoDelay(true);
    u.on("connect", () => {
      c.upstreamReady = true;
      update(c);
    });
    u.on("data", (buf: Buffer) => {
      c.info.bytesDown += buf.length;
      totals.bytesDown += buf.length;
      enqueue(c, c.down, buf);
      update(c);
    });
    u.on("end", () => {
      c.down.ended = true;
      pump(c, c.down);
    });
    u.on("error", () => undefined);
    u.on("close", () => {
      c.down.ended = true;
      if (!c.upstreamReady) {
        // The server refused: the client sees a reset, as it would without the proxy.
        kill(c, "rst");
        return;
      }
      if (!isHeld(c)) finish(c, c.down);
    });
  }

  /** Apply the current mode to one connection: hold or release it, and move data. */
  function update(c: Conn) {
    if (c.closed) return;
    const held = isHeld(c);
    c.info.held = held;
    if (held) {
      c.client.pause();
      c.upstream?.pause();
      for (const d of [c.up, c.down]) if (d.timer) {
        clearTimeout(d.timer);
        d.timer = undefined;
      }
      return;
    }
    if (c.classified && !c.upstream) connectUpstream(c);
    c.client.resume();
    c.upstream?.resume();
    pump(c, c.up);
    pump(c, c.down);
    // Sides that closed while held close now.
    if (c.client.destroyed) finish(c, c.up);
    if (c.upstream?.destroyed && c.upstreamReady) finish(c, c.down);
  }

  function pump(c: Conn, d: Direction) {
    if (c.closed || isHeld(c)) return;
    const dst = d === c.up ? c.upstream : c.client;
    const src = d === c.up ? c.client : c.upstream;
    if (!dst || (d === c.up && !c.upstreamReady)) return;
    if (d.timer) return;
    const now = Date.now();
    while (d.queue.length) {
      const head = d.queue[0];
      if (head.due > now) {
        d.timer = setTimeout(() => {
          d.timer = undefined;
          pump(c, d);
        }, head.due - now);
        return;
      }
      d.queue.shift();
      if (dst.destroyed) return;
      if (!dst.write(head.buf) && src && !src.destroyed) {
        src.pause();
        dst.once("drain", () => {
          if (!isHeld(c)) src.resume();
        });
      }
    }
    if (d.ended && !dst.destroyed && !dst.writableEnded) dst.end();
  }

  /** A side is gone: once its data is delivered, close the other side too. */
  function finish(c: Conn, d: Direction) {
    if (c.closed) return;
    if (d.queue.length && !(d === c.up ? c.upstream?.destroyed : c.client.destroyed)) {
      pump(c, d);
      if (d.queue.length) return; // delayed data still to go; the timer calls pump, then close
    }
    const other = d === c.up ? c.upstream : c.client;
    if (other && !other.destroyed) {
      if (!other.writableEnded) other.end();
      setTimeout(() => other.destroy(), 200).unref();
    }
    const self = d === c.up ? c.client : c.upstream;
    if ((self?.destroyed ?? true) && (other?.destroyed ?? true)) close(c);
    else {
      other?.once("close", () => close(c));
      self?.once("close", () => close(c));
    }
  }

  function close(c: Conn) {
    if (c.closed) return;
    c.closed = true;
    for (const d of [c.up, c.down]) if (d.timer) clearTimeout(d.timer);
    conns.delete(c);
  }

  function kill(c: Conn, how: "rst" | "fin") {
    for (const s of [c.client, c.upstream]) {
      if (!s || s.destroyed) continue;
      // A reset of a socket already shutting down (end() called) fails in libuv and
      // leaks the handle: the process then spins at exit. Such a socket is just destroyed.
      if (how === "rst") {
        if (s.writableEnded || s.connecting) s.destroy();
        else s.resetAndDestroy();
      } else {
        s.end();
        setTimeout(() => s.destroy(), 200).unref();
      }
    }
    c.up.queue.length = c.down.queue.length = 0;
    close(c);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  const proxy: FaultProxy = {
    host: "127.0.0.1",
    port,
    url(u: string) {
      const parsed = new URL(u);
      parsed.hostname = "127.0.0.1";
      parsed.port = String(port);
      return parsed.toString();
    },
    mode: () => (mode === "delay" ? `delay ${delayMs} ms` : mode === "blackhole" && holdFilter ? "blackhole (some)" : mode),
    pass() {
      mode = "pass";
      delayMs = 0;
      holdFilter = undefined;
      for (const c of [...conns]) update(c);
    },
    delay(ms: number) {
      mode = "delay";
      delayMs = ms;
      holdFilter = undefined;
      for (const c of [...conns]) update(c);
    },
    blackhole(filter?: ConnectionFilter) {
      mode = "blackhole";
      holdFilter = filter;
      for (const c of [...conns]) update(c);
    },
    drop(how: "rst" | "fin" = "rst", filter?: ConnectionFilter) {
      let n = 0;
      for (const c of [...conns]) {
        if (filter && !filter(c.info)) continue;
        kill(c, how);
        n++;
      }
      totals.dropped += n;
      return n;
    },
    connections: () => [...conns].map((c) => ({ ...c.info })),
    stats: () => ({
      accepted: totals.accepted,
      open: conns.size,
      held: [...conns].filter((c) => c.info.held).length,
      dropped: totals.dropped,
      bytesUp: totals.bytesUp,
      bytesDown: totals.bytesDown,
      byApplication: { ...byApplication },
    }),
    async close() {
      for (const c of [...conns]) {
        c.client.destroy();
        c.upstream?.destroy();
        close(c);
      }
      await new Promise((r) => server.close(() => r(undefined)));
    },
  };
  return proxy;
}
