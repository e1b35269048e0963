// The batch stream (dbsync.batch_plan's "stream"): one COPY from the source's
// reader carries the lines of every refreshed table, one table after another, each
// line led by its table_id and padded with NULLs to the widest table. Here each
// table's part goes into its temp stage through its own COPY on the target, the
// table_id and the padding cut off, and the lines counted per op so that the merge
// skips statements with nothing to act on.
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

export async function stageStream(
  reader: Client,
  target: Client,
  sql: string,
  stages: Map<number, { t: PlanTable; stage: Stage }>,
  withTable: WithTable,
): Promise<Map<number, StagedCounts>> {
  const widest = Math.max(...[...stages.values()].map(({ t }) => t.columns.length));
  const counts = new Map<number, StagedCounts>();
  const out = reader.query(copyTo(sql));
  let current: { id: number; table: string; ws: Writable; pad: number; counts: StagedCounts } | undefined;
  let parts: Buffer[] = [];

  const flush = async () => {
    if (!current || !parts.length) return;
    const data = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    parts = [];
    const { ws, table } = current;
    if (ws.errored) await withTable(table, () => Promise.reject(ws.errored));
    if (!ws.write(data)) await withTable(table, () => once(ws, "drain"));
  };
  const close = async () => {
    if (!current) return;
    await flush();
    const { ws, table } = current;
    ws.end();
    await withTable(table, () => finished(ws));
  };
  const open = async (id: number) => {
    const entry = stages.get(id);
    if (!entry || (current && id <= current.id)) {
      throw new DbsyncError(`batch stream: lines of table_id ${id} ${entry ? "out of order" : "that the plan does not list"}`, {
        hint: "The source's dbsync and this sidecar do not agree on the batch protocol: run the same version on both (dbsync migrate, then restart dbsync run).",
      });
    }
    const { t, stage } = entry;
    const cols = t.columns.map((c) => ident(c)).join(", ");
    const ws = target.query(copyFrom(`copy ${stage.name} (${stage.op}, ${cols}) from stdin`));
    // Its error is taken when the part ends (finished) or at the next full buffer (drain).
    ws.on("error", () => undefined);
    const c: StagedCounts = new Map();
    counts.set(id, c);
    current = { id, table: t.target, ws, pad: widest - t.columns.length, counts: c };
  };

  try {
    let carry: Buffer | undefined;
    for await (const chunk of out as AsyncIterable<Buffer>) {
      const buf = carry ? Buffer.concat([carry, chunk]) : chunk;
      let start = 0;
      for (let nl = buf.indexOf(NL, start); nl !== -1; nl = buf.indexOf(NL, start)) {
        const tab = buf.indexOf(TAB, start);
        const id = Number(buf.toString("latin1", start, tab));
        if (id !== current?.id) {
          await close();
          await open(id);
        }
        const cur = current!;
        // The op field, up to the next tab.
        const opEnd = buf.indexOf(TAB, tab + 1);
        const op = buf.toString("latin1", tab + 1, opEnd === -1 || opEnd > nl ? nl : opEnd);
        cur.counts.set(op, (cur.counts.get(op) ?? 0) + 1);
        const end = nl - cur.pad * PAD.length;
        if (cur.pad && buf.compare(PAD, 0, PAD.length, end, end + PAD.length) !== 0) {
          throw new DbsyncError(`batch stream: a line of table_id ${id} does not end in the expected padding`);
        }
        // The line without its table_id and padding; the newline after.
        parts.push(buf.subarray(tab + 1, end), buf.subarray(nl, nl + 1));
        start = nl + 1;
      }
      carry = start < buf.length ? buf.subarray(start) : undefined;
      await flush();
    }
    if (carry) throw new DbsyncError("batch stream: the source's COPY ended inside a line");
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
