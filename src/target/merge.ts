// A refreshed table's rows onto the target, piece by piece as the batch stream
// brings them (stream.ts): each piece is copied into the table's stage, then
//  - where the rows may be written over the target's rows of the same key (one key
//    shape, equal keys identical: see batch_plan's in_place), each piece is merged
//    at once: its keys that are gone deleted, its rows updated in place (less WAL
//    than a DELETE and an INSERT, no dead row, HOT where the pages have room) and
//    the rest inserted; the stage is emptied for the next piece. Where a unique
//    index of the target refuses a second row of a key, a piece of rows only (no
//    key gone) is first copied straight into the table: new rows, as in a backlog
//    of inserts, then cost one COPY (see copyRows; not for a table whose last
//    such COPY failed, for a while: straight-copies.ts);
//  - otherwise (keys of several shapes, keys equal with different texts) the stage
//    keeps every piece, and at the table's end every changed key is deleted and
//    the rows inserted.
// An update in place that fails (a unique value that moved between rows of the
// batch, the pieces merged one after the other; an identity column GENERATED
// ALWAYS) is rolled back to its savepoint, and from that piece on the table is
// merged as in the second case: its remaining rows and keys are deleted and
// inserted at its end, which gives the same result (each key ends as the source's
// row), since the pieces merged before hold the source's rows of their keys.
import { Client, escapeIdentifier as ident, escapeLiteral } from "pg";
import { copyLines } from "../db/copy-from";
import { undoSavepoint } from "../db/savepoint";
import { DbsyncError, sqlstateOf } from "../errors";
import { PlanTable } from "../source/batches";
import { Phases } from "./phases";
import { Stage, StageTables } from "./stage";
import { StraightCopies } from "./straight-copies";
import { Piece, PieceSink, SinkItem, StagedCounts, rowsOf } from "./stream";

type WithTable = <T>(table: string, fn: () => Promise<T>) => Promise<T>;

export interface StagedTable {
  t: PlanTable;
  stage: Stage;
  /** The table's name in the target's DELETE and UPDATE (ONLY for a plain table). */
  table: string;
  /** A unique index of the target refuses a row of a key it has, at once: new rows may be copied straight in. */
  refusesDuplicates: boolean;
}

interface Progress {
  /** Lines in the stage not merged yet, per op. */
  counts: StagedCounts;
  /** The stage holds merged rows: empty it before the next piece. */
  merged: boolean;
  /** Merged piece by piece; false once an update in place failed. */
  inPlace: boolean;
  /** A piece copied straight into the table failed: not again in this batch. */
  copyFailed: boolean;
}

export class StreamMerge implements PieceSink {
  private progress = new Map<number, Progress>();

  constructor(
    private readonly target: Client,
    private readonly tables: Map<number, StagedTable>,
    private readonly phases: Phases,
    private readonly withTable: WithTable,
    private readonly stages: StageTables,
    private readonly straight: StraightCopies,
    /** The batch has no DDL and no truncated table: its tables' rows may be merged at once (mergeAtOnce). */
    private readonly combine = false,
    /** The first items() call (a small batch's whole stream) is held for mergeAndCommit. */
    private holds = false,
  ) {}

  /** The items of a small batch, held for its commit's round trip (mergeAndCommit). */
  private held?: SinkItem[];

  async items(items: SinkItem[]) {
    if (this.holds) {
      this.holds = false;
      this.held = items;
      return;
    }
    await this.release();
    await this.merge(items);
  }

  /** The held items, merged as items() would have. */
  async release() {
    const held = this.held;
    this.held = undefined;
    if (held) await this.merge(held);
  }

  /**
   * The held items merged at once (mergeAtOnce) with `commit()`, the statements that
   * end the transaction, in the same round trip: a small batch's merge and commit
   * took a round trip each, and at load a round trip is a wait for a CPU at each end
   * (the commit's piece of a change's path: 11 ms at load 14, bench/HISTORY.md,
   * session 22). True once
   * committed. Otherwise, with nothing held, items that do not go at once, or
   * `commit()` undefined (the caller has statements to run first), they are merged as
   * items() would, and the caller commits.
   */
  async mergeAndCommit(commit: () => string | undefined): Promise<boolean> {
    const held = this.held;
    this.held = undefined;
    return !!held && this.merge(held, commit);
  }

  /** True when `commit` went with the merge (see mergeAndCommit). */
  private async merge(items: SinkItem[], commit?: () => string | undefined): Promise<boolean> {
    const merged = this.combine && (await this.mergeAtOnce(items, commit));
    if (merged === "committed") return true;
    if (merged) items = items.filter((i) => !("piece" in i));
    for (const i of items) {
      if ("piece" in i) await this.piece(i.piece);
      else await this.end(i.end);
    }
    return false;
  }

  async piece(p: Piece) {
    const { t, stage } = this.tables.get(p.id)!;
    let pr = this.progress.get(p.id);
    if (!pr) {
      pr = { counts: new Map(), merged: false, inPlace: mergesInPlace(t, stage), copyFailed: false };
      this.progress.set(p.id, pr);
    }
    const progress = pr;
    await this.withTable(t.target, async () => {
      if (
        progress.inPlace &&
        this.tables.get(p.id)!.refusesDuplicates &&
        !progress.copyFailed &&
        p.counts.size === 1 &&
        p.counts.has("U") &&
        this.straight.attempt(t.target)
      ) {
        const ok = await this.phases.time(`COPY into ${t.target}`, () => this.copyRows(t, p));
        this.straight.record(t.target, ok);
        if (ok) return;
        progress.copyFailed = true;
      }
      // A small piece of rows to merge in place goes into the stage in the merge's
      // round trip (see inlineRows), and so does the emptying of the stage (the rows
      // of the table before it, of its own piece before): a round trip of its own
      // for every table of a batch, where tables alike share a stage. Otherwise the
      // emptying, then a COPY, before the merge.
      const inline = progress.inPlace && p.counts.size === 1 && p.counts.has("U") && inlinable(p);
      const emptying: string[] = [];
      await this.phases.time("stage COPY", async () => {
        const other = this.stages.taking(stage);
        if (other) emptying.push(other);
        if (progress.merged) emptying.push(`truncate ${stage.name}`);
        progress.merged = false;
        if (inline) return;
        if (emptying.length) await this.target.query(emptying.join(";\n"));
        await copyPiece(this.target, t, stage, p);
      });
      for (const [op, n] of p.counts) progress.counts.set(op, (progress.counts.get(op) ?? 0) + n);
      if (!progress.inPlace) return;
      progress.inPlace = await this.phases.time(`merge ${t.target}`, () =>
        this.mergeInPlace(p.id, progress.counts, inline ? { piece: p, emptying } : undefined),
      );
      // The update failed, rolled back with the rows staged in its round trip: the
      // piece is staged again for the table's merge at its end.
      if (inline && !progress.inPlace) await this.phases.time("stage COPY", () => copyPiece(this.target, t, stage, p));
      progress.merged = progress.inPlace;
      if (progress.merged) progress.counts = new Map();
    });
  }

  async end(id: number) {
    const pr = this.progress.get(id);
    if (!pr || pr.merged || !pr.counts.size) return;
    const { t, stage } = this.tables.get(id)!;
    // Tables that may share a stage come one after another (in one stream, readers.ts):
    // no other table's rows can have taken its stage.
    if (!this.stages.holds(stage)) throw new DbsyncError(`internal error: the stage of ${t.target} was taken by another table before its rows were merged`);
    await this.withTable(t.target, () => this.phases.time(`merge ${t.target}`, () => this.replace(id, pr.counts)));
  }

  /**
   * A piece of rows only, copied straight into the table (COPY writes many rows a
   * page, where INSERT ... SELECT from the stage writes them one by one: for new
   * rows, half the target's CPU). A row of a key the table has, or a value that a
   * unique index or a constraint refuses, fails the COPY: it is rolled back to its
   * savepoint, and the piece goes the way of the stage (whose update in place or
   * error is the answer). So does a COPY that wrote fewer rows than it read: a
   * target trigger skipped some (one that ignores keys the table has would
   * otherwise leave their old rows in place). A small piece (see inlinable) is
   * an INSERT of literals instead, sent with the savepoint and its release: one
   * round trip where the COPY's way takes four. Its rows are counted there: fewer
   * than the piece's fail the statement (a division by zero) before the release.
   */
  private async copyRows(t: PlanTable, p: Piece): Promise<boolean> {
    const lines = p.counts.get("U")!;
    try {
      if (inlinable(p)) {
        await this.target.query(`savepoint dbsync_copy;\n${insertCounted(t, p)};\nrelease savepoint dbsync_copy`);
        return true;
      }
      await this.target.query("savepoint dbsync_copy");
      const written = await copyLines(this.target, `copy ${t.target} (${columnList(t)}) from stdin`, rowsOf(p));
      if (written === lines) {
        await this.target.query("release savepoint dbsync_copy");
        return true;
      }
    } catch {
      // The stage's way says why, if it fails too.
    }
    await this.target.query(undoSavepoint("dbsync_copy"));
    return false;
  }

  /**
   * A small batch's pieces (at most INLINE_LINES lines in all) merged in one round
   * trip, where they took one each (and a COPY's two more for a piece with keys
   * gone): a batch of a few tables at 1,000 tx/s waited mostly on those round trips.
   * Each piece goes as it would alone (merge's inline path, or copyRows' INSERT for
   * new rows where no straight COPY of the table has failed: StraightCopies.clean),
   * all under one savepoint. Only first pieces of tables merged in place,
   * each staged one with a temp table of its own (tables sharing one must come one
   * after another, each emptying it for the next).
   * False, with nothing done (rolled back to the savepoint, which is released), when
   * the pieces do not qualify or a statement fails: they then go one table at a time,
   * whose statements fail with the table named, or do what a table needs
   * (copyRows' stage, an update that failed merged at the table's end).
   * With `commit()`'s statements (see mergeAndCommit) after the release, in the same
   * round trip: "committed" once they ran. One of them that fails is the error
   * (the savepoint released, there is none to roll back to).
   */
  private async mergeAtOnce(items: SinkItem[], commit?: () => string | undefined): Promise<boolean | "committed"> {
    const pieces = items.flatMap((i) => ("piece" in i ? [i.piece] : []));
    const qualifies = (p: Piece) => {
      const { t, stage } = this.tables.get(p.id)!;
      return !this.progress.has(p.id) && mergesInPlace(t, stage) && [...p.counts.keys()].every((op) => op === "U" || op === "D");
    };
    const all = { bytes: pieces.reduce((n, p) => n + p.bytes, 0), counts: new Map([["", pieces.reduce((n, p) => n + lines(p), 0)]]) };
    if (!pieces.length || !pieces.every(qualifies) || !inlinable(all)) return false;
    const newRows = (p: Piece) => {
      const { t, refusesDuplicates } = this.tables.get(p.id)!;
      return refusesDuplicates && p.counts.size === 1 && p.counts.has("U") && this.straight.clean(t.target);
    };
    const staged = pieces.filter((p) => !newRows(p));
    if (new Set(staged.map((p) => this.tables.get(p.id)!.stage.name)).size !== staged.length) return false;
    const emptying: string[] = [];
    const statements: string[] = [];
    const straight: string[] = [];
    for (const p of pieces) {
      const { t, stage } = this.tables.get(p.id)!;
      if (newRows(p)) {
        straight.push(t.target);
        statements.push(insertCounted(t, p));
        continue;
      }
      const other = this.stages.taking(stage);
      if (other) emptying.push(other);
      statements.push(inlineRows(t, stage, p), ...this.inPlace(p.id, p.counts));
    }
    // (After the statements: they count the lines their stages were written.)
    const ending = commit?.();
    try {
      await this.phases.time("merge tables at once", () =>
        this.target.query([...emptying, "savepoint dbsync_merge", ...statements, "release savepoint dbsync_merge", ...(ending ? [ending] : [])].join(";\n")),
      );
    } catch (err) {
      await this.target.query(undoSavepoint("dbsync_merge")).catch(() => {
        throw err;
      });
      return false;
    }
    for (const p of pieces) {
      const copied = straight.includes(this.tables.get(p.id)!.t.target);
      this.progress.set(p.id, { counts: new Map(), merged: !copied, inPlace: true, copyFailed: false });
    }
    for (const table of straight) this.straight.record(table, true);
    return ending ? "committed" : true;
  }

  /**
   * The statements that merge table `id`'s staged lines in place: the keys gone
   * deleted, the rows written over the target's rows of their key, the others
   * inserted (the stage's own row ids tell which: no second probe of the key index).
   */
  private inPlace(id: number, counts: StagedCounts): string[] {
    const { t, stage, table } = this.tables.get(id)!;
    const key = t.upsert_key!;
    const has = (op: string) => (counts.get(op) ?? 0) > 0;
    const statements = has("D") ? [deleteWhere(table, stage, "D", key)] : [];
    if (!has("U")) return statements;
    const set = stage.updateSet(key).map((c) => `${ident(c)} = s.${ident(c)}`);
    statements.push(
      `with updated as (
         update ${table} t set ${set.join(", ")} from ${stage.name} s
          where s.${stage.op} = 'U' and ${stage.keyMatch(key)}
         returning s.ctid as row)
       ${insertRows(t, stage)} and not exists (select from updated u where u.row OPERATOR(pg_catalog.=) s.ctid)`,
    );
    return statements;
  }

  /**
   * The staged keys that are gone deleted, the staged rows written over the target's
   * rows of their key and the others inserted (the stage's own row ids tell which:
   * no second probe of the key index). False when the update failed (rolled back
   * to its savepoint: the deletes stay, being right whatever comes after, and so
   * does the emptying of the stage sent before it, its rows being staged again).
   * An inline piece (rows only) comes with its rows, and the statements that empty
   * the stage for them, to send in the same round trip.
   */
  private async mergeInPlace(id: number, counts: StagedCounts, inline?: { piece: Piece; emptying: string[] }): Promise<boolean> {
    const { t, stage } = this.tables.get(id)!;
    const statements = this.inPlace(id, counts);
    if ((counts.get("D") ?? 0) > 0) await this.target.query(statements.shift()!);
    if (!statements.length) return true;
    // One round trip: a failed statement skips the rest of the string, and the
    // savepoint set before it is there to roll back to.
    try {
      await this.target.query(
        [...(inline?.emptying ?? []), "savepoint dbsync_update", ...(inline ? [inlineRows(t, stage, inline.piece)] : []), ...statements, "release savepoint dbsync_update"].join(";\n"),
      );
      return true;
    } catch (err) {
      // Released too: a statement sent ahead of the next piece's savepoint that fails
      // must find none to roll back to (an older one would undo the tables merged
      // since), and that failure is then the error.
      await this.target.query(undoSavepoint("dbsync_update")).catch(() => {
        throw err;
      });
      // A unique value that moved between rows of the batch, a deadlock or a
      // timeout may let the next batch update; an identity column, a partition key
      // that cannot move (an old server) or a missing right will not.
      if (/^(428C9|0A000|42)/.test(sqlstateOf(err) ?? "")) stage.updateRefused = true;
      return false;
    }
  }

  /** Every staged key's rows deleted (gone keys, changed keys of any shape, the rows' keys), then the rows inserted. */
  private async replace(id: number, counts: StagedCounts) {
    const { t, stage, table } = this.tables.get(id)!;
    const has = (op: string) => (counts.get(op) ?? 0) > 0;
    const statements = t.shapes.filter((s) => has(s.op)).map((s) => deleteWhere(table, stage, s.op, s.key_columns));
    if (has("U")) {
      if (t.upsert_key) statements.push(deleteWhere(table, stage, "U", t.upsert_key));
      statements.push(insertRows(t, stage));
    }
    // In one round trip (no parameters: the simple protocol allows it).
    if (statements.length) await this.target.query(statements.join(";\n"));
  }
}

/** Whether the table's pieces are merged as they come (see the header). */
function mergesInPlace(t: PlanTable, stage: Stage): boolean {
  return !!t.upsert_key && !!t.in_place && stage.mayUpdate(t.upsert_key);
}

function deleteWhere(table: string, stage: Stage, op: string, key: string[]): string {
  return `delete from ${table} t using ${stage.name} s where s.${stage.op} = '${op}' and ${stage.keyMatch(key)}`;
}

function insertRows(t: PlanTable, stage: Stage): string {
  const cols = columnList(t);
  return `insert into ${t.target} (${cols}) overriding system value
          select ${cols} from ${stage.name} s where s.${stage.op} = 'U'`;
}

/**
 * A piece of rows (see inlinable) as one INSERT of literals into the table, that
 * fails (a division by zero) when it wrote fewer rows than the piece has: a
 * target trigger skipped some (see copyRows).
 */
function insertCounted(t: PlanTable, p: Piece): string {
  return `with written as (insert into ${t.target} (${columnList(t)}) overriding system value values ${literalRows(rowsOf(p))} returning 1)
          select 1 / (pg_catalog.count(*) = ${p.counts.get("U")!})::int from written`;
}

function columnList(t: PlanTable): string {
  return t.columns.map((c) => ident(c)).join(", ");
}

async function copyPiece(target: Client, t: PlanTable, stage: Stage, p: Piece) {
  for (const n of p.counts.values()) stage.written += n;
  await copyLines(target, `copy ${stage.name} (${stage.op}, ${columnList(t)}) from stdin`, p.data);
}

/**
 * Pieces of at most this many lines and bytes are staged by an INSERT in the
 * merge's round trip rather than by a COPY (two round trips of their own: a batch
 * of a few dozen changes to a few tables spent most of its target time waiting on
 * them).
 */
export const INLINE_LINES = 500;
const INLINE_BYTES = 1 << 20;

/**
 * Whether piece `p` goes by an INSERT of literals (see inlineRows). Not a piece of
 * more bytes: the round trips saved are nothing against its rows' time, and a line
 * longer than a JavaScript string can be (a value of about half a GB) would fail
 * the statement's building, where COPY takes it (its savepoint then never set, the
 * batch failed at every retry).
 */
function inlinable(p: Pick<Piece, "bytes" | "counts">): boolean {
  return p.bytes <= INLINE_BYTES && lines(p) <= INLINE_LINES;
}

function lines(p: Pick<Piece, "counts">): number {
  return [...p.counts.values()].reduce((a, b) => a + b, 0);
}

/**
 * The piece's lines into the stage by an INSERT of literals: each field the text
 * COPY would have read (COPY's escapes undone, \N a NULL), given to the column's
 * type input function as COPY gives it (an untyped literal). The stage is a temp
 * table of dbsync's: no rule or trigger sees the INSERT.
 */
function inlineRows(t: PlanTable, stage: Stage, p: Piece): string {
  for (const n of p.counts.values()) stage.written += n;
  return `insert into ${stage.name} (${stage.op}, ${columnList(t)}) values ${literalRows(p.data)}`;
}

/** Lines of COPY's text format as the rows of a VALUES list. */
function literalRows(data: Buffer[]): string {
  const rows: string[] = [];
  for (const b of data) {
    for (const line of b.toString("utf8").split("\n")) {
      if (line) rows.push(`(${line.split("\t").map(copyFieldLiteral).join(", ")})`);
    }
  }
  return rows.join(", ");
}

/** The escapes the source's COPY TO writes (besides \N), and their characters. */
const COPY_ESCAPES: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };

/**
 * A field of COPY's text format, as the source's COPY TO writes it, as an SQL
 * literal (NULL for \N). COPY TO escapes a backslash, the delimiter and these
 * control characters, never a byte by its octal or hex code.
 */
function copyFieldLiteral(field: string): string {
  if (field === "\\N") return "NULL";
  if (!field.includes("\\")) return escapeLiteral(field);
  return escapeLiteral(field.replace(/\\(.)/gs, (_, c: string) => COPY_ESCAPES[c] ?? c));
}

