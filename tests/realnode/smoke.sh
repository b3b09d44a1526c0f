#!/usr/bin/env bash
# Smoke tests of the real node (make cluster-smoke runs them after the kwok checks): the node
# registered with the versions we built and runs the kubelet at its defaults, a private image
# pulled with an imagePullSecret runs, `kubectl logs` and `exec` reach the kubelet, the same image
# by digest does NOT start without the secret although it is on the node (KEP-2535,
# KubeletEnsureSecretPulledImages, on by default: the kubelet pulls again without credentials and
# the registry answers 401) but does with it, a pod without credentials cannot pull an image the
# node does not have, and the trivy server answers from a pod. PASS/FAIL per check; exit 1 when
# one failed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

KUBECTL="$STATE/bin/kubectl"
if [[ -f "$RN_DISABLED" ]]; then
  reason="$(cat "$RN_DISABLED")"
  [[ "$reason" == REAL_NODE=0 ]] && { echo "real node smoke: SKIPPED (REAL_NODE=0)"; exit 0; }
  echo "FAIL: the cluster has no real node: $reason"
  echo "0 passed, 1 failed"
  exit 1
fi
[[ -f "$RN_ENV" ]] || die "no real node settings in $RN_ENV (run make cluster-up)"
# shellcheck disable=SC1090
source "$RN_ENV"
NS="smoke-real-$(date +%s)-$RANDOM"
passed=0 failed=0
cleanup() { kc delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
expect() { # expect WHAT GOT WANT
  if [[ "$2" == "$3" ]]; then pass "$1: $2"; else fail "$1: got '$2', want '$3'"; fi
}
# until_true SECONDS COMMAND...: poll; sets WAITED (seconds)
until_true() {
  local limit="$1" start=$SECONDS; shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start >= limit)) && { WAITED=$((SECONDS - start)); return 1; }
    sleep 0.2
  done
  WAITED=$((SECONDS - start))
}
phase() { kc get pod -n "$NS" "$1" -o 'jsonpath={.status.phase}'; }
waiting_reason() { kc get pod -n "$NS" "$1" -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason}'; }
pod() { # pod NAME IMAGE [SECRET]: a sleeping pod on the real node
  local secrets='[]'
  [[ -n "${3:-}" ]] && secrets="[{\"name\": \"$3\"}]"
  kc apply -n "$NS" -f - >/dev/null <<EOF
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "$1"},
 "spec": {"nodeName": "$NODE_NAME", "imagePullSecrets": $secrets, "terminationGracePeriodSeconds": 1,
   "tolerations": [{"key": "$TAINT_KEY", "operator": "Exists", "effect": "NoSchedule"}],
   "containers": [{"name": "c", "image": "$2", "imagePullPolicy": "IfNotPresent",
     "command": ["/bin/sh", "-c", "echo hello from \$(cat /etc/debian_version); exec sleep 3600"]}]}}
EOF
}

echo "real node smoke: node $NODE_NAME, registry $REGISTRY, namespace $NS"
info="$(kc get node "$NODE_NAME" -o 'jsonpath={.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}')"
expect "kubelet version" "${info%% *}" "$(kc version -o json | awk -F'"' '/"gitVersion"/ {v = $4} END {print v}')"
if [[ "${info#* }" == containerd://* ]]; then pass "runtime ${info#* }"; else fail "runtime '${info#* }'"; fi
expect "taint" "$(kc get node "$NODE_NAME" -o 'jsonpath={.spec.taints[*].key}')" "$TAINT_KEY"
# The checks below expect the kubelet's defaults (tests/realnode/kubelet.sh restart without flags).
expect "kubelet mode (kubelet.sh)" "$(paste -sd ' ' "$RN_KUBELET_MODE" 2>&1)" "gate=on node-credentials=off"
expect "kubelet feature gates (/configz)" "$(rn_kubelet_get /configz | jq -c '.kubeletconfig.featureGates // {}')" "{}"

kc create namespace "$NS" >/dev/null
kc -n "$NS" create secret docker-registry creds --docker-server="$REGISTRY" \
  --docker-username="$REGISTRY_USER" --docker-password="$REGISTRY_PASSWORD" >/dev/null
until_true 30 kc get serviceaccount default -n "$NS" || true

pod private "$APP_IMAGE" creds
if until_true 90 sh -c "[ \"\$($KUBECTL --kubeconfig $KUBECONFIG_FILE get pod -n $NS private -o 'jsonpath={.status.phase}')\" = Running ]"; then
  pass "private image with imagePullSecret Running after ${WAITED} s"
else
  fail "private image not Running after ${WAITED} s: phase '$(phase private)', waiting '$(waiting_reason private)'"
fi
expect "imageID (manifest digest the registry serves)" \
  "$(kc get pod -n "$NS" private -o 'jsonpath={.status.containerStatuses[0].imageID}')" "$REGISTRY/test/app@$APP_DIGEST"
until_true 20 sh -c "$KUBECTL --kubeconfig $KUBECONFIG_FILE logs -n $NS private | grep -q hello" || true
expect "kubectl logs (apiserver -> kubelet)" "$(kc logs -n "$NS" private 2>&1)" "hello from 12.8"
expect "kubectl exec" "$(kc exec -n "$NS" private -- /bin/busybox cat /etc/debian_version 2>&1)" "12.8"

# KEP-2535: the image is on the node, but pulled with a secret this pod does not present, so the
# kubelet pulls again with the pod's credentials (none) and the registry refuses.
pod by-digest "$REGISTRY/test/app@$APP_DIGEST"
waiting_message() { kc get pod -n "$NS" "$1" -o 'jsonpath={.status.containerStatuses[0].state.waiting.message}'; }
if until_true 60 sh -c "$KUBECTL --kubeconfig $KUBECONFIG_FILE get pod -n $NS by-digest -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason}' | grep -Eq 'ErrImagePull|ImagePullBackOff'" &&
  [[ "$(waiting_message by-digest)" == *"no basic auth credentials"* ]]; then
  pass "same image by digest, no pull secret: $(waiting_reason by-digest) after ${WAITED} s, no basic auth credentials (KEP-2535: the image on the node is not used)"
else
  fail "same image by digest without secret: phase '$(phase by-digest)', waiting '$(waiting_reason by-digest)': $(waiting_message by-digest)"
fi
pod by-digest-with-secret "$REGISTRY/test/app@$APP_DIGEST" creds
if until_true 60 sh -c "[ \"\$($KUBECTL --kubeconfig $KUBECONFIG_FILE get pod -n $NS by-digest-with-secret -o 'jsonpath={.status.phase}')\" = Running ]"; then
  pass "same image by digest with the pull secret: Running after ${WAITED} s"
else
  fail "same image by digest with the pull secret: phase '$(phase by-digest-with-secret)', waiting '$(waiting_reason by-digest-with-secret)': $(waiting_message by-digest-with-secret)"
fi

pod not-on-node "$NEVER_PULLED_IMAGE"
if until_true 60 sh -c "$KUBECTL --kubeconfig $KUBECONFIG_FILE get pod -n $NS not-on-node -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason}' | grep -Eq 'ErrImagePull|ImagePullBackOff'"; then
  pass "image not on the node, no credentials: $(waiting_reason not-on-node) (the registry requires auth)"
else
  fail "image not on the node, no credentials: phase '$(phase not-on-node)', waiting '$(waiting_reason not-on-node)'"
fi

# The scan pods' way to the trivy server: the bridge address, from inside a pod.
if out="$(kc exec -n "$NS" private -- /bin/busybox wget -q -O - "$TRIVY_SERVER/healthz" 2>&1)"; then
  expect "trivy server /healthz from a pod" "$out" "ok"
else
  fail "trivy server $TRIVY_SERVER from a pod: $out"
fi

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
