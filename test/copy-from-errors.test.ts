// A COPY FROM that the server fails while the client waits for its socket to drain
// (a piece of many MB written at once, a slower server, an error early in it: a
// straight COPY into a table that holds one of the keys). pg-copy-streams 7 let go
// of the connection at the error and then wrote the rest at the 'drain': a
// TypeError thrown from an event handler, which ended the whole sidecar (upstream
// brianc/node-pg-copy-streams#171; seen in CI as a subscription "streaming" and
// never applied again, its sidecar gone).
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { copyFrom, copyLines } from "../src/db/copy-from";
import { freshEnv, sleep } from "./helpers";

/** 32 MB of lines, the 300th of which the table refuses. */
const LINES = Array.from({ length: 4096 }, (_, i) => Buffer.from(i === 299 ? "bad\n" : "x".repeat(8190) + "\n"));

test("a COPY FROM failed by the server while writes wait for the socket rejects, and nothing is thrown after", async () => {
  const env = await freshEnv("copy_from_errors");
  // The server reads slower than the client writes (a trigger sleeps 1 ms a row),
  // so the client waits for a 'drain' when the error comes.
  await env.target.query(`create table refuses (v text check (v <> 'bad'));
    create function slow() returns trigger language plpgsql as $$ begin perform pg_sleep(0.001); return new; end $$;
    create trigger slow before insert on refuses for each row execute procedure slow();`);
  const uncaught: Error[] = [];
  const onUncaught = (err: Error) => uncaught.push(err);
  process.on("uncaughtException", onUncaught);
  const client = await env.target.connect();
  try {
    for (const how of ["written at once", "piped"]) {
      await client.query("begin");
      const copy =
        how === "piped"
          ? pipeline(Readable.from(LINES), client.query(copyFrom("copy refuses from stdin")))
          : copyLines(client, "copy refuses from stdin", LINES);
      await assert.rejects(copy, /violates check constraint/, how);
      await client.query("rollback");
      // A 'drain' after the error would have thrown by now; the connection serves the next statement.
      await sleep(500);
      assert.deepEqual(uncaught.map((e) => e.message), [], how);
      assert.equal((await client.query("select count(*)::int as n from refuses")).rows[0].n, 0);
    }
  } finally {
    process.off("uncaughtException", onUncaught);
    client.release();
  }
});
