// Sequences travel with the batches: after each batch, a target sequence is set to
// the source's last value when that is further in the sequence's direction (higher,
// lower for a negative increment). Never backwards, so after a cutover the target's
// next values are beyond every value the source used.
import { Client, escapeLiteral } from "pg";
import { DbsyncError, messageOf, sqlstateOf } from "../errors";
import { GroupSequence } from "../source/protocol";

export class SequenceSync {
  /** Last value pushed per sequence, so that unchanged ones cost nothing. */
  private pushed = new Map<string, string>();

  /**
   * Brings the target's sequences up to `rows` (the source's, read with the batch's
   * plan). Returns [seq_id, value] of every
   * sequence the target will have at least at `value` once the batch commits, and
   * `atCommit`: the statements that move the sequences this session has set before,
   * for the commit's round trip. A sequence not set before in this session is set
   * now, on its own: a missing one fails with an error that names it.
   */
  async push(rows: GroupSequence[], target: Client): Promise<{ at: [number, string][]; atCommit: string }> {
    const at: [number, string][] = [];
    const atCommit: string[] = [];
    for (const r of rows) {
      if (r.value === null) continue;
      at.push([r.seq_id, r.value]);
      const before = this.pushed.get(r.name);
      if (before === r.value) continue;
      if (before !== undefined) {
        atCommit.push(setval(escapeLiteral(r.name), escapeLiteral(r.value)));
        this.pushed.set(r.name, r.value);
        continue;
      }
      try {
        await target.query(setval("$1", "$2"), [r.name, r.value]);
      } catch (err) {
        throw new DbsyncError(`sequence ${r.name} on the target: ${messageOf(err)}`, {
          sqlstate: sqlstateOf(err),
          hint: `Create sequence ${r.name} on the target (as it is on the source), then the batch is retried.`,
        });
      }
      this.pushed.set(r.name, r.value);
    }
    return { at, atCommit: atCommit.join(";\n") };
  }

  /** After a rollback the target may not hold what was pushed. */
  forget() {
    this.pushed.clear();
  }
}

/**
 * Sets sequence `name` to `value` unless it is there already or beyond (never
 * backwards): beyond is lower for a descending sequence, which "higher" kept at its
 * first value while the source handed out the ones below.
 */
function setval(name: string, value: string): string {
  return `select pg_catalog.setval(q.seqrelid, ${value}::bigint) from pg_catalog.pg_sequence q
            where q.seqrelid = ${name}::regclass
              and case when q.seqincrement > 0
                       then ${value}::bigint > coalesce(pg_catalog.pg_sequence_last_value(q.seqrelid), -9223372036854775808)
                       else ${value}::bigint < coalesce(pg_catalog.pg_sequence_last_value(q.seqrelid), 9223372036854775807) end`;
}
