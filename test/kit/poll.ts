// The sidecar's poll with its verdicts (src/source/protocol.ts pollWork), without a
// sidecar: a group of one table t and one subscription s, polled as the sidecar
// does, the subscription's position moved as applying would.
import assert from "node:assert/strict";
import { freshEnv, value } from "../helpers";
import { setup } from "./convergence";
import { type GroupVerdict, pollWork } from "../../src/source/protocol";

/** The group, settled nowhere yet, its verdicts, and the poll. */
export async function pollFixture(label: string) {
  const env = await freshEnv(label);
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  const gid = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  const verdicts = new Map<number, GroupVerdict>();
  const poll = async () => (await pollWork(env.source, verdicts)).map((r) => r.name);
  /** A forced tick, and the subscription's position moved to it (as applying it would). */
  const applied = async () => {
    await env.source.query("select dbsync.tick($1, true)", [gid]);
    await env.source.query("update dbsync.subscriptions s set position_tick = g.last_tick_id from dbsync.groups g where g.group_id = s.group_id and s.name = 's'");
  };
  /**
   * Polls until the group's verdict is settled: twice when nothing runs, but a
   * transaction of another test file (another database of the same cluster) that
   * has an xid below the bound keeps it unsettled until it ends.
   */
  const settle = async () => {
    for (let i = 0; i < 200 && !verdicts.get(gid)?.settled; i++) {
      assert.deepEqual(await poll(), [], "nothing to apply");
      if (i >= 2) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(verdicts.get(gid)?.settled, true, "settled with nothing running");
  };
  return { env, gid, verdicts, poll, applied, settle };
}
