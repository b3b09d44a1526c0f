#!/usr/bin/env bash
# `make run`: the operator in the foreground against a cluster.
#  * KUBECONFIG unset: starts the local control plane (tests/cluster), installs the CRD and the
#    scan namespace, deploys sample workloads (one per kind) and replays their scan logs from
#    tests/fixtures/ (kwok runs nothing, so there is no real trivy). Where the machine allows
#    the real node (tests/realnode), it also deploys private test images there (namespace
#    real-demo), which real trivy scans against the node's trivy server.
#  * KUBECONFIG set: uses that cluster as it is; installs only the CRD and the scan namespace.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
log() { printf '%s [run] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

LOCAL=false
if [[ -z "${KUBECONFIG:-}" ]]; then
  LOCAL=true
  make --no-print-directory cluster-up
  export KUBECONFIG=$ROOT/target/cluster/kubeconfig
  PATH=$ROOT/target/cluster/bin:$PATH
fi
command -v kubectl >/dev/null || { echo "kubectl is required" >&2; exit 1; }

log "building the operator (first time: a few minutes)"
cargo build --bin image-scanner-operator
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/image-scanner-operator

log "installing the CRD and the scan namespace"
kubectl apply --server-side -f crds/containerimagescans.stas.statnett.no.yaml >/dev/null
kubectl wait --for condition=Established crd/containerimagescans.stas.statnett.no --timeout=60s >/dev/null
kubectl create namespace image-scanner --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n image-scanner create serviceaccount image-scanner-job --dry-run=client -o yaml | kubectl apply -f - >/dev/null

if $LOCAL; then
  log "deploying sample workloads into namespace demo"
  kubectl apply -f tests/run/samples.yaml >/dev/null
  # Scan logs per image digest. Images without a digest get sha256(<image string>) from kwok.
  serve() { tests/cluster/serve-log.sh "$1" "tests/fixtures/$2" >/dev/null; }
  serve "sha256:1645798310a56491acb75d750ed6a4693a35506c9860503d21a877cc54d95191" \
    upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json
  serve "docker.io/bkimminich/juice-shop:v12.10.2" \
    trivy/trivy-0.56_image_juice-shop-v12.10.2_alpine-3.11-eosl_os-and-node-and-secret_182vulns.json
  serve "docker.io/library/alpine:3.9.4" trivy/trivy-head_image_alpine-3.9.4-eosl_os_6vulns_all-fixed.json
  serve "docker.io/library/debian:9.9" trivy/trivy-v0.20.0_image_debian-9.9_os_160vulns.json
  serve "docker.io/library/debian:10.1" trivy/trivy-head_image_debian-10.1_os_2vulns_affected-and-fixed.json
  serve "docker.io/library/centos:7.6.1810" trivy/trivy-head_image_centos-7.6_os_3vulns_will_not_fix.json
  serve "docker.io/kennship/http-echo:latest" \
    upstream/internal/controller/stas/testdata/scan-job-successful-long/scan-job-pod.log.json
fi

REAL_ARGS=()
RN_ENV=$ROOT/target/cluster/realnode/realnode.env
if $LOCAL && [[ -f $RN_ENV ]]; then
  # shellcheck disable=SC1090
  source "$RN_ENV"
  log "real node $NODE_NAME: deploying private test images into namespace real-demo"
  kubectl create namespace real-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n real-demo create secret docker-registry registry-credentials --docker-server="$REGISTRY" \
    --docker-username="$REGISTRY_USER" --docker-password="$REGISTRY_PASSWORD" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  for app in app clean; do
    image_var="${app^^}_IMAGE"
    sed -e "s|@NAME@|$app|g" -e "s|@IMAGE@|${!image_var}|g" -e "s|@TAINT@|$TAINT_KEY|g" \
      tests/run/real-samples.yaml | kubectl apply -f - >/dev/null
  done
  kubectl -n image-scanner create configmap trivy-job-config --from-literal=SERVER="$TRIVY_SERVER" \
    --from-literal=TIMEOUT=30m --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  REAL_ARGS=(--trivy-image="$TRIVY_IMAGE"
    --scan-job-tolerations="[{\"key\":\"$TAINT_KEY\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]")
fi

cat >&2 <<MSG

  The operator runs in the foreground (Ctrl-C stops it). In another terminal:

    export KUBECONFIG=$KUBECONFIG
    kubectl get cis -A                      # names, counts, status
    kubectl get cis -n demo -o wide         # with digests
    kubectl get jobs -n image-scanner       # scan Jobs
    curl -s localhost:8080/metrics | grep image_scanner_

MSG
if $LOCAL; then
  if ((${#REAL_ARGS[@]})); then
    echo "  Real scans: kubectl get cis -n real-demo (trivy 0.74 on the real node $NODE_NAME)." >&2
    echo "  Namespace demo runs on kwok nodes: its scanner output is replayed from tests/fixtures/." >&2
  else
    echo "  (kwok only: scanner output is replayed from tests/fixtures/, not produced by trivy)" >&2
  fi
  echo >&2
fi

exec "$BIN" \
  --scan-job-namespace="${SCAN_JOB_NAMESPACE:-image-scanner}" \
  --scan-job-service-account="${SCAN_JOB_SERVICE_ACCOUNT:-image-scanner-job}" \
  --trivy-image="${TRIVY_IMAGE:-ghcr.io/aquasecurity/trivy:0.74.0}" \
  --scan-workload-resources="${SCAN_WORKLOAD_RESOURCES:-deployments.apps,replicasets.apps,statefulsets.apps,daemonsets.apps,cronjobs.batch,jobs.batch}" \
  --cis-metrics-labels="${CIS_METRICS_LABELS:-app.kubernetes.io/name}" \
  --metrics-bind-address="${METRICS_BIND_ADDRESS:-127.0.0.1:8080}" \
  --health-probe-bind-address="${HEALTH_PROBE_BIND_ADDRESS:-127.0.0.1:8081}" \
  --log-format="${LOG_FORMAT:-console}" \
  "${REAL_ARGS[@]}" \
  "$@"
