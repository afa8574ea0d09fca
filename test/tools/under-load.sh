#!/usr/bin/env bash
# Runs a command N times in a row while the machine is kept busy, and prints each run's
# result and wall time: the proof that the suite does not depend on a quiet machine.
#   test/tools/under-load.sh [-n RUNS] [-l LOADERS] -- make test
# The load is stress-ng's CPU workers (LOADERS, default 2 × cores), started and stopped
# by this script; logs go to .cache/under-load/run-K.log.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
runs=3 loaders=$(( 2 * $(nproc) ))
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) runs="$2"; shift 2 ;;
    -l) loaders="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { echo "usage: $0 [-n RUNS] [-l LOADERS] -- COMMAND..." >&2; exit 2; }
command -v stress-ng >/dev/null || { echo "stress-ng is needed: apt-get install stress-ng" >&2; exit 2; }
logs="$ROOT/.cache/under-load"; mkdir -p "$logs"
stress-ng --cpu "$loaders" --quiet &
load=$!
cmd_pid=""
# on exit (also when interrupted) stop the load and whatever the command left running
trap 'kill $load 2>/dev/null; [[ -n "$cmd_pid" ]] && kill -- -"$cmd_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
fails=0 results=()
for ((k = 1; k <= runs; k++)); do
  t0=$SECONDS rc=0
  setsid "$@" >"$logs/run-$k.log" 2>&1 &   # its own process group, so the trap can stop it all
  cmd_pid=$!
  wait "$cmd_pid" || rc=$?
  cmd_pid=""
  results+=("run $k/$runs: $([[ $rc == 0 ]] && echo PASS || echo "FAIL ($rc)") in $((SECONDS - t0))s (log: $logs/run-$k.log)")
  ((rc == 0)) || fails=$((fails + 1))
  echo "${results[-1]}" >&2
done
echo "under load ($loaders stress-ng CPU workers on $(nproc) cores): $* ->" >&2
printf '  %s\n' "${results[@]}" >&2
((fails == 0))
