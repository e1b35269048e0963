// The batch stream (dbsync.batch_plan's "stream"): one COPY from the source's
// reader carries the lines of every refreshed table, one table after another, each
// line led by its table_id and padded with NULLs to the stream's widest table. Here
// each table's part goes into its temp stage through its own COPY on the target,
// the table_id and the padding cut off, and the lines counted per op so that the
// merge skips statements with nothing to act on. Each byte is looked at once: a
// line longer than a chunk is gathered and joined once, when its end arrives.
import { once } from "node:events";
import { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { Client, escapeIdentifier as ident } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { DbsyncError } from "../errors";
import { PlanTable } from "../source/batches";
import { Stage } from "./stage";

/** Lines staged per op ('U', 'D', 'K<shape>'). */
export type StagedCounts = Map<string, number>;

type WithTable = <T>(table: string, fn: () => Promise<T>) => Promise<T>;

const NL = 10;
const TAB = 9;
/** One padding field: a tab and COPY's NULL, \N. */
const PAD = Buffer.from("\t\\N");

interface Part {
  id: number;
  table: string;
  ws: Writable;
  /** The target COPY's error, kept when it happens (the stream does not keep it). */
  error?: Error;
  pad: number;
  counts: StagedCounts;
}

export async function stageStream(
  reader: Client,
  target: Client,
  sql: string,
  width: number,
  stages: Map<number, { t: PlanTable; stage: Stage }>,
  withTable: WithTable,
): Promise<Map<number, StagedCounts>> {
  const counts = new Map<number, StagedCounts>();
  const out = reader.query(copyTo(sql));
  let current: Part | undefined;
  let parts: Buffer[] = [];

  const failed = (p: Part) => p.error ?? (p.ws as Writable & { errored?: Error | null }).errored ?? undefined;
  const flush = async () => {
    if (!current || !parts.length) return;
    const data = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    parts = [];
    const p = current;
    const err = failed(p);
    if (err) await withTable(p.table, () => Promise.reject(err));
    if (!p.ws.write(data)) {
      // (once() rejects on an 'error' event meanwhile.)
      await withTable(p.table, () => once(p.ws, "drain"));
    }
  };
  const close = async () => {
    if (!current) return;
    await flush();
    const p = current;
    const err = failed(p);
    if (err) await withTable(p.table, () => Promise.reject(err));
    p.ws.end();
    await withTable(p.table, () => finished(p.ws).then(() => {
      if (p.error) throw p.error;
    }));
  };
  const open = (id: number) => {
    const entry = stages.get(id);
    if (!entry || (current && id <= current.id)) {
      throw new DbsyncError(`batch stream: lines of table_id ${id} ${entry ? "out of order" : "that the plan does not list"}`, {
        hint: "The source's dbsync and this sidecar do not agree on the batch protocol: run the same version on both (dbsync migrate, then restart dbsync run).",
      });
    }
    const { t, stage } = entry;
    const cols = t.columns.map((c) => ident(c)).join(", ");
    const ws = target.query(copyFrom(`copy ${stage.name} (${stage.op}, ${cols}) from stdin`));
    const c: StagedCounts = new Map();
    counts.set(id, c);
    const p: Part = { id, table: t.target, ws, pad: width - t.columns.length, counts: c };
    // pg-copy-streams reports a server error by an 'error' event only (the stream
    // stays writable, with no connection under it): kept here for the next write.
    ws.on("error", (err) => (p.error ??= err));
    current = p;
  };
  /** One whole line, newline included, of `buf` from `start` to `nl`. */
  const line = async (buf: Buffer, start: number, nl: number) => {
    const tab = buf.indexOf(TAB, start);
    if (tab === -1 || tab > nl) throw new DbsyncError("batch stream: a line without its table_id");
    const id = Number(buf.toString("latin1", start, tab));
    if (id !== current?.id) {
      await close();
      open(id);
    }
    const cur = current!;
    const opEnd = buf.indexOf(TAB, tab + 1);
    const op = buf.toString("latin1", tab + 1, opEnd === -1 || opEnd > nl ? nl : opEnd);
    cur.counts.set(op, (cur.counts.get(op) ?? 0) + 1);
    const end = nl - cur.pad * PAD.length;
    if (end < tab + 1 || (cur.pad && buf.compare(PAD, 0, PAD.length, end, end + PAD.length) !== 0)) {
      throw new DbsyncError(`batch stream: a line of table_id ${id} does not end in the expected padding`);
    }
    parts.push(buf.subarray(tab + 1, end), buf.subarray(nl, nl + 1));
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
        await line(whole, 0, whole.length - 1);
        start = nl + 1;
        nl = chunk.indexOf(NL, start);
      }
      for (; nl !== -1; nl = chunk.indexOf(NL, start)) {
        await line(chunk, start, nl);
        start = nl + 1;
      }
      if (start < chunk.length) pending.push(chunk.subarray(start));
      await flush();
    }
    if (pending.length) throw new DbsyncError("batch stream: the source's COPY ended inside a line");
    await close();
    current = undefined;
  } catch (err) {
    // After a failure the reader is mid-COPY (the session drops it) and the target
    // COPY is failed (CopyFail), so the transaction rolls back.
    if (!out.destroyed) out.destroy();
    if (current && !current.ws.destroyed) current.ws.destroy(err as Error);
    throw err;
  }
  return counts;
}
