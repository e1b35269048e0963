#!/usr/bin/env bash
# `npm run test:matrix [-- FILTER ...]`: the tests once per supported PostgreSQL major
# as the source (and the target), then once per cross-version pair (source major
# -> target major), one run after the other, then one summary line per run with
# the failing tests' names. Binaries: the embedded-pg-NN dev dependencies, or a
# folder named by DBSYNC_PG_BINS (see src/embedded/cluster.ts).
#
# Without FILTER, each major runs the core files (CORE below) and each pair the
# files of PAIR_FILES; with FILTER (file name substrings, as for `npm test`), both
# run those; FILTER `all` runs every test file.
#   DBSYNC_MATRIX_MAJORS="10 17"        narrows the majors ("" for none)
#   DBSYNC_MATRIX_PAIRS="10:18 18:14"   narrows the pairs ("" for none)
# Full logs: .tmp/matrix/pgNN.log and pgNN-to-MM.log. Exit code 0 when every run passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

CORE="replicate copy ddl divergence sidecar-kill compat add-all-tables"
PAIR_FILES="replicate copy ddl divergence compat"

majors=${DBSYNC_MATRIX_MAJORS-"10 11 12 13 14 15 16 17 18"}
pairs=${DBSYNC_MATRIX_PAIRS-"10:18 12:17 13:16 18:14"}
if [ "$#" -eq 1 ] && [ "$1" = all ]; then
  major_files=(""); pair_files=("")
elif [ "$#" -gt 0 ]; then
  major_files=("$@"); pair_files=("$@")
else
  read -r -a major_files <<<"$CORE"; read -r -a pair_files <<<"$PAIR_FILES"
fi

logdir=.tmp/matrix
mkdir -p "$logdir"
declare -a lines=()
declare -a details=()
failed=0
all_start=$(date +%s)

# run LABEL LOG SOURCE_MAJOR TARGET_MAJOR FILES...
run() {
  local label=$1 log=$2 src=$3 tgt=$4
  shift 4
  printf '%s %s: npm test -- %s ... ' "$(date +%H:%M:%S)" "$label" "$*"
  local start rc secs
  start=$(date +%s)
  DBSYNC_PG_MAJOR=$src DBSYNC_PG_TARGET_MAJOR=$tgt npm test -- "$@" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  # node's spec reporter ends with "ℹ tests N", "ℹ pass N", "ℹ fail N" ...
  count() { grep -aE "^ℹ $1 [0-9]+" "$log" | tail -1 | awk '{print $3}'; }
  local tests pass fail skipped line
  tests=$(count tests); pass=$(count pass); fail=$(count fail); skipped=$(count skipped)
  if [ "$rc" -eq 0 ]; then
    line=$(printf '%-10s PASS  %s/%s tests passed%s  (%ss)' "$label" "${pass:-?}" "${tests:-?}" \
      "$([ "${skipped:-0}" != 0 ] && echo ", ${skipped} skipped")" "$secs")
  else
    failed=1
    line=$(printf '%-10s FAIL  %s of %s tests failed, exit %s  (%ss, log %s)' "$label" "${fail:-?}" "${tests:-?}" "$rc" "$secs" "$log")
    # The reporter's "failing tests:" section: "test at FILE:L:C" then "✖ NAME (ms)".
    local names
    names=$(awk '
      /^✖ failing tests:/ { on = 1; next }
      on && /^test at / { f = $3; sub(/:[0-9]+:[0-9]+$/, "", f); sub(/.*\//, "", f); next }
      on && /^ *✖ / { n = $0; sub(/^ *✖ /, "", n); sub(/ \([0-9.]+m?s\)$/, "", n); print "    " f ": " n }
    ' "$log" | sort -u)
    if [ -z "$names" ]; then
      names="    (no test summary; last lines of the log:)"$'\n'"$(tail -5 "$log" | sed 's/^/      /')"
    fi
    details+=("$label failing:"$'\n'"$names")
  fi
  echo "${line#"$label"}" | sed 's/^ *//'
  lines+=("$line")
}

for m in $majors; do
  run "PG $m" "$logdir/pg$m.log" "$m" "$m" "${major_files[@]}"
done
for p in $pairs; do
  s=${p%%:*}; t=${p##*:}
  run "PG $s->$t" "$logdir/pg$s-to-$t.log" "$s" "$t" "${pair_files[@]}"
done

echo
echo "test matrix summary ($(( ($(date +%s) - all_start) / 60 )) min):"
for l in "${lines[@]}"; do echo "  $l"; done
for d in "${details[@]}"; do echo "$d"; done
exit $failed
