#!/usr/bin/env bash
# `npm run test:matrix [-- FILTER ...]`: the test suite once per supported PostgreSQL
# major (DBSYNC_PG_MAJOR, served by the embedded-pg-NN dev dependencies), one after
# the other, then one summary line per major with the failing tests' names.
# DBSYNC_MATRIX_MAJORS="15 17" narrows the majors. Full logs: .tmp/matrix/pgNN.log.
# Exit code 0 when every major passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

majors=${DBSYNC_MATRIX_MAJORS:-"14 15 16 17 18"}
logdir=.tmp/matrix
mkdir -p "$logdir"
declare -a lines=()
declare -a details=()
failed=0

for m in $majors; do
  log="$logdir/pg$m.log"
  printf '%s PostgreSQL %s: npm test %s ... ' "$(date +%H:%M:%S)" "$m" "$*"
  start=$(date +%s)
  DBSYNC_PG_MAJOR=$m npm test -- "$@" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  # node's spec reporter ends with "ℹ tests N", "ℹ pass N", "ℹ fail N" ...
  count() { grep -aE "^ℹ $1 [0-9]+" "$log" | tail -1 | awk '{print $3}'; }
  tests=$(count tests); pass=$(count pass); fail=$(count fail)
  if [ "$rc" -eq 0 ]; then
    line=$(printf 'PG %s  PASS  %s/%s tests passed  (%ss)' "$m" "${pass:-?}" "${tests:-?}" "$secs")
  else
    failed=1
    line=$(printf 'PG %s  FAIL  %s of %s tests failed, exit %s  (%ss, log %s)' "$m" "${fail:-?}" "${tests:-?}" "$rc" "$secs" "$log")
    # The reporter's "failing tests:" section: "test at FILE:L:C" then "✖ NAME (ms)".
    names=$(awk '
      /^✖ failing tests:/ { on = 1; next }
      on && /^test at / { f = $3; sub(/:[0-9]+:[0-9]+$/, "", f); sub(/.*\//, "", f); next }
      on && /^ *✖ / { n = $0; sub(/^ *✖ /, "", n); sub(/ \([0-9.]+m?s\)$/, "", n); print "    " f ": " n }
    ' "$log" | sort -u)
    if [ -z "$names" ]; then
      names="    (no test summary; last lines of the log:)"$'\n'"$(tail -5 "$log" | sed 's/^/      /')"
    fi
    details+=("PG $m failing:"$'\n'"$names")
  fi
  echo "${line#PG $m  }"
  lines+=("$line")
done

echo
echo "test matrix summary:"
for l in "${lines[@]}"; do echo "  $l"; done
for d in "${details[@]}"; do echo "$d"; done
exit $failed
