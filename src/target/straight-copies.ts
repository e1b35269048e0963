// Whether a piece of new rows is worth copying straight into its table (merge.ts
// copyRows). That COPY is the cheapest way in for rows of keys the target does not
// have (a backlog of inserts); for rows of keys it has (updates) it fails on the
// first one, and the piece then goes through the stage: the failed COPY, its
// savepoint and rollback were wasted (about 0.4 ms of the target's CPU and two
// round trips a table, every batch of a table that is only ever updated). So a
// table whose straight COPY failed skips it for its next pieces, twice as many
// after each failure in a row (up to MAX_SKIP), and tries again after them: a
// table that turns to inserts gets the COPY back soon. Kept per target database
// (the connections of one pool share it), by table name.

/** At most this many pieces of a table skip the straight COPY after a failure. */
const MAX_SKIP = 64;

export class StraightCopies {
  private tables = new Map<string, { failures: number; skip: number }>();

  /** Whether to try the straight COPY for this piece of `table` (counts a skipped piece). */
  attempt(table: string): boolean {
    const t = this.tables.get(table);
    if (!t || t.skip === 0) return true;
    t.skip--;
    return false;
  }

  /**
   * Whether no straight COPY of `table` has failed since its last success. A batch
   * merged at once (merge.ts mergeAtOnce) tries it only then: a failure there fails
   * the statement of all its tables, so a table that is only ever updated would
   * cost a failed statement and a table at a time every few batches.
   */
  clean(table: string): boolean {
    return !this.tables.has(table);
  }

  /** The outcome of a straight COPY of `table`. */
  record(table: string, ok: boolean) {
    if (ok) {
      this.tables.delete(table);
      return;
    }
    const failures = (this.tables.get(table)?.failures ?? 0) + 1;
    this.tables.set(table, { failures, skip: Math.min(2 ** failures, MAX_SKIP) });
  }
}
