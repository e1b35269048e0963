// `--require`d into each test file's process by test/run.ts (after tsx/cjs, which
// loads it): the file's CPU-seconds are recorded at its exit (kit/cpu.ts). The test
// runner's own process (kit/run-files.mjs) gets the same flags and records nothing.
import { recordAtExit } from "./cpu";

recordAtExit(process.env.DBSYNC_TEST_CPU_DIR, process.argv[1]);
