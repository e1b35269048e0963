// Sequences travel with the batches: after each batch, a target sequence is set to
// the source's state, backwards too (setval, RESTART, TRUNCATE ... RESTART IDENTITY),
// so that after a cutover the target's next nextval gives what the source's would.
import { Client, escapeLiteral } from "pg";
import { DbsyncError, messageOf, sqlstateOf } from "../errors";
import { GroupSequence } from "../source/protocol";

export class SequenceSync {
  /** The state pushed per sequence, so that unchanged ones cost nothing. */
  private pushed = new Map<string, string>();

  /**
   * Sets the target's sequences to `rows` (the source's, read with the batch's
   * plan). Returns [seq_id, next value] of every sequence as the target will have it
   * once the batch commits, and `atCommit`: the statements that move the sequences
   * this session has set before, for the commit's round trip. A sequence not set
   * before in this session is set now, on its own: a missing one fails with an
   * error that names it.
   */
  async push(rows: GroupSequence[], target: Client): Promise<{ at: [number, string][]; atCommit: string }> {
    const at: [number, string][] = [];
    const atCommit: string[] = [];
    for (const r of rows) {
      at.push([r.seq_id, r.next_value ?? r.value]);
      const state = [r.value, r.called, r.next_value, r.increment];
      const key = JSON.stringify(state);
      const before = this.pushed.get(r.name);
      if (before === key) continue;
      if (before !== undefined) {
        atCommit.push(setval(literal(r.name), literal(r.value), literal(r.called), literal(r.next_value), literal(r.increment)));
        this.pushed.set(r.name, key);
        continue;
      }
      try {
        await target.query(setval("$1", "$2", "$3", "$4", "$5"), [r.name, ...state]);
      } catch (err) {
        const sqlstate = sqlstateOf(err);
        // A sequence that is there but may not be set is no sequence to create.
        const fix = sqlstate === "42501"
          ? `Grant the sidecar's target role UPDATE on sequence ${r.name} on the target (or make it the owner; see README, Security: target)`
          : `Create sequence ${r.name} on the target (as it is on the source)`;
        throw new DbsyncError(`sequence ${r.name} on the target: ${messageOf(err)}`, { sqlstate, hint: `${fix}, then the batch is retried.` });
      }
      this.pushed.set(r.name, key);
    }
    return { at, atCommit: atCommit.join(";\n") };
  }

  /** After a rollback the target may not hold what was pushed. */
  forget() {
    this.pushed.clear();
  }
}

function literal(v: string | boolean | null): string {
  return v === null ? "null" : escapeLiteral(String(v));
}

/**
 * Sets sequence `name` to the source's state: its last value and is_called when the
 * target counts by the same increment, else the source's next value, not called
 * (ALTER SEQUENCE ... INCREMENT on the source only), or, at the end of a sequence
 * without CYCLE (no next value), its last value, called.
 */
function setval(name: string, value: string, called: string, next: string, increment: string): string {
  return `select case when q.seqincrement = ${increment}::bigint or ${next}::bigint is null
                      then pg_catalog.setval(q.seqrelid, ${value}::bigint, ${called}::boolean)
                      else pg_catalog.setval(q.seqrelid, ${next}::bigint, false) end
            from pg_catalog.pg_sequence q where q.seqrelid = ${name}::regclass`;
}
