# Scenario steps for run.sh (sourced). Each scenario_N boots a VM, reads its serial log and
# sets R_RESTARTS/R_SAW/R_NOTE[N]; it returns non-zero when the scenario failed, including
# when it could not run at all.
declare -A SCENARIO_NAME=([0]=selftest [1]=scale-out [2]=baked [3]=aks-rewrite [4]=second-boot [5]=bad-checksum [6]=containerd-1.7)

narrate() { if ((DEMO)); then printf '\n==> %s\n' "$*"; else say "$*"; fi; }

# ---- the served tree ----------------------------------------------------------------------
WWW="$E2E_CACHE/www"
SERVER_IP=10.0.2.100
# The release name: gVisor's dated form, from the pseudo-version runsc was built from.
release_name() { sed -n 's/^v0\.0\.0-\([0-9]\{8\}\).*/\1.0/p' "$BIN/runsc.version"; }

# make_www: gVisor's bucket layout under $WWW/gvisor/releases/release/<rel>/x86_64 (loose files
# with .sha512, and the gvisor.tar.bz2 bundle), the same with wrong checksums under <rel>-badsum,
# and bin/gvisor-bootstrap + .sha256. Rebuilt only when an input changes.
make_www() {
  local rel key d bad
  rel="$(release_name)"; [[ -n "$rel" ]] || die "cannot tell the release from $BIN/runsc.version"
  [[ -x "$BIN/runsc" && -x "$BIN/containerd-shim-runsc-v1" ]] || die "missing $BIN/runsc or the shim: run make tools"
  REL="$rel"
  d="$WWW/gvisor/releases/release/$rel/x86_64"; bad="$WWW/gvisor/releases/release/$rel-badsum/x86_64"
  key="$(cat "$BIN/runsc.version" "$BIN/containerd-shim-runsc-v1.version"; stat -c '%s %Y' "$BIN/runsc" "$BIN/containerd-shim-runsc-v1")"
  if [[ ! -f "$WWW/release.key" || "$(cat "$WWW/release.key")" != "$key" ]]; then
    rm -rf "$WWW/gvisor"; mkdir -p "$d" "$bad"
    local f
    for f in runsc containerd-shim-runsc-v1; do
      ln -f "$BIN/$f" "$d/$f" 2>/dev/null || cp "$BIN/$f" "$d/$f"
      chmod 755 "$d/$f"
      (cd "$d" && sha512sum "$f" > "$f.sha512")
    done
    local t; t="$(mktemp -d)"
    cp "$d/runsc" "$d/containerd-shim-runsc-v1" "$t/"; mkdir -p "$t/gvisor-bin"
    tar --owner=0 --group=0 -C "$t" -cf - runsc containerd-shim-runsc-v1 gvisor-bin | bzip2 -1 > "$d/gvisor.tar.bz2"
    rm -rf "$t"
    (cd "$d" && sha512sum gvisor.tar.bz2 > gvisor.tar.bz2.sha512)
    # the bad release: same files, checksums that do not match them
    for f in runsc containerd-shim-runsc-v1 gvisor.tar.bz2; do
      ln -f "$d/$f" "$bad/$f"
      printf '%s  %s\n' "$(printf 'not-%s' "$f" | sha512sum | cut -d' ' -f1)" "$f" > "$bad/$f.sha512"
    done
    echo "$key" > "$WWW/release.key"
  fi
  mkdir -p "$WWW/bin"
  if [[ -x "$GVB" ]]; then
    cp "$GVB" "$WWW/bin/gvisor-bootstrap.tmp" && mv "$WWW/bin/gvisor-bootstrap.tmp" "$WWW/bin/gvisor-bootstrap"
    (cd "$WWW/bin" && sha256sum gvisor-bootstrap > gvisor-bootstrap.sha256)
  fi
  say "served tree: $WWW (release $REL)"
}

SERVER_PID=""
start_server() {
  # A fixed port first: the baked image's config names it (see build_baked), so a new port
  # means a new bake.
  local port="${E2E_PORT:-18080}" tries=0 token
  # Ready means *this* server answers: another run's server on the same port (another
  # clone's e2e) would answer the same request, and this one would have exited on bind.
  token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  printf '%s\n' "$token" > "$WWW/.server-token"
  while :; do
    ((tries == 0)) || port=$((20000 + RANDOM % 20000))
    busybox httpd -f -vv -p "127.0.0.1:$port" -h "$WWW" 2>>"$LOGS/httpd.log" &
    SERVER_PID=$!
    # ready when it answers a request (up to 60 s on a loaded machine); a new port only
    # when this server exited (its port was taken)
    local t0=$SECONDS up=0
    while kill -0 "$SERVER_PID" 2>/dev/null && ((SECONDS - t0 < 60)); do
      if [[ "$(curl -fsS -m 5 "http://127.0.0.1:$port/.server-token" 2>/dev/null)" == "$token" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then up=1; break; fi
      sleep 0.2
    done
    ((up)) && break
    kill "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    ((++tries < 10)) || die "cannot start the loopback HTTP server: $(tail -5 "$LOGS/httpd.log")"
  done
  PORT=$port
  say "loopback server: http://127.0.0.1:$PORT/ (guest: http://$SERVER_IP/), log $LOGS/httpd.log"
}
QEMU_PID=""
stop_qemu() { [[ -n "${QEMU_PID:-}" ]] && kill "$QEMU_PID" 2>/dev/null; QEMU_PID=""; return 0; }
stop_server() { [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null; SERVER_PID=""; return 0; }

# ---- booting ------------------------------------------------------------------------------
# overlay NAME VARIANT_RAW: a fresh qcow2 overlay of an image; prints its path.
overlay() {
  local o="$RUN_DIR/$1.qcow2"
  rm -f "$o"; qemu-img create -q -f qcow2 -F raw -b "$2" "$o"; echo "$o"
}

# seed_tar NAME ENVLINES [USERDATA_FILE] [EXTRA_DIR]: the scenario seed (second virtio disk).
seed_tar() {
  local name="$1" env="$2" ud="${3:-}" extra="${4:-}" d="$RUN_DIR/$1.seed"
  rm -rf "$d"; mkdir -p "$d"
  printf '%s\n' "$env" > "$d/e2e.env"
  if [[ -n "$ud" ]]; then
    cp "$ud" "$d/user-data"
    printf 'instance-id: e2e-%s-%s\nlocal-hostname: e2e-node\n' "$name" "$RUN_ID" > "$d/meta-data"
  fi
  [[ -n "$extra" ]] && cp -a "$extra" "$d/"
  tar -C "$d" -cf "$RUN_DIR/$name.seed.tar" .
  echo "$RUN_DIR/$name.seed.tar"
}

# qemu_args SERIAL_LOG DISK SEED NIC: a node's qemu command line into QEMU_ARGS (tcg: -accel
# kvm hangs in the firmware here; the guest boots its own kernel; the seed is a second disk).
qemu_args() {
  QEMU_ARGS=(-accel tcg,thread=multi -smp 2 -m "$MEM" -display none -monitor none -no-reboot
    -serial "file:$1"
    -kernel "$IMAGES/vmlinuz" -initrd "$IMAGES/initrd.img"
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=1 quiet"
    -drive "file=$2,format=qcow2,if=virtio,cache=unsafe"
    -drive "file=$3,format=raw,if=virtio,readonly=on"
    -nic "$4")
  [[ -n "${E2E_QEMU_CPU:-}" ]] && QEMU_ARGS+=(-cpu "$E2E_QEMU_CPU")
  return 0
}

# boot NAME DISK SEED NET(0|1): boots until the guest powers off or BOOT_TIMEOUT; serial log in
# $LOGS/NAME.serial.log. Returns non-zero on timeout or qemu failure.
boot() {
  local name="$1" disk="$2" seed="$3" net="$4" log="$LOGS/$1.serial.log" nic rc=0
  if [[ "$net" == 1 ]]; then
    # guestfwd to "tcp:127.0.0.1:PORT" is ONE chardev stream that qemu opens at its start: one
    # guest connection at most (the server times it out before the guest asks). "cmd:" runs
    # the command for every guest connection: a relay to the loopback server.
    nic="user,model=virtio-net-pci,restrict=on,guestfwd=tcp:$SERVER_IP:80-cmd:busybox nc 127.0.0.1 $PORT"
  else
    nic=none
  fi
  qemu_args "$log" "$disk" "$seed" "$nic"
  : > "$log"
  say "boot $name (net=$net, timeout ${BOOT_TIMEOUT}s): serial log $log"
  timeout -k 10 "$BOOT_TIMEOUT" qemu-system-x86_64 "${QEMU_ARGS[@]}" </dev/null >"$LOGS/$name.qemu.log" 2>&1 &
  QEMU_PID=$!
  # the narrator's tail ends by itself once qemu has exited (--pid)
  if ((DEMO)); then narrate_follow "$log" "$QEMU_PID" & local follower=$!; fi
  wait "$QEMU_PID" || rc=$?
  QEMU_PID=""
  if ((DEMO)); then wait "$follower" 2>/dev/null || true; fi
  if ((rc == 124 || rc == 137)); then say "boot $name: TIMEOUT after ${BOOT_TIMEOUT}s"; return 1; fi
  if ((rc != 0)); then say "boot $name: qemu exited $rc: $(tail -3 "$LOGS/$name.qemu.log")"; return 1; fi
  reports "$log" | matches '^E2E|end|' || { say "boot $name: the guest powered off without its report"; return 1; }
}

# ---- reading the serial log ---------------------------------------------------------------
# reports LOG: the guest's report lines, wherever they start on a console line. Anything else
# on the serial console (kernel messages, a unit's output, a redrawn line) may share a line
# with a report or overwrite its start with a carriage return: a report line is the text from
# "E2E|" to the end of its line.
reports() { tr '\r' '\n' < "$1" | grep -ao 'E2E|.*'; }
# mark LOG KEY: the value of the last "E2E|KEY|value" line.
mark() { reports "$1" | grep -a "^E2E|$2|" | tail -1 | cut -d'|' -f3- | tr -d '\r'; }
marks() { reports "$1" | grep -a "^E2E|$2|" | cut -d'|' -f3- | tr -d '\r'; }

# read_common S LOG: fills R_RESTARTS and R_SAW from the guest's report.
read_common() {
  local s="$1" log="$2" starts
  starts="$(mark "$log" containerd-starts)"
  if [[ "$starts" =~ ^[0-9]+$ ]]; then R_RESTARTS[$s]=$((starts > 0 ? starts - 1 : 0)); else R_RESTARTS[$s]='?'; fi
  if reports "$log" | matches -a '^E2E|kubelet-start|'; then
    if [[ "$(mark "$log" kubelet-runsc)" == yes ]]; then R_SAW[$s]="runsc handler"
    else R_SAW[$s]="NO runsc ($(mark "$log" kubelet-saw | sed 's/.*handlers=//'))"; fi
  else
    R_SAW[$s]="kubelet did not start"
  fi
}

# pod_in_gvisor S LOG: the container printed gVisor's banner and a uname other than the guest's.
pod_in_gvisor() {
  local s="$1" log="$2" u gu
  if ! marks "$log" out | matches 'Starting gVisor'; then
    note "$s" "no gVisor banner in the pod: $(mark "$log" pod | cut -c1-160)"; return 1
  fi
  u="$(marks "$log" out | grep '^Linux' | tail -1)"; gu="$(mark "$log" guest-uname)"
  local ur gur; ur="$(awk '{print $3}' <<<"$u")"; gur="$(awk '{print $3}' <<<"$gu")"
  if [[ -z "$ur" || "$ur" == "$gur" ]]; then note "$s" "pod kernel '$ur' is the guest's '$gur'"; return 1; fi
  note "$s" "pod: 'Starting gVisor', uname -r $ur (guest $gur)"
}
note() { R_NOTE[$1]="${R_NOTE[$1]:+${R_NOTE[$1]}; }$2"; }
saw_runsc() {
  [[ "$(mark "$2" kubelet-runsc)" == yes ]] && return 0
  note "$1" "kubelet stand-in did not see runsc at its start: $(mark "$2" kubelet-saw)"; return 1
}
restarts_are() { # S LOG N
  [[ "${R_RESTARTS[$1]}" == "$3" ]] && return 0
  note "$1" "containerd restarted ${R_RESTARTS[$1]} times (want $3)"; return 1
}

# release_config RELEASE_DIR_NAME [HOST]: the tool's [release] table for a release this run's
# server publishes, as a guest reaches it at HOST (default: the scenario boots' guestfwd). Plain HTTP is accepted only with every artifact pinned: the bundle's digest, as
# published next to it (for the -badsum release, a digest the bundle does not have).
release_config() {
  cat <<EOF
[release]
version = "$REL"
url = "http://${2:-$SERVER_IP}/gvisor/releases/release/$1/x86_64"
[release.sha512]
"gvisor.tar.bz2" = "$(cut -d' ' -f1 "$WWW/gvisor/releases/release/$1/x86_64/gvisor.tar.bz2.sha512")"
EOF
}

# ---- customData ---------------------------------------------------------------------------
# render_user_data NAME RELEASE_DIR_NAME: the product's customData for this run's server.
render_user_data() {
  local name="$1" reldir="$2" cfg="$RUN_DIR/$1.config.toml" ud="$RUN_DIR/$1.user-data"
  [[ -x "$GVB" ]] || { say "missing $GVB (make build)"; return 1; }
  { echo "# e2e: the release and the binary come from the host's loopback server (qemu guestfwd)"
    release_config "$reldir"
    cat <<EOF

[delivery]
binary_url = "http://$SERVER_IP/bin/gvisor-bootstrap"
binary_sha256 = "$(cut -d' ' -f1 "$WWW/bin/gvisor-bootstrap.sha256")"
EOF
  } > "$cfg"
  if ! "$GVB" --config "$cfg" render cloud-init > "$ud" 2>"$RUN_DIR/$name.render.err"; then
    say "render cloud-init failed: $(cat "$RUN_DIR/$name.render.err")"; return 1
  fi
  cp "$cfg" "$LOGS/$name.config.toml"; cp "$ud" "$LOGS/$name.user-data"
  echo "$ud"
}

# fetched LOG_MARK PATH: the loopback server was asked for PATH since LOG_MARK (httpd.log line).
fetched() { tail -n +"$1" "$LOGS/httpd.log" | matches "$2"; }
httpd_mark() { echo $(( $(wc -l < "$LOGS/httpd.log") + 1 )); }

# ---- scenarios ----------------------------------------------------------------------------
scenario_0() { # harness self-test: runsc by hand, hand-written runtime table, no product
  local s=0 v="${E2E_SELFTEST_VARIANT:-c2}" name="s0-selftest-${E2E_SELFTEST_VARIANT:-c2}" d="$RUN_DIR/selftest"
  mkdir -p "$d"
  cp "$BIN/runsc" "$BIN/containerd-shim-runsc-v1" "$d/"
  cp "$E2E_DIR/selftest/selftest-$v.toml" "$d/config-append.toml"
  boot "$name" "$(overlay "$name" "$IMAGES/$v.raw")" "$(seed_tar "$name" 'E2E_SCENARIO=0' '' "$d")" 0 \
    || { note $s "boot failed"; read_common $s "$LOGS/$name.serial.log"; return 1; }
  local log="$LOGS/$name.serial.log"; read_common $s "$log"
  saw_runsc $s "$log" && pod_in_gvisor $s "$log"
}

scale_out() { # S NAME VARIANT RELEASE_DIR: stock node + customData, with the loopback server
  local s="$1" name="$2" variant="$3" reldir="$4" ud m
  ud="$(render_user_data "$name" "$reldir")" || { note "$s" "could not render customData"; return 1; }
  m="$(httpd_mark)"
  boot "$name" "$(overlay "$name" "$IMAGES/$variant.raw")" \
    "$(seed_tar "$name" "E2E_SCENARIO=$s
E2E_NET=1" "$ud")" 1 || { note "$s" "boot failed or timed out"; read_common "$s" "$LOGS/$name.serial.log"; return 1; }
  read_common "$s" "$LOGS/$name.serial.log"
  LAST_HTTPD_MARK=$m
}

scenario_1() {
  local s=1 log="$LOGS/s1-scale-out.serial.log" ok=0
  scale_out $s s1-scale-out c2 "$REL" || return 1
  note $s "first reconcile: $(grep -aoE '(repaired|healthy|failed) in [0-9.]+ ms' "$log" | head -1 | sed 's/.* in //' || true)"
  check_scale_out $s "$log"
}
scenario_6() {
  local s=6 log="$LOGS/s6-containerd-1.7.serial.log"
  scale_out $s s6-containerd-1.7 c17 "$REL" || return 1
  check_scale_out $s "$log"
}
check_scale_out() {
  local s="$1" log="$2" ok=0
  fetched "$LAST_HTTPD_MARK" 'bin/gvisor-bootstrap' || { note "$s" "the guest never fetched bin/gvisor-bootstrap"; ok=1; }
  fetched "$LAST_HTTPD_MARK" "x86_64/\(runsc\|gvisor.tar.bz2\)" || { note "$s" "the guest never fetched the gVisor release"; ok=1; }
  marks "$log" usr-local-bin | matches -E ' gvisor-bootstrap( ->.*)?$' || { note "$s" "gvisor-bootstrap not installed in /usr/local/bin"; ok=1; }
  marks "$log" usr-local-bin | matches -E ' runsc( ->.*)?$' || { note "$s" "runsc not installed in /usr/local/bin"; ok=1; }
  # the release was checked against its .sha512 (the binary against its sha256: the
  # customData refuses to run it otherwise, so its running is the proof)
  grep -aqE 'msg=verified file=|verified file=' "$log" || { note "$s" "no 'verified' line for the release's sha512 in the log"; ok=1; }
  bootstrap_ok "$s" "$log" || ok=1
  saw_runsc "$s" "$log" || ok=1
  pod_in_gvisor "$s" "$log" || ok=1
  return $ok
}

# bootstrap_ok S LOG: no gvisor-bootstrap run failed on this boot (a later repair by the .path
# unit does not make a failed first reconcile right: it cost the node minutes).
bootstrap_ok() {
  local f
  f="$(marks "$2" journal | grep -E 'gvisor-bootstrap[^ ]*: (FAILED|.*reconcile failed)|gvisor-bootstrap[^ ]*\.service: Failed with result' | head -2 | sed 's/^\[ *\([0-9.]*\)\] [^ ]* /@\1s /' | cut -c1-220 | tr '\n' ' ')"
  [[ -z "$f" ]] && return 0
  note "$1" "a gvisor-bootstrap run failed: $f"; return 1
}

# build_baked: the c2 image provisioned with the project's Packer provisioning scripts.
build_baked() {
  BAKED_RAW="$IMAGES/baked.raw"
  local cfg="$E2E_CACHE/baked-config.toml"
  # The release URL is the loopback server as the packer build VM sees it (qemu user net
  # without restrict: 10.0.2.2 is the host): reachable while the image is built, as the
  # bucket is for an Azure build, and unreachable on the baked scenarios' boots, which have
  # no network at all.
  { echo "# e2e baked node: the release is baked in; its URL is reachable only at image build time."
    release_config "$REL" "10.0.2.2:$PORT"; } > "$cfg"
  say "baking: c2 image + packer/scripts/* (log $LOGS/bake.log)"
  "$E2E_DIR/bake.sh" "$REL" "$cfg" >"$LOGS/bake.log" 2>&1 || {
    say "baking failed: $(tail -5 "$LOGS/bake.log")"; return 1; }
}

scenario_2() {
  local s=2 name=s2-baked log="$LOGS/s2-baked.serial.log" ok=0
  build_baked || { note $s "could not bake the image (see $LOGS/bake.log)"; return 1; }
  note $s "baked by $(cat "$IMAGES/baked.method" 2>/dev/null)"
  S2_DISK="$(overlay "$name" "$BAKED_RAW")"
  boot "$name" "$S2_DISK" "$(seed_tar "$name" 'E2E_SCENARIO=2')" 0 \
    || { note $s "boot failed or timed out"; read_common $s "$log"; S2_DISK=""; return 1; }
  read_common $s "$log"
  bootstrap_ok $s "$log" || ok=1
  saw_runsc $s "$log" || ok=1
  pod_in_gvisor $s "$log" || ok=1
  restarts_are $s "$log" 0 || ok=1
  return $ok
}

scenario_3() {
  local s=3 name=s3-aks-rewrite log="$LOGS/s3-aks-rewrite.serial.log" ok=0
  [[ -n "${BAKED_RAW:-}" && -f "$BAKED_RAW" ]] || build_baked || { note $s "could not bake the image"; return 1; }
  boot "$name" "$(overlay "$name" "$BAKED_RAW")" "$(seed_tar "$name" 'E2E_SCENARIO=3
E2E_AKS_REWRITE=1')" 0 || { note $s "boot failed or timed out"; read_common $s "$log"; return 1; }
  read_common $s "$log"
  reports "$log" | matches -a '^E2E|aks|containerd restarted' || { note $s "the AKS stand-in did not run"; ok=1; }
  bootstrap_ok $s "$log" || ok=1
  saw_runsc $s "$log" || ok=1
  pod_in_gvisor $s "$log" || ok=1
  return $ok
}

scenario_4() {
  local s=4 name=s4-second-boot log="$LOGS/s4-second-boot.serial.log" ok=0
  [[ -n "${S2_DISK:-}" && -f "$S2_DISK" ]] || { note $s "scenario 2's disk is not there (scenario 2 failed to boot)"; return 1; }
  boot "$name" "$S2_DISK" "$(seed_tar "$name" 'E2E_SCENARIO=4')" 0 \
    || { note $s "boot failed or timed out"; read_common $s "$log"; return 1; }
  read_common $s "$log"
  bootstrap_ok $s "$log" || ok=1
  saw_runsc $s "$log" || ok=1
  pod_in_gvisor $s "$log" || ok=1
  restarts_are $s "$log" 0 || ok=1
  local w; w="$(mark "$log" writes)"
  [[ "$w" == none ]] || { note $s "files written on the second boot: $w"; ok=1; }
  note $s "bootstrap on the kubelet chain: $(bootstrap_cost "$log")"
  return $ok
}

# bootstrap_cost LOG: how long gvisor-bootstrap.service and the kubelet gate took this boot.
bootstrap_cost() {
  local log="$1" line svc gate kstart kexit
  line="$(reports "$log" | grep -a '^E2E|unit-times|gvisor-bootstrap.service' | tail -1)"
  local ie ae
  ie="$(sed -n 's/.*InactiveExitTimestampMonotonic=\([0-9]*\).*/\1/p' <<<"$line")"
  ae="$(sed -n 's/.*ActiveEnterTimestampMonotonic=\([0-9]*\).*/\1/p' <<<"$line")"
  if [[ -n "$ie" && -n "$ae" && "$ie" != 0 ]]; then svc="$(awk -v a="$ae" -v b="$ie" 'BEGIN{printf "%.2fs", (a-b)/1e6}')"; else svc=n/a; fi
  line="$(reports "$log" | grep -a '^E2E|unit-times|kubelet.service' | tail -1)"
  kexit="$(sed -n 's/.*InactiveExitTimestampMonotonic=\([0-9]*\).*/\1/p' <<<"$line")"
  kstart="$(mark "$log" kubelet-start-uptime)"
  if [[ -n "$kexit" && "$kexit" != 0 && -n "$kstart" ]]; then gate="$(awk -v k="$kstart" -v e="$kexit" 'BEGIN{printf "%.2fs", k-e/1e6}')"; else gate=n/a; fi
  echo "gvisor-bootstrap.service ${svc}, kubelet ExecStartPre gate ${gate}"
}

scenario_5() {
  local s=5 name=s5-bad-checksum log="$LOGS/s5-bad-checksum.serial.log" ok=0
  scale_out $s "$name" c2 "$REL-badsum" || return 1
  if reports "$log" | matches -a '^E2E|kubelet-start|'; then note $s "kubelet started on a node that was not made right (fail open)"; ok=1; fi
  # kubelet was asked to start and refused by its gate (not merely never asked)
  if [[ "$(mark "$log" report)" != *kubelet-not-started* ]]; then
    note $s "kubelet was not seen failing to start: $(mark "$log" report)"; ok=1
  fi
  local why
  why="$(marks "$log" journal | grep -E 'FAILED|failed' | grep -iE 'sha512|checksum|digest|mismatch' | head -1 \
         | sed 's/[0-9a-f]\{32,\}/<hex>/g; s/^\[ *[0-9.]*\] [^ ]* //' | cut -c1-230)"
  if [[ -n "$why" ]]; then
    note $s "kubelet: $(mark "$log" report | sed 's/^reason=//'); journal: $why"
  else
    local elsewhere
    elsewhere="$(marks "$log" cloud-init-output | grep -iE 'sha512|checksum|digest|mismatch' | head -1 | cut -c1-160)"
    note $s "no checksum reason in journalctl -u gvisor-bootstrap*${elsewhere:+ (only in the cloud-init output: $elsewhere)}"; ok=1
  fi
  return $ok
}

# ---- demo narration -----------------------------------------------------------------------
narrate_follow() { # LOG QEMU_PID
  tail -n +1 -F --pid="$2" "$1" 2>/dev/null | while IFS= read -r l; do
    l="${l%$'\r'}"
    case "$l" in *E2E\|*) l="E2E|${l#*E2E|}" ;; esac
    case "$l" in
      E2E\|boot\|*) echo "    the VM is up (real systemd, Debian kernel ${l##*kernel=})" ;;
      E2E\|seed\|*) echo "    cloud-init NoCloud seed in place: ${l#E2E|seed|}" ;;
      E2E\|net\|*) echo "    guest network: ${l#E2E|net|} (only the host's loopback server is reachable)" ;;
      E2E\|images\|*) echo "    busybox and pause images imported from local OCI tars (no registry)" ;;
      *"cloud-init["*"running 'modules:final'"*) echo "    cloud-init runs the customData: fetch gvisor-bootstrap (sha256-pinned) and install" ;;
      E2E\|live\|verified\ file=*) v="${l#*verified file=}"; echo "    gvisor-bootstrap verified the release: ${v%% *} matches its .sha512" ;;
      E2E\|live\|installed\ gVisor*) echo "    gvisor-bootstrap: ${l#E2E|live|}" ;;
      E2E\|live\|wrote\ *) echo "    gvisor-bootstrap: ${l#E2E|live|}" ;;
      E2E\|live\|restarting*) echo "    gvisor-bootstrap: ${l#E2E|live|}" ;;
      E2E\|live\|*" in "*" ms"*) echo "    gvisor-bootstrap: ${l#E2E|live|}" | cut -c1-200 ;;
      E2E\|live\|*FAILED*) echo "    gvisor-bootstrap: ${l#E2E|live|}" | cut -c1-200 ;;
      *"cloud-init["*"installed /etc/systemd/system/kubelet.service.d"*) echo "    kubelet gate installed: ${l##*installed }" ;;
      *"cloud-init["*"finished at"*) echo "    cloud-init finished; the provisioning stand-in starts kubelet" ;;
      E2E\|kubelet-start\|*) echo "    kubelet starts now (${l#E2E|kubelet-start|})" ;;
      E2E\|kubelet-saw\|*) echo "    ...and the CRI tells it about the runsc handler: ${l#E2E|kubelet-saw|}" ;;
      E2E\|pod\|*) echo "    pod sandbox with runtime handler runsc: ${l#E2E|pod|}" ;;
      E2E\|out\|*) echo "    [in the pod] ${l#E2E|out|}" ;;
      E2E\|guest-uname\|*) echo "    [the node ] ${l#E2E|guest-uname|}" ;;
      E2E\|containerd-starts\|*) echo "    containerd started ${l#E2E|containerd-starts|} time(s) this boot" ;;
      E2E\|end\|*) echo "    the node reported and powers off" ;;
    esac
  done
}
