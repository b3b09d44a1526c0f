#!/usr/bin/env bash
# Scale benchmark of the operator (make bench-scale; see docs/performance.md).
#
# On a fresh local control plane of its own (state in target/bench/cluster, so the e2e cluster in
# target/cluster is never touched), with kwok playing the kubelet of enough nodes:
#   1. populate: PODS pods in NAMESPACES namespaces from Deployments, StatefulSets, DaemonSets
#      and bare pods, images from DIGESTS digests, a replayed scan log per digest; wait until
#      every pod is Running and Ready;
#   2. run: start the operator (release build) as a process -- the clock starts here, a cold
#      start on a cluster whose pods all run -- and measure RSS, CPU, time to full coverage, scan
#      Jobs, API requests, writes during a QUIET-second quiet period, CIS sizes in etcd; then
#      restart it on the covered cluster: time to ready and to coverage again, and its writes
#      and Jobs in the RESTART_WATCH seconds after (none expected);
#   3. baseline: a plain client creating as many CIS-sized objects (create only; create + status;
#      server-side apply + status apply) with the operator's 32 requests in flight;
#   4. report: target/bench/scale.json and a table.
#
# Env: PODS (10000) NAMESPACES (100) DIGESTS (1000) QUIET (300 s) JOB_LIMIT (operator's
#      --active-scan-job-limit, 100) NODES (default: enough for the pods and the scan pods at
#      NODE_MAX_PODS=1000 per node) KEEP_CLUSTER=1 (leave the benchmark cluster running)
#      STRICT=1 (fail when a performance target is missed; correctness checks always fail the run)
#      JOBS_BASELINE=1 (also time copies of the operator's scan Jobs run alone, JOB_LIMIT in
#      flight: the scan pipeline's physical bound; adds about 2 minutes at 1,000 digests)
#      OPERATOR_FLAGS (extra operator flags, space-separated) BENCH_OUT (target/bench)
#      MIX (realistic: the report mix of docs/performance.md; sample: the upstream sample report
#      for 49 of 50 digests, as runs before 2026-12-04) REPORTS=1 (install an OpenReports
#      CRD: the operator then writes a Report per CIS too, as where Kyverno runs)
#      RESTART_WATCH (30 s; 0 skips the restart phase)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

PODS="${PODS:-10000}"
NAMESPACES="${NAMESPACES:-100}"
DIGESTS="${DIGESTS:-1000}"
QUIET="${QUIET:-300}"
JOB_LIMIT="${JOB_LIMIT:-100}"
MIX="${MIX:-realistic}"
REPORTS="${REPORTS:-0}"
OUT="${BENCH_OUT:-$ROOT/target/bench}"
export NODE_MAX_PODS="${NODE_MAX_PODS:-1000}"
# Enough nodes for the pods plus one scan pod per digest, and at least 3.
NODES="${NODES:-$(( (PODS + DIGESTS + NODE_MAX_PODS - 1) / NODE_MAX_PODS + 1 ))}"
((NODES >= 3)) || NODES=3
export NODES
# Client rate limits of the control plane: the defaults (controller-manager 100 QPS, scheduler
# 50 QPS, kwok 4 parallel stage plays) would make creating 10,000 pods, and the Job controller's
# 1,000 scan pods, take minutes; the benchmark measures the operator, not them.
export KCM_API_QPS="${KCM_API_QPS:-1000}" KCM_API_BURST="${KCM_API_BURST:-2000}"
export SCHED_API_QPS="${SCHED_API_QPS:-1000}" SCHED_API_BURST="${SCHED_API_BURST:-2000}"
export KWOK_POD_PARALLELISM="${KWOK_POD_PARALLELISM:-16}"
export CLUSTER_STATE="$OUT/cluster"
# kwok nodes only: one real node per machine (its bridge and containerd folders are host-wide),
# and the benchmark measures the operator, not containers.
export REAL_NODE=0
export CLUSTER_TIMEOUT="${CLUSTER_TIMEOUT:-180}"

log() { printf '%s [bench] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
t_start=$SECONDS

log "building the operator and the benchmark client (release)"
cargo build --release --locked -p image-scanner-operator -p image-scanner-bench >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

mkdir -p "$OUT"
rm -f "$OUT"/{plan,run,baseline,scale,timeline}.json "$OUT"/samples.csv "$OUT"/operator.log
cleanup() {
  if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
    log "benchmark cluster left running: KUBECONFIG=$CLUSTER_STATE/kubeconfig (stop: CLUSTER_STATE=$CLUSTER_STATE tests/cluster/down.sh)"
  else
    tests/cluster/down.sh >&2 || true
  fi
}
trap cleanup EXIT

log "fresh benchmark cluster: $NODES nodes x $NODE_MAX_PODS pods, state $CLUSTER_STATE"
# up.sh picks random free ports; one may be taken between the check and the bind (the
# machine's ephemeral ports overlap the range): start afresh a few times before giving up.
for attempt in 1 2 3; do
  tests/cluster/down.sh >&2
  if tests/cluster/up.sh >&2; then break; fi
  ((attempt < 3)) || { log "the benchmark cluster did not start"; exit 1; }
  log "cluster start failed (attempt $attempt); retrying"
done
export KUBECONFIG="$CLUSTER_STATE/kubeconfig"
"$CLUSTER_STATE/bin/kubectl" apply --server-side -f crds/ >&2
"$CLUSTER_STATE/bin/kubectl" wait --for=condition=Established --timeout=60s \
  crd/containerimagescans.stas.statnett.no >&2
if [[ "$REPORTS" == 1 ]]; then
  # The operator detects the CRD at start (PolicyReport=auto); it runs with the admin
  # kubeconfig here, so no RBAC is needed.
  "$CLUSTER_STATE/bin/kubectl" apply --server-side -f tests/bench/openreports-crd.yaml >&2
  "$CLUSTER_STATE/bin/kubectl" wait --for=condition=Established --timeout=60s \
    crd/reports.openreports.io >&2
fi

"$BIN/bench-scale" --out "$OUT" populate --pods "$PODS" --namespaces "$NAMESPACES" \
  --digests "$DIGESTS" --nodes "$NODES" --logs-dir "$CLUSTER_STATE/logs" --mix "$MIX"
extra=()
for f in ${OPERATOR_FLAGS:-}; do extra+=(--extra="$f"); done
"$BIN/bench-scale" --out "$OUT" run --operator "$BIN/image-scanner-operator" --quiet "$QUIET" \
  --job-limit "$JOB_LIMIT" --state "$CLUSTER_STATE" --restart-watch "${RESTART_WATCH:-30}" \
  "${extra[@]}"
jobs_in_flight=0
[[ "${JOBS_BASELINE:-0}" == 1 ]] && jobs_in_flight="$JOB_LIMIT"
"$BIN/bench-scale" --out "$OUT" baseline --jobs-in-flight "$jobs_in_flight"
strict=()
[[ "${STRICT:-0}" == 1 ]] && strict=(--strict)
"$BIN/bench-scale" --out "$OUT" report "${strict[@]}"
log "benchmark finished in $((SECONDS - t_start)) s (results: $OUT/scale.json, operator log: $OUT/operator.log)"
