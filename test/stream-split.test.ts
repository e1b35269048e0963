// The batch stream's splitter (src/target/stream.ts) on one long line: a row of
// tens of MB (a document in a bytea or text column) arrives in 64 KB chunks. Its
// cost must grow with the line's length, not with its square. No database: the
// source's COPY and the target are stand-ins.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { Piece, STREAM_LIMITS, readStream, streamLimits } from "../src/target/stream";

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

/** A reader whose COPY yields `text` in chunks of `chunk` bytes, and says whether it was stopped. */
function textReader(text: string, chunk: number) {
  const state = { destroyed: false, sent: 0 };
  return {
    state,
    query() {
      let sent = 0;
      const buf = Buffer.from(text);
      const r = new Readable({
        highWaterMark: chunk,
        read() {
          if (sent >= buf.length) return this.push(null);
          this.push(buf.subarray(sent, sent + chunk));
          sent += chunk;
          state.sent = Math.min(sent, buf.length);
        },
      });
      r.on("close", () => (state.destroyed = sent < buf.length));
      return r;
    },
  };
}

test("pieces: one table each, at most pieceLines lines, padding cut off, every table's end after its last piece", async () => {
  // Table 1 is 2 columns wide, table 3 is 4 (the stream's width): table 1's lines carry 2 padding fields.
  const lines = [
    ...Array.from({ length: 7 }, (_, i) => `1\t${i % 3 ? "U" : "D"}\t${i}\tv${i}\t\\N\t\\N\n`),
    ...Array.from({ length: 4 }, (_, i) => `3\tU\t${i}\ta\tb\\tc\t\\N\n`),
  ];
  const got: { id: number; text: string; counts: Record<string, number> }[] = [];
  const ends: number[] = [];
  await readStream(
    textReader(lines.join(""), 5) as never,
    "copy ... to stdout",
    (id) => ({ 1: 2, 3: 0 })[id],
    {
      async piece(p) {
        got.push({ id: p.id, text: Buffer.concat(p.data).toString(), counts: Object.fromEntries(p.counts) });
      },
      async end(id) {
        ends.push(id);
        got.push({ id, text: "<end>", counts: {} });
      },
    },
    { pieceLines: 3, pieceBytes: 1 << 20, queuedBytes: 1 << 20 },
  );
  assert.deepEqual(got.map((g) => [g.id, g.text === "<end>" ? "<end>" : g.text.split("\n").length - 1]), [
    [1, 3], [1, 3], [1, 1], [1, "<end>"], [3, 3], [3, 1], [3, "<end>"],
  ]);
  assert.equal(got[0].text, "D\t0\tv0\nU\t1\tv1\nU\t2\tv2\n");
  assert.equal(got[4].text, "U\t0\ta\tb\\tc\t\\N\nU\t1\ta\tb\\tc\t\\N\nU\t2\ta\tb\\tc\t\\N\n");
  assert.deepEqual(got[0].counts, { D: 1, U: 2 });
  assert.deepEqual(ends, [1, 3]);
});

test("pieces: the reader runs ahead of a slow target by at most queuedBytes, and a target error stops it", async () => {
  const text = Array.from({ length: 2000 }, (_, i) => `1\tU\t${i}\t${"x".repeat(90)}\n`).join("");
  const limits = { pieceLines: 10, pieceBytes: 1 << 20, queuedBytes: 4000 };
  const reader = textReader(text, 512);
  // Bytes the source sent that the target has not finished with (each line loses
  // its 2-byte table_id on the way).
  let taken = 0;
  let ahead = 0;
  const waits = await readStream(reader as never, "copy ... to stdout", () => 0, {
    async piece(p) {
      ahead = Math.max(ahead, reader.state.sent - taken);
      await new Promise((r) => setTimeout(r, 1));
      taken += p.bytes + 2 * (p.counts.get("U") ?? 0);
    },
    async end() {},
  }, limits);
  assert.equal(taken, text.length);
  assert.ok(waits.sourceWaitedMs > 0, "the reader waited for the target");
  // queuedBytes waiting and the piece that went over it (the reader looks once a
  // chunk), the piece being taken, the piece being cut, the chunks read and buffered.
  assert.ok(ahead <= 4000 + 3 * 1000 + 2 * 512, `the reader was ${ahead} bytes ahead of the target`);

  const failing = textReader(text, 512);
  const failure = new Error("target refused the piece");
  let pieces = 0;
  await assert.rejects(
    readStream(failing as never, "copy ... to stdout", () => 0, {
      async piece() {
        if (++pieces === 3) throw failure;
      },
      async end() {},
    }, limits),
    (err) => err === failure,
  );
  assert.equal(pieces, 3, "no piece goes to a target that failed");
  await new Promise((r) => setImmediate(r)); // (the stream's 'close' comes on the next turn)
  assert.equal(failing.state.destroyed, true, "the source's COPY is stopped");
});

test("DBSYNC_STREAM_PIECE_LINES sets the lines of a piece (apply-pieces.test.ts cuts small tables with it); anything but a whole number is refused", () => {
  assert.deepEqual(streamLimits({}), STREAM_LIMITS);
  assert.deepEqual(streamLimits({ DBSYNC_STREAM_PIECE_LINES: "" }), STREAM_LIMITS);
  assert.deepEqual(streamLimits({ DBSYNC_STREAM_PIECE_LINES: "2000" }), { ...STREAM_LIMITS, pieceLines: 2000 });
  for (const bad of ["0", "-5", "1.5", "2k", "x"]) {
    assert.throws(() => streamLimits({ DBSYNC_STREAM_PIECE_LINES: bad }), /DBSYNC_STREAM_PIECE_LINES must be a positive whole number of lines, got "/);
  }
});
