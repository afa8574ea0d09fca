#!/usr/bin/env bash
# End-to-end: boots real Debian nodes in qemu (tcg) and shows a pod running in gVisor through
# the CRI runtime handler runsc, with bin/gvisor-bootstrap doing the node setup.
#
#   test/e2e/run.sh              stand-ins 5, 6 and the k8s-* scenarios, table at the end, non-zero on any failure
#   test/e2e/run.sh --only 1,2,3,4,5,6   the stand-in scenarios only (make e2e-quick)
#   test/e2e/run.sh --only 1,4   some scenarios (4 boots scenario 2's disk, so it runs 2 first)
#   test/e2e/run.sh --only 0     harness self-test: runsc installed by hand, no product
#                                (E2E_SELFTEST_VARIANT=c17 for the containerd 1.7 node)
#   test/e2e/run.sh --demo       the real-cluster scale-out (k8s-scale-out) alone, narrated
#   test/e2e/run.sh --only k8s-scale-out,k8s-baked   real-Kubernetes scenarios (k8s-scenarios.sh)
#
# Scenarios (each a fresh boot of a qcow2 overlay of the cached image, unless said):
#   1 scale-out   stock node + rendered customData (NoCloud seed); binary and release fetched
#                 from a loopback server on the host (qemu guestfwd, restrict=on)
#   2 baked       image provisioned by packer/scripts/*; no customData, no network
#   3 rewrite     baked image; an AKS provisioning stand-in rm's and rewrites config.toml
#                 (version = 2, v3 tables, no runsc), restarts containerd, then kubelet starts
#   4 reboot      second boot of scenario 2's disk: no writes, no containerd restart
#   5 badsum      customData pointing at a release whose checksums do not match: fail closed
#   6 c17         scenario 1 on the containerd 1.7 node (Ubuntu 22.04 / AKS shape)
# Serial logs: .cache/e2e/logs/. Settings: E2E_MEM (MiB, 3072), E2E_TIMEOUT (s per boot, 900),
# E2E_QEMU_CPU (qemu -cpu, default qemu's), E2E_KEEP=1 keeps the overlays.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/scenarios.sh"
source "$E2E_DIR/cluster.sh"
source "$E2E_DIR/k8s-scenarios.sh"

MEM="${E2E_MEM:-3072}"
BOOT_TIMEOUT="${E2E_TIMEOUT:-1800}"  # a backstop: a VM powers off once it has reported
GVB="$REPO/bin/gvisor-bootstrap"

DEMO=0 ONLY=""
while (($#)); do
  case "$1" in
    --demo) DEMO=1 ;;
    --only) ONLY="$2"; shift ;;
    --only=*) ONLY="${1#--only=}" ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

if ((DEMO)); then scenarios=(k8s-scale-out)
elif [[ -n "$ONLY" ]]; then IFS=, read -ra scenarios <<<"$ONLY"
else scenarios=(5 6 "${K8S_DEFAULT[@]}"); fi  # 1-4: superseded by k8s-scale-out, k8s-baked (its reboot is 4), k8s-reimage (make e2e-quick runs 1-6)
# scenario 4 is the second boot of scenario 2's disk
if [[ " ${scenarios[*]} " == *" 4 "* && " ${scenarios[*]} " != *" 2 "* ]]; then
  scenarios=(2 "${scenarios[@]}")
fi
for s in "${scenarios[@]}"; do [[ "$s" =~ ^[0-6]$ || -n "${SCENARIO_NAME[$s]:-}" ]] || die "no scenario $s (0-6, ${K8S_SCENARIOS[*]})"; done

[[ $EUID -eq 0 ]] || die "run.sh needs root (debootstrap, chroot, mkfs -d)"
for t in qemu-system-x86_64 qemu-img debootstrap mkfs.ext4 busybox sha512sum bzip2; do
  command -v "$t" >/dev/null || die "missing $t (apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs busybox-static bzip2)"
done

RUN_ID="$(date -u +%Y%m%dT%H%M%S)"
RUN_DIR="$E2E_CACHE/runs/$RUN_ID"
mkdir -p "$RUN_DIR"
trap cleanup EXIT
trap "exit 130" INT TERM
cleanup() {
  stop_qemu
  vm_stop_all
  cluster_down
  stop_server
  # overlays and seeds are large (the self-test seed carries runsc): keep only on request
  [[ "${E2E_KEEP:-0}" == 1 ]] || rm -rf "$RUN_DIR"
}

# ---- images -------------------------------------------------------------------------------
t0=$SECONDS
need_variants=(c2)
[[ " ${scenarios[*]} " == *" 6 "* || "${E2E_SELFTEST_VARIANT:-}" == c17 ]] && need_variants+=(c17)
[[ " ${scenarios[*]} " == *" k8s-"* ]] && need_variants+=(k8s)
narrate "Building (or reusing) the Debian guest image: ${need_variants[*]}"
"$E2E_DIR/build-image.sh" "${need_variants[@]}"
IMAGE_SECONDS=$((SECONDS - t0))
say "images ready in ${IMAGE_SECONDS}s"

# ---- loopback server ----------------------------------------------------------------------
t0=$SECONDS
narrate "Publishing the gVisor release (bucket layout) and the gvisor-bootstrap binary on a loopback server"
make_www
start_server
SERVE_SECONDS=$((SECONDS - t0))

# ---- scenarios ----------------------------------------------------------------------------
declare -A R_RESULT R_TIME R_RESTARTS R_SAW R_NOTE
for i in "${!scenarios[@]}"; do
  s="${scenarios[$i]}" E2E_NEXT="${scenarios[$((i + 1))]:-}"
  t0=$SECONDS
  rc=0; "scenario_$s" || rc=$?
  drop_spare "$s"
  # 2: the scenario cannot run yet (what it needs has not landed): PENDING, said so, not a pass
  case $rc in 0) R_RESULT[$s]=PASS ;; 2) R_RESULT[$s]=PENDING ;; *) R_RESULT[$s]=FAIL ;; esac
  R_TIME[$s]=$((SECONDS - t0))
  say "scenario $s: ${R_RESULT[$s]} in ${R_TIME[$s]}s — ${R_NOTE[$s]:-}"
done

# ---- table --------------------------------------------------------------------------------
# counted here, not inside the table's pipeline (a subshell: its counts would be lost)
fails=0 pending=0
for s in "${scenarios[@]}"; do
  case "${R_RESULT[$s]}" in PASS) ;; PENDING) pending=$((pending + 1)) ;; *) fails=$((fails + 1)) ;; esac
done
{
  echo
  printf 'e2e run %s   image build/reuse %ss, server %ss, logs in %s\n' "$RUN_ID" "$IMAGE_SECONDS" "$SERVE_SECONDS" "$LOGS"
  printf '%-3s %-14s %-7s %6s %9s  %-24s %s\n' '#' scenario result time restarts 'kubelet saw at start' notes
  for s in "${scenarios[@]}"; do
    printf '%-3s %-14s %-7s %5ss %9s  %-24s %s\n' "$([[ $s =~ ^[0-9]+$ ]] && echo "$s" || echo -)" "${SCENARIO_NAME[$s]}" "${R_RESULT[$s]}" "${R_TIME[$s]}" \
      "${R_RESTARTS[$s]:-?}" "${R_SAW[$s]:-?}" "${R_NOTE[$s]:-}"
  done
  echo
  echo "$(( ${#scenarios[@]} - fails - pending )) passed, $fails failed$( ((pending)) && echo ", $pending pending (not run: see notes)")"
} | tee "$LOGS/summary-$RUN_ID.txt"
if ((DEMO)); then
  if [[ "${R_RESULT[k8s-scale-out]}" == PASS ]]; then
    narrate "Done. A stock Debian node joined a real cluster only after gvisor-bootstrap (from its customData alone) had runsc verified; the pod created before the node existed was scheduled there by the rendered RuntimeClass and ran in gVisor."
  else
    narrate "The node did not get there. What it printed is in $LOGS/k8s-scale-out.serial.log; the reasons are in the table above."
  fi
fi
((fails == 0))
