// Each streaming table's SQL as dbsync.batch_plan built it ("kept"), kept by the
// process and given back with the next batches of its group (batch_plan's p_kept),
// whichever subscription, reader session or applier reads them: batch_plan then
// takes a table's entry as it is where its key (what the SQL is built from, as of
// that batch's snapshot, with the installed code's sha) is still the one it
// computes, instead of building it again (about 0.6 ms of the source's CPU a table).
// Kept in the reader's session before (migration 0036): the pool hands any reader
// to any subscription, so a session seldom saw the same group again (bench:scale,
// 1,000 tables in 50 groups: three quarters of the tables' SQL built anyway).

/** A table's entry: opaque here, batch_plan's own. */
export type KeptPlan = { key: string; entry: unknown };

/**
 * Tables whose entries a process keeps, most recently used last (about 1.5 KB each
 * for a table of a few columns).
 */
export const KEPT_TABLES = 5_000;
/**
 * Entries given with one batch, its group's most recently used: each is sent and
 * parsed with the plan, so a group of many tables whose batches touch few of them
 * would pay for all of its entries at every batch.
 */
export const GIVEN_TABLES = 200;

export class KeptPlans {
  /** By table_id (as batch_plan names it: text), with its group. */
  private readonly tables = new Map<string, KeptPlan & { group: number }>();

  /** What to give batch_plan for a batch of group `group` (p_kept), or null. */
  given(group: number): Record<string, KeptPlan> | null {
    const mine = [...this.tables].filter(([, k]) => k.group === group).slice(-GIVEN_TABLES);
    return mine.length ? Object.fromEntries(mine.map(([id, { key, entry }]) => [id, { key, entry }])) : null;
  }

  /**
   * After a plan of group `group`: the entries it built kept, the tables it
   * refreshed with one given made the most recently used, the oldest past
   * KEPT_TABLES dropped.
   */
  took(group: number, refreshed: number[], built: Record<string, KeptPlan> | undefined) {
    for (const id of refreshed.map(String)) {
      const k = this.tables.get(id);
      if (!k) continue;
      this.tables.delete(id);
      this.tables.set(id, k);
    }
    for (const [id, { key, entry }] of Object.entries(built ?? {})) {
      this.tables.delete(id);
      this.tables.set(id, { group, key, entry });
    }
    for (const id of this.tables.keys()) {
      if (this.tables.size <= KEPT_TABLES) break;
      this.tables.delete(id);
    }
  }
}
