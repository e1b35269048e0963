// Sequences travel with the batches: after each batch, a target sequence is set to
// the source's last value when that is higher. Never backwards, so after a cutover
// the target's next values are above every value the source used.
import { Client } from "pg";
import { DbsyncError, messageOf, sqlstateOf } from "../errors";
import { groupSequences } from "../source/protocol";

export class SequenceSync {
  /** Last value pushed per sequence, so that unchanged ones cost nothing. */
  private pushed = new Map<string, string>();

  /** Returns [seq_id, value] of every sequence the target now has at least at `value`. */
  async push(source: Client, target: Client, groupId: number): Promise<[number, string][]> {
    const rows = await groupSequences(source, groupId);
    const at: [number, string][] = [];
    for (const r of rows) {
      if (r.value === null) continue;
      at.push([r.seq_id, r.value]);
      if (this.pushed.get(r.name) === r.value) continue;
      try {
        await target.query(
          `select setval($1::regclass, $2::bigint)
            where $2::bigint > coalesce(pg_sequence_last_value($1::regclass), -9223372036854775808)`,
          [r.name, r.value],
        );
      } catch (err) {
        throw new DbsyncError(`sequence ${r.name} on the target: ${messageOf(err)}`, {
          sqlstate: sqlstateOf(err),
          hint: `Create sequence ${r.name} on the target (as it is on the source), then the batch is retried.`,
        });
      }
      this.pushed.set(r.name, r.value);
    }
    return at;
  }

  /** After a rollback the target may not hold what was pushed. */
  forget() {
    this.pushed.clear();
  }
}
