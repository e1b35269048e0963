// sslmode=prefer (libpq's default) and sslmode=allow for node-postgres, which only
// knows "TLS or fail" and "plain". node-postgres is given a plain stream (ssl off)
// and this socket does what libpq does underneath it:
//  - prefer: send SSLRequest; on 'S' go TLS (certificate not verified, as libpq),
//    on 'N' go on unencrypted on the same connection. If the server then rejects the
//    encrypted session at start-up (pg_hba "hostnossl"), or the TLS handshake fails,
//    connect again without TLS.
//  - allow: start unencrypted; if the server rejects that at start-up (pg_hba
//    "hostssl"), connect again with TLS.
// "Rejects at start-up" is an ErrorResponse as the server's first message (when both
// ways are refused, node-postgres gets the refusal that is not pg_hba's). The
// client's bytes until then (its StartupMessage: node-postgres waits for the server
// before it sends a password) are replayed on the second connection.
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

type Attempt = "tls" | "plain";

export class NegotiatedSocket extends Duplex {
  private readonly attempts: Attempt[];
  private target: [number, string] | [string] | undefined;
  private raw?: net.Socket;
  private inner?: net.Socket | tls.TLSSocket;
  /** Client bytes sent before the server's first reply, to replay on a second attempt. */
  private recorded: Buffer[] | undefined = [];
  private queued: [Buffer, (err?: Error | null) => void][] = [];
  private noDelay = false;
  private keepAlive: [boolean, number] | undefined;
  private connectedOnce = false;
  private refed = true;
  /** The server's first reply that turned the first attempt down, kept to report it. */
  private rejection: Buffer | undefined;
  /** Which attempt is running: "tls" or "plain". */
  encryption: Attempt | undefined;

  constructor(
    mode: "prefer" | "allow",
    private readonly tlsOptions: tls.ConnectionOptions,
  ) {
    super({ allowHalfOpen: false });
    this.attempts = mode === "prefer" ? ["tls", "plain"] : ["plain", "tls"];
  }

  // --- what node-postgres calls on a net.Socket ---------------------------------
  connect(portOrPath: number | string, host?: string): this {
    this.target = typeof portOrPath === "string" && host === undefined ? [portOrPath] : [Number(portOrPath), host ?? "localhost"];
    // A Unix socket never uses TLS (libpq).
    if (this.target.length === 1) this.attempts.splice(0, this.attempts.length, "plain");
    this.attempt();
    return this;
  }
  setNoDelay(noDelay = true): this {
    this.noDelay = noDelay;
    this.raw?.setNoDelay(noDelay);
    return this;
  }
  setKeepAlive(enable = false, initialDelay = 0): this {
    this.keepAlive = [enable, initialDelay];
    this.raw?.setKeepAlive(enable, initialDelay);
    return this;
  }
  ref(): this {
    this.refed = true;
    this.raw?.ref();
    return this;
  }
  unref(): this {
    this.refed = false;
    this.raw?.unref();
    return this;
  }
  /** For SCRAM channel binding over TLS (node-postgres' sasl). */
  getPeerCertificate(detailed?: boolean) {
    return (this.inner as tls.TLSSocket | undefined)?.getPeerCertificate?.(detailed as true) ?? ({} as tls.PeerCertificate);
  }
  get bytesRead(): number {
    return this.raw?.bytesRead ?? 0;
  }
  /** Bytes the kernel took, plus what waits here: as a net.Socket counts them. */
  get bytesWritten(): number {
    return (this.raw ? (this.raw.bytesWritten ?? 0) - this.raw.writableLength : 0) + this.writableLength;
  }
  get remoteAddress() {
    return this.raw?.remoteAddress;
  }
  get remotePort() {
    return this.raw?.remotePort;
  }

  // --- the attempts --------------------------------------------------------------
  private attempt() {
    const kind = this.attempts.shift()!;
    this.encryption = kind;
    const raw = new net.Socket();
    this.raw = raw;
    raw.setNoDelay(this.noDelay);
    if (!this.refed) raw.unref();
    const fail = (err: Error) => {
      if (this.raw !== raw) return;
      this.destroy(err);
    };
    raw.on("error", fail);
    raw.once("connect", () => {
      if (this.keepAlive) raw.setKeepAlive(...this.keepAlive);
      if (kind === "plain") return this.attach(raw);
      raw.write(SSL_REQUEST);
      raw.once("data", (b: Buffer) => {
        if (this.raw !== raw) return;
        if (b[0] === 0x53 /* S */ && b.length === 1) {
          const t = tls.connect({ ...this.tlsOptions, socket: raw });
          const handshakeFailed = (err: Error) => this.retryOr(err);
          t.once("error", handshakeFailed);
          t.once("secureConnect", () => {
            t.off("error", handshakeFailed);
            t.on("error", fail);
            this.attach(t);
          });
        } else if (b[0] === 0x4e /* N */ && b.length === 1) {
          // The server has no TLS: go on, unencrypted, on this connection (prefer).
          if (this.attempts[0] === "plain") {
            this.attempts.shift();
            this.encryption = "plain";
            this.attach(raw);
          } else this.retryOr(new Error("The server does not support SSL connections"));
        } else {
          // A server too old to know SSLRequest answers with an error.
          this.retryOr(new Error("There was an error establishing an SSL connection"));
        }
      });
    });
    if (this.target!.length === 1) raw.connect(this.target![0]);
    else raw.connect(this.target![0], this.target![1]);
  }

  /** The next attempt, if there is one; else fail with `err`. */
  private retryOr(err: Error) {
    const old = this.raw;
    if (!this.attempts.length) {
      // Both ways failed: node-postgres reads the server's own refusal of the first.
      if (this.rejection && this.inner === undefined && this.connectedOnce) {
        this.push(this.rejection);
        this.push(null);
        return;
      }
      return this.destroy(err);
    }
    this.inner?.removeAllListeners("data");
    this.inner = undefined;
    this.raw = undefined;
    old?.removeAllListeners("error");
    old?.on("error", () => undefined);
    old?.destroy();
    this.attempt();
  }

  private attach(s: net.Socket | tls.TLSSocket) {
    this.inner = s;
    let first = true;
    s.on("data", (d: Buffer) => {
      if (first) {
        first = false;
        // The server turned this attempt down at start-up: try the other way.
        if (d[0] === 0x45 /* E */ && this.attempts.length && this.recorded) {
          this.rejection = d;
          this.retryOr(new Error("rejected"));
          return;
        }
        // Turned down both ways: the refusal that is not about encryption (pg_hba's
        // "no encryption" / "SSL encryption") says what is wrong (a missing database ...).
        if (d[0] === 0x45 && this.rejection && /pg_hba\.conf/.test(d.toString("utf8"))) d = this.rejection;
        this.recorded = undefined;
      }
      if (!this.push(d)) s.pause();
    });
    s.on("end", () => {
      if (this.inner === s) this.push(null);
    });
    s.on("close", () => {
      if (this.inner === s) this.destroy();
    });
    const replay = this.recorded ?? [];
    for (const b of replay) s.write(b);
    if (!this.connectedOnce) {
      this.connectedOnce = true;
      this.emit("connect");
    }
    const queued = this.queued.splice(0);
    for (const [chunk, cb] of queued) this.writeInner(chunk, cb);
  }

  private writeInner(chunk: Buffer, cb: (err?: Error | null) => void) {
    const s = this.inner!;
    if (this.recorded) this.recorded.push(chunk);
    if (s.write(chunk)) cb();
    else s.once("drain", () => cb());
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void) {
    this.send(chunk, cb);
  }

  /**
   * The writes made while the socket was corked, in one write to the connection.
   * node-postgres corks its stream around the messages of a query with parameters
   * (Parse, Bind, Describe, Execute, Sync): without this, Writable gave each of them
   * to _write, and each went out as a write system call and a packet of its own
   * (five for every such query of the sidecar's, the server woken for each), where
   * node's own socket makes them one.
   */
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void) {
    this.send(chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  private send(chunk: Buffer, cb: (err?: Error | null) => void) {
    if (!this.inner) this.queued.push([chunk, cb]);
    else this.writeInner(chunk, cb);
  }

  override _read() {
    this.inner?.resume();
  }

  override _final(cb: (err?: Error | null) => void) {
    if (this.inner) this.inner.end(cb);
    else cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void) {
    for (const [, qcb] of this.queued.splice(0)) qcb(err ?? new Error("socket destroyed"));
    this.inner?.destroy();
    this.raw?.destroy();
    cb(err);
  }
}
