// A node:test reporter (test/run.ts adds it to the spec reporter): at the end of a
// run, the slowest test files, to say where the suite's time goes.
import path from "node:path";

interface TestEvent {
  type: string;
  data: { name?: string; nesting?: number; file?: string; details?: { duration_ms?: number } };
}

export default async function* durations(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const perFile = new Map<string, number>();
  for await (const e of source) {
    if ((e.type !== "test:pass" && e.type !== "test:fail") || e.data.nesting !== 0 || !e.data.file) continue;
    // Tests of one file run one after another: their durations add up to the file's.
    perFile.set(e.data.file, (perFile.get(e.data.file) ?? 0) + (e.data.details?.duration_ms ?? 0));
  }
  const slowest = [...perFile.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  if (!slowest.length) return;
  yield `\nslowest test files (s, tests of a file in sequence):\n`;
  for (const [file, ms] of slowest) yield `  ${(ms / 1000).toFixed(1).padStart(6)}  ${path.basename(file)}\n`;
}
