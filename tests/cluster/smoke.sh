#!/usr/bin/env bash
# Smoke tests of the local control plane (run by `make cluster-smoke`, which
# starts the cluster first). Every check prints PASS/FAIL with what it measured;
# the exit code is non-zero when any check failed.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBECTL="$STATE/bin/kubectl"
[[ -x "$KUBECTL" && -f "$KUBECONFIG_FILE" ]] || die "no running cluster (run make cluster-up)"
FIXTURES="$REPO_ROOT/tests/fixtures/upstream/internal/controller/stas/testdata"
SMALL_LOG="$FIXTURES/scan-job-successful/successful-scan-job-pod.log.json"
LONG_LOG="$FIXTURES/scan-job-successful-long/scan-job-pod.log.json"
NS="smoke-$(date +%s)-$RANDOM"
WORK="$(mktemp -d)"
passed=0 failed=0

cleanup() {
  kc delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  kc delete crd widgets.smoke.image-scanner.test --wait=false >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
# wait_until SECONDS COMMAND...: poll until COMMAND succeeds; sets WAITED (seconds, 1 decimal).
wait_until() {
  local limit="$1" start now; shift
  start="$(date +%s%N)"
  while true; do
    if "$@" >/dev/null 2>&1; then break; fi
    now="$(date +%s%N)"
    if (((now - start) / 1000000000 >= limit)); then
      WAITED="$(awk -v n="$((now - start))" 'BEGIN{printf "%.1f", n/1e9}')"
      return 1
    fi
    sleep 0.2
  done
  now="$(date +%s%N)"
  WAITED="$(awk -v n="$((now - start))" 'BEGIN{printf "%.1f", n/1e9}')"
}
hex_of() { printf '%s' "$1" | sha256sum | cut -c1-64; }
jp() { kc get -n "$NS" "$1" -o "jsonpath=$2"; }
job_pod() { kc get pods -n "$NS" -l "job-name=$1" -o 'jsonpath={.items[0].metadata.name}'; }
job_cond() { # job_cond JOB TYPE -> true when the Job has condition TYPE=True
  [[ "$(jp "job/$1" "{.status.conditions[?(@.type==\"$2\")].status}")" == "True" ]]
}

echo "smoke: namespace $NS, server $(kc version -o json 2>/dev/null | grep -m1 gitVersion | tr -d ' ",' | sed 's/gitVersion://') (client+server)"
kc create namespace "$NS" >/dev/null
# A test CRD, installed first: the garbage collector re-reads discovery every 30 s.
kc apply -f - >/dev/null <<'EOY'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.image-scanner.test
spec:
  group: smoke.image-scanner.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
EOY
wait_until 60 kc get serviceaccount default -n "$NS" || fail "namespace default ServiceAccount not created after ${WAITED}s"

# --- 1. Deployment: pods Running and Ready, realistic container statuses -------------
WEB_HEX="$(hex_of smoke-web)"
WEB_IMAGE="registry.test/smoke/web@sha256:$WEB_HEX"
kc apply -n "$NS" -f - >/dev/null <<EOY
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers:
      - {name: setup, image: "busybox:1.36", command: ["true"]}
      containers:
      - {name: web, image: "$WEB_IMAGE"}
      - {name: sidecar, image: "nginx:1.25"}
      # Image markers only act in Job pods: this container must run normally.
      - {name: marker, image: "registry.test/pull-fail/exit-code-1/marker:1.0"}
EOY
deploy_ready() { [[ "$(jp deploy/web '{.status.readyReplicas}')" == "2" ]]; }
if wait_until 60 deploy_ready; then
  pass "deployment web: 2/2 replicas Ready after ${WAITED}s (incl. container with marker image registry.test/pull-fail/exit-code-1/marker:1.0)"
else
  fail "deployment web not Ready after ${WAITED}s: $(jp deploy/web '{.status}')"
fi
pod="$(kc get pods -n "$NS" -l app=web -o 'jsonpath={.items[0].metadata.name}')"
kc get pod -n "$NS" "$pod" -o json > "$WORK/web-pod.json"
got() { kc get pod -n "$NS" "$pod" -o "jsonpath=$1"; }
expect() { # expect DESCRIPTION ACTUAL EXPECTED
  if [[ "$2" == "$3" ]]; then pass "$1 = $2"; else fail "$1: got '$2', want '$3'"; fi
}
expect "web pod phase" "$(got '{.status.phase}')" "Running"
expect "web pod conditions Ready/ContainersReady/Initialized/PodScheduled" \
  "$(got '{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="ContainersReady")].status}/{.status.conditions[?(@.type=="Initialized")].status}/{.status.conditions[?(@.type=="PodScheduled")].status}')" "True/True/True/True"
expect "web container imageID (digest from the image reference)" \
  "$(got '{.status.containerStatuses[?(@.name=="web")].imageID}')" "registry.test/smoke/web@sha256:$WEB_HEX"
expect "sidecar imageID (nginx:1.25 -> sha256 of the image string)" \
  "$(got '{.status.containerStatuses[?(@.name=="sidecar")].imageID}')" "docker.io/library/nginx@sha256:$(hex_of nginx:1.25)"
expect "web container image/started/ready" \
  "$(got '{.status.containerStatuses[?(@.name=="web")].image}/{.status.containerStatuses[?(@.name=="web")].started}/{.status.containerStatuses[?(@.name=="web")].ready}')" "$WEB_IMAGE/true/true"
started_at="$(got '{.status.containerStatuses[?(@.name=="web")].state.running.startedAt}')"
[[ -n "$started_at" ]] && pass "web container state.running.startedAt = $started_at" || fail "web container has no state.running.startedAt"
expect "init container setup terminated" \
  "$(got '{.status.initContainerStatuses[0].name}/{.status.initContainerStatuses[0].state.terminated.reason}/{.status.initContainerStatuses[0].state.terminated.exitCode}')" "setup/Completed/0"
ips="$(got '{.status.hostIP} {.status.podIP} {.status.startTime} {.spec.nodeName}')"
read -r host_ip pod_ip start_time node <<<"$ips"
if [[ -n "$host_ip" && -n "$pod_ip" && -n "$start_time" && "$node" == kwok-node-* ]]; then
  pass "web pod hostIP=$host_ip podIP=$pod_ip startTime=$start_time node=$node"
else
  fail "web pod addresses/startTime/node incomplete: '$ips'"
fi

# --- 2. Jobs complete and their pod logs are test-chosen bytes -------------------------
scan_job() { # scan_job NAME IMAGE RESTART_POLICY BACKOFF_LIMIT [POD_ANNOTATIONS_JSON]
  kc apply -n "$NS" -f - >/dev/null <<EOY
apiVersion: batch/v1
kind: Job
metadata: {name: $1}
spec:
  backoffLimit: $4
  template:
    metadata:
      annotations: ${5:-{\}}
    spec:
      restartPolicy: $3
      automountServiceAccountToken: false
      initContainers:
      - {name: trivy, image: "aquasecurity/trivy:0.74.0", command: [cp, -v, /usr/local/bin/trivy, /run/image-scanner/trivy]}
      containers:
      - {name: scan-image, image: "$2", command: [/run/image-scanner/trivy], args: [rootfs, /]}
EOY
}
check_log_job() { # check_log_job NAME FIXTURE DESCRIPTION
  local name="$1" fixture="$2" what="$3" hex image p t0 t1 bytes
  hex="$(hex_of "$name")"
  image="registry.test/smoke/$name@sha256:$hex"
  "$CLUSTER_SRC/serve-log.sh" "sha256:$hex" "$fixture" >/dev/null
  scan_job "$name" "$image" OnFailure 3
  if wait_until 60 job_cond "$name" Complete; then
    pass "job $name Complete after ${WAITED}s (conditions: $(jp "job/$name" '{range .status.conditions[*]}{.type}={.status} {end}'))"
  else
    fail "job $name not Complete after ${WAITED}s: $(jp "job/$name" '{.status}')"
    return
  fi
  p="$(job_pod "$name")"
  expect "job $name pod phase / scan-image exit code" \
    "$(kc get pod -n "$NS" "$p" -o 'jsonpath={.status.phase}/{.status.containerStatuses[0].state.terminated.exitCode}')" "Succeeded/0"
  t0="$(date +%s%N)"
  kc logs -n "$NS" "$p" -c scan-image > "$WORK/$name.log"
  t1="$(date +%s%N)"
  bytes="$(wc -c < "$WORK/$name.log")"
  if cmp -s "$WORK/$name.log" "$fixture"; then
    pass "kubectl logs $name -c scan-image: $bytes bytes, byte-identical to $what ($(( (t1 - t0) / 1000000 )) ms)"
  else
    fail "kubectl logs $name -c scan-image: $bytes bytes differ from $what ($(wc -c < "$fixture") bytes): $(cmp "$WORK/$name.log" "$fixture" 2>&1 | head -1)"
  fi
}
check_log_job scan-small "$SMALL_LOG" "successful-scan-job-pod.log.json"
check_log_job scan-long "$LONG_LOG" "scan-job-successful-long/scan-job-pod.log.json"
# One 3.2 MB line without a trailing newline (stored as 16 KiB partial CRI records).
tr -d '\n' < "$LONG_LOG" > "$WORK/one-line.json"
check_log_job scan-oneline "$WORK/one-line.json" "a 3.2 MB single-line JSON without trailing newline"

# limitBytes (the operator reads logs with limitBytes).
p="$(job_pod scan-small)"
kc get --raw "/api/v1/namespaces/$NS/pods/$p/log?container=scan-image&limitBytes=100" > "$WORK/limited.log"
if [[ "$(wc -c < "$WORK/limited.log")" == 100 ]] && cmp -s "$WORK/limited.log" <(head -c 100 "$SMALL_LOG"); then
  pass "pods/log limitBytes=100 returns the first 100 bytes"
else
  fail "pods/log limitBytes=100 returned $(wc -c < "$WORK/limited.log") bytes"
fi
# No log file for the digest: the API answers with an error naming the missing file.
p="$(job_pod scan-small)"
if out="$(kc logs -n "$NS" "$p" -c trivy 2>&1)"; then
  fail "logs of a container without a log file succeeded unexpectedly: '$out'"
else
  pass "logs of a container without a log file fail with: $(head -c 200 <<<"$out")"
fi

# --- 3. Failing Jobs -------------------------------------------------------------------
scan_job fail-never "registry.test/smoke/fail-never@sha256:$(hex_of fail-never)" Never 0 '{"image-scanner.test/exit-code": "3"}'
if wait_until 60 job_cond fail-never Failed; then
  p="$(job_pod fail-never)"
  pass "job fail-never (restartPolicy Never, annotation exit-code 3) Failed after ${WAITED}s (conditions: $(jp job/fail-never '{range .status.conditions[*]}{.type}={.status}/{.reason} {end}')), pod $(kc get pod -n "$NS" "$p" -o 'jsonpath={.status.phase} exitCode={.status.containerStatuses[0].state.terminated.exitCode}')"
else
  fail "job fail-never not Failed after ${WAITED}s: $(jp job/fail-never '{.status}')"
fi
scan_job fail-onfailure "registry.test/exit-code-2/app@sha256:$(hex_of fail-onfailure)" OnFailure 1
if wait_until 90 job_cond fail-onfailure Failed; then
  pass "job fail-onfailure (restartPolicy OnFailure, image marker exit-code-2, backoffLimit 1) Failed after ${WAITED}s (conditions: $(jp job/fail-onfailure '{range .status.conditions[*]}{.type}={.status}/{.reason} {end}'), pod restarts counted by the Job controller)"
else
  fail "job fail-onfailure not Failed after ${WAITED}s: $(jp job/fail-onfailure '{.status}')"
fi

# --- 4. Image pull back-off -------------------------------------------------------------
PF_IMAGE="registry.test/pull-fail/app@sha256:$(hex_of pull-fail)"
scan_job pull-fail "$PF_IMAGE" OnFailure 3
pf_waiting() {
  local p; p="$(job_pod pull-fail)"; [[ -n "$p" ]] || return 1
  [[ "$(kc get pod -n "$NS" "$p" -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason}')" == "ImagePullBackOff" ]]
}
pf_event() {
  local p; p="$(job_pod pull-fail)"; [[ -n "$p" ]] || return 1
  kc get events.v1.events.k8s.io -n "$NS" -o 'jsonpath={range .items[*]}{.regarding.kind}/{.regarding.name}/{.reason}/{.type}{"\n"}{end}' \
    | grep -qx "Pod/$p/BackOff/Warning"
}
if wait_until 60 pf_waiting && wait_until 30 pf_event; then
  p="$(job_pod pull-fail)"
  pass "pod $p: waiting reason ImagePullBackOff ('$(kc get pod -n "$NS" "$p" -o 'jsonpath={.status.containerStatuses[0].state.waiting.message}')') with a Warning BackOff event (events.k8s.io/v1)"
  sleep 3
  expect "pull-fail pod still Pending 3 s later" "$(kc get pod -n "$NS" "$p" -o 'jsonpath={.status.phase}')" "Pending"
else
  fail "pull-fail pod not in ImagePullBackOff with BackOff event after ${WAITED}s: $(kc get pods -n "$NS" -l job-name=pull-fail -o 'jsonpath={.items[0].status.containerStatuses}')"
fi

# A bare pod with the pull-fail annotation (the marker for pods not owned by a Job).
kc apply -n "$NS" -f - >/dev/null <<'EOY'
apiVersion: v1
kind: Pod
metadata:
  name: pull-fail-annotated
  annotations: {image-scanner.test/pull-fail: "true"}
spec:
  containers:
  - {name: app, image: "registry.test/smoke/app:1.0"}
EOY
ann_waiting() {
  [[ "$(jp pod/pull-fail-annotated '{.status.containerStatuses[0].state.waiting.reason}')" =~ ^(ImagePullBackOff|ErrImagePull)$ ]]
}
if wait_until 30 ann_waiting; then
  pass "pod pull-fail-annotated (annotation image-scanner.test/pull-fail) waiting: $(jp pod/pull-fail-annotated '{.status.containerStatuses[0].state.waiting.reason}') after ${WAITED}s"
else
  fail "pod pull-fail-annotated not waiting in an image pull error after ${WAITED}s: $(jp pod/pull-fail-annotated '{.status}')"
fi

# --- 5. Garbage collection ----------------------------------------------------------------
rs="$(kc get rs -n "$NS" -l app=web -o 'jsonpath={.items[0].metadata.name}')"
kc delete deployment -n "$NS" web --wait=false >/dev/null
web_gone() { [[ -z "$(kc get rs,pods -n "$NS" -l app=web -o name)" ]]; }
if wait_until 60 web_gone; then
  pass "deleting deployment web garbage-collected ReplicaSet $rs and its pods after ${WAITED}s"
else
  fail "ReplicaSet/pods of deployment web still present ${WAITED}s after deleting it"
fi
kc apply -n "$NS" -f - >/dev/null <<'EOY'
apiVersion: smoke.image-scanner.test/v1
kind: Widget
metadata: {name: owner}
EOY
# Fully qualified: the e2e tests install a Widget kind of another group in the same cluster.
uid="$(jp widgets.smoke.image-scanner.test/owner '{.metadata.uid}')"
kc apply -n "$NS" -f - >/dev/null <<EOY
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned-by-widget
  ownerReferences:
  - {apiVersion: smoke.image-scanner.test/v1, kind: Widget, name: owner, uid: "$uid"}
data: {k: v}
EOY
kc delete widgets.smoke.image-scanner.test -n "$NS" owner --wait=false >/dev/null
cm_gone() { ! kc get configmap -n "$NS" owned-by-widget; }
if wait_until 90 cm_gone; then
  pass "deleting custom resource Widget/owner garbage-collected ConfigMap owned-by-widget after ${WAITED}s"
else
  fail "ConfigMap owned-by-widget still present ${WAITED}s after deleting its owner Widget"
fi

# --- 6. Service-account tokens and RBAC ----------------------------------------------------
kc create serviceaccount -n "$NS" reader >/dev/null
kc create role -n "$NS" pod-reader --verb=get,list,watch --resource=pods >/dev/null
kc create rolebinding -n "$NS" reader --role=pod-reader --serviceaccount="$NS:reader" >/dev/null
token="$(kc create token -n "$NS" reader --duration=10m)"
server="$(kc config view --minify -o 'jsonpath={.clusters[0].cluster.server}')"
sa() { "$KUBECTL" --kubeconfig=/dev/null --server="$server" --certificate-authority="$PKI/ca.crt" --token="$token" "$@"; }
if out="$(sa get pods -n "$NS" -o name 2>&1)"; then
  pass "SA token (kubectl create token): list pods in $NS allowed ($(wc -l <<<"$out") pods)"
else
  fail "SA token: list pods in $NS denied: $out"
fi
for denied in "get secrets -n $NS" "get pods -n default" "create configmap x -n $NS"; do
  # shellcheck disable=SC2086
  if out="$(sa $denied 2>&1)"; then
    fail "SA token: '$denied' allowed, RBAC grants no such right"
  elif grep -qi forbidden <<<"$out"; then
    pass "SA token: '$denied' -> Forbidden"
  else
    fail "SA token: '$denied' failed, but not with Forbidden: $out"
  fi
done
expect "SA identity (auth whoami)" "$(sa auth whoami -o 'jsonpath={.status.userInfo.username}' 2>&1)" "system:serviceaccount:$NS:reader"

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
