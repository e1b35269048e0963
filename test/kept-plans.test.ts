// The tables' SQL a process keeps from its plans (src/source/kept-plans.ts): a
// batch is given its own group's entries only, the most recently used and at most
// GIVEN_TABLES of them; the process keeps at most KEPT_TABLES, dropping the least
// recently used; an entry built again replaces the old one.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GIVEN_TABLES, KEPT_TABLES, KeptPlans } from "../src/source/kept-plans";

/** Entries for tables `ids`, each keyed `key`. */
function built(ids: number[], key = "k"): Record<string, { key: string; entry: unknown }> {
  return Object.fromEntries(ids.map((id) => [String(id), { key, entry: { part: `t${id}` } }]));
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

test("a batch is given its group's most recently used entries, at most GIVEN_TABLES", () => {
  const plans = new KeptPlans();
  assert.equal(plans.given(1), null, "nothing kept yet");
  plans.took(1, [], built([1, 2]));
  plans.took(2, [], built([3]));
  assert.deepEqual(Object.keys(plans.given(1)!).sort(), ["1", "2"]);
  assert.deepEqual(plans.given(2), built([3]));
  // Built again under another key: replaced.
  plans.took(1, [2], built([2], "k2"));
  assert.equal(plans.given(1)!["2"].key, "k2");

  const big = range(100, GIVEN_TABLES + 10);
  plans.took(3, [], built(big));
  // Table 100, refreshed with its entry given, becomes the most recently used.
  plans.took(3, [100], undefined);
  const given = Object.keys(plans.given(3)!).map(Number);
  assert.equal(given.length, GIVEN_TABLES);
  assert.ok(given.includes(100), "the entry just used is given");
  assert.ok(!given.includes(101) && !given.includes(110), "the least recently used are not");
});

test("a process keeps at most KEPT_TABLES entries, the least recently used dropped first", () => {
  const plans = new KeptPlans();
  plans.took(1, [], built([1, 2]));
  plans.took(2, [], built(range(1_000, KEPT_TABLES - 2)));
  // Table 1 used again: table 2 is now the oldest.
  plans.took(1, [1], undefined);
  plans.took(2, [], built([1_000_000]));
  assert.deepEqual(Object.keys(plans.given(1)!), ["1"], "the least recently used dropped");
  assert.equal(Object.keys(plans.given(2)!).length, GIVEN_TABLES);
});
