// The run's seed: test/run.ts takes DBSYNC_SEED or draws one, prints it, and hands
// it to every test file; a test draws its random choices from a stream of it named
// after what draws (the test, a writer), so `DBSYNC_SEED=<seed> npm test -- <file>`
// replays them. The soak and the torture run print and take theirs the same way.
import { newSeed, Rng } from "../../src/embedded/random";

export { Rng } from "../../src/embedded/random";

/** DBSYNC_SEED, or a new seed (printed, and set in the environment for child processes). */
export function runSeed(): number {
  const text = process.env.DBSYNC_SEED;
  if (text !== undefined && text !== "") {
    const seed = Number(text);
    if (!Number.isSafeInteger(seed)) throw new Error(`DBSYNC_SEED=${text} is not an integer (hint: use the seed a run printed)`);
    return seed;
  }
  const seed = newSeed();
  process.env.DBSYNC_SEED = String(seed);
  return seed;
}

let seed: number | undefined;

/** The stream `name` of the run's seed. */
export function seeded(name: string): Rng {
  seed ??= runSeed();
  return new Rng(seed, name);
}
