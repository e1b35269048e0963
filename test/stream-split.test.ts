// The batch stream's splitter (src/target/stream.ts) on one long line: a row of
// tens of MB (a document in a bytea or text column) arrives in 64 KB chunks. Its
// cost must grow with the line's length, not with its square. No database: the
// source's COPY and the target are stand-ins.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { Piece, readStream } from "../src/target/stream";

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

/** A target that counts the bytes and lines it gets. */
function fakeSink(received: { bytes: number; lines: number; ends: number[] }) {
  return {
    async piece(p: Piece) {
      received.bytes += p.data.reduce((n, b) => n + b.length, 0);
      received.lines += p.counts.get("U") ?? 0;
    },
    async end(id: number) {
      received.ends.push(id);
    },
  };
}

test("a 16 MB line in 64 KB chunks is split with each byte copied a bounded number of times", async () => {
  const received = { bytes: 0, lines: 0, ends: [] as number[] };
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
    await readStream(fakeReader(16) as never, "copy ... to stdout", (id) => (id === 1 ? 0 : undefined), fakeSink(received));
  } finally {
    Buffer.concat = concat;
  }
  assert.equal(received.bytes, 16 * 1024 * 1024 + "U\t1\t\n".length);
  assert.equal(received.lines, 1);
  assert.deepEqual(received.ends, [1]);
  assert.ok(joined < 4 * 16 * 1024 * 1024, `${joined} bytes joined to split one 16 MB line`);
});
