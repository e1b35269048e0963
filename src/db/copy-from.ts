// COPY ... FROM STDIN streams (pg-copy-streams), safe against a server error that
// comes while a write waits for the socket.
import { Client, PoolClient } from "pg";
import { from, CopyStreamQuery } from "pg-copy-streams";
import { finished } from "node:stream/promises";

/** What pg-copy-streams 7's CopyStreamQuery keeps, which its types do not declare. */
interface Internals {
  connection: unknown;
  chunks: unknown[];
  cb_destroy: ((err?: Error | null) => void) | null;
  flush(callback?: () => void): void;
}

/**
 * pg-copy-streams' COPY FROM stream. At a server error (a row refused: a straight
 * COPY into a table that holds one of the keys) the library lets go of the
 * connection, and a write waiting for the socket's 'drain' then wrote its rows to
 * it anyway: a TypeError thrown from an event handler, which ended the process
 * (brianc/node-pg-copy-streams#171, open). Here that write is dropped: the COPY has
 * failed, and its 'error' event says so.
 */
export function copyFrom(sql: string): CopyStreamQuery {
  const q = from(sql);
  const internals = q as unknown as Internals;
  const flush = internals.flush.bind(q);
  internals.flush = (callback) => {
    if (internals.connection) return flush(callback);
    internals.chunks = [];
    // A destroy() after the error waits for an answer the server has given already.
    const destroyed = internals.cb_destroy;
    internals.cb_destroy = null;
    destroyed?.();
  };
  return q;
}

/** `data` (COPY text lines) copied by `sql`; the rows written (COPY's count: without those a BEFORE trigger skipped). */
export async function copyLines(client: Client | PoolClient, sql: string, data: Buffer[]): Promise<number> {
  const ws = client.query(copyFrom(sql));
  // pg-copy-streams reports a server error by an 'error' event only.
  let error: Error | undefined;
  ws.on("error", (err) => (error ??= err));
  for (const b of data) ws.write(b);
  ws.end();
  await finished(ws).catch((err) => {
    throw error ?? err;
  });
  if (error) throw error;
  return ws.rowCount;
}
