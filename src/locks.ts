// The advisory lock dbsync takes where none of its SQL is installed: `dbsync migrate`
// on the source (before the code exists) and the target's bookkeeping schema
// (src/target/progress.ts). Key "dbsync" in ASCII, fixed forever: a process of an
// older dbsync must wait for a newer one. The locks on an installed source are
// named by dbsync._lock_class (sql/functions/_lock_class.sql).
export const DBSYNC_LOCK = 0x646273796e63;
