// The batch stream's splitter (src/target/stream.ts) on one long line: a row of
// tens of MB (a document in a bytea or text column) arrives in 64 KB chunks. Its
// cost must grow with the line's length, not with its square. No database: the
// source's COPY and the target's COPY are stand-ins.
import assert from "node:assert/strict";
import { Readable, Writable } from "node:stream";
import { test } from "node:test";
import { stageStream } from "../src/target/stream";

const CHUNK = 64 * 1024;

/** A reader whose COPY yields table 1's one 'U' line: id 1, then `mb` MB of 'x', in 64 KB chunks. */
function fakeReader(mb: number) {
  const head = Buffer.from("1\tU\t1\t");
  const total = head.length + mb * 1024 * 1024 + 1;
  return {
    query() {
      let sent = 0;
      return new Readable({
        read() {
          if (sent >= total) return this.push(null);
          const n = Math.min(CHUNK, total - sent);
          const b = Buffer.alloc(n, "x");
          if (sent === 0) head.copy(b);
          if (sent + n === total) b[n - 1] = 10;
          sent += n;
          this.push(b);
        },
      });
    },
  };
}

/** A target whose COPY counts the bytes it gets. */
function fakeTarget(received: { bytes: number }) {
  return {
    query() {
      return new Writable({
        write(chunk: Buffer, _enc, cb) {
          received.bytes += chunk.length;
          cb();
        },
      });
    },
  };
}

test("a 16 MB line in 64 KB chunks is split with each byte copied a bounded number of times", async () => {
  const received = { bytes: 0 };
  const stages = new Map([[1, { t: { table_id: 1, target: '"public"."docs"', columns: ["id", "body"] }, stage: { name: "stg", op: "op" } }]]);
  // Bytes joined by Buffer.concat: a splitter that joins the partial line again at
  // every chunk copies about n^2 / 2 / 64 KB bytes (2 GB here; a 1 GB value, days).
  let joined = 0;
  const concat = Buffer.concat;
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    const b = concat(list, total);
    joined += b.length;
    return b;
  }) as typeof Buffer.concat;
  try {
    const counts = await stageStream(
      fakeReader(16) as never,
      fakeTarget(received) as never,
      "copy ... to stdout",
      2,
      stages as never,
      (_table, fn) => fn(),
    );
    assert.equal(counts.get(1)?.get("U"), 1);
  } finally {
    Buffer.concat = concat;
  }
  assert.equal(received.bytes, 16 * 1024 * 1024 + "U\t1\t\n".length);
  assert.ok(joined < 4 * 16 * 1024 * 1024, `${joined} bytes joined to split one 16 MB line`);
});
