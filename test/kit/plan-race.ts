// batch_plan run on a batch's snapshot after execute_ddl committed between the tick
// and the plan, as the applier opens a batch (src/source/batches.ts): the plan's
// statements name the tables' columns as of the snapshot, and are parsed with the
// catalog of now.
import { beginBatch } from "../../src/source/batches";
import { readAtSnapshot } from "../../src/source/snapshot";
import { Env, sqlError } from "../helpers";

/** The error batch_plan of subscription s raises when `ddl` ran through execute_ddl (group g) after its batch's snapshot. */
export async function planErrorAfterDdl(env: Env, ddl: string): Promise<Error & { code?: string }> {
  const [control, reader] = [await env.source.connect(), await env.source.connect()];
  try {
    const batch = (await beginBatch(control, "s", 0, undefined))!;
    await readAtSnapshot(reader, batch.snapshot!);
    await control.query("commit");
    await env.source.query("select dbsync.execute_ddl('g', $1)", [ddl]);
    return await sqlError(reader, `select dbsync.batch_plan(${batch.subId}, ${batch.from}, ${batch.to})`);
  } finally {
    await reader.query("rollback").catch(() => undefined);
    control.release();
    reader.release();
  }
}
