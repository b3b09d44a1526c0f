#!/usr/bin/env bash
# The real install, checked end to end (make real-install-check, in make test): install.sh puts
# the operator and the trivy server on the real node as pods; then
#  1. a Deployment of the private image app:1 (imagePullSecret) gets exactly the findings of
#     tests/realnode/expected/app.json, scanned by the in-cluster operator through the trivy
#     Service (cluster DNS, kube-proxy), from a scan Job in the workload's namespace with its
#     pull secret (the kubelet checks pull credentials: KEP-2535);
#  2. the operator pod is deleted with --force --grace-period=0 while the scan Job of a second
#     private image (java:1, whose JARs need the Java DB image) runs: its replacement takes the
#     Job over, and the CIS gets exactly tests/realnode/expected/java.json from that one Job
#     (no second Job for the digest, lastScanJobUID = its UID): no lost and no duplicate scan.
# At the end the install is removed again (install.sh --delete), so that the host-run operators
# of the e2e suite have the cluster to themselves on a next run.
#
# Usage: install-check.sh   (after make cluster-up; exit status 0 when every check passes)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
clog() { log "[real install check] $*"; }
fail() { clog "FAIL: $*"; exit 1; }

if [[ "$(cat "$RN_DISABLED" 2>/dev/null)" == REAL_NODE=0 ]]; then
  clog "SKIPPED: the cluster was started with REAL_NODE=0"
  exit 0
fi
[[ -f "$RN_ENV" ]] || fail "the local cluster has no real node: $(cat "$RN_DISABLED" 2>/dev/null || echo 'make cluster-up first')"
# shellcheck source=/dev/null
source "$RN_ENV"
KUBECTL="$STATE/bin/kubectl"
NS=real-install
EXPECTED="$RN/images/expected"
WAIT=180

"$here/install.sh"
cleanup() {
  kc delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  "$here/install.sh" --delete || true
}
trap cleanup EXIT

# cis_of DIGEST: the CIS (JSON) of that digest in $NS, once it has a successful scan.
cis_of() {
  kc -n "$NS" get cis -o json |
    jq -ce --arg d "$1" '.items[] | select(.spec.digest == $d and .status.lastSuccessfulScanTime != null)'
}
# check_result NAME CIS_JSON EXPECTED_FILE: vulnerabilities and summary exactly as expected.
check_result() {
  local got want
  got="$(jq -S '{vulnerabilities: (.status.vulnerabilities // []), vulnerabilitySummary: .status.vulnerabilitySummary}' <<<"$2")"
  want="$(jq -S '{vulnerabilities, vulnerabilitySummary}' "$3")"
  if [[ "$got" != "$want" ]]; then
    diff -u <(echo "$want") <(echo "$got") >&2 || true
    fail "$1: the in-cluster operator's result (+) differs from $3 (-)"
  fi
  clog "ok: $1 has exactly the findings of $(basename "$3") ($(jq '.vulnerabilities | length' <<<"$want") findings)"
}
wait_until() { # wait_until WHAT COMMAND...: retries for $WAIT s; the command's stdout is kept
  local what="$1" deadline=$((SECONDS + WAIT)); shift
  until out="$("$@" 2>/dev/null)"; do
    ((SECONDS < deadline)) || fail "timed out after ${WAIT}s waiting for: $what"
    sleep 0.5
  done
  printf '%s' "$out"
}

# 1. A private image, scanned by the installed operator.
t=$SECONDS
"$here/deploy-samples.sh" "$NS" app
cis="$(wait_until "the CIS of app:1 with a successful scan" cis_of "$APP_DIGEST")"
check_result "app:1" "$cis" "$EXPECTED/app.json"
clog "app:1 scanned $((SECONDS - t)) s after its Deployment was applied"
where="$(kc get jobs -A -l app.kubernetes.io/managed-by=image-scanner -o json | jq -r --arg d "$APP_DIGEST" \
  '.items[] | select(.metadata.annotations["image-scanner.statnett.no/digest"] == $d) |
   "\(.metadata.namespace) \(.spec.template.spec.imagePullSecrets // [] | map(.name) | join(","))"' | sort -u)"
[[ "$where" == "$NS registry-credentials" ]] ||
  fail "the scan Job of app:1 ran in '$where', not in $NS with its pull secret registry-credentials"

# 2. The operator pod killed while a scan Job runs.
# The digest label holds the hex cut to a label value's 63 characters.
java_hex="${JAVA_DIGEST#sha256:}"
java_label="image-scanner.statnett.no/digest=${java_hex:0:63}"
# In the samples' namespace, with their pull secret (scan Job placement), or anywhere else.
active_job() {
  kc get jobs -A -l "$java_label" -o json |
    jq -er '.items[] | select((.status.succeeded // 0) == 0 and (.status.failed // 0) == 0) | .metadata.uid'
}
"$here/deploy-samples.sh" "$NS" java
job_uid="$(wait_until "the scan Job of java:1" active_job)"
old_pod="$(kc -n image-scanner get pods -l control-plane=image-scanner -o jsonpath='{.items[0].metadata.name}')"
kc -n image-scanner delete pod "$old_pod" --force --grace-period=0 >/dev/null 2>&1
# The scan takes seconds (two init containers, trivy): the Job must still run now, or this
# check would not have killed the operator mid-scan.
[[ "$(active_job || true)" == "$job_uid" ]] ||
  fail "scan Job $job_uid finished before the operator pod was deleted: not a kill mid-scan"
clog "operator pod $old_pod force-deleted while scan Job $job_uid ran"
cis="$(wait_until "the CIS of java:1 with a successful scan after the operator's restart" cis_of "$JAVA_DIGEST")"
check_result "java:1" "$cis" "$EXPECTED/java.json"
jobs="$(kc get jobs -A -l "$java_label" -o json | jq -r '[.items[].metadata.uid] | join(" ")')"
[[ "$jobs" == "$job_uid" ]] || fail "scan Jobs of java:1: '$jobs' (expected exactly the one running at the kill, $job_uid)"
[[ "$(jq -r '.status.lastScanJobUID' <<<"$cis")" == "$job_uid" ]] ||
  fail "the CIS's lastScanJobUID is $(jq -r '.status.lastScanJobUID' <<<"$cis"), not the Job $job_uid"
new_pod="$(kc -n image-scanner get pods -l control-plane=image-scanner -o jsonpath='{.items[0].metadata.name}')"
[[ "$new_pod" != "$old_pod" ]] || fail "the operator pod was not replaced"
clog "ok: one scan Job for java:1, its result taken over by the new operator pod $new_pod"
clog "all checks passed"
