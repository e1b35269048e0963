// The pools a process keeps on one server (the source's control and job queue
// pools, the appliers' readers and target connections: src/apply/links.ts). A new
// session costs the server more than its start-up: on its first calls it compiles
// every dbsync function it runs and reads the catalog for every table it touches
// (0.03-0.1 CPU-s on a fresh database). So a pool keeps its connections idle for
// a while, and keeps one that an ERROR refused a statement on.
import { Client, DatabaseError, Pool, PoolConfig } from "pg";

/**
 * A pooled connection left idle this long is closed (ms). A pool hands out its most
 * recently used connection first, so while a process applies less than
 * --concurrency subscriptions of a target database at once its other connections
 * idle; closed after 10 s (pg-pool's default), they were opened again a few batches
 * later, each new session paying its start-up and the catalog reads of every table
 * it merges (bench:scale's rounds: 1.4-3.1 CPU-s of the target's a round in backends
 * that exited, as much as the applying ones). The same held for the job queue's
 * workers, whose polls need one connection most of the time and several now and then.
 */
export const IDLE_MS = 60_000;

/** pg's Pool, whose connections idle IDLE_MS and survive an ERROR (keepOnError). */
export function newPool(config: PoolConfig): Pool {
  return keepOnError(new Pool({ idleTimeoutMillis: IDLE_MS, ...config }));
}

/**
 * `pool`, whose query() gives a connection back to the pool after a statement the
 * server refused with an ERROR (a key taken, a lock not granted in time, a
 * serialization failure): pg-pool's own closes the connection on any error, and
 * the next query pays a new session. Only a connection the error left idle, outside
 * any transaction, is kept: one a FATAL error ended, one lost, or one in a
 * transaction a failed multi-statement string left open, is closed as before.
 * (Connections taken with connect() are the caller's to release as it sees fit.)
 */
export function keepOnError(pool: Pool): Pool {
  pool.query = (async (...args: Parameters<Client["query"]>) => {
    const client = await pool.connect();
    // As pg-pool's: a connection lost meanwhile fails the query, not the process.
    const lost = () => undefined;
    client.on("error", lost);
    try {
      const result = await client.query(...args);
      client.release();
      return result;
    } catch (err) {
      const kept = err instanceof DatabaseError && err.severity === "ERROR" && client.getTransactionStatus() === "I";
      client.release(kept ? undefined : (err as Error));
      throw err;
    } finally {
      client.off("error", lost);
    }
  }) as Pool["query"];
  return pool;
}
