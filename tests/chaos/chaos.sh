#!/usr/bin/env bash
# Chaos on the real control plane (make chaos, make chaos-small; issue 22, docs/testing.md).
#
# On a fresh local control plane of its own (target/chaos/cluster; kwok nodes only) with an
# audit log of the operator's requests and a proxy in front of the nodes' log endpoint:
# populate PODS pods, then `bench-scale chaos` runs two operator replicas with leader election
# (client certificates chaos-a, chaos-b) through seeded fault phases -- SIGKILL of leader and
# standby, SIGSTOP of the leader past its lease, kube-apiserver, etcd and controller-manager
# restarts, kube-apiserver stopped past the request timeout, 429s, expired watches (410), a
# slow, down or hanging log endpoint -- with users
# deleting and editing CIS, Jobs and scan pods, rolling out and scaling among them; after each
# phase a heal and the convergence check (HEAL_BOUND seconds), and throughout: one active Job
# per digest (from a watch), no result regressed, fencing by the Lease (audit log), request
# rates; at the end a quiet period. The seed is printed; SEED=<n> replays the schedule.
#
# Env: SEED (random) PODS (2000) NAMESPACES (20) DIGESTS (100) KILLS (50) API_RESTARTS (10)
#      API_PAUSES (2) PAUSES (3) ETCD_RESTARTS (2) KCM_RESTARTS (3) THROTTLES (3) WATCH_EXPIRIES (2)
#      LOG_FAULTS (3) USER_OPS (40) HEAL_BOUND (60 s) QUIET (30 s) JOB_LIMIT (20)
#      KEEP_CLUSTER=1 (leave the cluster running) CHAOS_OUT (target/chaos)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

SEED="${SEED:-$(( (RANDOM << 15) | RANDOM ))}"
PODS="${PODS:-2000}"
NAMESPACES="${NAMESPACES:-20}"
DIGESTS="${DIGESTS:-100}"
OUT="${CHAOS_OUT:-$ROOT/target/chaos}"
export CLUSTER_STATE="$OUT/cluster"
export REAL_NODE=0
export NODE_MAX_PODS="${NODE_MAX_PODS:-1000}"
export NODES="${NODES:-$(( (PODS + DIGESTS + NODE_MAX_PODS - 1) / NODE_MAX_PODS + 1 ))}"
((NODES >= 3)) || NODES=3
export KCM_API_QPS="${KCM_API_QPS:-1000}" KCM_API_BURST="${KCM_API_BURST:-2000}"
export SCHED_API_QPS="${SCHED_API_QPS:-1000}" SCHED_API_BURST="${SCHED_API_BURST:-2000}"
export KWOK_POD_PARALLELISM="${KWOK_POD_PARALLELISM:-16}"
export CLUSTER_TIMEOUT="${CLUSTER_TIMEOUT:-180}"
# Two client identities for the replicas, and the audit log of their requests.
# Not system:masters, which API Priority and Fairness exempts: the throttling fault limits
# this group's requests; cluster-admin is bound to it below.
export EXTRA_CLIENTS="chaos-a chaos-b" EXTRA_CLIENTS_GROUP=image-scanner-chaos
# The nodes announce a port of their own for log requests: the harness's proxy listens there.
export KWOK_LOG_PROXY=1
mkdir -p "$OUT"
AUDIT_POLICY="$OUT/audit-policy.yaml"
cat > "$AUDIT_POLICY" <<'EOP'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # With the Lease after the write: its holder, for fencing (a renewal carried out after a
  # take-over renews the new holder's lease).
  - level: RequestResponse
    users: ["chaos-a", "chaos-b"]
    verbs: ["create", "update", "patch"]
    resources:
      - group: "coordination.k8s.io"
        resources: ["leases"]
  - level: Metadata
    users: ["chaos-a", "chaos-b"]
    verbs: ["create", "update", "patch", "delete", "deletecollection", "get", "list", "watch"]
  # Who deletes scan pods and Jobs (the harness, the Job controller, the garbage collector,
  # kwok): a result lost with its pod is traced to its cause here.
  - level: Metadata
    verbs: ["delete", "deletecollection"]
    resources:
      - group: ""
        resources: ["pods"]
      - group: "batch"
        resources: ["jobs"]
  - level: None
EOP
export APISERVER_EXTRA_ARGS="--audit-policy-file=$AUDIT_POLICY --audit-log-path=$CLUSTER_STATE/audit.log --audit-log-maxsize=1024 --audit-log-format=json"

log() { printf '%s [chaos] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
t_start=$SECONDS
log "seed $SEED (replay: SEED=$SEED $0)"
log "building the operator and the chaos client (release)"
cargo build --release --locked -p image-scanner-operator -p image-scanner-bench >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

cleanup() {
  # The audit log outlives the cluster, for a look at what the replicas asked.
  [[ -f "$CLUSTER_STATE/audit.log" ]] && mv -f "$CLUSTER_STATE/audit.log" "$OUT/audit.log"
  if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
    log "chaos cluster left running: KUBECONFIG=$CLUSTER_STATE/kubeconfig (stop: CLUSTER_STATE=$CLUSTER_STATE tests/cluster/down.sh)"
  else
    tests/cluster/down.sh >&2 || true
  fi
}
trap cleanup EXIT

for attempt in 1 2 3; do
  tests/cluster/down.sh >&2
  if tests/cluster/up.sh >&2; then break; fi
  ((attempt < 3)) || { log "the chaos cluster did not start"; exit 1; }
  log "cluster start failed (attempt $attempt); retrying"
done
export KUBECONFIG="$CLUSTER_STATE/kubeconfig"
"$CLUSTER_STATE/bin/kubectl" apply --server-side -f crds/ >&2
"$CLUSTER_STATE/bin/kubectl" create clusterrolebinding image-scanner-chaos \
  --clusterrole=cluster-admin --group=image-scanner-chaos >&2
# The throttling fault applies this for a while (API Priority and Fairness: the replicas'
# requests beyond one seat are refused with 429) and deletes it again.
cat > "$OUT/throttle.yaml" <<'EOT'
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata:
  name: image-scanner-chaos-throttle
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    limitResponse:
      type: Reject
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata:
  name: image-scanner-chaos-throttle
spec:
  matchingPrecedence: 500
  priorityLevelConfiguration:
    name: image-scanner-chaos-throttle
  rules:
    - subjects:
        - kind: Group
          group:
            name: image-scanner-chaos
      resourceRules:
        - verbs: ["*"]
          apiGroups: ["*"]
          resources: ["*"]
          namespaces: ["*"]
          clusterScope: true
EOT
"$CLUSTER_STATE/bin/kubectl" wait --for=condition=Established --timeout=60s \
  crd/containerimagescans.stas.statnett.no >&2

"$BIN/bench-scale" --out "$OUT" populate --pods "$PODS" --namespaces "$NAMESPACES" \
  --digests "$DIGESTS" --nodes "$NODES" --logs-dir "$CLUSTER_STATE/logs" --mix sample
"$BIN/bench-scale" --out "$OUT" chaos --operator "$BIN/image-scanner-operator" \
  --state "$CLUSTER_STATE" --seed "$SEED" --kills "${KILLS:-50}" \
  --api-restarts "${API_RESTARTS:-10}" --api-pauses "${API_PAUSES:-2}" --pauses "${PAUSES:-3}" --user-ops "${USER_OPS:-40}" \
  --etcd-restarts "${ETCD_RESTARTS:-2}" --kcm-restarts "${KCM_RESTARTS:-3}" \
  --throttles "${THROTTLES:-3}" --watch-expiries "${WATCH_EXPIRIES:-2}" --log-faults "${LOG_FAULTS:-3}" \
  --heal-bound "${HEAL_BOUND:-60}" --quiet "${QUIET:-30}" --job-limit "${JOB_LIMIT:-20}"
log "chaos finished in $((SECONDS - t_start)) s (results: $OUT/chaos.json, replica logs: $OUT/chaos-*.log, audit log: $OUT/audit.log)"
