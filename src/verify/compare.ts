// Comparison, in key-range chunks taken from the source in key order (keyset
// pagination, chunkRows rows each): per chunk, each side returns count(*) and the
// sum of a 64-bit prefix of the md5 of the row's column texts (as one text[]) under
// dbsync's pinned settings. The sum does not depend on row order (so neither on
// collation inside a chunk) and needs no big string in memory. A chunk whose count
// or sum differs is compared row by row (key and md5 per row, the target's side
// paged). A key seen in that range on one side only is looked up by key equality on
// the other side before it is reported, so two collations that order a boundary key
// differently cause no false difference. Repair deletes the differing keys on the
// target and COPYs the source's rows in, in the target's REPEATABLE READ
// transaction at the verification's tick, with session_replication_role = replica.
import { Client } from "pg";
import { VerifyCounts as Counts } from "../source/protocol";
import { Layout, SourceTable } from "./layout";
import { Key, RowSig, Side } from "./side";
import { Stopped } from "./snapshot";

/** How many differing keys dbsync.verifications keeps. */
export const DIFF_KEYS_CAP = 1000;

const keyId = (k: Key) => JSON.stringify(k);

export class Comparer {
  private src: Side;
  private dst: Side;
  /** Target rows are inserted by the table's own name (no "only": a partitioned target routes them). */
  private dstInsert: Side;

  constructor(
    reader: Client,
    target: Client,
    table: SourceTable,
    partitioned: boolean,
    layout: Layout,
    private readonly repair: boolean,
    private readonly counts: Counts,
    private readonly signal: AbortSignal | undefined,
  ) {
    const only = partitioned ? "" : "only ";
    this.src = new Side(reader, `${only}${table.name}`, layout.source);
    this.dst = new Side(target, `${only}${table.targetName}`, layout.target);
    this.dstInsert = new Side(target, table.targetName, layout.target);
  }

  /**
   * Compares the keys after `from` (all keys when null), `limit` source rows at
   * most. Returns the last key compared, or end: the source ran out first, and the
   * last range was compared open at the top (target rows past the source's last key).
   */
  async run(
    chunkRows: number,
    progress: () => Promise<void>,
    from: Key | null = null,
    limit = Infinity,
  ): Promise<{ reached: Key | null; end: boolean }> {
    let lo: Key | null = from;
    let left = limit;
    let asked = Math.min(chunkRows, left);
    let next = this.src.nextChunk(lo, asked);
    for (;;) {
      if (this.signal?.aborted) throw new Stopped();
      const s = await next;
      const end = s.n < asked;
      const hi = end ? null : s.last;
      left -= s.n;
      const final = end || left <= 0;
      // Hash the next source chunk while the target hashes this one.
      if (!final) {
        asked = Math.min(chunkRows, left);
        next = this.src.nextChunk(hi, asked);
        next.catch(() => undefined); // awaited below; an early failure must not go unhandled
      }
      const t = await this.dst.rangeSum(lo, hi);
      if (s.n > 0 || t.n > 0) {
        this.counts.chunks++;
        this.counts.rowsCompared += s.n;
        if (s.n !== t.n || s.sum !== t.sum) {
          this.counts.chunksDiffering++;
          await this.drillDown(lo, hi, chunkRows);
        }
        await progress();
      }
      if (final) return { reached: hi, end };
      lo = hi;
    }
  }

  private record(kind: "missing" | "extra" | "different", d: string) {
    this.counts[kind]++;
    if (this.counts.keys.length < DIFF_KEYS_CAP) this.counts.keys.push(d);
  }

  /** Row-level comparison of (lo, hi]; repairs what differs when asked to. */
  private async drillDown(lo: Key | null, hi: Key | null, pageRows: number) {
    const src = new Map<string, RowSig>();
    for (const r of await this.src.rangeRows(lo, hi, null, Number.MAX_SAFE_INTEGER)) src.set(keyId(r.k), r);
    const different: RowSig[] = [];
    const onlyTarget: RowSig[] = [];
    let after: Key | null = null;
    for (;;) {
      const page = await this.dst.rangeRows(lo, hi, after, pageRows);
      for (const r of page) {
        const id = keyId(r.k);
        const s = src.get(id);
        if (!s) onlyTarget.push(r);
        else {
          src.delete(id);
          if (s.h !== r.h) different.push(s);
        }
      }
      if (page.length < pageRows) break;
      after = page[page.length - 1].k;
    }
    const onlySource = [...src.values()];
    // Rows seen in this range on one side only: look them up by key on the other.
    const missing: RowSig[] = [];
    for (const part of slices(onlySource, 1000)) {
      const found = new Map((await this.dst.byKey(part.map((r) => r.k))).map((r) => [keyId(r.k), r]));
      for (const r of part) {
        const t = found.get(keyId(r.k));
        if (!t) missing.push(r);
        else if (t.h !== r.h) different.push(r);
      }
    }
    const extra: RowSig[] = [];
    for (const part of slices(onlyTarget, 1000)) {
      // Present on the source: its own chunk compares it.
      const found = new Set((await this.src.byKey(part.map((r) => r.k))).map((r) => keyId(r.k)));
      for (const r of part) if (!found.has(keyId(r.k))) extra.push(r);
    }
    for (const r of missing) this.record("missing", r.d);
    for (const r of extra) this.record("extra", r.d);
    for (const r of different) this.record("different", r.d);
    if (!this.repair) return;
    const fix = [...different, ...extra];
    const copy = [...missing, ...different];
    for (const part of slices(fix, 1000)) await this.dst.deleteKeys(part.map((r) => r.k));
    for (const part of slices(copy, 1000)) await this.dstInsert.copyRows(await this.src.fullRows(part.map((r) => r.k)));
    this.counts.repaired += missing.length + extra.length + different.length;
  }
}

function* slices<T>(xs: T[], n: number): Generator<T[]> {
  for (let i = 0; i < xs.length; i += n) yield xs.slice(i, i + n);
}
