// The one way dbsync reads the source as of a tick: a REPEATABLE READ, READ ONLY
// transaction that imports the snapshot exported with the tick. A batch's reader
// (batches.ts, openReader) and a verification's (src/verify/snapshot.ts) both open
// theirs here, so both see exactly what the tick's transaction saw.
import { ClientBase, escapeLiteral } from "pg";

/**
 * Starts `reader`'s transaction on the exported `snapshot`; `settings`: SET LOCAL
 * statements for the same round trip. On an error the transaction stays open,
 * aborted: the caller rolls it back or closes the connection.
 */
export async function readAtSnapshot(reader: ClientBase, snapshot: string, settings?: string): Promise<void> {
  await reader.query(
    `begin isolation level repeatable read read only;
     set transaction snapshot ${escapeLiteral(snapshot)}${settings ? `;\n     ${settings}` : ""}`,
  );
}
