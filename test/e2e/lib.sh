# Shared paths and helpers for the e2e harness (sourced by build-image.sh and run.sh).
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$E2E_DIR/../.." && pwd)"
CACHE="${GVB_CACHE:-$REPO/.cache}"
BIN="$CACHE/bin"                      # third-party binaries (test/tools/build-binaries.sh)
E2E_CACHE="$CACHE/e2e"                # images, served tree, runs
LOGS="$E2E_CACHE/logs"
IMAGES="$E2E_CACHE/images"
mkdir -p "$LOGS" "$IMAGES"

say() { printf '[e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# matches GREP_ARGS...: `grep -q` for the end of a pipeline. grep -q (and grep into /dev/null)
# exits at the first match, so a writer with more than a pipe's buffer left dies of SIGPIPE
# and pipefail turns the match into a failure; this reads its input to the end.
matches() { local n; n="$(grep -c "$@")" || true; [[ "$n" =~ ^[1-9] ]]; }
# hash_of FILE|DIR... : one sha256 over names and contents (dirs recursively, sorted).
hash_of() {
  local p
  for p in "$@"; do
    if [[ -d "$p" ]]; then (cd "$p" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    elif [[ -e "$p" ]]; then echo "$(sha256sum < "$p" | cut -d' ' -f1)  ${p##*/}"  # not the clone's path: keys match across clones
    else echo "missing $p"; fi
  done | sha256sum | cut -c1-16
}
