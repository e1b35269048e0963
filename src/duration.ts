// Durations on the command line: "10m", "90s", "1h", "250ms", "0"; a bare number is
// seconds, as every other seconds flag of `dbsync run` takes.
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or an error naming what was given and what is accepted. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw new Error(`expected a duration such as 10m, 90s, 1h or 0, got "${text}"`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? "s"]);
}
