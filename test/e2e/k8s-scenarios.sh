# The k8s-* scenarios (sourced by run.sh after scenarios.sh and cluster.sh): real nodes in qemu
# with a real kubelet, joined to the real control plane of cluster.sh, the product's manifests
# applied exactly as `gvisor-bootstrap render ...` prints them. Every assertion reads the
# Kubernetes API (kubectl): Node status, pod phase and node, events, and the termination
# message the pod writes (`dmesg | head` and `uname -r` to /dev/termination-log). The serial
# log (E2E|j| lines: kubelet, containerd, gvisor-bootstrap journals) is printed when a wait
# times out, and is where the few facts the API cannot show come from (containerd's start
# count); those are named as such in the notes.
SCENARIO_NAME+=([k8s-scale-out]=k8s-scale-out [k8s-baked]=k8s-baked [k8s-reimage]=k8s-reimage
  [k8s-upgrade]=k8s-upgrade [k8s-uninstall]=k8s-uninstall [k8s-daemonset]=k8s-daemonset)
K8S_SCENARIOS=(k8s-scale-out k8s-baked k8s-reimage k8s-upgrade k8s-uninstall k8s-daemonset)
# what `make e2e` runs (the others with --only until they have passed here)
# (in this order, a node goes on from one scenario to the next: see hand_over)
K8S_DEFAULT=(k8s-scale-out k8s-upgrade k8s-uninstall k8s-baked k8s-reimage k8s-daemonset)

K8S_NODE_TIMEOUT="${E2E_K8S_NODE_TIMEOUT:-1800}"  # boot + customData + kubelet registration, tcg (a deadline: 514 s seen under load)
K8S_POD_TIMEOUT="${E2E_K8S_POD_TIMEOUT:-900}"    # a pod from scheduled to terminated, tcg (a deadline)
# a k8s node lives for its whole scenario (the host ends it): qemu's own limit is only a backstop
K8S_VM_TIMEOUT="${E2E_K8S_VM_TIMEOUT:-3600}"
declare -A VM_PID=()

# ---- once per run -------------------------------------------------------------------------
K8S_READY=""
k8s_prepare() {
  [[ -n "$K8S_READY" ]] && return "$K8S_READY"
  K8S_READY=1
  local t0=$SECONDS
  # A guest runs /ctl/<node>/1.sh as soon as it exists: steps an earlier run of this clone
  # left there would run out of order on this run's node of the same name.
  rm -rf "$WWW/ctl"
  cluster_up || return 1
  # the RuntimeClass, exactly as rendered, applied unchanged
  "$GVB" render runtimeclass > "$K8S_DIR/runtimeclass.yaml" || { say "render runtimeclass failed"; return 1; }
  cp "$K8S_DIR/runtimeclass.yaml" "$LOGS/k8s-runtimeclass.yaml"
  kc apply -f "$K8S_DIR/runtimeclass.yaml" >&2 || return 1
  K8S_RC_SELECTOR="$(kc get runtimeclass gvisor -o jsonpath='{.scheduling.nodeSelector}')"
  K8S_PREP_SECONDS=$((SECONDS - t0))
  K8S_READY=0
}

# ---- VMs in the background ----------------------------------------------------------------
# vm_start NAME DISK SEED: boots a node in the background (qemu as in boot(), with a second
# guestfwd: 10.0.2.100:6443 is the apiserver on the host's loopback, one relay per connection).
vm_start() {
  local name="$1" disk="$2" seed="$3" log="$LOGS/$1.serial.log"
  local nic="user,model=virtio-net-pci,restrict=on,guestfwd=tcp:$SERVER_IP:80-cmd:busybox nc 127.0.0.1 $PORT,guestfwd=tcp:$SERVER_IP:$K8S_GUEST_PORT-cmd:busybox nc 127.0.0.1 $K8S_API_PORT"
  qemu_args "$log" "$disk" "$seed" "$nic"
  : > "$log"
  say "boot $name in the background: serial log $log"
  timeout -k 10 "$K8S_VM_TIMEOUT" qemu-system-x86_64 "${QEMU_ARGS[@]}" </dev/null >"$LOGS/$name.qemu.log" 2>&1 &
  VM_PID[$name]=$!
}
vm_running() { [[ -n "${VM_PID[$1]:-}" ]] && kill -0 "${VM_PID[$1]}" 2>/dev/null; }
vm_stop() {
  local p="${VM_PID[$1]:-}"
  [[ -n "$p" ]] || return 0
  kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  unset "VM_PID[$1]"
}
vm_stop_all() { local n; for n in "${!VM_PID[@]}"; do vm_stop "$n"; done; }
# vm_wait_off NAME SECONDS: the guest powered itself off (a reboot step ends qemu: -no-reboot)
vm_wait_off() { wait_until "$1 to power off" "$2" "$LOGS/$1.serial.log" sh -c "! kill -0 ${VM_PID[$1]:-0} 2>/dev/null"; }

# serial NAME KEY: the values of E2E|KEY| lines in NAME's serial log (matched anywhere on a line)
serial() { grep -a "E2E|$2|" "$LOGS/$1.serial.log" | sed "s/.*E2E|$2|//" | tr -d '\r'; }

# ctl NAME SCRIPT: publishes the node's next step (the agent fetches and runs it); sets CTL_N.
declare -A CTL_NEXT=()
ctl() {
  local name="$1" n="${CTL_NEXT[$1]:-1}" d="$WWW/ctl/$1"
  mkdir -p "$d"
  printf '%s\n' "$2" > "$d/$n.sh.tmp"; mv "$d/$n.sh.tmp" "$d/$n.sh"
  CTL_NEXT[$name]=$((n + 1)); CTL_N=$n
}
# ctl_wait NAME N SECONDS: the node ran step N (it says so on its console)
ctl_wait() { wait_until "$1 to run step $2" "$3" "$LOGS/$1.serial.log" grep -aq "E2E|ctl-done|$2 " "$LOGS/$1.serial.log"; }
ctl_out() { serial "$1" "ctl-$2"; }

# ---- API reads ----------------------------------------------------------------------------
node_exists() { kc get node "$1" >/dev/null 2>&1; }
node_ready() { [[ "$(kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
node_handlers() { kc get node "$1" -o jsonpath='{range .status.runtimeHandlers[*]}{.name}{" "}{end}' 2>/dev/null | sed 's/^ /(default) /;s/  / (default) /g;s/ $//'; }
has_handler() { [[ " $(node_handlers "$1") " == *" $2 "* ]]; }
lacks_handler() { ! has_handler "$@"; }
pod_phase() { kc -n "$1" get pod "$2" -o jsonpath='{.status.phase}' 2>/dev/null; }
pod_done() { [[ "$(pod_phase "$1" "$2")" =~ ^(Succeeded|Failed)$ ]]; }
pod_running() { [[ "$(pod_phase "$1" "$2")" == Running ]]; }
pod_msg() { kc -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].state.terminated.message}'; }
pod_node() { kc -n "$1" get pod "$2" -o jsonpath='{.spec.nodeName}'; }
pod_unschedulable() { [[ "$(kc -n "$1" get pod "$2" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}')" == Unschedulable ]]; }
pod_events() { kc -n "$1" get events --field-selector "involvedObject.name=$2" -o custom-columns=T:.lastTimestamp,R:.reason,M:.message --no-headers 2>/dev/null; }
sandbox_failures() { pod_events "$1" "$2" | grep -c FailedCreatePodSandBox || true; }

# why_pod NS POD NODE: what the API and the node say about a pod that did not get there
why_pod() {
  say "pod $1/$2: phase $(pod_phase "$1" "$2"), node '$(pod_node "$1" "$2")'; events:"
  pod_events "$1" "$2" | tail -n 12 | sed 's/^/    /' >&2
  kc -n "$1" get pod "$2" -o jsonpath='{.status}' 2>/dev/null | cut -c1-800 | sed 's/^/    status: /' >&2; echo >&2
  [[ -n "${3:-}" ]] && { say "node $3 journal (last kubelet/containerd lines):"; serial "$3" j | tail -n 25 | sed 's/^/    /' >&2; }
}

# ---- manifests ----------------------------------------------------------------------------
# probe_pod NS NAME RUNTIMECLASS [NODE]: a pod that writes `dmesg | head` and `uname -r` to its
# termination message and exits. With NODE: pinned there (and tolerating the gVisor pool's
# taint), for the runc pod beside the gVisor one.
probe_pod() {
  local ns="$1" name="$2" rc="$3" node="${4:-}"
  {
    cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {e2e: probe}}
spec:
  restartPolicy: Never
  dnsPolicy: Default
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 5
EOF
    [[ -n "$rc" ]] && echo "  runtimeClassName: $rc"
    if [[ -n "$node" ]]; then
      cat <<EOF
  nodeSelector: {kubernetes.io/hostname: $node}
  tolerations: [{key: gvisor, operator: Exists, effect: NoSchedule}]
EOF
    fi
    cat <<'EOF'
  containers:
  - name: probe
    image: docker.io/library/busybox:e2e
    imagePullPolicy: Never
    command: [/bin/sh, -c, "{ dmesg 2>&1 | busybox head -n 5; echo uname-r=$(uname -r); } > /dev/termination-log"]
EOF
  } | kc apply -f - >&2
}
# sleeper_pod NS NAME RUNTIMECLASS: a long-running gVisor pod (survives reimage/upgrade)
sleeper_pod() {
  kc apply -f - >&2 <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $2, namespace: $1, labels: {e2e: sleeper}}
spec:
  runtimeClassName: $3
  dnsPolicy: Default
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 5
  containers:
  - name: sleeper
    image: docker.io/library/busybox:e2e
    imagePullPolicy: Never
    command: [/bin/sh, -c, "{ dmesg 2>&1 | busybox head -n 5; echo uname-r=\$(uname -r); } > /dev/termination-log; exec sleep 2147483647"]
EOF
}

# runc_sleeper_pod NS NODE: a long-running runc pod pinned to NODE (it must outlive uninstalls)
runc_sleeper_pod() {
  kc apply -f - >&2 <<EOF
apiVersion: v1
kind: Pod
metadata: {name: runc-sleeper, namespace: $1}
spec:
  dnsPolicy: Default
  automountServiceAccountToken: false
  nodeSelector: {kubernetes.io/hostname: $2}
  tolerations: [{key: gvisor, operator: Exists, effect: NoSchedule}]
  terminationGracePeriodSeconds: 5
  containers:
  - {name: sleeper, image: "docker.io/library/busybox:e2e", imagePullPolicy: Never, command: [/bin/sleep, "2147483647"]}
EOF
}

# ---- checks -------------------------------------------------------------------------------
# check_gvisor_pod S NS POD NODE: ran on NODE, Succeeded, banner and a kernel not the node's.
check_gvisor_pod() {
  local s="$1" ns="$2" pod="$3" node="$4" msg kr nk on
  on="$(pod_node "$ns" "$pod")"
  [[ "$on" == "$node" ]] || { note "$s" "$pod ran on '$on', not $node"; return 1; }
  [[ "$(pod_phase "$ns" "$pod")" == Succeeded ]] || { note "$s" "$pod: phase $(pod_phase "$ns" "$pod")"; why_pod "$ns" "$pod" "$node"; return 1; }
  msg="$(pod_msg "$ns" "$pod")"; nk="$(kc get node "$node" -o jsonpath='{.status.nodeInfo.kernelVersion}')"
  kr="$(sed -n 's/^uname-r=//p' <<<"$msg")"
  grep -q 'Starting gVisor' <<<"$msg" || { note "$s" "$pod: no gVisor banner in its termination message: $(head -c 200 <<<"$msg")"; return 1; }
  [[ -n "$kr" && "$kr" != "$nk" ]] || { note "$s" "$pod: kernel '$kr' is the node's '$nk'"; return 1; }
  note "$s" "$pod on $node: 'Starting gVisor', uname -r $kr (node $nk)"
  local f; f="$(sandbox_failures "$ns" "$pod")"
  ((f == 0)) || { note "$s" "$pod had $f FailedCreatePodSandBox events"; return 1; }
}
check_runc_pod() {
  local s="$1" ns="$2" pod="$3" node="$4" msg kr nk
  [[ "$(pod_phase "$ns" "$pod")" == Succeeded ]] || { note "$s" "$pod: phase $(pod_phase "$ns" "$pod")"; why_pod "$ns" "$pod" "$node"; return 1; }
  msg="$(pod_msg "$ns" "$pod")"; nk="$(kc get node "$node" -o jsonpath='{.status.nodeInfo.kernelVersion}')"
  kr="$(sed -n 's/^uname-r=//p' <<<"$msg")"
  [[ "$kr" == "$nk" ]] || { note "$s" "runc pod $pod: kernel '$kr', node's '$nk'"; return 1; }
  ! grep -q 'Starting gVisor' <<<"$msg" || { note "$s" "runc pod $pod printed gVisor's banner"; return 1; }
  note "$s" "runc pod: uname -r $kr (the node's)"
}

# watch_registration NODE SECONDS: polls the API for NODE from before it boots; notes the
# handlers of the first status that lists any (a node that registered before runsc was
# served would list only runc there).
watch_registration() {
  local node="$1" secs="$2" t0=$SECONDS h
  K8S_FIRST_HANDLERS=""
  while ((SECONDS - t0 < secs)); do
    if node_exists "$node"; then
      h="$(node_handlers "$node")"
      if [[ -n "$h" ]]; then K8S_FIRST_HANDLERS="$h"; K8S_REGISTERED_AT=$((SECONDS - t0)); return 0; fi
    fi
    vm_running "$node" || { say "$node powered off before it registered"; break; }
    sleep 1
  done
  say "TIMEOUT/FAIL waiting for Node $node to register with runtime handlers"
  say "node $node serial log (last lines):"; tail -n 40 "$LOGS/$node.serial.log" | sed 's/^/    /' >&2
  return 1
}

# containerd_starts NODE: containerd's start count this boot into CONTAINERD_STARTS (node-side
# fact; the API does not show it), through a ctl step. Not for $(...): a step published in a
# subshell is not counted in CTL_NEXT, and the next step would overwrite it.
containerd_starts() {
  local node="$1" n
  CONTAINERD_STARTS=""
  ctl "$node" "echo starts=\$(journalctl -b -u containerd.service -o cat | grep -c '^Started containerd')"
  n=$CTL_N
  ctl_wait "$node" "$n" 120 || return 1
  CONTAINERD_STARTS="$(ctl_out "$node" "$n" | sed -n 's/^starts=//p' | tail -1)"
}

# finish_node S NODE: stop the VM and remove its Node (its pods go with the namespace)
finish_node() {
  vm_stop "$2"
  kc delete node "$2" --wait=false >/dev/null 2>&1 || true
}

# ---- one node for consecutive scenarios --------------------------------------------------
# Booting and joining a node is most of a scenario under tcg (200-300 s of it). A scenario
# that passed hands its node on when the next scenario only needs a node of its kind that has
# joined and been checked (registered after the gate, pods in gVisor, a runc pod beside
# them), which was just shown on it: k8s-scale-out's customData node goes on to k8s-upgrade
# and then k8s-uninstall, k8s-baked's node (after its reboot) to k8s-reimage. Run alone
# (--only), or after a failure, a scenario boots its own node.
declare -A K8S_HANDOFF=([k8s-scale-out]=k8s-upgrade [k8s-upgrade]=k8s-uninstall [k8s-baked]=k8s-reimage)
SPARE_NODE="" SPARE_FROM=""
# hand_over S NODE NS OK: keeps NODE running for the next scenario (E2E_NEXT, set by run.sh)
# when S passed (OK 0) and that scenario takes S's node, once S's namespace is gone (no pod of
# S left on it); otherwise finishes NODE.
hand_over() {
  local s="$1" node="$2" ns="$3" ok="$4"
  if ((ok == 0)) && [[ -n "${E2E_NEXT:-}" && "${K8S_HANDOFF[$s]:-}" == "$E2E_NEXT" ]] && vm_running "$node" \
    && kc delete namespace "$ns" --wait=false >/dev/null \
    && wait_until "namespace $ns gone (its pods deleted on $node)" 300 "$LOGS/$node.serial.log" ns_gone "$ns"; then
    SPARE_NODE="$node" SPARE_FROM="$s"
    say "$s: node $node stays up for $E2E_NEXT"
    return 0
  fi
  finish_node "$s" "$node"
}
# take_over S NS: S takes the node its predecessor handed over, if that node is still Ready
# and serves runsc (TAKEN_NODE; R_SAW and the note say where it came from) and creates NS.
take_over() {
  local s="$1" ns="$2" node="$SPARE_NODE" from="$SPARE_FROM"
  TAKEN_NODE="" SPARE_NODE="" SPARE_FROM=""
  [[ -n "$node" ]] || return 1
  if [[ "${K8S_HANDOFF[$from]}" == "$s" ]] && vm_running "$node" && node_ready "$node" && has_handler "$node" runsc \
    && k8s_ns "$ns"; then
    TAKEN_NODE="$node" K8S_FAILS=0
    R_SAW[$s]="${R_SAW[$from]:-?}"
    note "$s" "on node $node (booted, joined and checked by $node; handed over by $from, its pods deleted)"
    return 0
  fi
  note "$s" "$from's node $node was not usable (not Ready or runsc not served): a node of its own"
  finish_node "$s" "$node"
  return 1
}
ns_gone() { [[ "$(kc get namespace "$1" -o name 2>&1)" == *NotFound* ]]; }
# drop_spare S: after scenario S, a node handed over but not taken (its taker stopped early)
drop_spare() { [[ -z "$SPARE_NODE" || "$SPARE_FROM" == "$1" ]] && return 0; finish_node "$SPARE_FROM" "$SPARE_NODE"; SPARE_NODE="" SPARE_FROM=""; }

# ---- joining a node -----------------------------------------------------------------------
# k8s_ns NS: a fresh namespace with its default ServiceAccount
k8s_ns() {
  kc create namespace "$1" >/dev/null || return 1
  wait_until "ServiceAccount $1/default" 60 "$LOGS/k8s-controller-manager.log" kc -n "$1" get sa default
}

# k8s_join S NODE NS DISK_RAW USER_DATA: boots NODE (a gVisor-pool node: label gvisor=enabled,
# taint gvisor=enabled:NoSchedule, as the pool is created) after a gVisor probe pod already
# waits for it; checks registration, Ready, the probe in gVisor and a runc probe beside it.
# USER_DATA may be empty (baked image). Returns non-zero on a failure that stops the
# scenario; other failures are noted and counted in K8S_FAILS.
k8s_join() {
  local s="$1" node="$2" ns="$3" raw="$4" ud="$5" seed d
  K8S_FAILS=0
  k8s_prepare || { note "$s" "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  k8s_ns "$ns" || { note "$s" "namespace $ns not usable"; return 1; }
  probe_pod "$ns" gvisor-probe gvisor
  wait_until "pod gvisor-probe to be unschedulable (no gVisor node yet)" 60 "$LOGS/k8s-scheduler.log" pod_unschedulable "$ns" gvisor-probe \
    || { note "$s" "the gVisor pod was not held back before a gVisor node existed"; K8S_FAILS=$((K8S_FAILS + 1)); }
  d="$RUN_DIR/$node.kubelet"; rm -rf "$d"; mkdir -p "$d"
  node_seed "$node" "$d" "gvisor=enabled" "gvisor=enabled:NoSchedule"
  seed="$(seed_tar "$node" "E2E_SCENARIO=$s
E2E_NET=1" "$ud" "$d/kubelet")"
  K8S_HTTPD_MARK="$(httpd_mark)"
  K8S_SEED[$node]="$seed"
  vm_start "$node" "$(overlay "$node" "$raw")" "$seed"
  watch_registration "$node" "$K8S_NODE_TIMEOUT" || { note "$s" "Node $node never registered with runtime handlers"; return 1; }
  R_SAW[$s]="$K8S_FIRST_HANDLERS"
  note "$s" "Node registered ${K8S_REGISTERED_AT}s after boot, first handlers: $K8S_FIRST_HANDLERS"
  [[ " $K8S_FIRST_HANDLERS " == *" runsc "* ]] || { note "$s" "the Node's first status did not list runsc: registered before the gate?"; K8S_FAILS=$((K8S_FAILS + 1)); }
  wait_until "Node $node Ready (CNI)" 300 "$LOGS/$node.serial.log" node_ready "$node" || { note "$s" "Node $node not Ready"; return 1; }
  probe_pod "$ns" runc-probe "" "$node"
  wait_until "pod gvisor-probe to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" gvisor-probe \
    || why_pod "$ns" gvisor-probe "$node"
  check_gvisor_pod "$s" "$ns" gvisor-probe "$node" || K8S_FAILS=$((K8S_FAILS + 1))
  wait_until "pod runc-probe to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" runc-probe \
    || why_pod "$ns" runc-probe "$node"
  check_runc_pod "$s" "$ns" runc-probe "$node" || K8S_FAILS=$((K8S_FAILS + 1))
  return 0
}

declare -A K8S_SEED=()

stop_watch() { pkill -P "$1" 2>/dev/null; kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; true; }
# new_boot_status WATCHFILE BOOTID: a Node status from another boot than BOOTID was seen
new_boot_status() { grep -v "^$2 " "$1" | matches '^[0-9a-f-]\{36\} '; }

# reboot_node S NODE [AFTER_BOOT]: reboots NODE (its disk and seed again; AFTER_BOOT is a ctl
# step published at power-on) and waits for kubelet's first Node status of the new boot (a
# new nodeInfo.bootID, seen through a watch on the Node, so no update is missed). Sets
# REBOOT_HANDLERS to that status's runtimeHandlers ("runc runsc"): a kubelet that started
# before runsc was served would not list it there.
reboot_node() {
  local s="$1" node="$2" after="${3:-}" boot0 w wpid t0 first
  REBOOT_HANDLERS=""
  boot0="$(kc get node "$node" -o jsonpath='{.status.nodeInfo.bootID}')"
  w="$RUN_DIR/$node.node-watch"
  # (kubectl get -w stops after the first object when the template has a {range}; and a
  # watch the server ends is opened again)
  ( while :; do
      "$BIN/kubectl" --kubeconfig "$K8S_DIR/admin.kubeconfig" get node "$node" -w \
        -o jsonpath='{.status.nodeInfo.bootID} {.status.runtimeHandlers[*].name}{"\n"}'
      sleep 1
    done ) >"$w" 2>&1 &
  wpid=$!
  ctl "$node" "systemctl reboot"
  vm_wait_off "$node" 600 || { stop_watch $wpid; note "$s" "reboot: the node did not go down"; return 1; }
  t0=$SECONDS
  vm_start "$node" "$RUN_DIR/$node.qcow2" "${K8S_SEED[$node]}"
  [[ -n "$after" ]] && ctl "$node" "$after"
  wait_until "$node's first status of the new boot" "$K8S_NODE_TIMEOUT" "$LOGS/$node.serial.log" new_boot_status "$w" "$boot0" \
    || { stop_watch $wpid; note "$s" "reboot: kubelet never reported the new boot"; return 1; }
  stop_watch $wpid
  first="$(grep -v "^$boot0 " "$w" | grep '^[0-9a-f-]\{36\} ' | head -n 1)"
  REBOOT_HANDLERS="$(tr -s ' ' <<<"${first#* }" | sed 's/^ //')"
  note "$s" "reboot: kubelet's first status of the new boot ($((SECONDS - t0))s after power-on) lists handlers [$REBOOT_HANDLERS]"
  [[ " $REBOOT_HANDLERS " == *" runsc "* ]] || { note "$s" "reboot: kubelet started before runsc was served (the gate did not hold it)"; return 1; }
}

# restarts_of S NODE: containerd's restarts this boot into R_RESTARTS (node-side count)
restarts_of() {
  local st; containerd_starts "$2"; st="$CONTAINERD_STARTS"
  if [[ "$st" =~ ^[0-9]+$ ]]; then R_RESTARTS[$1]=$((st > 0 ? st - 1 : 0)); else R_RESTARTS[$1]='?'; fi
}

# ---- k8s-scale-out ------------------------------------------------------------------------
# A stock node with `render cloud-init` customData; the gVisor pod exists before the node.
scenario_k8s-scale-out() {
  local s=k8s-scale-out node=k8s-scale-out ns=k8s-scale-out ud ok
  k8s_prepare || { note $s "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  ud="$(render_user_data "$node" "$REL")" || { note $s "could not render customData"; return 1; }
  k8s_join $s "$node" "$ns" "$IMAGES/k8s.raw" "$ud" || { finish_node $s "$node"; return 1; }
  ok=$K8S_FAILS
  fetched "$K8S_HTTPD_MARK" 'bin/gvisor-bootstrap' || { note $s "the node never fetched bin/gvisor-bootstrap"; ok=1; }
  fetched "$K8S_HTTPD_MARK" "x86_64/\(runsc\|gvisor.tar.bz2\)" || { note $s "the node never fetched the gVisor release"; ok=1; }
  # the host never dials a guest: a request that needs the apiserver to reach kubelet fails
  # on the host (egress to a socket nobody serves)
  local lg; lg="$(kc -n "$ns" logs gvisor-probe 2>&1 | head -c 300)"
  if [[ "$lg" == *no-egress-to-nodes.sock* ]]; then note $s "kubectl logs refused on the host (no egress to nodes)"
  else note $s "kubectl logs did not fail at the egress socket: $lg"; ok=1; fi
  restarts_of $s "$node"
  K8S_DEMO_NODE="$node"
  ((DEMO)) && k8s_show "$ns"
  hand_over $s "$node" "$ns" "$ok"
  ((ok == 0))
}

# ---- k8s-baked ----------------------------------------------------------------------------
# The k8s image provisioned by the real `packer build` (bake.sh, BAKE_VARIANT=k8s), no
# customData: same checks, and containerd never restarted.
build_baked_k8s() {
  local cfg="$E2E_CACHE/baked-k8s-config.toml"
  { echo "# e2e baked k8s node: the release is baked in; its URL is reachable only at image build time."
    release_config "$REL" "10.0.2.2:$PORT"; } > "$cfg"
  say "baking the k8s image: packer/scripts/* (log $LOGS/bake-k8s.log)"
  BAKE_VARIANT=k8s "$E2E_DIR/bake.sh" "$REL" "$cfg" >"$LOGS/bake-k8s.log" 2>&1 || {
    say "baking failed: $(tail -5 "$LOGS/bake-k8s.log")"; return 1; }
  BAKED_K8S_RAW="$IMAGES/baked-k8s.raw"
}
scenario_k8s-baked() {
  local s=k8s-baked node=k8s-baked ns=k8s-baked ok
  k8s_prepare || { note $s "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  build_baked_k8s || { note $s "could not bake the image (see $LOGS/bake-k8s.log)"; return 1; }
  note $s "baked by $(cat "$IMAGES/baked-k8s.method" 2>/dev/null)"
  k8s_join $s "$node" "$ns" "$BAKED_K8S_RAW" "" || { finish_node $s "$node"; return 1; }
  ok=$K8S_FAILS
  restarts_of $s "$node"
  [[ "${R_RESTARTS[$s]}" == 0 ]] || { note $s "containerd restarted ${R_RESTARTS[$s]} times (want 0; node-side count)"; ok=1; }
  # The second boot (stand-in scenario 4, here with the real kubelet): runsc is served when
  # kubelet starts, containerd starts once, nothing of the node's config is written (but
  # /etc/default/kubelet: the provisioning stand-in writes it on every boot, as AKS's CSE
  # does), and a gVisor pod runs.
  reboot_node $s "$node" || ok=1
  facts "$node" "echo \"writes=\$(find /etc/containerd /etc/gvisor-bootstrap /usr/local/bin /etc/systemd/system /etc/default -xdev \\( -type f -o -type l \\) -newermt @\$(awk '/^btime/{print \$2}' /proc/stat) ! -path /etc/default/kubelet 2>/dev/null | sort | tr '\\n' ' ')\"" \
    || { finish_node $s "$node"; return 1; }
  local w; w="$(fact "$node" writes | tr -s ' ' | sed 's/ $//')"
  if [[ "$(fact "$node" starts)" == 1 && -z "$w" ]]; then note $s "second boot: containerd started once, no file written under /etc/containerd, /etc/gvisor-bootstrap, /usr/local/bin, /etc/systemd/system, /etc/default"
  else note $s "second boot: containerd started $(fact "$node" starts) times; files written: ${w:-none}"; ok=1; fi
  probe_pod "$ns" gvisor-second-boot gvisor
  wait_until "pod gvisor-second-boot to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" gvisor-second-boot \
    || why_pod "$ns" gvisor-second-boot "$node"
  check_gvisor_pod $s "$ns" gvisor-second-boot "$node" || ok=1
  hand_over $s "$node" "$ns" "$ok"
  ((ok == 0))
}

# ---- k8s-reimage --------------------------------------------------------------------------
# On a node running a gVisor pod, what AKS does on reimage/upgrade: rm and rewrite
# config.toml without runsc (AKS's containerd-2 shape), restart containerd, restart kubelet.
AKS_REWRITE='set -e
rm -f /etc/containerd/config.toml
cat > /etc/containerd/config.toml <<"TOML"
version = 2
oom_score = -999

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "mcr.microsoft.com/oss/kubernetes/pause:3.6"

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
    BinaryName = "/usr/bin/runc"
    SystemdCgroup = true

[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/containerd/certs.d"
TOML
echo "rewrote config.toml without runsc at $(date +%s)"
systemctl restart containerd
echo "containerd restarted at $(date +%s)"
systemctl restart kubelet
echo "kubelet restarted at $(date +%s) (after its gate)"'

# handler_timeline NODE STEP_N SECONDS: polls the Node's runtimeHandlers every second while
# the node runs ctl step STEP_N; K8S_TIMELINE holds "t=<s> [handlers]" at every change.
handler_timeline() {
  local node="$1" n="$2" secs="$3" t0=$SECONDS h last=""
  K8S_TIMELINE=""
  while ((SECONDS - t0 < secs)); do
    h="$(node_handlers "$node")"
    if [[ "$h" != "$last" ]]; then K8S_TIMELINE+="t=$((SECONDS - t0))s [$h] "; last="$h"; fi
    grep -aq "E2E|ctl-done|$n " "$LOGS/$node.serial.log" && return 0
    sleep 1
  done
  say "TIMEOUT after ${secs}s waiting for $node to run step $n"; tail -n 40 "$LOGS/$node.serial.log" | sed 's/^/    /' >&2
  return 1
}
ctr_id() { kc -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].containerID}'; }
restarts_in_pod() { kc -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }

scenario_k8s-reimage() {
  local s=k8s-reimage node=k8s-reimage ns=k8s-reimage raw ud="" ok id0 id1 n
  k8s_prepare || { note $s "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  if take_over $s "$ns"; then node="$TAKEN_NODE"
  else
    raw="${BAKED_K8S_RAW:-}"
    if [[ -z "$raw" || ! -f "$raw" ]]; then
      raw="$IMAGES/k8s.raw"; ud="$(render_user_data "$node" "$REL")" || { note $s "could not render customData"; return 1; }
    fi
    note $s "node from $(basename "$raw")${ud:+ + customData}"
    k8s_join $s "$node" "$ns" "$raw" "$ud" || { finish_node $s "$node"; return 1; }
  fi
  ok=$K8S_FAILS
  sleeper_pod "$ns" gvisor-sleeper gvisor
  wait_until "pod gvisor-sleeper Running" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_running "$ns" gvisor-sleeper \
    || { why_pod "$ns" gvisor-sleeper "$node"; note $s "the gVisor sleeper never ran"; finish_node $s "$node"; return 1; }
  id0="$(ctr_id "$ns" gvisor-sleeper)"
  ctl "$node" "$AKS_REWRITE"; n=$CTL_N
  handler_timeline "$node" "$n" 600 || { note $s "the reimage step did not finish"; finish_node $s "$node"; return 1; }
  note $s "reimage: $(ctl_out "$node" "$n" | tr '\n' ';' | cut -c1-240)"
  note $s "runtimeHandlers meanwhile: $K8S_TIMELINE"
  wait_until "Node $node Ready after the kubelet restart" 300 "$LOGS/$node.serial.log" node_ready "$node" || ok=1
  wait_until "runsc in $node's runtimeHandlers after the reimage" 60 "$LOGS/$node.serial.log" has_handler "$node" runsc \
    || { note $s "runsc not served after kubelet came back"; ok=1; }
  id1="$(ctr_id "$ns" gvisor-sleeper)"
  if pod_running "$ns" gvisor-sleeper && [[ "$id1" == "$id0" && "$(restarts_in_pod "$ns" gvisor-sleeper)" == 0 ]]; then
    note $s "the running gVisor pod kept running (same container ${id0: -12}, 0 restarts)"
  else
    note $s "the gVisor pod did not survive: phase $(pod_phase "$ns" gvisor-sleeper), container ${id0: -12} -> ${id1: -12}"; ok=1
  fi
  probe_pod "$ns" gvisor-after gvisor
  wait_until "pod gvisor-after to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" gvisor-after \
    || why_pod "$ns" gvisor-after "$node"
  check_gvisor_pod $s "$ns" gvisor-after "$node" || ok=1
  restarts_of $s "$node"
  finish_node $s "$node"
  ((ok == 0))
}

# ---- node-side facts ----------------------------------------------------------------------
# What the API cannot show, asked of the node through a ctl step: which release
# .gvisor-current points at, the release directories present, the runsc binary each running
# sandbox executes, containerd's start count, the runsc entries in containerd's config.
NODE_FACTS='echo "current=$(readlink /usr/local/bin/.gvisor-current 2>/dev/null || echo none)"
for d in /usr/local/bin/gvisor.*; do [ -d "$d" ] && echo "dir=${d##*/}"; done
for p in $(pgrep -f runsc-sandbox 2>/dev/null); do echo "sandbox-exe=$(readlink /proc/$p/exe)"; done
echo "starts=$(journalctl -b -u containerd.service -o cat | grep -c "^Started containerd")"
echo "runsc-in-config=$(grep -c runsc /etc/containerd/config.toml 2>/dev/null || true)"
echo "runsc-binary=$(ls /usr/local/bin/runsc 2>/dev/null || echo none)"'
# facts NODE [SCRIPT_BEFORE]: runs SCRIPT_BEFORE then NODE_FACTS; sets FACT_N (the step)
facts() {
  ctl "$1" "${2:+$2
}$NODE_FACTS"; FACT_N=$CTL_N
  ctl_wait "$1" "$FACT_N" 600
}
fact() { ctl_out "$1" "$FACT_N" | sed -n "s/^$2=//p"; }

# ---- k8s-upgrade --------------------------------------------------------------------------
# A newer gVisor release is published and the node's config points at it (then `run`, what
# the boot unit, the .path unit and the DaemonSet run). The newer release is this run's
# runsc published under the next release name: same bytes, its own release directory.
scenario_k8s-upgrade() {
  local s=k8s-upgrade node=k8s-upgrade ns=k8s-upgrade ud ok id0 rel2 cur0 cur1 st0 st1 old
  k8s_prepare || { note $s "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  rel2="${REL%.*}.$(( ${REL##*.} + 1 ))"
  rm -rf "$WWW/gvisor/releases/release/$rel2"
  cp -al "$WWW/gvisor/releases/release/$REL" "$WWW/gvisor/releases/release/$rel2"
  if take_over $s "$ns"; then node="$TAKEN_NODE"
  else
    ud="$(render_user_data "$node" "$REL")" || { note $s "could not render customData"; return 1; }
    k8s_join $s "$node" "$ns" "$IMAGES/k8s.raw" "$ud" || { finish_node $s "$node"; return 1; }
  fi
  ok=$K8S_FAILS
  sleeper_pod "$ns" gvisor-old gvisor
  wait_until "pod gvisor-old Running" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_running "$ns" gvisor-old \
    || { why_pod "$ns" gvisor-old "$node"; note $s "the gVisor pod never ran"; finish_node $s "$node"; return 1; }
  id0="$(ctr_id "$ns" gvisor-old)"
  facts "$node" || { note $s "the node did not report"; finish_node $s "$node"; return 1; }
  cur0="$(fact "$node" current)"; st0="$(fact "$node" starts)"
  facts "$node" "sed -i \"s#^version = '$REL'#version = '$rel2'#; s#/release/$REL/x86_64#/release/$rel2/x86_64#\" /etc/gvisor-bootstrap/config.toml
grep -n \"$rel2\" /etc/gvisor-bootstrap/config.toml
gvisor-bootstrap run; echo \"run-rc=\$?\"" || { note $s "the upgrade step did not finish"; finish_node $s "$node"; return 1; }
  cur1="$(fact "$node" current)"; st1="$(fact "$node" starts)"
  note $s "release $REL -> $rel2: .gvisor-current $cur0 -> $cur1 (run exit $(fact "$node" run-rc))"
  [[ "$cur1" == gvisor."$rel2"-* ]] || { note $s "the node did not switch to $rel2"; ok=1; }
  old="$cur0"
  if fact "$node" dir | matches -xF "$old"; then note $s "old release dir kept while its sandbox runs"; else note $s "old release dir $old removed under a running sandbox"; ok=1; fi
  fact "$node" sandbox-exe | matches "/$old/" || { note $s "the running sandbox does not run the old release: $(fact "$node" sandbox-exe | tr '\n' ' ')"; ok=1; }
  if [[ "$st0" =~ ^[0-9]+$ && "$st1" =~ ^[0-9]+$ ]]; then
    R_RESTARTS[$s]=$((st1 - st0))
    ((st1 - st0 <= 1)) || { note $s "containerd restarted $((st1 - st0)) times for the upgrade"; ok=1; }
  fi
  if pod_running "$ns" gvisor-old && [[ "$(ctr_id "$ns" gvisor-old)" == "$id0" ]]; then note $s "the running gVisor pod kept running"
  else note $s "the running gVisor pod did not survive the upgrade: $(pod_phase "$ns" gvisor-old)"; ok=1; fi
  sleeper_pod "$ns" gvisor-new gvisor
  wait_until "pod gvisor-new Running" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_running "$ns" gvisor-new \
    || { why_pod "$ns" gvisor-new "$node"; ok=1; }
  facts "$node" || { note $s "the node did not report"; finish_node $s "$node"; return 1; }
  if fact "$node" sandbox-exe | matches "/$cur1/"; then note $s "the new gVisor pod runs on $rel2"; else note $s "no sandbox runs the new release: $(fact "$node" sandbox-exe | tr '\n' ' ')"; ok=1; fi
  # the old release, once unused: the first run after its last process (sandbox, shim)
  # ended removes it. The node waits (up to 3 minutes) for the processes executing from it
  # to end, as kubelet stops the pod's sandbox, then runs once.
  kc -n "$ns" delete pod gvisor-old --wait=true --timeout=180s >/dev/null 2>&1 || { note $s "gvisor-old did not go away"; ok=1; }
  facts "$node" "old_users() { for p in /proc/[0-9]*; do e=\$(readlink \$p/exe 2>/dev/null) && case \"\$e\" in /usr/local/bin/$old/*) echo \"\${p#/proc/}:\$(cat \$p/comm 2>/dev/null):\$e\";; esac; done; }
i=0; while [ -n \"\$(old_users)\" ] && [ \$i -lt 90 ]; do sleep 2; i=\$((i + 1)); done
echo \"old-users=\$(old_users | tr '\\n' ' ')\"
gvisor-bootstrap run; echo \"run-rc=\$?\"" || { finish_node $s "$node"; return 1; }
  if fact "$node" dir | matches -xF "$old"; then
    note $s "old release dir $old kept after its last sandbox ended (processes still executing from it: $(fact "$node" old-users))"; ok=1
  else note $s "old release dir removed by the first run after its last sandbox ended (run exit $(fact "$node" run-rc))"; fi
  hand_over $s "$node" "$ns" "$ok"
  ((ok == 0))
}

# ---- k8s-uninstall ------------------------------------------------------------------------
# `gvisor-bootstrap uninstall` on a node with a runc pod running.
scenario_k8s-uninstall() {
  local s=k8s-uninstall node=k8s-uninstall ns=k8s-uninstall ud ok st0 st1 n
  k8s_prepare || { note $s "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  if take_over $s "$ns"; then node="$TAKEN_NODE"
  else
    ud="$(render_user_data "$node" "$REL")" || { note $s "could not render customData"; return 1; }
    k8s_join $s "$node" "$ns" "$IMAGES/k8s.raw" "$ud" || { finish_node $s "$node"; return 1; }
  fi
  ok=$K8S_FAILS
  runc_sleeper_pod "$ns" "$node"
  wait_until "pod runc-sleeper Running" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_running "$ns" runc-sleeper \
    || { why_pod "$ns" runc-sleeper "$node"; finish_node $s "$node"; return 1; }
  local rid; rid="$(ctr_id "$ns" runc-sleeper)"
  facts "$node" || { finish_node $s "$node"; return 1; }
  st0="$(fact "$node" starts)"
  ctl "$node" "gvisor-bootstrap uninstall; echo \"uninstall-rc=\$?\""; n=$CTL_N
  handler_timeline "$node" "$n" 600 || { note $s "uninstall did not finish"; finish_node $s "$node"; return 1; }
  note $s "uninstall: $(ctl_out "$node" "$n" | tail -n 3 | tr '\n' ';' | cut -c1-200)"
  wait_until "runsc gone from $node's runtimeHandlers" 120 "$LOGS/$node.serial.log" lacks_handler "$node" runsc \
    || { note $s "runsc still advertised in runtimeHandlers after uninstall"; ok=1; }
  note $s "runtimeHandlers during uninstall: $K8S_TIMELINE"
  if [[ -n "$(kc get node "$node" -o jsonpath='{.metadata.labels.gvisor}')" ]]; then note $s "the Node still carries the pool label gvisor"; ok=1
  else note $s "the Node left the pool (label gvisor removed with the kubelet's credentials)"; fi
  # a gVisor pod created now must not land on this node: the scheduler's verdict
  probe_pod "$ns" gvisor-after gvisor
  wait_until "pod gvisor-after unschedulable" 120 "$LOGS/k8s-scheduler.log" pod_unschedulable "$ns" gvisor-after || true
  local on; on="$(pod_node "$ns" gvisor-after)"
  if [[ "$on" == "$node" ]]; then
    note $s "a new gVisor pod was scheduled to the uninstalled node (it still carries the pool label the RuntimeClass selects; events: $(pod_events "$ns" gvisor-after | awk '{print $2}' | sort -u | tr '\n' ' '))"; ok=1
  else note $s "no gVisor pod scheduled there afterwards"; fi
  # nothing re-installs runsc: no unit is left to react to a config rewrite (AKS's); one
  # minute after it, still nothing
  ctl "$node" "$AKS_REWRITE
echo units=\$(systemctl list-unit-files --no-legend 'gvisor-bootstrap*' | wc -l)"; n=$CTL_N
  ctl_wait "$node" "$n" 600 || ok=1
  [[ "$(ctl_out "$node" "$n" | sed -n 's/^units=//p')" == 0 ]] || { note $s "gvisor-bootstrap units left after uninstall"; ok=1; }
  sleep 120
  facts "$node" || { finish_node $s "$node"; return 1; }
  st1="$(fact "$node" starts)"
  [[ "$(fact "$node" runsc-binary)" == none && "$(fact "$node" runsc-in-config)" == 0 ]] \
    && note $s "two minutes after a config rewrite: no runsc binary, no runsc in config.toml, no units" \
    || { note $s "runsc came back: binary $(fact "$node" runsc-binary), config mentions $(fact "$node" runsc-in-config)"; ok=1; }
  has_handler "$node" runsc && { note $s "runsc advertised again"; ok=1; }
  if [[ "$st0" =~ ^[0-9]+$ && "$st1" =~ ^[0-9]+$ ]]; then
    # the rewrite step restarts containerd itself once: count only the product's restarts
    R_RESTARTS[$s]=$((st1 - st0 - 1))
    ((st1 - st0 - 1 <= 1)) || { note $s "containerd restarted $((st1 - st0 - 1)) times by the uninstall"; ok=1; }
  fi
  if pod_running "$ns" runc-sleeper && [[ "$(ctr_id "$ns" runc-sleeper)" == "$rid" ]]; then note $s "the runc pod kept running"
  else note $s "the runc pod did not survive: $(pod_phase "$ns" runc-sleeper)"; ok=1; fi
  finish_node $s "$node"
  ((ok == 0))
}

# ---- k8s-daemonset ------------------------------------------------------------------------
# A managed pool (AKS): stock image, no customData; the DaemonSet of `render daemonset` and the
# RuntimeClass of `render runtimeclass` (delivery daemonset) applied unchanged, its image built
# without docker (`make image`) and imported on the node as a registry would serve it. A
# gVisor pod created before the node waits until the DaemonSet's pod has verified runsc
# through the CRI and labelled its own Node; the label's admission policy is checked on the
# real apiserver (server-side dry runs, impersonating the pod's identity).
DS_CLASS=gvisor-managed
ds_pod() { kc -n kube-system get pods -l app.kubernetes.io/name=gvisor-bootstrap --field-selector "spec.nodeName=$1" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null; }
ds_ready() { local p; p="$(ds_pod "$1")"; [[ -n "$p" && "$(kc -n kube-system get pod "$p" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
node_label() { kc get node "$1" -o jsonpath="{.metadata.labels.${2//./\\.}}" 2>/dev/null; }
ready_labelled() { [[ "$(node_label "$1" "${DS_LABEL%%=*}")" == "${DS_LABEL#*=}" ]]; }
# as_pod NODE_EXTRA ARGS...: kubectl as the DaemonSet's service account, with the node name
# a pod-bound token of a pod on NODE_EXTRA carries; server-side dry run (admission runs,
# nothing is stored).
as_pod() {
  local n="$1"; shift
  kc --as system:serviceaccount:kube-system:gvisor-bootstrap --as-user-extra "authentication.kubernetes.io/node-name=$n" "$@" --dry-run=server
}
scenario_k8s-daemonset() {
  local s=k8s-daemonset node=k8s-daemonset ns=k8s-daemonset ok=0 d seed cfg ref built n p t0 out
  # the DaemonSet would take every later pool node: it goes with this scenario's node
  ds_finish() { finish_node k8s-daemonset k8s-daemonset; kc delete -f "$K8S_DIR/daemonset.yaml" --wait=false >/dev/null 2>&1 || true; }
  k8s_prepare || { note $s "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  say "building the DaemonSet image: make image (log $LOGS/k8s-image.log)"
  make -C "$REPO" image >"$LOGS/k8s-image.log" 2>&1 || { note $s "make image failed: $(tail -3 "$LOGS/k8s-image.log")"; return 1; }
  built="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$REPO/bin/oci/index.json")"
  mkdir -p "$WWW/images"; cp "$REPO/bin/gvisor-bootstrap-image.tar" "$WWW/images/gvisor-bootstrap-image.tar"
  cfg="$K8S_DIR/daemonset-config.toml"
  { echo "# e2e managed pool: the release from the host's loopback server, pinned (plain HTTP)"
    release_config "$REL"
    cat <<EOF
[cluster]
runtime_class_name = "$DS_CLASS"
[delivery]
mode = "daemonset"
EOF
  } > "$cfg"
  # the image as a user names theirs (pushed to their registry; here imported on the node)
  "$GVB" --config "$cfg" render daemonset --image "$built" > "$K8S_DIR/daemonset.yaml" 2>"$LOGS/k8s-daemonset.render.err" \
    && "$GVB" --config "$cfg" render runtimeclass > "$K8S_DIR/runtimeclass-$DS_CLASS.yaml" 2>>"$LOGS/k8s-daemonset.render.err" \
    || { note $s "render failed: $(cat "$LOGS/k8s-daemonset.render.err")"; return 1; }
  cp "$cfg" "$K8S_DIR/daemonset.yaml" "$K8S_DIR/runtimeclass-$DS_CLASS.yaml" "$LOGS/"
  ref="$(sed -n 's/^ *image: "\(.*\)"$/\1/p' "$K8S_DIR/daemonset.yaml" | sort -u)"
  [[ "$ref" == "$built" ]] || { note $s "the rendered image '$ref' is not the one make image built ('$built')"; return 1; }
  DS_LABEL="$("$GVB" --config "$cfg" render config | sed -n "s/^ready_label = '\(.*\)'$/\1/p")"
  [[ "$DS_LABEL" == *=* ]] || { note $s "no cluster.ready_label in the effective config"; return 1; }
  kc apply -f "$K8S_DIR/runtimeclass-$DS_CLASS.yaml" >&2 || { note $s "the rendered RuntimeClass was refused"; return 1; }
  note $s "RuntimeClass $DS_CLASS selects $(kc get runtimeclass $DS_CLASS -o jsonpath='{.scheduling.nodeSelector}')"
  k8s_ns "$ns" || { note $s "namespace $ns not usable"; return 1; }
  probe_pod "$ns" gvisor-probe $DS_CLASS

  d="$RUN_DIR/$node.kubelet"; rm -rf "$d"; mkdir -p "$d"
  node_seed "$node" "$d" "gvisor=enabled" "gvisor=enabled:NoSchedule"
  seed="$(seed_tar "$node" "E2E_SCENARIO=$s
E2E_NET=1" "" "$d/kubelet")"
  K8S_SEED[$node]="$seed"
  vm_start "$node" "$(overlay "$node" "$IMAGES/k8s.raw")" "$seed"
  watch_registration "$node" "$K8S_NODE_TIMEOUT" || { note $s "Node $node never registered"; ds_finish; return 1; }
  R_SAW[$s]="$K8S_FIRST_HANDLERS"
  note $s "stock node registered ${K8S_REGISTERED_AT}s after boot, handlers: $K8S_FIRST_HANDLERS"
  wait_until "Node $node Ready (CNI)" 300 "$LOGS/$node.serial.log" node_ready "$node" || { note $s "Node $node not Ready"; ds_finish; return 1; }
  # in the pool, Ready, not verified: the gVisor pod must still wait
  if [[ -n "$(pod_node "$ns" gvisor-probe)" ]]; then note $s "the gVisor pod was scheduled to a node the DaemonSet had not verified"; ok=1
  else note $s "gVisor pod held back from the Ready, unverified pool node"; fi

  # The cluster's service network for the kubernetes Service, as kube-proxy programs it
  # (this cluster has no kube-proxy; the apiserver is 10.0.2.100:6443 through guestfwd), and
  # the image, as a registry would deliver it.
  local svcnet="set -e
sysctl -qw net.ipv4.ip_forward=1
iptables -t nat -A PREROUTING -d 10.96.0.1/32 -p tcp --dport 443 -j DNAT --to-destination $SERVER_IP:$K8S_GUEST_PORT
iptables -t nat -A OUTPUT -d 10.96.0.1/32 -p tcp --dport 443 -j DNAT --to-destination $SERVER_IP:$K8S_GUEST_PORT
iptables -t nat -A POSTROUTING -s 10.244.0.0/24 ! -d 10.244.0.0/24 -j MASQUERADE"
  ctl "$node" "$svcnet
curl -fsS -o /run/e2e/gvb-image.tar http://$SERVER_IP/images/gvisor-bootstrap-image.tar
ctr -n k8s.io images import --platform linux/amd64 /run/e2e/gvb-image.tar
rm -f /run/e2e/gvb-image.tar
ctr -n k8s.io images ls -q | grep gvisor-bootstrap"; n=$CTL_N
  ctl_wait "$node" "$n" 600 || { note $s "the image import step did not finish"; ds_finish; return 1; }
  out="$(ctl_out "$node" "$n")"
  grep -qxF "$built" <<<"$out" || { note $s "the image was not imported: $(tail -n 3 <<<"$out" | tr '\n' ' ')"; ds_finish; return 1; }

  kc apply -f "$K8S_DIR/daemonset.yaml" >&2 || { note $s "the rendered DaemonSet was refused by the apiserver"; ds_finish; return 1; }
  t0=$SECONDS
  if ! wait_until "the DaemonSet's pod on $node Ready" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" ds_ready "$node"; then
    p="$(ds_pod "$node")"; [[ -n "$p" ]] && why_pod kube-system "$p" "$node"
    note $s "the DaemonSet's pod never became Ready"; ds_finish; return 1
  fi
  p="$(ds_pod "$node")"
  note $s "DaemonSet pod $p Ready $((SECONDS - t0))s after apply (restarts: $(kc -n kube-system get pod "$p" -o jsonpath='{.status.containerStatuses[0].restartCount}'))"
  wait_until "label $DS_LABEL on $node" 300 "$LOGS/$node.serial.log" ready_labelled "$node" \
    || { note $s "the DaemonSet never labelled its Node $DS_LABEL"; why_pod kube-system "$p" "$node"; ok=1; }
  note $s "Node labelled $DS_LABEL $((SECONDS - t0))s after apply; runtimeHandlers then: $(node_handlers "$node")"
  wait_until "pod gvisor-probe to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" gvisor-probe \
    || why_pod "$ns" gvisor-probe "$node"
  check_gvisor_pod $s "$ns" gvisor-probe "$node" || ok=1
  probe_pod "$ns" runc-probe "" "$node"
  wait_until "pod runc-probe to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" runc-probe \
    || why_pod "$ns" runc-probe "$node"
  check_runc_pod $s "$ns" runc-probe "$node" || ok=1

  # how the pod ran, as the API shows it: restricted, not privileged, no host namespaces
  out="$(kc -n kube-system get pod "$p" -o jsonpath='{.spec.hostNetwork}/{.spec.hostPID}/{range .spec.initContainers[*]}{.securityContext.privileged},{.securityContext.readOnlyRootFilesystem},{.securityContext.capabilities.drop[0]};{end}{range .spec.containers[*]}{.securityContext.privileged},{.securityContext.readOnlyRootFilesystem},{.securityContext.capabilities.drop[0]};{end}')"
  if [[ "$out" =~ ^(false)?/(false)?/(false,true,ALL;)+$ ]]; then note $s "its containers ran unprivileged, read-only root, every capability dropped, no host network or PID"
  else note $s "the DaemonSet's pod is not restricted: $out"; ok=1; fi

  # least privilege, judged by the real apiserver (RBAC + the ValidatingAdmissionPolicy)
  local key="${DS_LABEL%%=*}"
  if as_pod "$node" label node "$node" "$DS_LABEL" --overwrite >/dev/null 2>"$RUN_DIR/as.err" \
     && as_pod "$node" label node "$node" "$key-" >/dev/null 2>>"$RUN_DIR/as.err"; then
    note $s "policy: its identity may set and remove $key on its own Node"
  else note $s "policy refused the DaemonSet's own label change: $(tr '\n' ' ' < "$RUN_DIR/as.err" | cut -c1-200)"; ok=1; fi
  local denied="" e
  # refused_by_policy ARGS...: the change is refused, and by the policy (not by anything else)
  refused_by_policy() { ! e="$(as_pod "$@" 2>&1 >/dev/null)" && [[ "$e" == *ValidatingAdmissionPolicy*gvisor-bootstrap* ]]; }
  refused_by_policy "$node" label node "$node" gvisor=disabled --overwrite && denied+=" other-label"
  # (a change, not a no-op: the apiserver does not admit an update that changes nothing)
  refused_by_policy other-node label node "$node" "${DS_LABEL%%=*}=e2e" --overwrite && denied+=" other-node"
  refused_by_policy "$node" taint node "$node" e2e=x:NoSchedule && denied+=" taint"
  refused_by_policy "$node" annotate node "$node" e2e=x && denied+=" annotation"
  [[ "$(kc --as system:serviceaccount:kube-system:gvisor-bootstrap auth can-i list pods -n "$ns" 2>/dev/null)" == no ]] && denied+=" pods"
  if [[ "$denied" == " other-label other-node taint annotation pods" ]]; then
    note $s "policy: refused another label, another Node, a taint, an annotation (each by the ValidatingAdmissionPolicy); RBAC: no pods"
  else note $s "policy: only these were refused:$denied (want other-label other-node taint annotation pods; last error: ${e:0:200})"; ok=1; fi
  restarts_of $s "$node"
  ds_reboot $s "$node" "$ns" "$svcnet" || ok=1
  ds_delete $s "$node" "$ns" || ok=1
  ds_finish
  ((ok == 0))
}

# running_anew NS POD CONTAINERID: the pod is Running and ready in another container
running_anew() {
  local v; v="$(kc -n "$1" get pod "$2" -o jsonpath='{.status.phase}/{.status.containerStatuses[0].ready}/{.status.containerStatuses[0].containerID}')"
  [[ "$v" == Running/true/* && "$v" != "Running/true/$3" ]]
}

# ds_reboot S NODE NS SVCNET: a gVisor pod runs; the node reboots. The DaemonSet put the
# boot unit and the kubelet gate on the host, so kubelet starts only once runsc is served:
# the first Node status of the new boot (new nodeInfo.bootID) already lists runsc, and the
# pod runs again (a new container, in a new gVisor sandbox) with no FailedCreatePodSandBox.
ds_reboot() {
  local s="$1" node="$2" ns="$3" svcnet="$4" ok=0 id0 id1 f
  sleeper_pod "$ns" gvisor-sleeper $DS_CLASS
  wait_until "pod gvisor-sleeper Running" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_running "$ns" gvisor-sleeper \
    || { why_pod "$ns" gvisor-sleeper "$node"; note $s "reboot: the gVisor pod never ran"; return 1; }
  id0="$(ctr_id "$ns" gvisor-sleeper)"
  # the service network is not persistent: program it again at power-on, as kube-proxy would
  reboot_node $s "$node" "$svcnet" || ok=1
  [[ "$REBOOT_HANDLERS" == "" ]] && return 1
  wait_until "pod gvisor-sleeper running again" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" running_anew "$ns" gvisor-sleeper "$id0" \
    || { why_pod "$ns" gvisor-sleeper "$node"; ok=1; }
  id1="$(ctr_id "$ns" gvisor-sleeper)"
  facts "$node" "systemctl show kubelet.service -p ExecStartPre --value | grep -o 'argv\[\]=[^;]*;[^}]*status=[^ ;}]*' | sed 's/;.*status=/ status=/; s/^/gate=/'" || return 1
  note $s "reboot: node side: kubelet's ExecStartPre $(fact "$node" gate | grep -- --gate | head -n 1 | tr -s ' ')"
  if [[ "$id1" != "$id0" ]] && pod_running "$ns" gvisor-sleeper && fact "$node" sandbox-exe | matches '/gvisor\.'; then
    note $s "reboot: the gVisor pod runs again (container ${id0: -12} -> ${id1: -12}, sandbox exe $(fact "$node" sandbox-exe | head -n 1))"
  else note $s "reboot: the gVisor pod does not run again in gVisor: $(pod_phase "$ns" gvisor-sleeper) ${id1: -12}, sandboxes: $(fact "$node" sandbox-exe | tr '\n' ' ')"; ok=1; fi
  f="$(sandbox_failures "$ns" gvisor-sleeper)"
  ((f == 0)) || { note $s "reboot: gvisor-sleeper had $f FailedCreatePodSandBox events"; ok=1; }
  ready_labelled "$node" || { note $s "reboot: the Node lost its ready label"; ok=1; }
  return $ok
}

# ds_delete S NODE NS: `kubectl delete -f` of the rendered manifest, as a user removes it (the
# ServiceAccount goes first, so the pod's token is refused by the time it is stopped). The
# DaemonSet's pod, stopped by its DaemonSet's deletion (not a rollout), has the host
# uninstall: the node leaves the gVisor pool first (the ready label goes before runsc
# leaves runtimeHandlers), no gVisor pod is scheduled there afterwards, a runc pod keeps
# running, nothing re-installs runsc (two minutes, including an AKS config rewrite), and
# containerd is restarted at most once.
ds_delete() {
  local s="$1" node="$2" ns="$3" ok=0 rid st0 st1 n t0 tl="" th="" out
  kc -n "$ns" delete pod gvisor-sleeper --wait=true --timeout=300s >/dev/null 2>&1 || { note $s "delete: gvisor-sleeper did not go away"; ok=1; }
  runc_sleeper_pod "$ns" "$node"
  wait_until "pod runc-sleeper Running" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_running "$ns" runc-sleeper \
    || { why_pod "$ns" runc-sleeper "$node"; return 1; }
  rid="$(ctr_id "$ns" runc-sleeper)"
  facts "$node" || return 1
  st0="$(fact "$node" starts)"
  kc delete -f "$K8S_DIR/daemonset.yaml" --wait=false >&2 || { note $s "delete: kubectl delete -f refused"; return 1; }
  t0=$SECONDS
  while ((SECONDS - t0 < 600)); do
    [[ -z "$tl" ]] && ! ready_labelled "$node" && tl=$((SECONDS - t0))
    [[ -z "$th" ]] && lacks_handler "$node" runsc && th=$((SECONDS - t0))
    [[ -n "$tl" && -n "$th" ]] && break
    sleep 1
  done
  note $s "delete: after kubectl delete -f, the ready label was gone at t=${tl:-never}s, runsc gone from runtimeHandlers at t=${th:-never}s"
  [[ -n "$tl" ]] || { note $s "delete: the Node is still labelled $DS_LABEL"; ok=1; }
  [[ -n "$th" ]] || { note $s "delete: runsc still in runtimeHandlers"; ok=1; }
  if [[ -n "$tl" && -n "$th" ]] && ((tl > th)); then note $s "delete: runsc left before the label: the node was advertised without serving it"; ok=1; fi
  probe_pod "$ns" gvisor-after $DS_CLASS
  wait_until "pod gvisor-after unschedulable" 120 "$LOGS/k8s-scheduler.log" pod_unschedulable "$ns" gvisor-after || true
  if [[ -n "$(pod_node "$ns" gvisor-after)" ]]; then note $s "delete: a new gVisor pod was scheduled to the node"; ok=1
  else note $s "delete: no gVisor pod scheduled there afterwards"; fi
  ctl "$node" "systemctl show gvisor-bootstrap-uninstall.service -p ActiveState -p Result -p ExecMainStatus | tr '\n' ' '; echo
journalctl -b -u gvisor-bootstrap-uninstall.service -o cat | tail -n 6
$AKS_REWRITE
echo units=\$(systemctl list-unit-files --no-legend 'gvisor-bootstrap*' | wc -l)"; n=$CTL_N
  ctl_wait "$node" "$n" 600 || ok=1
  out="$(ctl_out "$node" "$n")"
  note $s "delete: the host's uninstall unit: $(head -n 1 <<<"$out" | cut -c1-160)"
  [[ "$(sed -n 's/^units=//p' <<<"$out")" == 0 ]] || { note $s "delete: gvisor-bootstrap units left on the node"; ok=1; }
  sleep 120
  facts "$node" || return 1
  st1="$(fact "$node" starts)"
  if [[ "$(fact "$node" runsc-binary)" == none && "$(fact "$node" runsc-in-config)" == 0 ]]; then
    note $s "delete: two minutes after a config rewrite: no runsc binary, no runsc in config.toml, no units"
  else note $s "delete: runsc came back: binary $(fact "$node" runsc-binary), config mentions $(fact "$node" runsc-in-config)"; ok=1; fi
  has_handler "$node" runsc && { note $s "delete: runsc advertised again"; ok=1; }
  if [[ "$st0" =~ ^[0-9]+$ && "$st1" =~ ^[0-9]+$ ]]; then
    # the rewrite step restarts containerd itself once: count only the uninstall's
    if ((st1 - st0 - 1 <= 1)); then note $s "delete: containerd restarted $((st1 - st0 - 1)) time(s) by the uninstall"
    else note $s "delete: containerd restarted $((st1 - st0 - 1)) times by the uninstall"; ok=1; fi
  fi
  if pod_running "$ns" runc-sleeper && [[ "$(ctr_id "$ns" runc-sleeper)" == "$rid" ]]; then note $s "delete: the runc pod kept running"
  else note $s "delete: the runc pod did not survive: $(pod_phase "$ns" runc-sleeper)"; ok=1; fi
  return $ok
}

# k8s_show NS: what `make demo` shows (the API's view of the cluster, and the pod's output)
k8s_show() {
  narrate "kubectl get nodes,pods -o wide"
  kc get nodes -o wide | sed 's/^/    /'
  kc -n "$1" get pods -o wide | sed 's/^/    /'
  narrate "Node.status.runtimeHandlers: $(node_handlers "$K8S_DEMO_NODE")"
  narrate "What the gVisor pod wrote to its termination message:"
  pod_msg "$1" gvisor-probe | sed 's/^/    [gvisor pod] /'; echo
  narrate "...and the runc pod beside it:"
  pod_msg "$1" runc-probe | sed 's/^/    [runc pod  ] /'; echo
}
