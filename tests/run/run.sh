#!/usr/bin/env bash
# `make run`: the operator on a cluster.
#  * KUBECONFIG unset: starts the local control plane (tests/cluster). Where the machine allows
#    the real node (tests/realnode), the operator is installed as users install it: the real
#    install (tests/realnode/install.sh: the operator image built from the release binary, the
#    trivy server, `kubectl apply -k kustomize/overlays/real-node`), running as a pod on the
#    real node; private test images are deployed there (namespace real-demo) and real trivy
#    scans them. Sample workloads of every kind run on kwok nodes (namespace demo), whose scan
#    logs are replayed from tests/fixtures/ (kwok runs nothing). The operator's log follows in
#    the foreground; Ctrl-C stops following, the operator keeps running in the cluster.
#    Without the real node (or with REAL_NODE=0), the operator runs on this machine in the
#    foreground, for the kwok samples only.
#  * KUBECONFIG set: uses that cluster as it is; installs only the CRD and the scan namespace and
#    runs the operator on this machine in the foreground.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
log() { printf '%s [run] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

LOCAL=false
if [[ -z "${KUBECONFIG:-}" ]]; then
  LOCAL=true
  log "starting the local cluster (first time: builds Kubernetes, containerd, trivy and CoreDNS from their Go modules, 30-60 min on 2 cores)"
  make --no-print-directory cluster-up
  export KUBECONFIG=$ROOT/target/cluster/kubeconfig
  PATH=$ROOT/target/cluster/bin:$PATH
fi
command -v kubectl >/dev/null || { echo "kubectl is required" >&2; exit 1; }
RN_ENV=$ROOT/target/cluster/realnode/realnode.env
REAL=false
if $LOCAL && [[ -f $RN_ENV ]]; then REAL=true; fi

if $REAL; then
  log "the real install on the real node (first time: the release build of the operator, several minutes)"
  tests/realnode/install.sh
else
  log "building the operator (first time: a few minutes)"
  cargo build --bin image-scanner-operator
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/image-scanner-operator
  log "installing the CRDs (scans, vulnerability exceptions) and the scan namespace"
  kubectl apply --server-side -f crds/ >/dev/null
  kubectl wait --for condition=Established --timeout=60s \
    crd/containerimagescans.stas.statnett.no \
    crd/vulnerabilityexceptions.stas.statnett.no \
    crd/clustervulnerabilityexceptions.stas.statnett.no >/dev/null
  kubectl create namespace image-scanner --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n image-scanner create serviceaccount image-scanner-job --dry-run=client -o yaml | kubectl apply -f - >/dev/null
fi

if $LOCAL; then
  log "deploying sample workloads into namespace demo (kwok nodes, replayed scan logs)"
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

if $REAL; then
  # shellcheck disable=SC1090
  source "$RN_ENV"
  log "real node $NODE_NAME: deploying private test images into namespace real-demo"
  tests/realnode/deploy-samples.sh real-demo app clean java
  cat >&2 <<MSG

  The operator runs as a pod on the real node $NODE_NAME (namespace image-scanner), installed
  from kustomize/overlays/real-node; its log follows (Ctrl-C stops following, not the operator).
  In another terminal:

    export KUBECONFIG=$KUBECONFIG
    kubectl get cis -A                      # names, counts, status
    kubectl get cis -n real-demo -o wide    # real trivy 0.74 scans of private images
    kubectl get jobs -n image-scanner       # scan Jobs
    kubectl -n image-scanner port-forward deploy/image-scanner-controller-manager 8080 &
    curl -s localhost:8080/metrics | grep image_scanner_

  Namespace real-demo and image-scanner: real scans on the real node. Namespace demo runs on
  kwok nodes: its scanner output is replayed from tests/fixtures/.
  Stop everything: make cluster-down

MSG
  exec kubectl -n image-scanner logs -f deploy/image-scanner-controller-manager
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
  echo "  (kwok only: scanner output is replayed from tests/fixtures/, not produced by trivy)" >&2
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
  "$@"
