// The connections a process applies with, shared by all its subscriptions, so that
// their number follows --concurrency, not the number of subscriptions. A
// subscription takes a source reader and a target connection when its sync job
// starts and gives them back when it has caught up (or fails: then they are
// closed); an idle subscription holds neither. Target connections are pooled per
// conninfo: the subscriptions of one target server and database share them, and
// whatever a target session keeps between batches (stage tables, replica mode, the
// sequences pushed: TargetState) stays with its connection. Connections idle for
// IDLE_MS are closed.
import { Pool, PoolClient } from "pg";
import { clientConfig } from "../db";
import { TargetState } from "../target/apply";
import { ensureTargetSchema, enterReplicaMode } from "../target/progress";
import { SequenceSync } from "../target/sequences";
import { StageTables } from "../target/stage";

/** A pooled connection left idle this long is closed (ms). */
export const IDLE_MS = 10_000;

const READER_NAME = "dbsync read";
const TARGET_NAME = "dbsync apply";

export interface LinkOptions {
  sourceUrl: string | undefined;
  /** Subscriptions applying at once: each holds one source reader and one target connection. */
  concurrency: number;
  statementTimeoutMs: number;
}

interface Named {
  pool: Pool;
  /** The conninfo names none: the session is named after the subscription it serves. */
  rename: string | null;
}

export class Links {
  private readonly source: Named;
  private readonly targets = new Map<string, Named>();
  private readonly states = new WeakMap<PoolClient, TargetState>();
  private readonly owners = new WeakMap<PoolClient, Named>();

  constructor(private readonly opts: LinkOptions) {
    this.source = this.pool(opts.sourceUrl, READER_NAME);
  }

  private pool(conninfo: string | undefined, name: string): Named {
    const config = clientConfig(conninfo, { applicationName: name, statementTimeoutMs: this.opts.statementTimeoutMs });
    const pool = new Pool({ ...config, max: this.opts.concurrency, idleTimeoutMillis: IDLE_MS });
    // A pooled connection that dies while idle is dropped by the pool; the next
    // statement on a leased one fails and the session closes it.
    pool.on("error", () => undefined);
    return { pool, rename: config.application_name === name ? name : null };
  }

  /** A source connection for a subscription's reader, named after it. */
  async reader(subscription: string): Promise<PoolClient> {
    return this.lease(this.source, subscription);
  }

  /**
   * A target connection for `conninfo`, with dbsync's tables there and replica mode
   * on, and the state its batches keep on it.
   */
  async target(conninfo: string, subscription: string): Promise<{ client: PoolClient; state: TargetState }> {
    let named = this.targets.get(conninfo);
    if (!named) {
      named = this.pool(conninfo, TARGET_NAME);
      this.targets.set(conninfo, named);
    }
    const client = await this.lease(named, subscription);
    let state = this.states.get(client);
    if (!state) {
      try {
        await ensureTargetSchema(client);
        await enterReplicaMode(client);
      } catch (err) {
        this.release(client, true);
        throw err;
      }
      state = { stages: new StageTables(), sequences: new SequenceSync() };
      this.states.set(client, state);
    }
    return { client, state };
  }

  private async lease(named: Named, subscription: string): Promise<PoolClient> {
    const client = await named.pool.connect();
    this.owners.set(client, named);
    if (named.rename) {
      try {
        await client.query("select pg_catalog.set_config('application_name', $1, false)", [`${named.rename} ${subscription}`.slice(0, 63)]);
      } catch (err) {
        this.release(client, true);
        throw err;
      }
    }
    return client;
  }

  /**
   * Back to its pool, outside any transaction (its name back to the pool's), or
   * closed when `broken`: after an error its session's state is unknown.
   */
  release(client: PoolClient, broken = false): void {
    const named = this.owners.get(client);
    if (broken || !named?.rename) {
      client.release(broken || undefined);
      return;
    }
    client
      .query("select pg_catalog.set_config('application_name', $1, false)", [named.rename])
      .then(() => client.release(), (err: Error) => client.release(err));
  }

  async close(): Promise<void> {
    const pools = [this.source, ...this.targets.values()].map((n) => n.pool);
    this.targets.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}
