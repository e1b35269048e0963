// A big batch's stream read by several readers at once (batch_plan's "streams"):
// the source's backend that reads a backlog's one stream was the bound of its apply
// (busy 2.45 s of a 3.18 s stream, 40% of it hashing the batch's keys, while the
// target waited a second for it). Each more reader is a source connection free at
// that moment (Links.spareReaders: none, and the batch reads its one stream, when
// the process's --concurrency readers are in use), in a transaction on exactly the
// batch reader's snapshot (exported by it: src/source/batches.ts, openHelper). Each
// reads its own tables, each table in one stream only, so a table's pieces reach
// the target in order; tables of the same columns, which may share a stage there,
// come in one stream, one after another. The one target transaction merges the
// pieces of all streams, one call at a time (SerialSink). A failure of any reader
// fails the batch (the others stop at their next chunk, and their sessions are
// closed); but a helper that could not lock its tables in time (55P03, see
// openHelper) before anything of its stream reached the target leaves its stream
// to the batch's reader, after the reader's own.
// A table too heavy for one reader (batch_plan's "shared": a backlog of one table)
// is in every stream, each with its share of the table's keys: its pieces come from
// all of them, in any order (each key in one share: the target merges them as they
// come, in a stage of its own), and its end, where a table merged at its end is
// merged, is passed on once every stream is over (a share may have no line at all).
import { Client, PoolClient } from "pg";
import { sqlstateOf } from "../errors";
import { Plan, exportSnapshot, openHelper } from "../source/batches";
import { Phases } from "./phases";
import { Piece, PieceSink, StreamWaits, readStream } from "./stream";

/** Source connections besides the batch's reader (see Links.spareReader). */
export interface Helpers {
  /** At most `n`, those free now. */
  take(n: number): Promise<PoolClient[]>;
  /** Given back; `broken`: closed. */
  release(client: PoolClient, broken: boolean): void;
}

/**
 * Reads the batch's stream into `sink`: `plan.streams` with helpers when there are
 * enough of them free, else `plan.stream` on `reader` alone. `pad`: as readStream's.
 */
export async function readStreams(
  reader: Client,
  plan: Plan,
  pad: (id: number) => number | undefined,
  sink: PieceSink,
  phases: Phases,
  helpers?: Helpers,
): Promise<StreamWaits> {
  const streams = plan.streams;
  const helping = streams && helpers ? await helpers.take(streams.length - 1) : [];
  if (!streams || helping.length < streams.length - 1) {
    for (const h of helping) helpers!.release(h, false);
    return readStream(reader, plan.stream!, pad, sink);
  }
  const ok = new Set<PoolClient>();
  try {
    const snapshot = await exportSnapshot(reader);
    await Promise.all(helping.map((h) => openHelper(h, snapshot, !!plan.stream_hash_joins)));
    const serial = new SerialSink(sink, plan.shared ?? []);
    const only = (tables: number[]) => (id: number) => (tables.includes(id) ? pad(id) : undefined);
    const left: number[] = [];
    const read = async (i: number) => {
      const helper = i === 0 ? undefined : helping[i - 1];
      const part = serial.part();
      try {
        const waits = await phases.time(`stream of reader ${i + 1}`, () => readStream(helper ?? reader, streams[i].sql, only(streams[i].tables), part));
        if (helper) {
          await helper.query("commit");
          ok.add(helper);
        }
        return waits;
      } catch (err) {
        if (helper && sqlstateOf(err) === "55P03" && !part.took && !serial.failed) {
          left.push(i);
          return undefined;
        }
        serial.fail(err);
        throw err;
      }
    };
    const results = await Promise.allSettled(streams.map((_, i) => read(i)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    let sourceWaitedMs = 0;
    for (const r of results) if (r.status === "fulfilled") sourceWaitedMs += r.value?.sourceWaitedMs ?? 0;
    for (const i of left) {
      const waits = await phases.time("stream left to reader 1", () => readStream(reader, streams[i].sql, only(streams[i].tables), serial.part()));
      sourceWaitedMs += waits.sourceWaitedMs;
    }
    await serial.endShared();
    return { targetWaitedMs: serial.idleMs(), sourceWaitedMs };
  } finally {
    for (const h of helping) helpers!.release(h, !ok.has(h));
  }
}

/**
 * The target's side of several streams: one piece or end at a time, in the order
 * they come; each stream's own calls in its order (its queue waits for each). After
 * a failure of any stream, every call throws: the other streams stop. The end of a
 * shared table waits for endShared, after every stream.
 */
class SerialSink {
  private last: Promise<unknown> = Promise.resolve();
  private error?: unknown;
  private readonly started = performance.now();
  private busyMs = 0;

  constructor(
    private readonly sink: PieceSink,
    private readonly shared: number[],
  ) {}

  get failed(): boolean {
    return this.error !== undefined;
  }

  fail(err: unknown) {
    this.error ??= err;
  }

  /** One stream's sink; `took`: a piece of it reached the target. */
  part(): PieceSink & { took: boolean } {
    const part = {
      took: false,
      piece: (p: Piece) => {
        part.took = true;
        return this.run(() => this.sink.piece(p));
      },
      end: (id: number) => (this.shared.includes(id) ? Promise.resolve() : this.run(() => this.sink.end(id))),
    };
    return part;
  }

  /** Every stream is over: the shared tables' ends. */
  async endShared() {
    for (const id of this.shared) await this.run(() => this.sink.end(id));
  }

  /** The time no call ran: the target waited for the sources. */
  idleMs(): number {
    return performance.now() - this.started - this.busyMs;
  }

  private run(fn: () => Promise<void>): Promise<void> {
    const next = this.last.then(async () => {
      if (this.error !== undefined) throw this.error;
      const t0 = performance.now();
      try {
        await fn();
      } catch (err) {
        this.fail(err);
        throw err;
      } finally {
        this.busyMs += performance.now() - t0;
      }
    });
    this.last = next.catch(() => undefined);
    return next;
  }
}
