# A real Kubernetes control plane on the host's loopback, for the k8s-* scenarios (sourced by
# run.sh after lib.sh). etcd, kube-apiserver, kube-controller-manager and kube-scheduler from
# test/tools/build-k8s.sh; certificates, keys and kubeconfigs made fresh for every run under
# $RUN_DIR/k8s (nothing reused, nothing committed).
#
#   cluster_up          start it and wait until it answers (deadlines; logs on timeout)
#   cluster_down        stop what cluster_up started (by pid)
#   kc ARGS...          kubectl as cluster admin
#   node_seed NAME DIR  a node's kubelet identity (client cert CN=system:node:NAME,
#                       O=system:nodes), kubeconfig and KubeletConfiguration into DIR
#
# Loopback only, and the host never dials a guest: everything listens on 127.0.0.1; a guest
# reaches the apiserver as https://10.0.2.100:6443 through a qemu guestfwd relay (boot() in
# scenarios.sh); the apiserver's egress to the cluster (kubelets, pods: logs, exec,
# port-forward, proxy) goes to a Unix socket nobody listens on (EgressSelectorConfiguration),
# so such a request fails on the host instead of connecting to 10.0.2.x.

K8S_GUEST_PORT=6443          # the apiserver as guests see it: https://$SERVER_IP:6443
K8S_PIDS=()

k8s_bin() { # NAME: the binary from .cache/bin, or a clear error
  [[ -x "$BIN/$1" ]] || { say "missing $BIN/$1: run test/tools/build-k8s.sh (make tools)"; return 1; }
  echo "$BIN/$1"
}

kc() { "$BIN/kubectl" --kubeconfig "$K8S_DIR/admin.kubeconfig" --request-timeout=30s "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_until DESC SECONDS LOG CMD...: runs CMD every 2 s until it succeeds; on timeout says
# what was awaited and prints the tail of LOG (the process whose work it was).
wait_until() {
  local desc="$1" secs="$2" log="$3" t0=$SECONDS; shift 3
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - t0 >= secs)); then
      say "TIMEOUT after ${secs}s waiting for $desc"
      [[ -n "$log" && -f "$log" ]] && { say "last lines of $log:"; tail -n 40 "$log" | sed 's/^/    /' >&2; }
      return 1
    fi
    sleep 2
  done
  K8S_WAITED=$((SECONDS - t0))
}

# ---- PKI ----------------------------------------------------------------------------------
# cert NAME SUBJECT EXT: key NAME.key (EC P-256) and NAME.crt signed by the run's CA.
cert() {
  local n="$1" subj="$2" ext="$3" d="$K8S_DIR/pki"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/$n.key" 2>/dev/null
  openssl req -new -key "$d/$n.key" -subj "$subj" -out "$d/$n.csr" 2>/dev/null
  openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -sha256 -extfile <(printf '%s\n' "$ext") -out "$d/$n.crt" 2>/dev/null
  chmod 600 "$d/$n.key"; rm -f "$d/$n.csr"
}
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

make_pki() {
  local d="$K8S_DIR/pki"
  mkdir -p "$d"; chmod 700 "$d"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj "/CN=e2e-cluster-ca-$RUN_ID" -days 2 -sha256 \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature' \
    -out "$d/ca.crt" 2>/dev/null
  chmod 600 "$d/ca.key"
  # the apiserver's serving cert: the names it is reached by, on the host and from guests
  cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVER_IP,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=e2e-admin" "$client_ext"
  cert kcm "/CN=system:kube-controller-manager" "$client_ext"
  cert scheduler "/CN=system:kube-scheduler" "$client_ext"
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  chmod 600 "$d/sa.key"
}

# kubeconfig OUT SERVER CA CERT KEY USER: a kubeconfig with the credentials embedded.
kubeconfig() {
  local out="$1" server="$2" ca="$3" crt="$4" key="$5" user="$6"
  cat > "$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 < "$ca")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$crt")
    client-key-data: $(base64 -w0 < "$key")
contexts:
- name: e2e
  context: {cluster: e2e, user: $user}
current-context: e2e
EOF
  chmod 600 "$out"
}

# ---- the control plane --------------------------------------------------------------------
k8s_start() { # NAME CMD...: background process, log in $LOGS/k8s-NAME.log
  local name="$1"; shift
  "$@" >"$LOGS/k8s-$name.log" 2>&1 &
  K8S_PIDS+=($!)
  eval "K8S_PID_${name//-/_}=$!"
}

apiserver_ready() {
  [[ "$(curl -sS --max-time 5 --cacert "$K8S_DIR/pki/ca.crt" --cert "$K8S_DIR/pki/admin.crt" --key "$K8S_DIR/pki/admin.key" \
        "https://127.0.0.1:$K8S_API_PORT/readyz")" == ok ]]
}
lease_held() { [[ -n "$(kc -n kube-system get lease "$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)" ]]; }

cluster_up() {
  local etcd apiserver kcm sched t0=$SECONDS
  etcd="$(k8s_bin etcd)" && apiserver="$(k8s_bin kube-apiserver)" && kcm="$(k8s_bin kube-controller-manager)" \
    && sched="$(k8s_bin kube-scheduler)" && k8s_bin kubectl >/dev/null || return 1
  K8S_DIR="$RUN_DIR/k8s"
  rm -rf "$K8S_DIR"; mkdir -p "$K8S_DIR"
  make_pki
  local etcd_port etcd_peer
  etcd_port="$(free_port)"; etcd_peer="$(free_port)"; K8S_API_PORT="$(free_port)"
  kubeconfig "$K8S_DIR/admin.kubeconfig" "https://127.0.0.1:$K8S_API_PORT" "$K8S_DIR/pki/ca.crt" "$K8S_DIR/pki/admin.crt" "$K8S_DIR/pki/admin.key" e2e-admin
  kubeconfig "$K8S_DIR/kcm.kubeconfig" "https://127.0.0.1:$K8S_API_PORT" "$K8S_DIR/pki/ca.crt" "$K8S_DIR/pki/kcm.crt" "$K8S_DIR/pki/kcm.key" system:kube-controller-manager
  kubeconfig "$K8S_DIR/scheduler.kubeconfig" "https://127.0.0.1:$K8S_API_PORT" "$K8S_DIR/pki/ca.crt" "$K8S_DIR/pki/scheduler.crt" "$K8S_DIR/pki/scheduler.key" system:kube-scheduler
  # apiserver -> cluster (kubelets, pods, services) only through this socket, which nobody
  # serves: `kubectl logs/exec/port-forward` fail here instead of dialing a guest.
  cat > "$K8S_DIR/egress.yaml" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: $K8S_DIR/no-egress-to-nodes.sock
EOF
  say "control plane: etcd 127.0.0.1:$etcd_port, kube-apiserver https://127.0.0.1:$K8S_API_PORT (guests: https://$SERVER_IP:$K8S_GUEST_PORT), logs $LOGS/k8s-*.log"
  k8s_start etcd "$etcd" --name e2e --data-dir "$K8S_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "e2e=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level warn
  wait_until "etcd health on 127.0.0.1:$etcd_port" 60 "$LOGS/k8s-etcd.log" \
    sh -c "curl -fsS --max-time 3 http://127.0.0.1:$etcd_port/health | grep -q '\"health\":\"true\"'" || return 1
  local pki="$K8S_DIR/pki"
  k8s_start apiserver "$apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --secure-port "$K8S_API_PORT" \
    --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,RuntimeClass \
    --allow-privileged=true \
    --egress-selector-config-file "$K8S_DIR/egress.yaml" \
    --kubelet-preferred-address-types Hostname \
    --profiling=false
  wait_until "kube-apiserver /readyz on 127.0.0.1:$K8S_API_PORT" 180 "$LOGS/k8s-apiserver.log" apiserver_ready || return 1
  say "kube-apiserver ready in ${K8S_WAITED}s"
  k8s_start controller-manager "$kcm" --kubeconfig "$K8S_DIR/kcm.kubeconfig" \
    --authentication-kubeconfig "$K8S_DIR/kcm.kubeconfig" --authorization-kubeconfig "$K8S_DIR/kcm.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --profiling=false
  k8s_start scheduler "$sched" --kubeconfig "$K8S_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$K8S_DIR/scheduler.kubeconfig" --authorization-kubeconfig "$K8S_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" --profiling=false
  wait_until "kube-controller-manager's leader lease" 120 "$LOGS/k8s-controller-manager.log" lease_held kube-controller-manager || return 1
  wait_until "kube-scheduler's leader lease" 120 "$LOGS/k8s-scheduler.log" lease_held kube-scheduler || return 1
  # pods need their namespace's default ServiceAccount (made by the controller-manager)
  wait_until "the default ServiceAccount" 120 "$LOGS/k8s-controller-manager.log" kc -n default get serviceaccount default || return 1
  K8S_UP_SECONDS=$((SECONDS - t0))
  say "control plane up in ${K8S_UP_SECONDS}s ($("$BIN/kubectl" version --client -o json 2>/dev/null | jq -r .clientVersion.gitVersion) / etcd $(cat "$BIN/etcd.version"))"
}

cluster_down() { # TERM, then KILL what is still there after 15 s (a throwaway cluster)
  local p i
  ((${#K8S_PIDS[@]})) || return 0
  for p in "${K8S_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq 15); do
    for p in "${K8S_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && break; p=""; done
    [[ -z "$p" ]] && break
    sleep 1
  done
  for p in "${K8S_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  K8S_PIDS=()
}

# node_seed NAME DIR LABELS TAINTS: DIR/kubelet/ holds what the guest's e2e-k8s-seed installs:
# pki/{ca.crt,kubelet.crt,kubelet.key}, kubeconfig (server https://10.0.2.100:6443),
# config.yaml (KubeletConfiguration) and env (/etc/default/kubelet: KUBELET_FLAGS).
node_seed() {
  local name="$1" dir="$2/kubelet" labels="$3" taints="$4" pki="$K8S_DIR/pki"
  mkdir -p "$dir/pki"
  cert "node-$name" "/O=system:nodes/CN=system:node:$name" "$client_ext"
  cp "$pki/ca.crt" "$dir/pki/ca.crt"
  cp "$pki/node-$name.crt" "$dir/pki/kubelet.crt"; cp "$pki/node-$name.key" "$dir/pki/kubelet.key"
  cat > "$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$SERVER_IP:$K8S_GUEST_PORT
    certificate-authority: /var/lib/kubelet/pki/ca.crt
users:
- name: system:node:$name
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet.crt
    client-key: /var/lib/kubelet/pki/kubelet.key
contexts:
- name: e2e
  context: {cluster: e2e, user: "system:node:$name"}
current-context: e2e
EOF
  # A real node's kubelet config (kubeadm/AKS shape), sized for a 6 GB test disk.
  {
    cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: /var/lib/kubelet/pki/ca.crt}
authorization: {mode: Webhook}
readOnlyPort: 0
rotateCertificates: false
serverTLSBootstrap: false
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "2%", imagefs.available: "2%"}
nodeStatusUpdateFrequency: 5s
EOF
    if [[ -n "$taints" ]]; then
      echo "registerWithTaints:"
      local t k v e
      for t in ${taints//,/ }; do
        k="${t%%=*}"; v="${t#*=}"; e="${v#*:}"; v="${v%%:*}"
        printf -- '- {key: "%s", value: "%s", effect: "%s"}\n' "$k" "$v" "$e"
      done
    fi
  } > "$dir/config.yaml"
  printf 'KUBELET_FLAGS="--hostname-override=%s --node-ip=10.0.2.15%s"\n' "$name" "${labels:+ --node-labels=$labels}" > "$dir/env"
  echo "$name" > "$dir/node-name"
}
