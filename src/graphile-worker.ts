// graphile-worker, loaded so that no file of the working directory's is run.
import path from "node:path";

/**
 * At load graphile-worker searches the working directory and its parents (up to the
 * home directory, or to / outside it) for a config file, which may be JavaScript:
 * run from /tmp/x, dbsync would run anyone's /tmp/.graphile-workerrc.js, as the
 * sidecar's user or as whoever runs `dbsync migrate`. So it is loaded with the
 * working directory at the file system's root (root's own), synchronously, so
 * that nothing else runs while the directory is changed (a relative sslcert or
 * passfile of a conninfo is read from it). Its defaults that name files in that
 * directory (/crontab, /tasks) are not used: the runner gets its tasks and no cron
 * items (src/sidecar/jobs.ts).
 */
export function loadGraphileWorker(): typeof import("graphile-worker") {
  const cwd = process.cwd();
  process.chdir(path.parse(cwd).root);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require("graphile-worker") as typeof import("graphile-worker");
  } finally {
    process.chdir(cwd);
  }
}
