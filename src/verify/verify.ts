// The "verify" job: compares one table on the source with its copy on one
// subscription's target, both exactly as of one tick of the stream, while writes
// and replication go on, and optionally repairs the target.
//
// One consistent point on both sides, without touching the applier:
//  1. Source. In READ COMMITTED, dbsync._verify_begin takes a tick T of the group
//     exactly as dbsync.begin_copy does (group tick lock, then one statement that
//     takes pg_current_snapshot() and pg_export_snapshot()), and in the same
//     transaction sets this verification's hold_tick = T. A reader transaction
//     (REPEATABLE READ, READ ONLY) imports the snapshot before that commits: it
//     sees the table exactly as of T.
//  2. Hold. next_batch never builds a batch that ends past a held tick
//     (dbsync._verify_hold), so the applier lands exactly on T and stops there. The
//     hold and T are committed together, so no applier can see T without the hold.
//     A hold counts only while this job holds its session advisory lock
//     (0x64627376, verification_id): if the process dies, the stream moves on.
//  3. Target. Poll: begin REPEATABLE READ and read dbsync.applied. Every batch
//     commits its rows and its tick there in one transaction, so when that first
//     statement sees tick T, the transaction's snapshot holds the table exactly as
//     of T (dbsync.copied, read in the same snapshot, proves the table was not
//     re-copied after T). Otherwise roll back and poll again.
//  4. Without repair the hold is released right there: the applier resumes and
//     the comparison runs between two fixed snapshots, however long it takes.
//     With repair the hold stays until the repair is committed: the fix must land
//     at T, before any later batch (a later batch's delete of a row the repair
//     inserts would otherwise be lost), so repair delays that subscription (only)
//     for the duration of the verification.
//
// Comparison, in key-range chunks taken from the source in key order (keyset
// pagination on the key's index, CHUNK_ROWS rows each): per chunk, each side
// returns count(*) and the sum of a 64-bit prefix of md5(row(captured columns)::text)
// under dbsync's pinned settings. The sum does not depend on row order (so neither
// on collation inside a chunk) and needs no big string in memory. A chunk whose
// count or sum differs is compared row by row (key and md5 per row, the target's
// side paged). A key seen in that range on one side only is looked up by key
// equality on the other side before it is reported, so two collations that order a
// boundary key differently cause no false difference. Repair deletes the differing
// keys on the target and inserts the source's rows (text cast to the target's column
// types, as the applier does), in the target's REPEATABLE READ transaction at T,
// with session_replication_role = replica.
import { Client, Pool, escapeIdentifier as ident, escapeLiteral } from "pg";
import { closeQuietly, connect } from "../db";
import { DbsyncError, messageOf, sqlstateOf } from "../errors";
import { Log } from "../log";
import { ensureTargetSchema } from "../target/progress";

/** Advisory lock class of verify jobs ("dbsv"); the second key is verification_id. */
export const VERIFY_LOCK_CLASS = 0x64627376;
/** How many differing keys dbsync.verifications keeps. */
export const DIFF_KEYS_CAP = 1000;

export interface VerifyOptions {
  /** Source rows per chunk. */
  chunkRows?: number;
  /** Give up if the target has not reached the verification's tick by then. */
  waitTimeoutMs?: number;
  /** The sidecar is stopping: give the verification back (queued) for a later run. */
  signal?: AbortSignal;
  /**
   * Verifications this process runs at once; beyond, the job returns "busy" at once
   * and the sidecar's next scan offers it again. A verify job waits for the applier
   * to reach its tick, so it must never take every worker slot: the sidecar passes
   * its concurrency - 1. Default: no limit.
   */
  maxConcurrent?: number;
}

export type VerifyOutcome = "done" | "error" | "busy" | "nothing" | "stopped";

class Stopped extends Error {}

let active = 0;
let warnedNoSlot = false;

interface Job {
  verification_id: number;
  state: string;
  repair: boolean;
  sub_id: number;
  table_id: number;
  subscription: string;
  sub_uuid: string;
  target_conninfo: string;
  copy_data: boolean;
  schema_name: string;
  table_name: string;
  partitioned: boolean;
}

interface Layout {
  columns: string[];
  keyCols: string[];
  sourceKeyTypes: string[];
  targetTypes: Map<string, string>;
}

interface Counts {
  rowsCompared: number;
  chunks: number;
  chunksDiffering: number;
  missing: number;
  extra: number;
  different: number;
  repaired: number;
  keys: string[];
}

type Key = string[];
interface RowSig {
  k: Key;
  d: string;
  h: string;
}

export async function runVerify(
  sourceUrl: string | undefined,
  control: Pool,
  verificationId: number,
  log: Log,
  opts: VerifyOptions = {},
): Promise<VerifyOutcome> {
  const max = opts.maxConcurrent ?? Infinity;
  if (active >= max) {
    if (max <= 0 && !warnedNoSlot) {
      warnedNoSlot = true;
      log.warn("verifications need a worker slot besides the appliers': run the sidecar with --concurrency 2 or more");
    }
    return "busy";
  }
  active++;
  try {
    return await verifyOnce(sourceUrl, control, verificationId, log, opts);
  } finally {
    active--;
  }
}

async function verifyOnce(
  sourceUrl: string | undefined,
  control: Pool,
  verificationId: number,
  log: Log,
  opts: VerifyOptions,
): Promise<VerifyOutcome> {
  const chunkRows = opts.chunkRows ?? 10_000;
  const waitTimeoutMs = opts.waitTimeoutMs ?? 600_000;
  const load = async () =>
    (
      await control.query<Job>(
        `select v.verification_id::float8 as verification_id, v.state, v.repair, v.sub_id, v.table_id,
                s.name as subscription, s.sub_uuid, s.target_conninfo, s.copy_data,
                t.schema_name, t.table_name, t.partitioned
           from dbsync.verifications v
           join dbsync.subscriptions s using (sub_id)
           join dbsync.tables t using (table_id)
          where v.verification_id = $1`,
        [verificationId],
      )
    ).rows[0];
  let job = await load();
  if (!job || (job.state !== "queued" && job.state !== "running")) return "nothing";
  const appName = `dbsync verify ${verificationId}`.slice(0, 63);
  const table = `${ident(job.schema_name)}.${ident(job.table_name)}`;
  const vlog = log.child({ verification: verificationId, subscription: job.subscription, table });

  let holder: Client | undefined, reader: Client | undefined, target: Client | undefined;
  let begun = false;
  const counts: Counts = { rowsCompared: 0, chunks: 0, chunksDiffering: 0, missing: 0, extra: 0, different: 0, repaired: 0, keys: [] };
  try {
    holder = await connect(sourceUrl, { applicationName: appName });
    const lock = await holder.query("select pg_try_advisory_lock($1, $2::int) as ok", [VERIFY_LOCK_CLASS, verificationId]);
    if (!lock.rows[0].ok) return "busy";
    job = await load(); // another process may have finished it meanwhile
    if (!job || (job.state !== "queued" && job.state !== "running")) return "nothing";

    target = await connect(job.target_conninfo, { applicationName: appName });
    await ensureTargetSchema(target);

    // 1. The source at tick T, held.
    await holder.query("begin isolation level read committed");
    const b = await holder.query("select tick_id::float8 as tick, snapshot_name from dbsync._verify_begin($1)", [verificationId]);
    begun = true;
    const tick: number = b.rows[0].tick;
    reader = await connect(sourceUrl, { applicationName: appName });
    // Idle while the target catches up to T; bounded by the wait's own timeout.
    await reader.query(`set idle_in_transaction_session_timeout = ${Math.ceil(waitTimeoutMs + 600_000)}`);
    await reader.query("begin isolation level repeatable read read only");
    await reader.query(`set transaction snapshot ${escapeLiteral(b.rows[0].snapshot_name)}`);
    await holder.query("commit");
    vlog.info({ tick, repair: job.repair }, "verification started");

    // The captured columns as of T (the reader's snapshot of dbsync.shapes).
    const shape = (
      await reader.query<{ columns: string[]; types: string[]; key_positions: number[] }>(
        `select columns, types, key_positions from dbsync.shapes where table_id = $1 order by shape_id desc limit 1`,
        [job.table_id],
      )
    ).rows[0];
    if (!shape) throw new DbsyncError(`no captured shape for ${table}`, { table });

    // 2 + 3. The target at exactly T.
    await target.query("set idle_in_transaction_session_timeout = 600000");
    await waitForTarget(control, target, job, tick, waitTimeoutMs, table, opts.signal);
    const layout = await targetLayout(target, table, shape);

    // 4. Without repair, let the stream go on.
    if (!job.repair) await releaseHold(control, verificationId);
    await control.query("update dbsync.verifications set compare_started_at = now() where verification_id = $1", [verificationId]);
    vlog.debug({ tick }, "both sides at the verification tick; comparing");
    if (job.repair) await target.query("set local session_replication_role = replica");

    const cmp = new Comparer(reader, target, table, job.partitioned, layout, job.repair, counts, opts.signal);
    let lastReport = 0;
    const report = async (force = false) => {
      if (!force && Date.now() - lastReport < 250) return;
      lastReport = Date.now();
      await control.query(
        `update dbsync.verifications
            set rows_compared = $2, chunks = $3, chunks_differing = $4, rows_missing = $5, rows_extra = $6,
                rows_different = $7, differing_count = $5::bigint + $6::bigint + $7::bigint, differing_keys = $8, rows_repaired = $9
          where verification_id = $1`,
        [verificationId, counts.rowsCompared, counts.chunks, counts.chunksDiffering, counts.missing, counts.extra,
          counts.different, counts.keys, counts.repaired],
      );
    };
    await cmp.run(chunkRows, () => report());
    await target.query("commit");
    await reader.query("commit");
    await report(true);
    await control.query(
      `update dbsync.verifications
          set state = 'done', hold_tick = null, finished_at = now(), duration = now() - started_at
        where verification_id = $1`,
      [verificationId],
    );
    const differing = counts.missing + counts.extra + counts.different;
    vlog.info({ tick, rows: counts.rowsCompared, chunks: counts.chunks, differing, repaired: counts.repaired }, "verification done");
    return "done";
  } catch (err) {
    if (err instanceof Stopped) {
      vlog.info("verification interrupted: the sidecar is stopping; it will start over");
      await control
        .query("update dbsync.verifications set state = 'queued', hold_tick = null where verification_id = $1", [verificationId])
        .catch(() => undefined);
      return "stopped";
    }
    const ctx = err instanceof DbsyncError ? err.context : {};
    const message = messageOf(err) + (ctx.hint ? ` (hint: ${ctx.hint})` : "");
    vlog.error({ sqlstate: ctx.sqlstate ?? sqlstateOf(err) }, `verification failed: ${message}`);
    await control
      .query(
        `update dbsync.verifications
            set state = 'error', error = $2, hold_tick = null, finished_at = now(),
                duration = now() - coalesce(started_at, requested_at),
                rows_compared = $3, chunks = $4
          where verification_id = $1`,
        [verificationId, message, counts.rowsCompared, counts.chunks],
      )
      .catch((e) => vlog.warn({ err: messageOf(e) }, "could not record the verification's error"));
    return "error";
  } finally {
    if (begun) await releaseHold(control, verificationId).catch(() => undefined);
    // Closing the holder also releases the advisory lock (and with it any hold).
    await Promise.all([closeQuietly(reader), closeQuietly(target), closeQuietly(holder)]);
  }
}

async function releaseHold(control: Pool, verificationId: number) {
  await control.query(
    `with v as (update dbsync.verifications set hold_tick = null
                 where verification_id = $1 and hold_tick is not null returning sub_id)
     select pg_notify('dbsync', s.group_id::text) from v join dbsync.subscriptions s using (sub_id)`,
    [verificationId],
  );
}

/**
 * Leaves `target` in a REPEATABLE READ transaction whose snapshot shows the
 * subscription's position at exactly `tick`.
 */
async function waitForTarget(
  control: Pool,
  target: Client,
  job: Job,
  tick: number,
  timeoutMs: number,
  table: string,
  signal: AbortSignal | undefined,
) {
  const deadline = Date.now() + timeoutMs;
  let lastCheck = 0;
  for (;;) {
    if (signal?.aborted) throw new Stopped();
    await target.query(`begin isolation level repeatable read${job.repair ? "" : " read only"}`);
    const { rows } = await target.query<{ tick: number | null; copy_tick: number | null }>(
      `select (select tick_id::float8 from dbsync.applied where sub_uuid = $1) as tick,
              (select copy_tick::float8 from dbsync.copied where sub_uuid = $1 and table_id = $2) as copy_tick`,
      [job.sub_uuid, job.table_id],
    );
    const at = rows[0].tick;
    if (at === tick) {
      const copyTick = rows[0].copy_tick;
      if (copyTick !== null && copyTick > tick) {
        throw new DbsyncError(`${table} was copied again (at tick ${copyTick}) during the verification at tick ${tick}`, {
          table,
          hint: "Run the verification again once the copy has caught up.",
        });
      }
      if (copyTick === null && job.copy_data) {
        throw new DbsyncError(`${table} is not copied to the target yet`, {
          table,
          hint: "Wait until dbsync.table_status shows it streaming, then verify.",
        });
      }
      return;
    }
    await target.query("rollback");
    if (at !== null && at > tick) {
      throw new DbsyncError(`the target moved past the verification tick ${tick} (it is at ${at})`, {
        table,
        hint: "dbsync.next_batch must respect dbsync._verify_hold; run `dbsync migrate` with a dbsync that has it.",
      });
    }
    if (Date.now() - lastCheck > 1000) {
      lastCheck = Date.now();
      const { rows: s } = await control.query(
        "select paused, last_error, last_error_at from dbsync.subscriptions where sub_id = $1",
        [job.sub_id],
      );
      if (!s[0]) throw new DbsyncError(`subscription "${job.subscription}" was dropped`, {});
      if (s[0].paused) {
        throw new DbsyncError(`subscription "${job.subscription}" was paused before its target reached tick ${tick}`, {
          hint: `Resume it (select dbsync.resume('${job.subscription}')) and verify again.`,
        });
      }
      if (Date.now() > deadline) {
        throw new DbsyncError(
          `the target did not reach tick ${tick} within ${Math.round(timeoutMs / 1000)} s (it is at ${at ?? "none"})` +
            (s[0].last_error ? `; the subscription's last error: ${s[0].last_error}` : ""),
          { hint: "See dbsync.status: the subscription must be applying for a verification to run." },
        );
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function targetLayout(
  target: Client,
  table: string,
  shape: { columns: string[]; types: string[]; key_positions: number[] },
): Promise<Layout> {
  const { rows } = await target.query<{ exists: boolean; cols: [string, string][] | null }>(
    `select to_regclass($1) is not null as exists,
            (select array_agg(array[attname::text, format_type(atttypid, atttypmod)]) from pg_attribute
              where attrelid = to_regclass($1) and attnum > 0 and not attisdropped) as cols`,
    [table],
  );
  if (!rows[0].exists) {
    throw new DbsyncError(`target table ${table} does not exist`, { table, sqlstate: "42P01" });
  }
  const targetTypes = new Map((rows[0].cols ?? []).map(([n, t]) => [n, t] as [string, string]));
  const missing = shape.columns.filter((c) => !targetTypes.has(c));
  if (missing.length) {
    throw new DbsyncError(`target table ${table} lacks column(s) ${missing.map(ident).join(", ")} that the source has`, {
      table,
      sqlstate: "42703",
      hint: `Add them to ${table} on the target.`,
    });
  }
  return {
    columns: shape.columns,
    keyCols: shape.key_positions.map((p) => shape.columns[p - 1]),
    sourceKeyTypes: shape.key_positions.map((p) => shape.types[p - 1]),
    targetTypes,
  };
}

/** One side of the comparison: SQL text for a connection whose column types are `types`. */
class Side {
  constructor(
    readonly client: Client,
    private readonly rel: string,
    private readonly keyCols: string[],
    private readonly keyTypes: string[],
    private readonly columns: string[],
  ) {}

  private get keyList() {
    return this.keyCols.map((k) => `t.${ident(k)}`).join(", ");
  }
  /** Bound parameter $n (a text[] of key values) as a row of key-typed values. */
  private bound(n: number) {
    return this.keyTypes.map((ty, i) => `($${n}::text[])[${i + 1}]::${ty}`).join(", ");
  }
  private get keyText() {
    return `array[${this.keyCols.map((k) => `t.${ident(k)}::text`).join(", ")}]`;
  }
  private get display() {
    return this.keyCols.length === 1 ? `t.${ident(this.keyCols[0])}::text` : `row(${this.keyList})::text`;
  }
  private get rowText() {
    return `row(${this.columns.map((c) => `t.${ident(c)}`).join(", ")})::text`;
  }
  private get rowHash() {
    return `('x' || left(md5(${this.rowText}), 16))::bit(64)::int8::numeric`;
  }
  /** Key range (lo, hi]: $1 = lo or null, $2 = hi or null. */
  private get range() {
    return `($1::text[] is null or (${this.keyList}) > (${this.bound(1)}))
        and ($2::text[] is null or (${this.keyList}) <= (${this.bound(2)}))`;
  }
  private get byKeys() {
    return `(${this.keyList}) in (select ${this.keyTypes.map((ty, i) => `(dbsync_x.v->>${i})::${ty}`).join(", ")}
                                      from jsonb_array_elements($1::jsonb) as dbsync_x(v))`;
  }

  /** The next `limit` rows after `lo` in key order: count, hash sum, last key. */
  async nextChunk(lo: Key | null, limit: number): Promise<{ n: number; sum: string; last: Key | null }> {
    const { rows } = await this.client.query(
      // The CTE's columns are expressions with their own names, never the table's
      // columns, so no column name of the table can clash with them.
      `with c as (
         select ${this.keyText} as k, ${this.rowHash} as h, row_number() over (order by ${this.keyList}) as i
           from ${this.rel} t
          where $1::text[] is null or (${this.keyList}) > (${this.bound(1)})
          order by ${this.keyList}
          limit ${Number(limit)})
       select count(*)::int as n, coalesce(sum(c.h), 0)::text as sum,
              (select l.k from c l order by l.i desc limit 1) as last
         from c`,
      [lo],
    );
    return rows[0];
  }

  /** Count and hash sum of the rows in (lo, hi]. */
  async rangeSum(lo: Key | null, hi: Key | null): Promise<{ n: number; sum: string }> {
    const { rows } = await this.client.query(
      `select count(*)::int as n, coalesce(sum(${this.rowHash}), 0)::text as sum from ${this.rel} t where ${this.range}`,
      [lo, hi],
    );
    return rows[0];
  }

  /** Rows of (lo, hi] after `after` in key order, `limit` at most: key, display key, md5. */
  async rangeRows(lo: Key | null, hi: Key | null, after: Key | null, limit: number): Promise<RowSig[]> {
    const { rows } = await this.client.query<RowSig>(
      `select ${this.keyText} as k, ${this.display} as d, md5(${this.rowText}) as h
         from ${this.rel} t
        where ${this.range} and ($3::text[] is null or (${this.keyList}) > (${this.bound(3)}))
        order by ${this.keyList}
        limit ${Number(limit)}`,
      [lo, hi, after],
    );
    return rows;
  }

  /** The rows with these keys (by key equality: collation-independent). */
  async byKey(keys: Key[]): Promise<RowSig[]> {
    if (!keys.length) return [];
    const { rows } = await this.client.query<RowSig>(
      `select ${this.keyText} as k, ${this.display} as d, md5(${this.rowText}) as h from ${this.rel} t where ${this.byKeys}`,
      [JSON.stringify(keys)],
    );
    return rows;
  }

  /** Every captured column as text, for the rows with these keys. */
  async fullRows(keys: Key[]): Promise<(string | null)[][]> {
    if (!keys.length) return [];
    const { rows } = await this.client.query(
      `select array[${this.columns.map((c) => `t.${ident(c)}::text`).join(", ")}] as r from ${this.rel} t where ${this.byKeys}`,
      [JSON.stringify(keys)],
    );
    return rows.map((r) => r.r);
  }

  async deleteKeys(keys: Key[]): Promise<number> {
    if (!keys.length) return 0;
    const r = await this.client.query(`delete from ${this.rel} t where ${this.byKeys}`, [JSON.stringify(keys)]);
    return r.rowCount ?? 0;
  }

  async insertRows(rows: (string | null)[][], types: string[]): Promise<number> {
    if (!rows.length) return 0;
    const cols = this.columns.map(ident).join(", ");
    const r = await this.client.query(
      `insert into ${this.rel} (${cols}) overriding system value
       select ${types.map((ty, i) => `(dbsync_x.v->>${i})::${ty}`).join(", ")} from jsonb_array_elements($1::jsonb) as dbsync_x(v)`,
      [JSON.stringify(rows)],
    );
    return r.rowCount ?? 0;
  }
}

const keyId = (k: Key) => JSON.stringify(k);

class Comparer {
  private src: Side;
  private dst: Side;
  private targetTypes: string[];

  constructor(
    reader: Client,
    target: Client,
    table: string,
    partitioned: boolean,
    layout: Layout,
    private readonly repair: boolean,
    private readonly counts: Counts,
    private readonly signal: AbortSignal | undefined,
  ) {
    const rel = `${partitioned ? "" : "only "}${table}`;
    this.targetTypes = layout.columns.map((c) => layout.targetTypes.get(c)!);
    const targetKeyTypes = layout.keyCols.map((k) => layout.targetTypes.get(k)!);
    this.src = new Side(reader, rel, layout.keyCols, layout.sourceKeyTypes, layout.columns);
    this.dst = new Side(target, rel, layout.keyCols, targetKeyTypes, layout.columns);
    // Target rows are inserted by their own table name (no "only": a partitioned target routes them).
    this.dstInsert = new Side(target, table, layout.keyCols, targetKeyTypes, layout.columns);
  }
  private dstInsert: Side;

  async run(chunkRows: number, progress: () => Promise<void>) {
    let lo: Key | null = null;
    let next = this.src.nextChunk(lo, chunkRows);
    for (;;) {
      if (this.signal?.aborted) throw new Stopped();
      const s = await next;
      const final = s.n < chunkRows;
      const hi = final ? null : s.last;
      // Hash the next source chunk while the target hashes this one.
      if (!final) {
        next = this.src.nextChunk(hi, chunkRows);
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
      if (final) break;
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
    for (const part of slices(copy, 1000)) {
      const rows = await this.src.fullRows(part.map((r) => r.k));
      await this.dstInsert.insertRows(rows, this.targetTypes);
    }
    this.counts.repaired += missing.length + extra.length + different.length;
  }
}

function* slices<T>(xs: T[], n: number): Generator<T[]> {
  for (let i = 0; i < xs.length; i += n) yield xs.slice(i, i + n);
}
