#!/usr/bin/env bash
# Scan pods with the trivy binary copied in (TRIVY_BINARY=copy) against the trivy image mounted
# as an image volume (image-volume), on the real node: the operator (debug build, run outside
# the cluster as `make run` does) scans SCANS fresh images per way, one Job at a time, and the
# script prints per way
#   * start: scan pod created → scan container started (pod status, whole seconds, averaged),
#     with the trivy init container's copy alone for `copy`;
#   * scan: scan container started → finished;
#   * disk writes: bytes written to the node's disks while the scans ran (/proc/diskstats,
#     after `sync`), less what the idle cluster writes in the same time (measured before).
# Every image is a fresh copy of the test image `clean` (tests/realnode/fresh-image.sh: same
# layers, own digest), pulled by its workload before the operator starts, so neither way pays
# for a pull of the scanned image.
#
# Needs the local cluster with its real node (make cluster-up). Usage: bench-scan-pod.sh
# Env: SCANS (per way, default 6), IDLE_S (idle measurement, default 20).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
[[ -f "$RN_ENV" ]] || die "no real node settings in $RN_ENV (make cluster-up)"
# shellcheck source=/dev/null
source "$RN_ENV"
SCANS="${SCANS:-6}"
IDLE_S="${IDLE_S:-20}"
export KUBECONFIG="$STATE/kubeconfig"
kc() { "$STATE/bin/kubectl" "$@"; }
blog() { log "[bench-scan-pod] $*"; }

cd "$REPO_ROOT"
blog "building the operator (debug)"
cargo build --quiet --bin image-scanner-operator
BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/image-scanner-operator"
OUT="$STATE/bench-scan-pod"
mkdir -p "$OUT"

"$BIN" crd | kc apply --server-side --force-conflicts -f - >/dev/null
kc get ns image-scanner >/dev/null 2>&1 || kc create ns image-scanner >/dev/null
kc -n image-scanner get sa image-scanner-job >/dev/null 2>&1 ||
  kc -n image-scanner create sa image-scanner-job >/dev/null
kc -n image-scanner create configmap trivy-job-config --from-literal=SERVER="$TRIVY_SERVER" \
  --dry-run=client -o yaml | kc apply --server-side --force-conflicts -f - >/dev/null

# Sectors written to whole disks (not partitions: counted twice), in bytes.
disk_written() {
  sync
  awk '$3 !~ /[0-9]$/ || $3 ~ /^nvme[0-9]+n[0-9]+$/ {s += $10} END {printf "%.0f\n", s * 512}' /proc/diskstats
}

toleration="[{\"key\":\"$TAINT_KEY\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]"
results=()
for way in copy image-volume; do
  ns="bench-pod-$way"
  kc delete ns "$ns" --wait=true --ignore-not-found >/dev/null
  kc create ns "$ns" >/dev/null
  kc -n "$ns" create secret docker-registry registry-credentials --docker-server="$REGISTRY" \
    --docker-username="$REGISTRY_USER" --docker-password="$REGISTRY_PASSWORD" >/dev/null
  containers=""
  for ((i = 0; i < SCANS; i++)); do
    read -r ref _digest < <("$here/fresh-image.sh" clean)
    containers+="{\"name\":\"c$i\",\"image\":\"$ref\",\"command\":[\"/bin/sleep\",\"3600\"]},"
  done
  kc -n "$ns" apply --server-side -f - >/dev/null <<EOF
{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}},
  "template": {"metadata": {"labels": {"app": "app"}},
   "spec": {"nodeSelector": {"image-scanner.test/node": "real"}, "tolerations": $toleration,
    "terminationGracePeriodSeconds": 1, "imagePullSecrets": [{"name": "registry-credentials"}],
    "containers": [${containers%,}]}}}}
EOF
  kc -n "$ns" rollout status deploy/app --timeout=300s >/dev/null

  blog "$way: idle disk writes over $IDLE_S s"
  w0="$(disk_written)"; t0=$SECONDS
  sleep "$IDLE_S"
  w1="$(disk_written)"
  idle_rate=$(( (w1 - w0) / (SECONDS - t0) ))

  blog "$way: $SCANS scans, one Job at a time"
  w0="$(disk_written)"; t0=$SECONDS
  "$BIN" --scan-job-namespace=image-scanner --scan-job-service-account=image-scanner-job \
    --trivy-image="$TRIVY_IMAGE" --trivy-binary="$way" --scan-job-tolerations="$toleration" \
    --scan-namespace-include-regexp="^$ns\$" --active-scan-job-limit=1 \
    --scan-workload-resources=deployments.apps,replicasets.apps \
    --metrics-bind-address=0 --health-probe-bind-address=0 --log-format=console \
    --kubeconfig="$KUBECONFIG" >"$OUT/operator-$way.log" 2>&1 &
  op=$!
  deadline=$((SECONDS + 120 + 60 * SCANS))
  until [[ "$(kc -n "$ns" get cis -o json | jq '[.items[] | select(.status.lastSuccessfulScanTime != null)] | length')" == "$SCANS" ]]; do
    ((SECONDS < deadline)) || { kill "$op"; die "$way: not all $SCANS scanned in time (log: $OUT/operator-$way.log)"; }
    sleep 1
  done
  kill "$op"; wait "$op" 2>/dev/null || true
  elapsed=$((SECONDS - t0))
  w1="$(disk_written)"
  written=$(( w1 - w0 - idle_rate * elapsed ))

  kc -n "$ns" get pods -l app.kubernetes.io/managed-by=image-scanner -o json >"$OUT/pods-$way.json"
  row="$(jq -r --arg way "$way" --argjson written "$written" '
    def t: fromdateiso8601;
    def mean(f): (map(f) | add / length);
    [.items[] | {
      created: (.metadata.creationTimestamp | t),
      init: ([.status.initContainerStatuses[]? | select(.name == "trivy") | .state.terminated
              | ((.finishedAt | t) - (.startedAt | t))] | first),
      scan: (.status.containerStatuses[] | select(.name == "scan-image") | .state.terminated)
    } | select(.scan != null)] as $pods
    | ($pods | length) as $n
    | [$way, $n,
       ($pods | mean((.scan.startedAt | t) - .created)),
       (if ($pods | map(.init) | any) then ($pods | mean(.init // 0) * 100 | round / 100 | tostring) else "-" end),
       ($pods | mean((.scan.finishedAt | t) - (.scan.startedAt | t))),
       ($written / $n / 1048576 | floor)]
    | @tsv' "$OUT/pods-$way.json")"
  [[ -n "$row" ]] || die "$way: no finished scan pods in $OUT/pods-$way.json"
  results+=("$row")
  kc delete ns "$ns" --wait=false >/dev/null
done

printf '\n%-13s %5s %18s %14s %8s %22s\n' way pods "created→scan (s)" "copy alone (s)" "scan (s)" "disk MiB/scan (idle-)"
for row in "${results[@]}"; do
  IFS=$'\t' read -r way n start init scan mib <<<"$row"
  printf '%-13s %5s %18.2f %14s %8.2f %22s\n' "$way" "$n" "$start" "$init" "$scan" "$mib"
done
