// What the sidecar reads about a subscription on the source.
import { Client } from "pg";

export interface Subscription {
  sub_id: number;
  name: string;
  sub_uuid: string;
  group_id: number;
  target_conninfo: string;
  paused: boolean;
  position_tick: number;
  /** resync_subscription asked to accept the source's position over the target's. */
  reset_target: boolean;
}

export async function loadSubscription(source: Client, name: string): Promise<Subscription | undefined> {
  const { rows } = await source.query<Subscription>(
    `select sub_id, name, sub_uuid, group_id, target_conninfo, paused, position_tick::int8::float8 as position_tick,
            reset_target
       from dbsync.subscriptions where name = $1`,
    [name],
  );
  return rows[0];
}
