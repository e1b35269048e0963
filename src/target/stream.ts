// The batch stream (dbsync.batch_plan's "stream"): one COPY from the source's
// reader carries the lines of every refreshed table, one table after another, each
// line led by its table_id and padded with NULLs to the stream's widest table.
// Here it is cut into pieces: the lines of one table, the table_id and the padding
// cut off, counted per op, at most PIECE_LINES lines or PIECE_BYTES bytes. A
// consumer (merge.ts) writes each piece into its table's stage on the target and
// merges it, while this goes on reading the next pieces from the source: both
// servers work at once. Without that, the source waited while the target merged
// and the target waited while the source read (a 400,000-event batch left a third
// of the 2 CPUs idle). Each byte is looked at once: a line longer than a chunk is
// gathered and joined once, when its end arrives.
import { positiveEnv } from "../config";
import { DbsyncError } from "../errors";
import { Client } from "pg";
import { to as copyTo } from "pg-copy-streams";

/** Lines staged per op ('U', 'D', 'K<shape>'). */
export type StagedCounts = Map<string, number>;

/** Lines of one table's part of the stream, ready for its stage's COPY. */
export interface Piece {
  id: number;
  /** Whole lines (op, then the table's columns), in buffers of about a source chunk each. */
  data: Buffer[];
  bytes: number;
  counts: StagedCounts;
}

/** A piece, or the end of a table's part of the stream. */
export type SinkItem = { piece: Piece } | { end: number };

/** What the pieces go to, one call at a time, in stream order. */
export interface PieceSink {
  piece(p: Piece): Promise<void>;
  /** Table `id`'s part of the stream is over (its last piece came before). */
  end(id: number): Promise<void>;
  /**
   * With `whole`: every item waiting when the sink is free, in stream order, in one
   * call (merge.ts merges the tables of a small batch in one round trip). Otherwise a
   * call each: a piece's bytes make room for the reader as soon as it is merged.
   */
  items?(items: SinkItem[]): Promise<void>;
  /**
   * Awaited before the sink is handed anything (the target's transaction is made
   * ready meanwhile): the pieces that arrive meanwhile go with the first call.
   */
  ready?: Promise<unknown>;
  /**
   * A small stream: handed over once it has ended (or once it fills the queue), all
   * of it in one call: its tables are merged in one round trip, not the first of
   * them while the source still sends the last.
   */
  whole?: boolean;
}

export interface StreamLimits {
  /** A piece holds at most this many lines ... */
  pieceLines: number;
  /** ... and about this many bytes. */
  pieceBytes: number;
  /** The reader waits while pieces of this many bytes wait for the target. */
  queuedBytes: number;
}

/**
 * 20,000 lines or 4 MB: the target's cost per piece (a COPY, a savepoint, the plans
 * of the merge statements) stays small against the work of its rows, the target
 * waits for the source only for the first piece, and a piece's stage fits in the
 * default temp_buffers (8 MB), so it is not written out. 16 MB queued at most: the
 * reader runs a few pieces ahead of the target, and the sidecar's memory stays bounded.
 */
export const STREAM_LIMITS: StreamLimits = { pieceLines: 20_000, pieceBytes: 4 << 20, queuedBytes: 16 << 20 };

/**
 * STREAM_LIMITS, with DBSYNC_STREAM_PIECE_LINES lines a piece when it is set: the
 * tests cut tables of a few thousand rows into several pieces with it, instead of
 * writing tens of thousands of rows per test to reach 20,000 lines a piece.
 */
export function streamLimits(env: NodeJS.ProcessEnv = process.env): StreamLimits {
  const pieceLines = positiveEnv(env, "DBSYNC_STREAM_PIECE_LINES", "lines", STREAM_LIMITS.pieceLines, "Unset it (20,000 lines a piece) or set a number such as 2000.");
  return { ...STREAM_LIMITS, pieceLines };
}

const NL = 10;
const TAB = 9;
const U = 85;
const D = 68;
const BACKSLASH = 92;
const N = 78;
/** The buffers lines are copied into: about a source chunk. */
const OUT_BUFFER = 64 * 1024;
/** One padding field: a tab and COPY's NULL, \N. */
const PAD = Buffer.from("\t\\N");

/** Time the stream spent waiting: the target for the source, and the source for the target. */
export interface StreamWaits {
  /** The consumer had no piece to work on. */
  targetWaitedMs: number;
  /** The reader stopped reading: the queue was full. */
  sourceWaitedMs: number;
}

/**
 * Reads the batch stream, cutting it into pieces that `sink` gets in order while
 * the reading goes on. `pad(id)`: the padding fields of table id's lines (the
 * stream's width minus the table's), undefined for a table_id the plan does not list.
 */
export async function readStream(
  reader: Client,
  sql: string,
  pad: (id: number) => number | undefined,
  sink: PieceSink,
  limits: StreamLimits = streamLimits(),
): Promise<StreamWaits> {
  const queue = new PieceQueue(sink, limits.queuedBytes);
  const out = reader.query(copyTo(sql));
  let piece: Piece | undefined;
  let padFields = 0;
  let lines = 0;
  // Lines are copied, without their table_id and padding, into buffers of about a
  // chunk each; [staged, at) of the current one is the current piece's, not yet in it.
  let buf = Buffer.alloc(0);
  let staged = 0;
  let at = 0;

  const gather = () => {
    if (at === staged) return;
    piece!.data.push(buf.subarray(staged, at));
    piece!.bytes += at - staged;
    staged = at;
  };
  const seal = (ended: boolean) => {
    if (!piece) return;
    gather();
    if (piece.bytes) queue.push(piece);
    if (ended) queue.end(piece.id);
    piece = undefined;
    lines = 0;
  };
  /** One whole line, newline included, of `chunk` from `start` to `nl`. */
  const line = (chunk: Buffer, start: number, nl: number) => {
    const tab = chunk.indexOf(TAB, start);
    if (tab === -1 || tab > nl || tab === start) throw new DbsyncError("batch stream: a line without its table_id");
    let id = 0;
    for (let i = start; i < tab; i++) {
      const digit = chunk[i] - 48;
      if (digit < 0 || digit > 9) throw new DbsyncError("batch stream: a line without its table_id");
      id = id * 10 + digit;
    }
    if (id !== piece?.id) {
      if (piece && id < piece.id) throw protocolError(`lines of table_id ${id} out of order`);
      const p = pad(id);
      if (p === undefined) throw protocolError(`lines of table_id ${id} that the plan does not list`);
      seal(true);
      padFields = p;
      piece = { id, data: [], bytes: 0, counts: new Map() };
    } else if (lines >= limits.pieceLines || piece.bytes + at - staged >= limits.pieceBytes) {
      seal(false);
      piece = { id, data: [], bytes: 0, counts: new Map() };
    }
    const cur = piece!;
    const opEnd = chunk.indexOf(TAB, tab + 1);
    const opStop = opEnd === -1 || opEnd > nl ? nl : opEnd;
    const op = opStop === tab + 2 && chunk[tab + 1] === U ? "U" : opStop === tab + 2 && chunk[tab + 1] === D ? "D" : chunk.toString("latin1", tab + 1, opStop);
    cur.counts.set(op, (cur.counts.get(op) ?? 0) + 1);
    const end = nl - padFields * PAD.length;
    if (end < tab + 1 || !padded(chunk, end, nl)) {
      throw new DbsyncError(`batch stream: a line of table_id ${id} does not end in the expected padding`);
    }
    const len = end - tab; // the line without its table_id, its tab and its padding, plus a newline
    if (buf.length - at < len) {
      gather();
      buf = Buffer.allocUnsafe(Math.max(len, OUT_BUFFER));
      staged = at = 0;
    }
    chunk.copy(buf, at, tab + 1, end);
    at += len;
    buf[at - 1] = NL;
    lines++;
  };

  try {
    // The start of a line whose end has not arrived yet, in pieces.
    let pending: Buffer[] = [];
    for await (const chunk of out as AsyncIterable<Buffer>) {
      let start = 0;
      let nl = chunk.indexOf(NL);
      if (nl !== -1 && pending.length) {
        const whole = Buffer.concat([...pending, chunk.subarray(0, nl + 1)]);
        pending = [];
        line(whole, 0, whole.length - 1);
        start = nl + 1;
        nl = chunk.indexOf(NL, start);
      }
      for (; nl !== -1; nl = chunk.indexOf(NL, start)) {
        line(chunk, start, nl);
        start = nl + 1;
      }
      if (start < chunk.length) pending.push(chunk.subarray(start));
      await queue.room();
    }
    if (pending.length) throw new DbsyncError("batch stream: the source's COPY ended inside a line");
    seal(true);
    return await queue.finish();
  } catch (err) {
    // After a failure the reader is mid-COPY (the session drops it), and the
    // target's transaction fails with the error (the caller rolls it back).
    if (!out.destroyed) out.destroy();
    await queue.abandon();
    throw err;
  }
}

/** A piece of 'U' lines only (its counts say so), each line without its op: the rows as COPY into the table itself reads them. */
export function rowsOf(p: Piece): Buffer[] {
  const lines = p.counts.get("U") ?? 0;
  if (lines !== [...p.counts.values()].reduce((a, b) => a + b, 0)) throw new Error("rowsOf: a piece with lines other than rows");
  return p.data.map((b) => {
    // Each buffer holds whole lines, each "U\t" then the row and its newline.
    const out = Buffer.allocUnsafe(b.length);
    let to = 0;
    for (let from = 0; from < b.length; ) {
      const nl = b.indexOf(NL, from);
      to += b.copy(out, to, from + 2, nl + 1);
      from = nl + 1;
    }
    return out.subarray(0, to);
  });
}

/** Whether bytes [from, to) of `b` are padding fields (a byte loop: Buffer.compare costs more on short ranges). */
function padded(b: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i += PAD.length) {
    if (b[i] !== TAB || b[i + 1] !== BACKSLASH || b[i + 2] !== N) return false;
  }
  return true;
}

function protocolError(what: string): DbsyncError {
  return new DbsyncError(`batch stream: ${what}`, {
    hint: "The source's dbsync and this sidecar do not agree on the batch protocol: run the same version on both (dbsync migrate, then restart dbsync run).",
  });
}

/**
 * Pieces on their way to the sink: the sink works on one item at a time, in order,
 * while the reader adds more, up to `maxBytes` waiting (then push waits). The
 * sink's first error stops everything: the next push, check or finish throws it.
 */
class PieceQueue {
  private items: SinkItem[] = [];
  private bytes = 0;
  private closed = false;
  private error?: unknown;
  /** Wakes the reader waiting for room, or the sink's loop waiting for an item. */
  private wakeRoom?: () => void;
  private wakeMore?: () => void;
  private waits: StreamWaits = { targetWaitedMs: 0, sourceWaitedMs: 0 };
  private readonly done: Promise<void>;

  constructor(
    private readonly sink: PieceSink,
    private readonly maxBytes: number,
  ) {
    this.done = this.run();
  }

  push(p: Piece) {
    this.add({ piece: p }, p.bytes);
  }

  end(id: number) {
    this.add({ end: id }, 0);
  }

  /** Waits while more than maxBytes wait for the sink; throws the sink's error. */
  async room() {
    this.check();
    if (this.bytes <= this.maxBytes) return;
    const t0 = performance.now();
    await new Promise<void>((resolve) => (this.wakeRoom = resolve));
    this.waits.sourceWaitedMs += performance.now() - t0;
    this.check();
  }

  /** Throws the sink's error, if any. */
  private check() {
    if (this.error !== undefined) throw this.error;
  }

  /** Waits for the sink to take everything. */
  async finish(): Promise<StreamWaits> {
    this.close();
    await this.done;
    this.check();
    return this.waits;
  }

  /** After the reader failed: waits for the sink to stop. */
  async abandon() {
    this.items = [];
    this.close();
    await this.done;
  }

  private add(item: SinkItem, bytes: number) {
    this.check();
    this.items.push(item);
    this.bytes += bytes;
    this.wake("wakeMore");
  }

  private close() {
    this.closed = true;
    this.wake("wakeMore");
  }

  private async run() {
    try {
      for (;;) {
        const t0 = performance.now();
        while (!this.items.length && !this.closed) await this.more();
        while (this.sink.whole && !this.closed && this.bytes <= this.maxBytes) await this.more();
        this.waits.targetWaitedMs += performance.now() - t0;
        if (this.sink.ready) await this.sink.ready;
        if (!this.items.length) return;
        if (this.sink.items && this.sink.whole) {
          const items = this.items;
          this.items = [];
          await this.sink.items(items);
          this.taken(items);
          continue;
        }
        const item = this.items.shift()!;
        if ("piece" in item) await this.sink.piece(item.piece);
        else await this.sink.end(item.end);
        this.taken([item]);
      }
    } catch (err) {
      this.error = err;
      this.items = [];
      this.wake("wakeRoom");
    }
  }

  /** Waits until an item is added or the queue is closed. */
  private more(): Promise<void> {
    return new Promise<void>((resolve) => (this.wakeMore = resolve));
  }

  /** The sink is done with `items`: their bytes make room for the reader. */
  private taken(items: SinkItem[]) {
    for (const item of items) if ("piece" in item) this.bytes -= item.piece.bytes;
    if (this.bytes <= this.maxBytes) this.wake("wakeRoom");
  }

  private wake(which: "wakeRoom" | "wakeMore") {
    const resolve = this[which];
    this[which] = undefined;
    resolve?.();
  }
}
