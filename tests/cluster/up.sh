#!/usr/bin/env bash
# Start the local control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (playing the kubelet of $NODES fake nodes), all on
# 127.0.0.1 with free ports, then a real node where the machine allows it
# (tests/realnode/up.sh; REAL_NODE=0 for kwok only). Admin kubeconfig: target/cluster/kubeconfig.
#
#   up.sh            start (or return at once if a healthy cluster is running)
#   up.sh --status   report whether the cluster is running and healthy
#
# Env: NODES (default 3), CLUSTER_TIMEOUT (seconds per readiness wait, default 120),
#      CLUSTER_BIN_DIR (see build.sh), CLUSTER_STATE (state directory, see lib.sh).
#      Scale knobs (defaults suit the tests; the scale benchmark raises them):
#      NODE_MAX_PODS (pod capacity per node, 250), KCM_API_QPS/KCM_API_BURST (controller-manager
#      client, 100/200), SCHED_API_QPS/SCHED_API_BURST (scheduler client, 50/100),
#      KWOK_POD_PARALLELISM (pod stages kwok plays at once, 4).
#      KWOK_LOG_PROXY=1: the nodes announce another free port (KWOK_NODE_PORT in ports.env) for
#      the API server's log requests, where a proxy in front of kwok's server is to listen (the
#      chaos test's slow and unavailable log endpoint); nothing listens there until it runs.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../realnode/lib.sh
source "$REPO_ROOT/tests/realnode/lib.sh"

NODES="${NODES:-3}"
TIMEOUT="${CLUSTER_TIMEOUT:-120}"
[[ "$NODES" =~ ^[0-9]+$ && "$NODES" -ge 1 ]] || die "NODES must be a positive integer, got '$NODES'"
NODE_MAX_PODS="${NODE_MAX_PODS:-250}"
KCM_API_QPS="${KCM_API_QPS:-100}" KCM_API_BURST="${KCM_API_BURST:-200}"
SCHED_API_QPS="${SCHED_API_QPS:-50}" SCHED_API_BURST="${SCHED_API_BURST:-100}"
KWOK_POD_PARALLELISM="${KWOK_POD_PARALLELISM:-4}"
for v in NODE_MAX_PODS KCM_API_QPS KCM_API_BURST SCHED_API_QPS SCHED_API_BURST KWOK_POD_PARALLELISM; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || die "$v must be a positive integer, got '${!v}'"
done

for tool in openssl curl awk; do
  command -v "$tool" >/dev/null || die "'$tool' is required but not on PATH"
done

healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_alive "$c" || return 1; done
  [[ -f "$KUBECONFIG_FILE" && -x "${KUBECTL:-}" ]] || return 1
  kc get --raw /readyz >/dev/null 2>&1 || return 1
  local ready
  ready="$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c '^True$' || true)"
  [[ "$ready" -eq "$NODES" ]] || return 1
  # The real node: recorded as impossible, not wanted (unless it is wanted now), or running.
  if [[ -f "$RN_DISABLED" ]]; then
    [[ "$(cat "$RN_DISABLED")" != REAL_NODE=0 || "${REAL_NODE:-1}" == 0 ]]
    return
  fi
  for c in "${RN_COMPONENTS[@]}"; do pid_alive "$c" || return 1; done
}

if [[ "${1:-}" == "--status" ]]; then
  KUBECTL="$(readlink -f "$STATE/bin" 2>/dev/null)/kubectl" || true
  for c in "${COMPONENTS[@]}" "${RN_COMPONENTS[@]}"; do
    if pid_alive "$c"; then echo "$c: running (pid $(cat "$PIDS/$c.pid"))"; else echo "$c: not running"; fi
  done
  [[ -f "$RN_DISABLED" ]] && echo "real node: not started ($(cat "$RN_DISABLED"))"
  if healthy; then echo "cluster: healthy ($NODES nodes), KUBECONFIG=$KUBECONFIG_FILE"; exit 0; fi
  echo "cluster: not healthy"; exit 1
fi

t0=$SECONDS
BIN="$("$CLUSTER_SRC/build.sh" | tail -1)"
KUBECTL="$BIN/kubectl"
for b in kube etcd kwok kubectl; do [[ -x "$BIN/$b" ]] || die "missing binary $BIN/$b (run make cluster-build)"; done

if healthy; then
  if [[ "$(readlink "$STATE/bin")" == "$BIN" ]]; then
    log "cluster already running and healthy (${NODES} nodes); KUBECONFIG=$KUBECONFIG_FILE"
    exit 0
  fi
  log "running cluster uses other binaries ($(readlink "$STATE/bin")): restarting it"
fi
if [[ -e "$STATE" ]]; then
  log "stale or unhealthy cluster state in $STATE: cleaning it up first"
  "$CLUSTER_SRC/down.sh"
fi

mkdir -p "$STATE" "$PKI" "$PIDS" "$CLOGS" "$LOGS_DIR" "$STATE/pull-fail"
ln -sfn "$BIN" "$STATE/bin"

# --- ports -------------------------------------------------------------------
free_port ETCD_PORT; free_port ETCD_PEER_PORT; free_port API_PORT
free_port KCM_PORT; free_port SCHED_PORT; free_port KWOK_PORT
if [[ "${KWOK_LOG_PROXY:-0}" == 1 ]]; then free_port KWOK_NODE_PORT; else KWOK_NODE_PORT="$KWOK_PORT"; fi
cat > "$STATE/ports.env" <<EOV
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
SCHED_PORT=$SCHED_PORT
KWOK_PORT=$KWOK_PORT
KWOK_NODE_PORT=$KWOK_NODE_PORT
BIN=$BIN
EOV

# --- certificates and keys (fresh per cluster) ----------------------------------
(
  cd "$PKI"
  umask 077
  exec 2>"$PKI/openssl.log"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -sha256 \
    -subj "/CN=image-scanner-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" >/dev/null
  leaf() { # leaf NAME SUBJECT EXTENSIONS
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" >/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
      -extfile "$1.ext" -out "$1.crt" >/dev/null
  }
  srv="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
  cli="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  leaf apiserver "/CN=kube-apiserver" "$srv
subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1,IP:$RN_HOST_IP"
  leaf admin "/O=system:masters/CN=kubernetes-admin" "$cli"
  leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$cli"
  # Serving certificate of the fake kubelet (kwok); the apiserver verifies it.
  leaf kwok "/CN=kwok" "$srv
subjectAltName=DNS:localhost,IP:127.0.0.1"
  # Further client identities (EXTRA_CLIENTS="a b", in group EXTRA_CLIENTS_GROUP), e.g. for the
  # chaos test's two replicas, which the audit log and API Priority and Fairness must tell apart.
  for extra in ${EXTRA_CLIENTS:-}; do
    leaf "$extra" "/O=${EXTRA_CLIENTS_GROUP:-system:masters}/CN=$extra" "$cli"
  done
  openssl genrsa -out sa.key 2048 >/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub >/dev/null
  rm -f ./*.csr ./*.ext
) || die "certificate generation failed; see $PKI/openssl.log"

b64() { base64 -w0 < "$1"; }
cat > "$KUBECONFIG_FILE" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: image-scanner-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: image-scanner-local
  context:
    cluster: image-scanner-local
    user: admin
    namespace: default
current-context: image-scanner-local
EOK
chmod 600 "$KUBECONFIG_FILE"
for extra in ${EXTRA_CLIENTS:-}; do
  sed -e "s|client-certificate-data: .*|client-certificate-data: $(b64 "$PKI/$extra.crt")|" \
      -e "s|client-key-data: .*|client-key-data: $(b64 "$PKI/$extra.key")|" \
      "$KUBECONFIG_FILE" > "$STATE/$extra.kubeconfig"
  chmod 600 "$STATE/$extra.kubeconfig"
done

# --- kwok configuration ----------------------------------------------------------
awk -v helpers="$CLUSTER_SRC/kwok/helpers.tpl" -v logs="$LOGS_DIR" -v maxpods="$NODE_MAX_PODS" '
  /^[ \t]*#@HELPERS@[ \t]*$/ {
    match($0, /^[ \t]*/); ind = substr($0, 1, RLENGTH)
    while ((getline l < helpers) > 0) print ind l
    close(helpers); next
  }
  { gsub(/@LOGS_DIR@/, logs); gsub(/@NODE_MAX_PODS@/, maxpods); print }' "$CLUSTER_SRC/kwok/stages.yaml" > "$STATE/kwok.yaml"
if [[ "$KWOK_POD_PARALLELISM" != 4 ]]; then
  # A KwokConfiguration document is taken as is (kwok applies its defaults only when there is
  # none), so every defaulted option is spelled out with kwok v0.8.0's default.
  cat >> "$STATE/kwok.yaml" <<EOC
---
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 10.244.0.0/16
  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake
  enableDebuggingHandlers: true
  enableContentionProfiling: false
  enableProfilingHandler: true
  podPlayStageParallelism: $KWOK_POD_PARALLELISM
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
EOC
fi

# --- process helpers ---------------------------------------------------------------
fail_with_log() { # fail_with_log NAME MESSAGE
  log "$2"
  if [[ -f "$CLOGS/$1.log" ]]; then
    log "last 40 lines of $CLOGS/$1.log:"
    tail -n 40 "$CLOGS/$1.log" >&2
  fi
  log "the cluster is left as is for debugging; run 'make cluster-down' to clean up"
  exit 1
}
wait_for() { # wait_for NAME DESCRIPTION COMMAND...
  local name="$1" what="$2" deadline=$((SECONDS + TIMEOUT)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ "$name" != "-" ]] && ! pid_alive "$name"; then
      fail_with_log "$name" "$name exited while waiting for: $what"
    fi
    if ((SECONDS >= deadline)); then
      fail_with_log "$name" "timed out after ${TIMEOUT}s waiting for: $what"
    fi
    sleep 0.2
  done
  log "ready: $what ($((SECONDS - t0)) s)"
}
https_ok() { curl -fsk --max-time 2 "https://127.0.0.1:$1/healthz" | grep -q '^ok$'; }

# --- etcd ------------------------------------------------------------------------------
start etcd "$BIN/etcd" --name=node0 --data-dir="$STATE/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="node0=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync=true --log-level=warn
wait_for etcd "etcd /health" sh -c "curl -fs --max-time 2 http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"

# --- kube-apiserver ------------------------------------------------------------------------
# The advertise address is what the `kubernetes` Service's endpoints say: pods reach the API
# server there, through kube-proxy and the real node's forwarder on the bridge's host address
# (tests/realnode/up.sh). It serves nothing itself: the API server binds to 127.0.0.1 only. (A
# loopback advertise address gives that Service no endpoints at all.)
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address="$RN_HOST_IP" --secure-port="$API_PORT" \
  --cert-dir="$STATE/apiserver-certs" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --kubelet-preferred-address-types=Hostname,InternalIP \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --profiling=false ${APISERVER_EXTRA_ARGS:-}
wait_for kube-apiserver "kube-apiserver /readyz" kc get --raw /readyz

# kwok's Logs CRD (kwok watches Logs objects; the pod-create stage creates one per pod).
kc apply -f "$BIN/crds/" >/dev/null
kc wait --for=condition=Established --timeout="${TIMEOUT}s" crd/logs.kwok.x-k8s.io >/dev/null

# --- controller-manager, scheduler ---------------------------------------------------------
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$KUBECONFIG_FILE" \
  --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/kcm-certs" \
  --leader-elect=false \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --node-monitor-period=5s --node-monitor-grace-period=40s \
  --kube-api-qps="$KCM_API_QPS" --kube-api-burst="$KCM_API_BURST" --profiling=false
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$KUBECONFIG_FILE" \
  --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$STATE/scheduler-certs" \
  --kube-api-qps="$SCHED_API_QPS" --kube-api-burst="$SCHED_API_BURST" \
  --leader-elect=false --profiling=false

# --- nodes + kwok --------------------------------------------------------------------------------
{
  for ((i = 0; i < NODES; i++)); do
    cat <<EON
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
EON
  done
} | kc apply -f - >/dev/null

start kwok "$BIN/kwok" \
  --kubeconfig="$KUBECONFIG_FILE" --config="$STATE/kwok.yaml" \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --enable-crds=Logs \
  --node-ip=127.0.0.1 --node-port="$KWOK_NODE_PORT" --server-address="127.0.0.1:$KWOK_PORT" \
  --tls-cert-file="$PKI/kwok.crt" --tls-private-key-file="$PKI/kwok.key" \
  --cidr=10.244.0.0/16 --node-lease-duration-seconds=40

wait_for kube-controller-manager "kube-controller-manager /healthz" https_ok "$KCM_PORT"
wait_for kube-scheduler "kube-scheduler /healthz" https_ok "$SCHED_PORT"
wait_for kwok "kwok /healthz" https_ok "$KWOK_PORT"

nodes_ready() {
  local out
  out="$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}{"\n"}{end}')"
  [[ "$(grep -c ' True $' <<<"$out")" -eq "$NODES" ]]
}
wait_for kwok "$NODES nodes Ready without taints" nodes_ready
wait_for kube-controller-manager "service-account controller (default/default SA)" kc get serviceaccount default -n default

# --- the real node (containerd + kubelet + registry + trivy server), where the machine allows ------
"$REPO_ROOT/tests/realnode/up.sh"

log "cluster up in $((SECONDS - t0)) s: export KUBECONFIG=$KUBECONFIG_FILE (kubectl: $STATE/bin/kubectl)"
