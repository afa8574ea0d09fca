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

K8S_NODE_TIMEOUT="${E2E_K8S_NODE_TIMEOUT:-900}"  # boot + customData + kubelet registration, tcg
K8S_POD_TIMEOUT="${E2E_K8S_POD_TIMEOUT:-420}"    # a pod from scheduled to terminated, tcg
declare -A VM_PID=()

# ---- once per run -------------------------------------------------------------------------
K8S_READY=""
k8s_prepare() {
  [[ -n "$K8S_READY" ]] && return "$K8S_READY"
  K8S_READY=1
  local t0=$SECONDS
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
  local args=(-accel tcg,thread=multi -smp 2 -m "$MEM" -display none -monitor none -no-reboot
    -serial "file:$log"
    -kernel "$IMAGES/vmlinuz" -initrd "$IMAGES/initrd.img"
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=1 quiet"
    -drive "file=$disk,format=qcow2,if=virtio,cache=unsafe"
    -drive "file=$seed,format=raw,if=virtio,readonly=on"
    -nic "$nic")
  [[ -n "${E2E_QEMU_CPU:-}" ]] && args+=(-cpu "$E2E_QEMU_CPU")
  : > "$log"
  say "boot $name in the background: serial log $log"
  timeout -k 10 "$BOOT_TIMEOUT" qemu-system-x86_64 "${args[@]}" </dev/null >"$LOGS/$name.qemu.log" 2>&1 &
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

# containerd_starts NODE: containerd's start count this boot (node-side fact; the API does not
# show it), through a ctl step.
containerd_starts() {
  local node="$1" n
  ctl "$node" "echo starts=\$(journalctl -b -u containerd.service -o cat | grep -c '^Started containerd')"
  n=$CTL_N
  ctl_wait "$node" "$n" 120 || return 1
  ctl_out "$node" "$n" | sed -n 's/^starts=//p' | tail -1
}

# finish_node S NODE: stop the VM and remove its Node (its pods go with the namespace)
finish_node() {
  vm_stop "$2"
  kc delete node "$2" --wait=false >/dev/null 2>&1 || true
}

# ---- k8s-scale-out ------------------------------------------------------------------------
# A stock node with `render cloud-init` customData; the gVisor pod exists before the node.
scenario_k8s-scale-out() {
  local s=k8s-scale-out node=k8s-scale-out ns=k8s-scale-out ok=0 ud seed
  k8s_prepare || { note $s "the control plane did not come up (logs $LOGS/k8s-*.log)"; return 1; }
  kc create namespace "$ns" >/dev/null
  wait_until "ServiceAccount $ns/default" 60 "$LOGS/k8s-controller-manager.log" kc -n "$ns" get sa default || return 1
  probe_pod "$ns" gvisor-probe gvisor
  wait_until "pod gvisor-probe to be unschedulable (no gVisor node yet)" 60 "$LOGS/k8s-scheduler.log" pod_unschedulable "$ns" gvisor-probe \
    || { note $s "the gVisor pod was not held back before a gVisor node existed"; ok=1; }
  ud="$(render_user_data "$node" "$REL")" || { note $s "could not render customData"; return 1; }
  local d="$RUN_DIR/$node.kubelet"; rm -rf "$d"; mkdir -p "$d"
  node_seed "$node" "$d" "gvisor=enabled" "gvisor=enabled:NoSchedule"
  seed="$(seed_tar "$node" "E2E_SCENARIO=$s
E2E_NET=1" "$ud" "$d/kubelet")"
  local m; m="$(httpd_mark)"
  vm_start "$node" "$(overlay "$node" "$IMAGES/k8s.raw")" "$seed"
  watch_registration "$node" "$K8S_NODE_TIMEOUT" || { note $s "Node $node never registered with runtime handlers"; finish_node $s "$node"; return 1; }
  R_SAW[$s]="$K8S_FIRST_HANDLERS"
  note $s "Node registered ${K8S_REGISTERED_AT}s after boot, first handlers: $K8S_FIRST_HANDLERS"
  [[ " $K8S_FIRST_HANDLERS " == *" runsc "* ]] || { note $s "the Node's first status did not list runsc: registered before the gate?"; ok=1; }
  fetched "$m" 'bin/gvisor-bootstrap' || { note $s "the node never fetched bin/gvisor-bootstrap"; ok=1; }
  wait_until "Node $node Ready (CNI)" 300 "$LOGS/$node.serial.log" node_ready "$node" || { note $s "Node $node not Ready"; ok=1; }
  probe_pod "$ns" runc-probe "" "$node"
  wait_until "pod gvisor-probe to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" gvisor-probe \
    || why_pod "$ns" gvisor-probe "$node"
  check_gvisor_pod $s "$ns" gvisor-probe "$node" || ok=1
  wait_until "pod runc-probe to finish" "$K8S_POD_TIMEOUT" "$LOGS/$node.serial.log" pod_done "$ns" runc-probe \
    || why_pod "$ns" runc-probe "$node"
  check_runc_pod $s "$ns" runc-probe "$node" || ok=1
  # the host never dials a guest: a request that needs the apiserver to reach kubelet fails
  # on the host (egress to a socket nobody serves)
  local lg; lg="$(kc -n "$ns" logs gvisor-probe 2>&1 | head -c 300)"
  if [[ "$lg" == *no-egress-to-nodes.sock* ]]; then note $s "kubectl logs refused on the host (no egress to nodes)"
  else note $s "kubectl logs did not fail at the egress socket: $lg"; ok=1; fi
  local st; st="$(containerd_starts "$node")"
  [[ "$st" =~ ^[0-9]+$ ]] && R_RESTARTS[$s]=$((st > 0 ? st - 1 : 0))
  K8S_DEMO_NODE="$node" K8S_DEMO_NS="$ns"
  ((DEMO)) && k8s_show "$ns"
  finish_node $s "$node"
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
