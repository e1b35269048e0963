// Seeded random numbers for the workloads of the tests, the torture run, the soak,
// the benchmark and the demo. One stream per actor (a writer, the fault injector...),
// each derived from one seed and the actor's name: an actor's choices replay with
// the seed whatever the other actors do. The interleaving of actors is up to the
// servers and the scheduler, so a replay is the same workload, not the same history.

/** xmur3 string hash: a 32-bit state for each stream. */
function hash32(s: string): number {
  let h = 1779033703 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  h = Math.imul(h ^ (h >>> 16), 2246822507);
  h = Math.imul(h ^ (h >>> 13), 3266489909);
  return (h ^= h >>> 16) >>> 0;
}

/** mulberry32: small, fast, good enough for choosing workloads (not for secrets). */
export class Rng {
  private state: number;
  constructor(
    readonly seed: number,
    readonly stream = "",
  ) {
    this.state = (hash32(`${seed}/${stream}`) ^ (seed >>> 0)) >>> 0;
  }
  /** In [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Another stream of the same seed (one per actor): `name` under this one's. */
  fork(name: string): Rng {
    return new Rng(this.seed, this.stream ? `${this.stream}/${name}` : name);
  }
}

/** A seed for a run that was not given one: printed by whoever draws it. */
export function newSeed(): number {
  return Math.floor(Math.random() * 1_000_000_000);
}
