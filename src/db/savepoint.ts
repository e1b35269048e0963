/**
 * SQL that undoes a savepoint's work and ends the savepoint. Released too: ROLLBACK TO
 * keeps the savepoint, and the rest of the transaction then runs in the subtransaction
 * it starts again, one level deeper at each failure (a subtransaction id per level for
 * every later write; every visibility check of a row the batch wrote walks the levels).
 */
export function undoSavepoint(name: string): string {
  return `rollback to savepoint ${name}; release savepoint ${name}`;
}
