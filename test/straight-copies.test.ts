// A table that is only ever updated must not pay a failed straight COPY at every
// batch (src/target/straight-copies.ts), and one that turns to inserts must get
// the straight COPY back.
import assert from "node:assert/strict";
import { test } from "node:test";
import { StraightCopies } from "../src/target/straight-copies";

/** How many of `pieces` pieces try the straight COPY, each failing when `fails(i)`. */
function attempts(s: StraightCopies, pieces: number, fails: (i: number) => boolean): number {
  let n = 0;
  for (let i = 0; i < pieces; i++) {
    if (!s.attempt("t")) continue;
    n++;
    s.record("t", !fails(i));
  }
  return n;
}

test("a table whose straight COPY keeps failing tries it ever more rarely, and again after a success", () => {
  const s = new StraightCopies();
  // Failures back off 2, 4, 8 ... 64 pieces: 1,000 pieces of updates try about 20 times.
  const tried = attempts(s, 1000, () => true);
  assert.ok(tried < 30, `tried ${tried} of 1,000 pieces of updates`);
  // Turned to inserts: back within the longest skip, then every piece.
  const back = attempts(s, 200, () => false);
  assert.ok(back >= 200 - 64, `tried ${back} of 200 pieces of inserts`);
  assert.equal(attempts(s, 50, () => false), 50);
  // Another table is not held back by this one.
  assert.equal(new StraightCopies().attempt("t"), true);
  s.record("t", false);
  assert.equal(s.attempt("u"), true);
});
