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

// A batch merged at once (merge.ts mergeAtOnce) copies a table's new rows straight in
// only while clean: a failure there fails the statement of every table of the batch.
test("clean: no straight COPY of the table failed since its last success, skipped pieces or not", () => {
  const s = new StraightCopies();
  assert.equal(s.clean("t"), true, "a table never tried");
  s.record("t", true);
  assert.equal(s.clean("t"), true, "after a success");
  s.record("t", false);
  assert.equal(s.clean("t"), false, "after a failure");
  // Its skipped pieces passed, it may try again (attempt), but is not clean until that succeeds.
  while (!s.attempt("t"));
  assert.equal(s.clean("t"), false, "allowed to try again after a failure");
  s.record("t", false);
  assert.equal(s.clean("t"), false, "after a second failure");
  assert.equal(s.clean("u"), true, "another table");
  while (!s.attempt("t"));
  s.record("t", true);
  assert.equal(s.clean("t"), true, "after a success that followed failures");
});
