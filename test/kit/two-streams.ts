// The schema the two-reader tests (apply-readers, apply-pipeline-attacks) write to:
// a and b alike (one stage on the target, so one stream), c and d each with columns
// of their own, so that a big batch splits into streams of several tables and of one.
// And what the tests of several readers share (apply-readers, apply-shares): a plan
// as the reader sees it, a COPY's lines, a batch's end, a backlog applied by two.
import assert from "node:assert/strict";
import { Client, PoolClient } from "pg";
import { to as copyTo } from "pg-copy-streams";
import { Plan } from "../../src/source/batches";
import { Env, freshEnv, startSidecar } from "../helpers";
import { phasesOf } from "./apply-log";
import { setup, strictlyConverged } from "./convergence";

/** Batches of a few hundred events are big, cut in pieces of 200 lines; the sidecar's log in JSON, with its phases. */
export const SPLIT_ENV = { DBSYNC_SPLIT_EVENTS: "100", DBSYNC_STREAM_PIECE_LINES: "200", DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" };
export const TWO_STREAMS_DDL = `create table a (id int primary key, v text);
             create table b (id int primary key, v text);
             create table c (id int primary key, n int, w text);
             create table d (k text primary key, x int, y int, z text)`;
export const TWO_STREAMS_TABLES = ["a", "b", "c", "d"];

/** The plan of everything queued since subscription s's position, as the reader sees it now (in c's open transaction). */
export async function planNow(c: Client, readers: number, splitEvents: number, splitTables = false): Promise<Plan> {
  return (
    await c.query(`select dbsync.batch_plan(s.sub_id, s.position_tick, s.position_tick, 1000000, 1000000, ${readers}, ${splitEvents}, ${splitTables}) as p
                     from dbsync.subscriptions s where s.name = 's'`)
  ).rows[0].p as Plan;
}

export async function copyOut(c: Client, sql: string): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of c.query(copyTo(sql)) as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString().split("\n").filter(Boolean);
}

/** `writes` on a fresh pair of databases with `ddl`, then `check` in a reader's transaction at the end of the batch they make. */
export async function atBatchEnd(
  name: string,
  ddl: string,
  tables: string[],
  writes: (env: Env) => Promise<unknown>,
  check: (c: PoolClient) => Promise<void>,
) {
  const env = await freshEnv(name);
  await setup(env, ddl, tables);
  await writes(env);
  const c = await env.source.connect();
  try {
    await c.query("begin isolation level repeatable read");
    await check(c);
  } finally {
    await c.query("rollback");
    c.release();
  }
}

/** The backlog queued so far applied by a sidecar started now, with two readers, every table equal; then `after`'s changes too. */
export async function appliedByTwoReaders(env: Env, tables: string[], after: string) {
  const sidecar = startSidecar(env.sourceUrl, [], SPLIT_ENV);
  try {
    await strictlyConverged(env, tables);
    const phases = phasesOf(sidecar.output());
    assert.ok(phases["stream of reader 2"] !== undefined, `two readers: ${JSON.stringify(phases)}`);
    // A later batch of a few changes: one reader.
    await env.source.query(after);
    await strictlyConverged(env, tables);
  } finally {
    await sidecar.stop();
  }
}
